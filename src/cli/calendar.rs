//! `rota calendar`: calendars of excluded time that jobs name (PutCalendar, ListCalendars,
//! DeleteCalendar).
use std::path::PathBuf;

use clap::{Subcommand, ValueEnum};
use serde_json::{json, Value};

use super::connect::{call, CliError, Conn};
use super::output::print_table;
use super::ClientArgs;
use crate::pb;

/// The largest .ics file read (what PutCalendar takes).
const MAX_ICS: u64 = 1 << 20;

/// What becomes of a fire the calendar excludes.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OnExcluded {
    /// Recorded skipped, naming the calendar.
    Skip,
    /// Not made, not recorded.
    Omit,
    /// Moved to the next instant the job's calendars allow.
    Forward,
}

#[derive(Debug, Subcommand)]
pub enum CalendarCmd {
    /// Create or replace a calendar; jobs naming it follow it from their next fire on.
    Put {
        /// The calendar's name (1-64 of A-Z a-z 0-9 . _ -).
        name: String,
        /// IANA time zone its dates and windows are read in (default UTC).
        #[arg(long = "tz")]
        time_zone: Option<String>,
        /// An excluded day (2026-12-25), range (2026-12-24..2026-12-31) or day every year (12-25);
        /// repeatable.
        #[arg(long)]
        exclude_date: Vec<String>,
        /// An excluded window: days and/or times ('sat,sun', 'mon-fri 12:00-13:00', '22:00-06:00');
        /// repeatable.
        #[arg(long)]
        exclude_window: Vec<String>,
        /// A day that overrides the exclusions of its day (a working Saturday); repeatable.
        #[arg(long)]
        include_date: Vec<String>,
        /// Add the dates of an iCalendar (.ics) file's events to the excluded dates.
        #[arg(long)]
        ics: Option<PathBuf>,
        /// What becomes of a fire it excludes (default skip).
        #[arg(long, value_enum)]
        on_excluded: Option<OnExcluded>,
        /// Free text.
        #[arg(long)]
        description: Option<String>,
    },
    /// List the calendars.
    List,
    /// Delete a calendar (refused while jobs name it).
    Delete {
        /// The calendar's name.
        name: String,
    },
}

fn on_excluded_name(v: i32) -> &'static str {
    match pb::CalendarOnExcluded::try_from(v) {
        Ok(pb::CalendarOnExcluded::Omit) => "omit",
        Ok(pb::CalendarOnExcluded::Forward) => "forward",
        _ => "skip",
    }
}

fn calendar_json(c: &pb::Calendar) -> Value {
    json!({
        "name": c.name,
        "time_zone": c.time_zone,
        "excluded_dates": c.excluded_dates,
        "excluded_windows": c.excluded_windows,
        "included_dates": c.included_dates,
        "on_excluded": on_excluded_name(c.on_excluded),
        "description": c.description,
    })
}

pub async fn calendar_cmd(cmd: CalendarCmd, client: &ClientArgs) -> Result<(), CliError> {
    match cmd {
        CalendarCmd::Put {
            name,
            time_zone,
            exclude_date,
            exclude_window,
            include_date,
            ics,
            on_excluded,
            description,
        } => {
            // Read before connecting: a file that cannot be read is the caller's mistake.
            let ics = match ics {
                Some(p) => {
                    let bad = |e: String| CliError::Usage(format!("--ics {}: {e}", p.display()));
                    let f = std::fs::File::open(&p).map_err(|e| bad(e.to_string()))?;
                    // Read no more than the node takes (1 MiB), plus one byte to tell.
                    let mut text = String::new();
                    std::io::Read::read_to_string(&mut std::io::Read::take(f, MAX_ICS + 1), &mut text)
                        .map_err(|e| bad(e.to_string()))?;
                    if text.len() as u64 > MAX_ICS {
                        return Err(bad(format!("larger than {MAX_ICS} bytes")));
                    }
                    text
                }
                None => String::new(),
            };
            let calendar = pb::Calendar {
                name,
                time_zone: time_zone.unwrap_or_default(),
                excluded_dates: exclude_date,
                excluded_windows: exclude_window,
                included_dates: include_date,
                on_excluded: match on_excluded.unwrap_or(OnExcluded::Skip) {
                    OnExcluded::Skip => pb::CalendarOnExcluded::Skip,
                    OnExcluded::Omit => pb::CalendarOnExcluded::Omit,
                    OnExcluded::Forward => pb::CalendarOnExcluded::Forward,
                } as i32,
                description: description.unwrap_or_default(),
            };
            let mut c = Conn::open(client).await?;
            let r = call!(c, put_calendar, pb::PutCalendarRequest { calendar: Some(calendar), ics })?;
            let cal = r.calendar.unwrap_or_default();
            if client.json {
                println!("{:#}", calendar_json(&cal));
            } else {
                println!(
                    "calendar {} put: {} excluded dates, {} windows, {} included dates; excluded fires: {}",
                    cal.name,
                    cal.excluded_dates.len(),
                    cal.excluded_windows.len(),
                    cal.included_dates.len(),
                    on_excluded_name(cal.on_excluded)
                );
            }
        }
        CalendarCmd::List => {
            let mut c = Conn::open(client).await?;
            let r = call!(c, list_calendars, pb::ListCalendarsRequest {})?;
            if client.json {
                println!("{:#}", json!({"calendars": r.calendars.iter().map(calendar_json).collect::<Vec<_>>()}));
            } else {
                let rows = r
                    .calendars
                    .iter()
                    .map(|c| {
                        let zone = if c.time_zone.is_empty() { "UTC".to_string() } else { c.time_zone.clone() };
                        vec![
                            c.name.clone(),
                            zone,
                            c.excluded_dates.len().to_string(),
                            c.excluded_windows.join("; "),
                            c.included_dates.len().to_string(),
                            on_excluded_name(c.on_excluded).to_string(),
                        ]
                    })
                    .collect();
                print_table(&["NAME", "ZONE", "DATES", "WINDOWS", "INCLUDED", "EXCLUDED FIRES"], rows);
            }
        }
        CalendarCmd::Delete { name } => {
            let mut c = Conn::open(client).await?;
            call!(c, delete_calendar, pb::DeleteCalendarRequest { name: name.clone() })?;
            if client.json {
                println!("{}", json!({"deleted": name}));
            } else {
                println!("deleted calendar {name}");
            }
        }
    }
    Ok(())
}
