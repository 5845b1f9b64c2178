//! Calendars: named, shared sets of excluded time that jobs reference by name (Quartz's
//! calendars, PowerJob #240). A calendar says which instants a job's fires may not happen at:
//! - excluded dates: a day (`2026-12-25`), a range of days (`2026-12-24..2026-12-31`), or a day
//!   every year (`12-25`);
//! - excluded windows: times of day on some or all days of the week (`sat,sun`,
//!   `mon-fri 12:00-13:00`, `22:00-06:00`; a window whose end is before its start runs past
//!   midnight into the next day);
//! - included dates, overriding the exclusions of their day (a Saturday that is a working day):
//!   the excluded dates and the windows that name days; a window for every day (a time of day)
//!   still applies;
//! - all read on the wall clock of the calendar's own zone.
//!
//! What happens to a fire a calendar excludes is the calendar's choice (`OnExcluded`): `skip`
//! records it skipped, naming the calendar; `omit` makes no record; `forward` moves it to the next
//! instant the calendars allow: the same time on the next allowed day when a whole day is
//! excluded, the end of the window otherwise.
//!
//! `Calendars` is a job's calendars resolved (`Job::calendars`): it turns the schedule's instants
//! into the job's fires (`next`), and tells the scheduler what to do with an instant at its claim
//! (`verdict`), so a calendar changed after a watermark was set still decides. The first calendar
//! (in the job's order) that excludes an instant decides what happens to it.
//! Pure: no clock, no store. Uses: `schedule`, `cron` (zones), `error`.
use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Timelike};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use super::schedule::{Schedule, END_OF_TIME_MS};
use crate::error::{Error, Result};

/// The most calendars a cluster keeps.
pub const MAX_CALENDARS: usize = 1_000;
/// The most calendars one job references.
pub const MAX_JOB_CALENDARS: usize = 8;
/// The most date entries (dates, ranges, yearly days) of one calendar, excluded and included.
pub const MAX_DATES: usize = 10_000;
/// The most windows of one calendar.
pub const MAX_WINDOWS: usize = 100;
/// The longest date range, in days (ten years).
const MAX_RANGE_DAYS: i64 = 3_660;
/// Steps a forward move takes before it gives up (the calendars allow nothing near).
const FORWARD_STEPS: usize = 1_000;
/// How many instants one `Calendars::next` may look at, in all (the schedule's, a forward move's,
/// the boundaries of the calendars listed first): past it, the search stops at a checkpoint, so a
/// calendar that excludes nearly everything costs a tick a bounded few milliseconds.
const SEARCH_BUDGET: usize = 20_000;
/// The same for PutJob's check that the calendars leave the job a fire (`allows_any`).
const ALLOWS_ANY_BUDGET: usize = 50_000;

/// What becomes of a fire a calendar excludes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnExcluded {
    /// Recorded skipped, naming the calendar (never silently lost).
    #[default]
    Skip,
    /// Not made and not recorded (the preview still shows it).
    Omit,
    /// Moved to the next instant the job's calendars allow.
    Forward,
}

impl OnExcluded {
    pub fn name(self) -> &'static str {
        match self {
            OnExcluded::Skip => "skip",
            OnExcluded::Omit => "omit",
            OnExcluded::Forward => "forward",
        }
    }
}

/// A calendar as the API gives it and the store keeps it (JSON): its entries as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CalendarDef {
    pub name: String,
    /// IANA name; empty means UTC.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub time_zone: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded_dates: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded_windows: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub included_dates: Vec<String>,
    #[serde(default)]
    pub on_excluded: OnExcluded,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

/// A checked calendar, ready to answer.
#[derive(Debug, Clone)]
pub struct Calendar {
    pub def: CalendarDef,
    tz: Tz,
    excluded: Dates,
    included: Dates,
    windows: Vec<Window>,
}

/// Days: single dates, inclusive ranges, and days of every year (month, day).
#[derive(Debug, Clone, Default)]
struct Dates {
    days: BTreeSet<NaiveDate>,
    ranges: Vec<(NaiveDate, NaiveDate)>,
    yearly: BTreeSet<(u32, u32)>,
}

impl Dates {
    fn contains(&self, d: NaiveDate) -> bool {
        // `ranges` is sorted and merged (`Calendar::new`): the one that could hold `d` is the last
        // starting at or before it.
        let i = self.ranges.partition_point(|(a, _)| *a <= d);
        self.days.contains(&d)
            || self.yearly.contains(&(d.month(), d.day()))
            || i.checked_sub(1).is_some_and(|i| d <= self.ranges[i].1)
    }

    /// Sorts the ranges and merges those that touch, for `contains`' binary search.
    fn settle(&mut self) {
        self.ranges.sort_unstable();
        let mut merged: Vec<(NaiveDate, NaiveDate)> = Vec::with_capacity(self.ranges.len());
        for (a, b) in self.ranges.drain(..) {
            match merged.last_mut() {
                Some(last) if a <= last.1.succ_opt().unwrap_or(last.1) => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        self.ranges = merged;
    }

    fn is_empty(&self) -> bool {
        self.days.is_empty() && self.ranges.is_empty() && self.yearly.is_empty()
    }

    fn add(&mut self, field: &str, entry: &str) -> Result<()> {
        let bad = |why: &str| {
            Error::invalid(
                field,
                format!("'{entry}' {why} (YYYY-MM-DD, YYYY-MM-DD..YYYY-MM-DD, or MM-DD for every year)"),
            )
        };
        let e = entry.trim();
        if let Some((a, b)) = e.split_once("..") {
            let (a, b) = (
                parse_date(a).ok_or_else(|| bad("is not a date"))?,
                parse_date(b).ok_or_else(|| bad("is not a date"))?,
            );
            if b < a {
                return Err(bad("ends before it starts"));
            }
            // Counted inclusively, as the range is.
            if (b - a).num_days() + 1 > MAX_RANGE_DAYS {
                return Err(bad(&format!("is longer than {MAX_RANGE_DAYS} days")));
            }
            self.ranges.push((a, b));
        } else if let Some(d) = parse_date(e) {
            self.days.insert(d);
        } else {
            let (m, d) = e.split_once('-').ok_or_else(|| bad("is not a date"))?;
            let (m, d) = (
                parse_num(m, 2).ok_or_else(|| bad("is not a date"))?,
                parse_num(d, 2).ok_or_else(|| bad("is not a date"))?,
            );
            // 2000 is a leap year: Feb 29 is a day of some years.
            if NaiveDate::from_ymd_opt(2000, m, d).is_none() {
                return Err(bad("is not a day of any year"));
            }
            self.yearly.insert((m, d));
        }
        Ok(())
    }
}

fn parse_num(s: &str, len: usize) -> Option<u32> {
    (s.len() == len && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok()).flatten()
}

fn parse_date(s: &str) -> Option<NaiveDate> {
    let s = s.trim();
    (s.len() == 10).then(|| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()).flatten()
}

/// A window of excluded time: from `from_s` to `to_s` seconds after local midnight (`to_s` up to a
/// whole day; below `from_s`: it runs past midnight into the next day), on the days in `days`
/// (bit `n` for `n` days from Monday; 0: every day).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Window {
    days: u8,
    from_s: u32,
    to_s: u32,
}

const DAY_S: u32 = 86_400;
const WEEKDAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

impl Window {
    fn parse(field: &str, entry: &str) -> Result<Window> {
        let bad = |why: String| {
            Error::invalid(
                field,
                format!("'{entry}' {why} (days and/or a time range: 'sat,sun', 'mon-fri 12:00-13:00', '22:00-06:00')"),
            )
        };
        let parts: Vec<&str> = entry.split_whitespace().collect();
        let (days, times) = match parts.as_slice() {
            [one] if one.contains(':') => (None, Some(*one)),
            [one] => (Some(*one), None),
            [d, t] => (Some(*d), Some(*t)),
            _ => return Err(bad("is not a window".into())),
        };
        let days = match days {
            None => 0,
            Some(d) => parse_days(d).map_err(bad)?,
        };
        let (from_s, to_s) = match times {
            None => (0, DAY_S),
            Some(t) => {
                let (a, b) = t.split_once('-').ok_or_else(|| bad("has no time range HH:MM-HH:MM".into()))?;
                let from =
                    parse_time_of_day(a).filter(|s| *s < DAY_S).ok_or_else(|| bad(format!("has a bad time '{a}'")))?;
                let to = parse_time_of_day(b).ok_or_else(|| bad(format!("has a bad time '{b}'")))?;
                if from == to {
                    return Err(bad("is empty: it starts where it ends".into()));
                }
                (from, to)
            }
        };
        Ok(Window { days, from_s, to_s })
    }

    fn on(&self, d: NaiveDate) -> bool {
        self.days == 0 || self.days & (1 << d.weekday().num_days_from_monday()) != 0
    }

    fn whole_day(&self) -> bool {
        self.from_s == 0 && self.to_s == DAY_S
    }
}

/// `mon,wed` or `mon-fri` or `sat,sun` (three letters or the whole name, any case).
fn parse_days(s: &str) -> std::result::Result<u8, String> {
    let day = |name: &str| {
        let n = name.to_ascii_lowercase();
        WEEKDAYS
            .iter()
            .position(|d| n == *d || (n.len() > 3 && full_day_name(d) == n))
            .ok_or_else(|| format!("has no day '{name}'"))
    };
    let mut bits = 0u8;
    for part in s.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (day(a)?, day(b)?);
                // A range may wrap the week's end: fri-mon.
                let mut i = a;
                loop {
                    bits |= 1 << i;
                    if i == b {
                        break;
                    }
                    i = (i + 1) % 7;
                }
            }
            None => bits |= 1 << day(part)?,
        }
    }
    Ok(bits)
}

fn full_day_name(short: &str) -> &'static str {
    match short {
        "mon" => "monday",
        "tue" => "tuesday",
        "wed" => "wednesday",
        "thu" => "thursday",
        "fri" => "friday",
        "sat" => "saturday",
        _ => "sunday",
    }
}

/// `HH:MM` or `HH:MM:SS` as seconds after midnight; `24:00` is the day's end.
fn parse_time_of_day(s: &str) -> Option<u32> {
    let parts: Vec<&str> = s.split(':').collect();
    let (h, m, sec) = match parts.as_slice() {
        [h, m] => (parse_num(h, 2)?, parse_num(m, 2)?, 0),
        [h, m, s] => (parse_num(h, 2)?, parse_num(m, 2)?, parse_num(s, 2)?),
        _ => return None,
    };
    if h == 24 && m == 0 && sec == 0 {
        return Some(DAY_S);
    }
    (h < 24 && m < 60 && sec < 60).then_some(h * 3600 + m * 60 + sec)
}

/// Excluded time around an instant: when it ends, and whether it is a whole day (a date, or a
/// window covering the day), which a forward move passes by the day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    pub end_ms: i64,
    pub whole_day: bool,
}

impl Calendar {
    /// Checks a definition; errors name the field (`name`, `time_zone`, `excluded_dates[3]`, ...).
    pub fn new(def: CalendarDef) -> Result<Calendar> {
        super::validate_name("name", &def.name, 64)?;
        let tz = super::cron::parse_time_zone(&def.time_zone).map_err(|e| Error::invalid("time_zone", e))?;
        if def.excluded_dates.len() + def.included_dates.len() > MAX_DATES {
            let field = if def.excluded_dates.len() > MAX_DATES { "excluded_dates" } else { "included_dates" };
            return Err(Error::invalid(
                field,
                format!("more than {MAX_DATES} dates with excluded and included together"),
            ));
        }
        if def.excluded_windows.len() > MAX_WINDOWS {
            return Err(Error::invalid("excluded_windows", format!("more than {MAX_WINDOWS} windows")));
        }
        if def.description.len() > super::MAX_DESCRIPTION_LEN {
            return Err(Error::invalid("description", format!("longer than {} bytes", super::MAX_DESCRIPTION_LEN)));
        }
        let mut excluded = Dates::default();
        for (i, e) in def.excluded_dates.iter().enumerate() {
            excluded.add(&format!("excluded_dates[{i}]"), e)?;
        }
        let mut included = Dates::default();
        for (i, e) in def.included_dates.iter().enumerate() {
            included.add(&format!("included_dates[{i}]"), e)?;
        }
        excluded.settle();
        included.settle();
        let windows = def
            .excluded_windows
            .iter()
            .enumerate()
            .map(|(i, w)| Window::parse(&format!("excluded_windows[{i}]"), w))
            .collect::<Result<Vec<_>>>()?;
        if excluded.is_empty() && windows.is_empty() {
            return Err(Error::invalid("excluded_dates", "a calendar excludes something: give dates or windows"));
        }
        Ok(Calendar { def, tz, excluded, included, windows })
    }

    pub fn name(&self) -> &str {
        &self.def.name
    }

    /// The excluded time `ms` is in, if any. Its end is always after `ms`.
    pub fn excludes(&self, ms: i64) -> Option<Block> {
        let local = self.tz.from_utc_datetime(&super::ms_to_datetime(ms).naive_utc()).naive_local();
        let (d, s) = (local.date(), local.time().num_seconds_from_midnight());
        let included = self.included.contains(d);
        if !included && self.excluded.contains(d) {
            return Some(Block { end_ms: self.instant(d.succ_opt()?, 0, ms), whole_day: true });
        }
        for w in &self.windows {
            // An included day overrides the windows that name days, not a time of day every day.
            let named_day_override = w.days != 0 && included;
            if w.from_s < w.to_s {
                if !named_day_override && w.on(d) && w.from_s <= s && s < w.to_s {
                    return Some(Block { end_ms: self.instant(d, w.to_s, ms), whole_day: w.whole_day() });
                }
            } else {
                // Past midnight: the evening of a named day, and the morning after it.
                if !named_day_override && w.on(d) && s >= w.from_s {
                    return Some(Block { end_ms: self.instant(d.succ_opt()?, w.to_s, ms), whole_day: false });
                }
                let yesterday = d.pred_opt()?;
                if !(w.days != 0 && self.included.contains(yesterday)) && w.on(yesterday) && s < w.to_s {
                    return Some(Block { end_ms: self.instant(d, w.to_s, ms), whole_day: false });
                }
            }
        }
        None
    }

    /// The first instant in [from, to) this calendar excludes, if any: looked for at the instants
    /// an exclusion can begin (local midnights and window starts), never instant by instant.
    pub fn first_excluded_in(&self, from: i64, to: i64, budget: &mut usize) -> Option<i64> {
        let mut t = from;
        while *budget > 0 {
            *budget -= 1;
            if t >= to {
                return None;
            }
            if self.excludes(t).is_some() {
                return Some(t);
            }
            t = self.next_boundary(t).max(t + 1);
        }
        None
    }

    /// The next instant after `ms` at which an exclusion could begin: a local midnight (a date)
    /// or the start of a window.
    fn next_boundary(&self, ms: i64) -> i64 {
        let local = self.tz.from_utc_datetime(&super::ms_to_datetime(ms).naive_utc()).naive_local();
        let (d, s) = (local.date(), local.time().num_seconds_from_midnight());
        let Some(tomorrow) = d.succ_opt() else { return i64::MAX };
        let mut next = self.instant(tomorrow, 0, ms);
        for w in &self.windows {
            if w.from_s > s {
                next = next.min(self.instant(d, w.from_s, ms));
            }
        }
        next
    }

    /// The instant of local time `s` seconds past midnight of `d` in the calendar's zone, the
    /// first after `after` (`local_instant`).
    fn instant(&self, d: NaiveDate, s: u32, after: i64) -> i64 {
        let base = NaiveDateTime::new(d, NaiveTime::MIN) + Duration::seconds(i64::from(s));
        local_instant(self.tz, base, after)
    }
}

/// The instant of a local time in `tz`: of a repeated hour's two, the earlier unless it is not
/// after `after` (an instant in the second pass of the hour: the window it is in ends at the
/// second pass of its end); for a time in a daylight-saving gap, the first instant after the gap.
fn local_instant(tz: Tz, local: NaiveDateTime, after: i64) -> i64 {
    let mut t = local;
    for _ in 0..48 {
        match tz.from_local_datetime(&t) {
            chrono::LocalResult::Single(dt) => return dt.timestamp_millis(),
            chrono::LocalResult::Ambiguous(a, b) => {
                let a = a.timestamp_millis();
                return if a > after { a } else { b.timestamp_millis() };
            }
            chrono::LocalResult::None => {}
        }
        t += Duration::minutes(15);
        // A gap ends on a quarter hour: the first quarter past it maps; back off to its start.
        if let Some(dt) = tz.from_local_datetime(&t).earliest() {
            let mut ms = dt.timestamp_millis();
            while let Some(prev) = tz.from_local_datetime(&(t - Duration::seconds(1))).earliest() {
                if prev.timestamp_millis() >= ms {
                    break;
                }
                t -= Duration::seconds(1);
                ms = prev.timestamp_millis();
            }
            return ms;
        }
    }
    local.and_utc().timestamp_millis()
}

/// What happens to one of a job's instants, by its calendars.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// Calendar `calendar` excludes it; `on` says what happens, `block` until when.
    Excluded {
        calendar: String,
        on: OnExcluded,
        block: Block,
    },
    /// The job names a calendar the store does not have: its fires are recorded skipped, saying
    /// so, until the calendar is put again (a fire is never made against a calendar it cannot read).
    Missing(String),
}

/// One of a job's fires, from its schedule and its calendars.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub at_ms: i64,
    pub what: StepKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepKind {
    /// A fire that runs (`omitted`: a calendar that left out instants of the schedule before it).
    Fire { omitted: Option<String> },
    /// An instant a calendar excludes, recorded skipped (or the calendar is missing).
    Skip { calendar: String, missing: bool },
    /// A fire moved here from the schedule's instant `from_ms` by `calendar`.
    Forwarded { from_ms: i64, calendar: String },
    /// Excluded time too long to search through at once: the scheduler's claim of this instant
    /// moves on from here (it is excluded, so nothing fires at it).
    Checkpoint,
}

/// A job's calendars, resolved from the store in the job's order (`Job::calendars`).
#[derive(Debug, Clone, Default)]
pub struct Calendars {
    list: Vec<Arc<Calendar>>,
    missing: Vec<String>,
}

impl Calendars {
    /// `names` (the job's) looked up in `found` (what the store has): a name not found is missing.
    pub fn resolve(names: &[String], found: &std::collections::HashMap<String, Arc<Calendar>>) -> Calendars {
        let mut c = Calendars::default();
        for n in names {
            match found.get(n) {
                Some(cal) => c.list.push(cal.clone()),
                None => c.missing.push(n.clone()),
            }
        }
        c
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty() && self.missing.is_empty()
    }

    pub fn missing(&self) -> &[String] {
        &self.missing
    }

    /// What the calendars say about instant `ms`: the first that excludes it decides.
    pub fn verdict(&self, ms: i64) -> Verdict {
        if let Some(m) = self.missing.first() {
            return Verdict::Missing(m.clone());
        }
        for c in &self.list {
            if let Some(block) = c.excludes(ms) {
                return Verdict::Excluded { calendar: c.def.name.clone(), on: c.def.on_excluded, block };
            }
        }
        Verdict::Allowed
    }

    /// The first instant at or after `ms` every calendar allows: past a whole excluded day to the
    /// same local time on the next day, past a window to its end. None when none is near.
    pub fn forward(&self, ms: i64) -> Option<i64> {
        let mut steps = FORWARD_STEPS;
        match self.forward_steps(ms, &mut steps) {
            (t, true) => Some(t),
            (_, false) => None,
        }
    }

    /// `forward`, or where its search stopped when none is near (an instant still excluded, to
    /// look on from later: an `after_previous` job's fire waits there, then moves on again).
    pub fn forward_or_last(&self, ms: i64) -> i64 {
        let mut steps = FORWARD_STEPS;
        self.forward_steps(ms, &mut steps).0
    }

    /// `forward_steps` in at most `FORWARD_STEPS` of `budget`, taking the steps it used out of it.
    fn forward_within(&self, ms: i64, budget: &mut usize) -> (i64, bool) {
        let mut steps = (*budget).min(FORWARD_STEPS);
        let before = steps;
        let found = self.forward_steps(ms, &mut steps);
        *budget -= before - steps;
        found
    }

    /// (the instant, whether the calendars allow it), in at most `budget` steps.
    fn forward_steps(&self, ms: i64, budget: &mut usize) -> (i64, bool) {
        let mut t = ms;
        while *budget > 0 {
            *budget -= 1;
            match self.verdict(t) {
                Verdict::Allowed => return (t, true),
                Verdict::Missing(_) => return (t, false),
                Verdict::Excluded { block, calendar, .. } => {
                    let next = match self.list.iter().find(|c| c.def.name == calendar) {
                        Some(cal) if block.whole_day => {
                            let local = cal.tz.from_utc_datetime(&super::ms_to_datetime(t).naive_utc()).naive_local();
                            local_instant(cal.tz, local + Duration::days(1), t)
                        }
                        _ => block.end_ms,
                    };
                    t = next.max(t + 1);
                }
            }
        }
        (t, false)
    }

    /// The job's next fire strictly after `after_ms`: the schedule's next instant the calendars
    /// allow, an excluded one they record skipped, or one moved forward to an allowed instant
    /// (whichever comes first). None when the schedule has no more.
    pub fn next(&self, schedule: &Schedule, after_ms: i64) -> Option<Step> {
        if self.is_empty() {
            return schedule
                .next_after_ms(after_ms)
                .map(|at_ms| Step { at_ms, what: StepKind::Fire { omitted: None } });
        }
        let end = schedule.end_ms.unwrap_or(END_OF_TIME_MS).min(END_OF_TIME_MS);
        let mut best: Option<Step> = None;
        let mut omitted = None;
        let mut cur = after_ms;
        let mut last = None;
        let mut budget = SEARCH_BUDGET;
        while budget > 0 {
            budget -= 1;
            let Some(i) = schedule.next_after_ms(cur) else { return best };
            if best.as_ref().is_some_and(|b| i >= b.at_ms) {
                return best;
            }
            last = Some(i);
            match self.verdict(i) {
                Verdict::Allowed => return Some(Step { at_ms: i, what: StepKind::Fire { omitted } }),
                Verdict::Missing(calendar) => {
                    return Some(Step { at_ms: i, what: StepKind::Skip { calendar, missing: true } })
                }
                Verdict::Excluded { calendar, on: OnExcluded::Skip, .. } => {
                    return Some(Step { at_ms: i, what: StepKind::Skip { calendar, missing: false } })
                }
                Verdict::Excluded { calendar, on, block } => {
                    // The schedule's instants up to the block's end are excluded by it too, and it
                    // decides them.
                    // (Up to where a calendar listed before it excludes an instant, which it decides.)
                    let before = self.list.iter().take_while(|c| c.def.name != calendar);
                    let until = before
                        .filter_map(|c| c.first_excluded_in(i + 1, block.end_ms, &mut budget))
                        .min()
                        .unwrap_or(block.end_ms);
                    cur = (until - 1).max(i);
                    // A move lands at the block's end or later: looked for only if that could
                    // come before the best so far.
                    if on == OnExcluded::Forward && best.as_ref().is_none_or(|b| block.end_ms < b.at_ms) {
                        let (f, found) = self.forward_within(i, &mut budget);
                        if let Some(f) = found.then_some(f).filter(|f| *f <= end) {
                            if best.as_ref().is_none_or(|b| f < b.at_ms) {
                                let what = StepKind::Forwarded { from_ms: i, calendar: calendar.clone() };
                                best = Some(Step { at_ms: f, what });
                            }
                        }
                    } else {
                        omitted = Some(calendar);
                    }
                }
            }
        }
        best.or(last.map(|at_ms| Step { at_ms, what: StepKind::Checkpoint }))
    }

    /// Whether the job has an instant its calendars allow within `horizon_ms` after `after_ms`
    /// (skipped ones do not count): PutJob refuses a job they leave no fire.
    pub fn allows_any(&self, schedule: &Schedule, after_ms: i64, horizon_ms: i64) -> bool {
        let mut cur = after_ms;
        let mut budget = ALLOWS_ANY_BUDGET;
        while budget > 0 {
            budget -= 1;
            let Some(i) = schedule.next_after_ms(cur) else { return false };
            if i > after_ms.saturating_add(horizon_ms) {
                return false;
            }
            match self.verdict(i) {
                Verdict::Allowed => return true,
                Verdict::Missing(_) => return false,
                // A move's steps come out of the same budget.
                Verdict::Excluded { on, block, .. } => {
                    if on == OnExcluded::Forward && self.forward_within(i, &mut budget).1 {
                        return true;
                    }
                    cur = (block.end_ms - 1).max(i);
                }
            }
        }
        false
    }
}

/// The dates of an iCalendar (RFC 5545) file's events, as excluded-date entries: each VEVENT's
/// DTSTART (a date, or a date-time whose date is taken), through its DTEND when it spans days
/// (DTEND is exclusive). Errors name the line.
pub fn ics_dates(text: &str) -> std::result::Result<Vec<String>, String> {
    // Unfold first (RFC 5545 3.1: a line starting with a space or tab continues the one before),
    // keeping each logical line's first physical line number.
    let mut lines: Vec<(usize, String)> = Vec::new();
    // A byte-order mark (Windows exports) is no part of the first line.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    for (n, raw) in text.lines().enumerate() {
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        if let Some(rest) = raw.strip_prefix(' ').or_else(|| raw.strip_prefix('\t')) {
            match lines.last_mut() {
                Some((_, l)) => l.push_str(rest),
                None => return Err(format!("line {}: a continuation with no line before it", n + 1)),
            }
        } else if !raw.is_empty() {
            lines.push((n + 1, raw.to_string()));
        }
    }
    if lines.first().is_none_or(|(_, l)| !l.eq_ignore_ascii_case("BEGIN:VCALENDAR")) {
        return Err("line 1: an iCalendar file starts with BEGIN:VCALENDAR".into());
    }
    let mut out = Vec::new();
    // The open event: its first line, its start, its end (and whether the end is a midnight).
    type Event = (usize, Option<NaiveDate>, Option<(NaiveDate, bool)>);
    let mut event: Option<Event> = None;
    let mut ended = false;
    for (n, line) in &lines {
        let (head, value) = line.split_once(':').ok_or_else(|| format!("line {n}: '{}' has no ':'", clip(line)))?;
        let name = head.split(';').next().unwrap_or("").to_ascii_uppercase();
        match (name.as_str(), value.to_ascii_uppercase().as_str()) {
            ("BEGIN", "VEVENT") => {
                if event.is_some() {
                    return Err(format!("line {n}: BEGIN:VEVENT inside an event"));
                }
                event = Some((*n, None, None));
            }
            ("END", "VEVENT") => {
                let (start_line, start, end) =
                    event.take().ok_or_else(|| format!("line {n}: END:VEVENT with no event"))?;
                let start = start.ok_or_else(|| format!("line {start_line}: an event with no DTSTART"))?;
                // DTEND is exclusive: a date (or a midnight) ends the day before; a later time of
                // day ends on its own date.
                let last = end.map(|(e, midnight)| if midnight { e.pred_opt().unwrap_or(e) } else { e });
                match last.filter(|e| *e > start) {
                    Some(last) => out.push(format!("{start}..{last}")),
                    None => out.push(start.to_string()),
                }
            }
            ("END", "VCALENDAR") => ended = true,
            ("DTSTART", _) | ("DTEND", _) => {
                let Some((_, s, e)) = event.as_mut() else { continue };
                let v = value.trim();
                let date = v
                    .get(..8)
                    .and_then(|d| NaiveDate::parse_from_str(d, "%Y%m%d").ok())
                    .filter(|_| v.len() == 8 || v.as_bytes().get(8) == Some(&b'T'))
                    .ok_or_else(|| format!("line {n}: {name} '{}' is not a date (YYYYMMDD) or date-time", clip(v)))?;
                if name == "DTSTART" {
                    *s = Some(date);
                } else {
                    let midnight = v.len() == 8 || v.get(9..15).is_some_and(|t| t == "000000");
                    *e = Some((date, midnight));
                }
            }
            ("RRULE", _) | ("RDATE", _) if event.is_some() => {
                return Err(format!(
                    "line {n}: {name} (a repeating event) is not read: list each occurrence as an event of its own"
                ));
            }
            _ => {}
        }
    }
    if let Some((n, ..)) = event {
        return Err(format!("line {n}: an event with no END:VEVENT"));
    }
    if !ended {
        return Err(format!("line {}: the file has no END:VCALENDAR", lines.last().map_or(1, |(n, _)| *n)));
    }
    if out.is_empty() {
        return Err("line 1: the file has no events (VEVENT with DTSTART)".into());
    }
    Ok(out)
}

fn clip(s: &str) -> String {
    s.chars().take(60).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::JobSpec;
    use std::collections::HashMap;

    fn ms(s: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(s).expect("rfc3339").timestamp_millis()
    }

    fn cal(f: impl FnOnce(&mut CalendarDef)) -> Arc<Calendar> {
        let mut def = CalendarDef { name: "c".into(), ..Default::default() };
        f(&mut def);
        Arc::new(Calendar::new(def).expect("valid calendar"))
    }

    fn of(cals: &[Arc<Calendar>]) -> Calendars {
        let found: HashMap<String, Arc<Calendar>> = cals.iter().map(|c| (c.def.name.clone(), c.clone())).collect();
        Calendars::resolve(&cals.iter().map(|c| c.def.name.clone()).collect::<Vec<_>>(), &found)
    }

    fn sched(cron: &str, tz: &str) -> Schedule {
        Schedule::of(&JobSpec {
            id: "j".into(),
            cron: cron.into(),
            time_zone: tz.into(),
            handler: "h".into(),
            ..Default::default()
        })
        .expect("valid schedule")
    }

    fn fires(c: &Calendars, s: &Schedule, from: &str, n: usize) -> Vec<(String, StepKind)> {
        let mut out = Vec::new();
        let mut t = ms(from);
        while out.len() < n {
            let Some(step) = c.next(s, t) else { break };
            t = step.at_ms;
            out.push((crate::job::schedule::rfc3339(step.at_ms), step.what));
        }
        out
    }

    #[test]
    fn dates_windows_and_included_days() {
        let c = cal(|d| {
            d.time_zone = "Europe/Berlin".into();
            d.excluded_dates = vec!["2026-12-25".into(), "2026-12-28..2026-12-29".into(), "01-01".into()];
            d.excluded_windows = vec!["sat,sun".into(), "mon-fri 12:00-13:00".into(), "23:00-01:00".into()];
            d.included_dates = vec!["2026-12-26".into(), "2026-12-29".into()];
        });
        // Christmas, Berlin time (UTC+1).
        assert!(c.excludes(ms("2026-12-24T23:00:00Z")).is_some());
        assert!(c.excludes(ms("2026-12-24T21:59:59Z")).is_none());
        // Saturday the 26th is included: the weekend window does not apply, the night window does.
        assert!(c.excludes(ms("2026-12-26T09:00:00Z")).is_none());
        assert!(c.excludes(ms("2026-12-26T22:30:00Z")).is_some());
        assert!(c.excludes(ms("2026-12-27T09:00:00Z")).is_some(), "Sunday");
        // The 29th is in an excluded range but included; its lunch window is on a named day, overridden.
        assert!(c.excludes(ms("2026-12-28T09:00:00Z")).is_some());
        assert!(c.excludes(ms("2026-12-29T11:30:00Z")).is_none());
        assert!(c.excludes(ms("2026-12-30T11:30:00Z")).is_some(), "lunch on the 30th");
        // Ranges that overlap or touch are one for the lookup; a day between two is not in them.
        let r = cal(|d| {
            d.excluded_dates =
                vec!["2027-03-10..2027-03-20".into(), "2027-03-01..2027-03-12".into(), "2027-03-22..2027-03-25".into()];
        });
        for (day, excluded) in [
            ("2027-02-28", false),
            ("2027-03-01", true),
            ("2027-03-20", true),
            ("2027-03-21", false),
            ("2027-03-22", true),
            ("2027-03-25", true),
            ("2027-03-26", false),
        ] {
            assert_eq!(r.excludes(ms(&format!("{day}T12:00:00Z"))).is_some(), excluded, "{day}");
        }
        // Every New Year's Day.
        assert!(c.excludes(ms("2030-01-01T10:00:00Z")).is_some());
        // The lunch window's end: 13:00 Berlin.
        let b = c.excludes(ms("2026-12-30T11:10:00Z")).expect("lunch");
        assert_eq!((b.end_ms, b.whole_day), (ms("2026-12-30T12:00:00Z"), false));
        // The night window runs past midnight.
        assert_eq!(c.excludes(ms("2026-12-30T23:30:00Z")).expect("night").end_ms, ms("2026-12-31T00:00:00Z"));
    }

    #[test]
    fn skip_omit_and_forward() {
        let s = sched("0 0 9 * * ?", "UTC");
        let holidays = |on| {
            cal(move |d| {
                d.name = "holidays".into();
                d.excluded_dates = vec!["2026-12-25".into(), "2026-12-26".into()];
                d.on_excluded = on;
            })
        };
        let skip = fires(&of(&[holidays(OnExcluded::Skip)]), &s, "2026-12-24T10:00:00Z", 3);
        assert_eq!(
            skip,
            vec![
                ("2026-12-25T09:00:00Z".into(), StepKind::Skip { calendar: "holidays".into(), missing: false }),
                ("2026-12-26T09:00:00Z".into(), StepKind::Skip { calendar: "holidays".into(), missing: false }),
                ("2026-12-27T09:00:00Z".into(), StepKind::Fire { omitted: None }),
            ]
        );
        let omit = fires(&of(&[holidays(OnExcluded::Omit)]), &s, "2026-12-24T10:00:00Z", 1);
        assert_eq!(omit, vec![("2026-12-27T09:00:00Z".into(), StepKind::Fire { omitted: Some("holidays".into()) })]);
        // Forward: a daily fire moves onto the next day's own instant (one fire), a monthly one
        // to the next allowed day at its time.
        let fwd = of(&[holidays(OnExcluded::Forward)]);
        assert_eq!(fires(&fwd, &s, "2026-12-24T10:00:00Z", 1)[0].0, "2026-12-27T09:00:00Z");
        let monthly = sched("0 0 9 25 * ?", "UTC");
        assert_eq!(
            fires(&fwd, &monthly, "2026-12-01T00:00:00Z", 2),
            vec![
                (
                    "2026-12-27T09:00:00Z".into(),
                    StepKind::Forwarded { from_ms: ms("2026-12-25T09:00:00Z"), calendar: "holidays".into() }
                ),
                ("2027-01-25T09:00:00Z".into(), StepKind::Fire { omitted: None }),
            ]
        );
        // A window moves a fire to the window's end; every fire inside it lands there once.
        let lunch = of(&[cal(|d| {
            d.excluded_windows = vec!["12:00-12:30".into()];
            d.on_excluded = OnExcluded::Forward;
        })]);
        let every10 = sched("0 */10 * * * ?", "UTC");
        let got: Vec<String> = fires(&lunch, &every10, "2026-12-01T11:45:00Z", 4).into_iter().map(|f| f.0).collect();
        assert_eq!(
            got,
            ["2026-12-01T11:50:00Z", "2026-12-01T12:30:00Z", "2026-12-01T12:40:00Z", "2026-12-01T12:50:00Z"]
        );
    }

    /// The first calendar that excludes an instant decides it, even inside a longer stretch a
    /// later one excludes.
    #[test]
    fn the_first_calendar_decides_inside_a_later_ones_stretch() {
        let skip = cal(|d| {
            d.name = "short".into();
            d.excluded_windows = vec!["12:30-12:40".into()];
        });
        let omit = cal(|d| {
            d.name = "long".into();
            d.excluded_windows = vec!["12:00-13:00".into()];
            d.on_excluded = OnExcluded::Omit;
        });
        let every10 = sched("0 */10 * * * ?", "UTC");
        let got = fires(&of(&[skip, omit]), &every10, "2026-12-01T11:55:00Z", 2);
        assert_eq!(
            got,
            vec![
                ("2026-12-01T12:30:00Z".into(), StepKind::Skip { calendar: "short".into(), missing: false }),
                ("2026-12-01T13:00:00Z".into(), StepKind::Fire { omitted: Some("long".into()) }),
            ]
        );
    }

    #[test]
    fn a_missing_calendar_skips_and_a_calendar_closing_everything_allows_nothing() {
        let s = sched("0 0 9 * * ?", "UTC");
        let c = Calendars::resolve(&["gone".to_string()], &HashMap::new());
        assert_eq!(
            c.next(&s, ms("2026-12-01T00:00:00Z")).expect("a step").what,
            StepKind::Skip { calendar: "gone".into(), missing: true }
        );
        let always = of(&[cal(|d| d.excluded_windows = vec!["mon-sun".into()])]);
        assert!(!always.allows_any(&s, ms("2026-12-01T00:00:00Z"), 366 * 86_400_000));
        let weekends = of(&[cal(|d| d.excluded_windows = vec!["sat,sun".into()])]);
        assert!(weekends.allows_any(&s, ms("2026-12-05T10:00:00Z"), 366 * 86_400_000));
        // Omitting everything: the search stops at a checkpoint, never loops for ever.
        let omit_all = of(&[cal(|d| {
            d.excluded_windows = vec!["mon-sun".into()];
            d.on_excluded = OnExcluded::Omit;
        })]);
        let secondly = sched("* * * * * ?", "UTC");
        let step = omit_all.next(&secondly, ms("2026-12-01T00:00:00Z")).expect("a checkpoint");
        assert_eq!(step.what, StepKind::Checkpoint);
    }

    #[test]
    fn daylight_saving_in_the_calendars_zone() {
        // 2026-03-29 02:00 does not exist in Berlin: a window ending then ends at 03:00 local.
        let c = cal(|d| {
            d.time_zone = "Europe/Berlin".into();
            d.excluded_windows = vec!["01:00-02:30".into()];
        });
        let b = c.excludes(ms("2026-03-29T00:30:00Z")).expect("in the window");
        assert_eq!(b.end_ms, ms("2026-03-29T01:00:00Z"), "03:00 CEST, the gap's end");
        // Fall back (2026-10-25 03:00 CEST -> 02:00 CET): an instant in the second pass of 02:15
        // is in 01:00-02:30 until the second pass of 02:30, never before itself.
        let night = cal(|d| {
            d.time_zone = "Europe/Berlin".into();
            d.excluded_windows = vec!["01:00-02:30".into()];
            d.on_excluded = OnExcluded::Forward;
        });
        let b = night.excludes(ms("2026-10-25T01:15:00Z")).expect("in the window");
        assert_eq!(b.end_ms, ms("2026-10-25T01:30:00Z"));
        let first_pass = night.excludes(ms("2026-10-25T00:15:00Z")).expect("in the window");
        assert_eq!(first_pass.end_ms, ms("2026-10-25T00:30:00Z"), "02:30 CEST");
        assert_eq!(of(&[night]).forward(ms("2026-10-25T01:15:00Z")), Some(ms("2026-10-25T01:30:00Z")));
        // An excluded date ends at local midnight, whatever the offset.
        let d = cal(|d| {
            d.time_zone = "America/New_York".into();
            d.excluded_dates = vec!["2026-11-01".into()];
        });
        assert_eq!(d.excludes(ms("2026-11-01T12:00:00Z")).expect("excluded").end_ms, ms("2026-11-02T05:00:00Z"));
    }

    #[test]
    fn bad_calendars_name_the_field() {
        for (f, field) in [
            (Box::new(|d: &mut CalendarDef| d.name = "".into()) as Box<dyn Fn(&mut CalendarDef)>, "name"),
            (Box::new(|d: &mut CalendarDef| d.time_zone = "Mars/Base".into()), "time_zone"),
            (Box::new(|d: &mut CalendarDef| d.excluded_dates = vec!["2026-02-30".into()]), "excluded_dates[0]"),
            (Box::new(|d: &mut CalendarDef| d.excluded_dates = vec!["x".into(), "13-01".into()]), "excluded_dates[0]"),
            (Box::new(|d: &mut CalendarDef| d.excluded_dates = vec!["02-30".into()]), "excluded_dates[0]"),
            (
                Box::new(|d: &mut CalendarDef| d.excluded_dates = vec!["2026-12-31..2026-12-01".into()]),
                "excluded_dates[0]",
            ),
            (
                Box::new(|d: &mut CalendarDef| d.excluded_dates = vec!["2000-01-01..2026-12-01".into()]),
                "excluded_dates[0]",
            ),
            // 3,661 days counted inclusively.
            (
                Box::new(|d: &mut CalendarDef| d.excluded_dates = vec!["2026-01-01..2036-01-09".into()]),
                "excluded_dates[0]",
            ),
            (
                Box::new(|d: &mut CalendarDef| d.excluded_windows = vec!["sat".into(), "funday".into()]),
                "excluded_windows[1]",
            ),
            (Box::new(|d: &mut CalendarDef| d.excluded_windows = vec!["25:00-26:00".into()]), "excluded_windows[0]"),
            (Box::new(|d: &mut CalendarDef| d.excluded_windows = vec!["10:00-10:00".into()]), "excluded_windows[0]"),
            (Box::new(|d: &mut CalendarDef| d.excluded_windows = vec!["mon 10:00".into()]), "excluded_windows[0]"),
            (Box::new(|d: &mut CalendarDef| d.excluded_windows = vec!["a b c".into()]), "excluded_windows[0]"),
            (
                Box::new(|d: &mut CalendarDef| {
                    d.excluded_dates = vec!["2026-01-01".into()];
                    d.included_dates = vec!["soon".into()];
                }),
                "included_dates[0]",
            ),
            (Box::new(|d: &mut CalendarDef| d.excluded_dates.clear()), "excluded_dates"),
        ] {
            let mut def =
                CalendarDef { name: "ok".into(), excluded_dates: vec!["2026-12-25".into()], ..Default::default() };
            f(&mut def);
            let e = Calendar::new(def.clone()).expect_err(&format!("{def:?}")).to_string();
            assert!(e.starts_with(&format!("{field}: ")), "{def:?}: {e}");
        }
    }

    #[test]
    fn ics_files_give_dates_or_name_the_line() {
        let ics =
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nSUMMARY:Christmas\r\nDTSTART;VALUE=DATE:20261225\r\n\
                   DTEND;VALUE=DATE:20261227\r\nEND:VEVENT\r\nBEGIN:VEVENT\r\nSUMMARY:New year, a long\r\n  name\r\n\
                   DTSTART:20270101T000000Z\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
        assert_eq!(ics_dates(ics).expect("parses"), ["2026-12-25..2026-12-26", "2027-01-01"]);
        // A date-time end after midnight ends on its own day.
        let late = "BEGIN:VCALENDAR\nBEGIN:VEVENT\nDTSTART:20261225T220000\nDTEND:20261226T020000\nEND:VEVENT\nEND:VCALENDAR\n";
        assert_eq!(ics_dates(late).expect("parses"), ["2026-12-25..2026-12-26"]);
        // A byte-order mark before BEGIN:VCALENDAR (Windows exports) is no error.
        let bom = format!("\u{feff}{late}");
        assert_eq!(ics_dates(&bom).expect("parses"), ["2026-12-25..2026-12-26"]);
        for (text, line) in [
            ("BEGIN:VCALENDAR\nBEGIN:VEVENT\nDTSTART:2026-12-25\nEND:VEVENT\nEND:VCALENDAR\n", "line 3:"),
            ("BEGIN:VCALENDAR\nBEGIN:VEVENT\nSUMMARY x\nEND:VEVENT\nEND:VCALENDAR\n", "line 3:"),
            ("BEGIN:VCALENDAR\nBEGIN:VEVENT\nSUMMARY:x\nEND:VEVENT\nEND:VCALENDAR\n", "line 2:"),
            ("BEGIN:VCALENDAR\nBEGIN:VEVENT\nDTSTART:20261225\nEND:VCALENDAR\n", "line 2:"),
            ("hello\n", "line 1:"),
            ("BEGIN:VCALENDAR\nBEGIN:VEVENT\nDTSTART:20261225\nEND:VEVENT\n", "line 4:"),
            (
                "BEGIN:VCALENDAR\nBEGIN:VEVENT\nDTSTART:20261225\nRRULE:FREQ=YEARLY\nEND:VEVENT\nEND:VCALENDAR\n",
                "line 4:",
            ),
        ] {
            let e = ics_dates(text).expect_err(text);
            assert!(e.starts_with(line), "{text:?}: {e}");
        }
    }
}
