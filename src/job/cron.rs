//! Cron expressions: parsing, and the pure "when does this fire next" computation.
//!
//! This module owns exactly two things: turning a cron expression into a [`Cron`], and
//! computing a schedule's next fire instant in an IANA time zone. It reads no clock, does no
//! I/O and keeps no state; everything else (leases, persistence, dispatch) lives elsewhere.
//! We parse by hand rather than use the `cron` crate so that every error names the field and
//! the reason, and so that the daylight-saving rules below are ours, documented and tested.
//!
//! # Syntax
//!
//! * 6 fields: `second minute hour day-of-month month day-of-week`;
//!   7 fields: the same plus `year` (Quartz); 5 fields: classic cron
//!   `minute hour day-of-month month day-of-week`, firing at second 0.
//! * Ranges: second and minute 0-59, hour 0-23, day-of-month 1-31, month 1-12 or `JAN`-`DEC`,
//!   day-of-week 0-7 or `SUN`-`SAT` (0 and 7 are both Sunday), year 1970-2199.
//!   Names are case-insensitive.
//! * Every field takes `*`, `n`, `a-b`, `*/s`, `a/s` (a to the end of the field), `a-b/s`,
//!   and comma lists of those. `?` means `*` and is allowed only as the whole day-of-month or
//!   day-of-week field. A step must lie between 1 and the field's span. `a-b` with `a > b`
//!   is rejected (no wrap-around); as a convenience `FRI-SUN` reads `SUN` as 7.
//!   In day-of-week, `*` and `a/s` end at 6 (Saturday), so `1/2` is Mon, Wed, Fri.
//! * Day-of-month also takes `L` (last day of the month) and `L-n` (n days before it, n 0-30).
//!   `W` (nearest weekday) is rejected as not supported.
//! * Day-of-week also takes `nL` (the last weekday n of the month, `5L` = last Friday) and
//!   `n#k` (the k-th weekday n of the month, k 1-5, `MON#2` = second Monday).
//! * Aliases: `@yearly`/`@annually`, `@monthly`, `@weekly` (Sunday), `@daily`/`@midnight`,
//!   `@hourly`, all at second 0 (case-insensitive).
//!
//! # Day-of-month versus day-of-week
//!
//! A field is *restricted* unless it is exactly `*` or `?`. When both day fields are restricted,
//! a day matches if **either** matches (the Vixie cron rule, so `0 0 0 1 * MON` fires on the
//! 1st and on every Monday). When only one is restricted, it alone decides. This accepts more
//! than Quartz (which demands a `?` in one of them) and behaves like classic cron.
//!
//! # Time zones and daylight saving
//!
//! Fields are matched against the wall clock of the given zone; results are UTC instants in
//! whole seconds, and [`Cron::next_after`] returns the smallest one strictly after its
//! argument.
//!
//! * **Gap** (spring forward; a local time that never happens): a matching local time inside the
//!   gap fires at the first instant after the gap, the instant the clocks jump. All matching
//!   times of one gap therefore collapse into a single fire at that instant. New York,
//!   2026-03-08: `0 30 2 * * *` fires at 07:00Z (03:00 EDT).
//! * **Overlap** (fall back; a local time that happens twice): if the hour field matches every
//!   hour, the time fires in both passes, so `0 */15 * * * *` keeps its real 15-minute rhythm
//!   through the repeated hour. Otherwise it fires only at its first occurrence, so a daily
//!   `0 30 1 * * *` still runs once. New York, 2026-11-01: `0 30 1 * * *` fires at 05:30Z
//!   only; `0 30 * * * *` fires at 05:30Z and 06:30Z.
//!
//! Fire instants are computed exactly, with no assumption on how far a zone may shift (Samoa
//! skipping a whole day in 2011 works). The one assumption is that the tz database never puts a
//! second transition inside the repeated or skipped interval of another, which holds for every
//! zone it contains.
//!
//! The search walks the calendar field by field (skipping whole years, months, days, hours and
//! minutes that cannot match) and gives up after year 2199, so impossible schedules such as
//! February 30 return `None` quickly.

use std::fmt;
use std::str::FromStr;

use chrono::{
    DateTime, Datelike, MappedLocalTime, NaiveDate, NaiveDateTime, Offset, TimeDelta, TimeZone, Timelike, Utc,
};
use chrono_tz::Tz;

/// First year a schedule can fire in (the year field's lower bound).
const MIN_YEAR: i32 = 1970;
/// Last year a schedule can fire in; past it `next_after` gives up with `None`.
const MAX_YEAR: i32 = 2199;
/// 1969-01-01T00:00:00Z. Nothing fires before local 1970 in any zone, so earlier `after`
/// values can be raised to this without changing the answer; it keeps chrono far from its
/// representable limits.
const SEARCH_FLOOR: i64 = -31_536_000;
/// 2201-01-01T00:00:00Z. No zone's local year 2199 reaches this far.
const SEARCH_CEILING: i64 = 7_289_654_400;
/// Larger than any UTC offset the tz database has ever used (the largest are about 15:57).
const MAX_OFFSET_SECS: i64 = 26 * 3600;

const ALL_HOURS: u64 = (1 << 24) - 1;
const ALL_DAYS_OF_MONTH: u64 = ((1 << 32) - 1) & !1;
const ALL_DAYS_OF_WEEK: u8 = 0x7f;

/// Why an expression or a time zone name was rejected. Each variant that concerns one field
/// carries its name (`second`, `minute`, `hour`, `day-of-month`, `month`, `day-of-week`,
/// `year`), so callers can point at the field as well as show the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CronError {
    #[error("expected 5, 6 or 7 fields, got {0}")]
    FieldCount(usize),
    #[error(
        "unknown alias '{0}' (expected @yearly, @annually, @monthly, @weekly, @daily, \
         @midnight or @hourly)"
    )]
    UnknownAlias(String),
    #[error("alias '{0}' must be the whole expression")]
    AliasWithFields(String),
    #[error("field '{field}' is empty")]
    Empty { field: &'static str },
    #[error("field '{field}' has an empty list element in '{text}'")]
    EmptyElement { field: &'static str, text: String },
    #[error("field '{field}' has invalid value '{value}'")]
    InvalidValue { field: &'static str, value: String },
    #[error("field '{field}' has unknown name '{name}'")]
    UnknownName { field: &'static str, name: String },
    /// `value` is the number as written, which may not fit any integer type.
    #[error("field '{field}' out of range: {value} (expected {min}-{max})")]
    OutOfRange { field: &'static str, value: String, min: u32, max: u32 },
    #[error("field '{field}' has invalid step '{step}'")]
    InvalidStep { field: &'static str, step: String },
    #[error("field '{field}' has reversed range '{range}' (start is after end)")]
    ReversedRange { field: &'static str, range: String },
    /// A malformed `L-n`, `nL` or `n#k` form.
    #[error("field '{field}' has invalid value '{value}' ({reason})")]
    InvalidModifier { field: &'static str, value: String, reason: &'static str },
    #[error("field '{field}': '{token}' is not supported ({feature})")]
    Unsupported { field: &'static str, token: String, feature: &'static str },
    #[error("field '{field}': '?' {reason}")]
    MisplacedQuestionMark { field: &'static str, reason: &'static str },
    #[error("unknown IANA time zone '{0}'")]
    UnknownTimeZone(String),
}

/// Resolves an IANA zone name; the empty string means UTC.
pub fn parse_time_zone(name: &str) -> Result<Tz, CronError> {
    if name.is_empty() {
        return Ok(Tz::UTC);
    }
    name.parse::<Tz>().map_err(|_| CronError::UnknownTimeZone(name.to_string()))
}

/// A parsed cron expression: one bit set per field, plus the day-of-month and day-of-week
/// extras. Two expressions that fire at the same wall-clock times compare equal
/// (`@daily` equals `0 0 0 * * ?`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    seconds: u64,
    minutes: u64,
    hours: u64,
    days_of_month: DaysOfMonth,
    months: u64,
    days_of_week: DaysOfWeek,
    years: YearSet,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DaysOfMonth {
    /// Bit d set: day d (1-31) matches.
    days: u64,
    /// Bit n set: the day n days before the month's last day matches (`L` is n = 0).
    from_last: u32,
    /// False for `*` and `?`; see the module doc for why this matters.
    restricted: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DaysOfWeek {
    /// Bit w set: weekday w (0 = Sunday) matches.
    days: u8,
    /// Bit w set: the last weekday w of the month matches (`wL`).
    last: u8,
    /// Bit k of `nth[w]` set: the k-th weekday w of the month matches (`w#k`).
    nth: [u8; 7],
    restricted: bool,
}

/// Bit (y - 1970) set: year y matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct YearSet([u64; 4]);

impl DaysOfMonth {
    const ANY: DaysOfMonth = DaysOfMonth { days: ALL_DAYS_OF_MONTH, from_last: 0, restricted: false };

    fn matches(&self, day: u32, days_in_month: u32) -> bool {
        if self.days & (1 << day) != 0 {
            return true;
        }
        days_in_month.checked_sub(day).is_some_and(|n| n < 31 && self.from_last & (1 << n) != 0)
    }
}

impl DaysOfWeek {
    const ANY: DaysOfWeek = DaysOfWeek { days: ALL_DAYS_OF_WEEK, last: 0, nth: [0; 7], restricted: false };

    fn matches(&self, weekday: u32, day: u32, days_in_month: u32) -> bool {
        let bit = 1u8 << weekday;
        if self.days & bit != 0 {
            return true;
        }
        if self.last & bit != 0 && day + 7 > days_in_month {
            return true;
        }
        let occurrence = (day - 1) / 7 + 1;
        self.nth[weekday as usize] & (1 << occurrence) != 0
    }
}

impl YearSet {
    const ALL: YearSet = YearSet(all_years());

    fn insert(&mut self, year: u32) {
        let i = year - MIN_YEAR as u32;
        self.0[(i / 64) as usize] |= 1 << (i % 64);
    }

    fn contains(&self, year: i32) -> bool {
        (MIN_YEAR..=MAX_YEAR).contains(&year) && {
            let i = (year - MIN_YEAR) as u32;
            self.0[(i / 64) as usize] & (1 << (i % 64)) != 0
        }
    }

    /// The first year >= `from` in the set.
    fn next_from(&self, from: i32) -> Option<i32> {
        (from.max(MIN_YEAR)..=MAX_YEAR).find(|&y| self.contains(y))
    }
}

const fn all_years() -> [u64; 4] {
    let count = (MAX_YEAR - MIN_YEAR + 1) as u32;
    let mut words = [0u64; 4];
    let mut i = 0;
    while i < count {
        words[(i / 64) as usize] |= 1 << (i % 64);
        i += 1;
    }
    words
}

impl Cron {
    /// Parses a 5-, 6- or 7-field expression or an `@alias`; see the module doc for the syntax.
    pub fn parse(expr: &str) -> Result<Cron, CronError> {
        let fields: Vec<&str> = expr.split_whitespace().collect();
        if let Some(alias) = fields.first().filter(|f| f.starts_with('@')) {
            if fields.len() != 1 {
                return Err(CronError::AliasWithFields((*alias).to_string()));
            }
            let expansion = match alias.to_ascii_lowercase().as_str() {
                "@yearly" | "@annually" => "0 0 0 1 1 *",
                "@monthly" => "0 0 0 1 * *",
                "@weekly" => "0 0 0 * * 0",
                "@daily" | "@midnight" => "0 0 0 * * *",
                "@hourly" => "0 0 * * * *",
                _ => return Err(CronError::UnknownAlias((*alias).to_string())),
            };
            return Cron::parse(expansion);
        }
        let (second, rest) = match fields.len() {
            5 => ("0", &fields[..]),
            6 | 7 => (fields[0], &fields[1..]),
            n => return Err(CronError::FieldCount(n)),
        };
        Ok(Cron {
            seconds: parse_plain(&SECOND, second)?,
            minutes: parse_plain(&MINUTE, rest[0])?,
            hours: parse_plain(&HOUR, rest[1])?,
            days_of_month: parse_days_of_month(rest[2])?,
            months: parse_plain(&MONTH, rest[3])?,
            days_of_week: parse_days_of_week(rest[4])?,
            years: match rest.get(5) {
                Some(text) => parse_years(text)?,
                None => YearSet::ALL,
            },
        })
    }

    /// The first fire instant strictly after `after`, evaluating the fields on the wall clock
    /// of `tz` (see the module doc for daylight-saving gaps and overlaps).
    /// `None` when there is no further instant (e.g. a year field entirely in the past, an
    /// impossible date, or nothing before the end of year 2199).
    pub fn next_after(&self, tz: Tz, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // Fires are whole seconds, so "strictly after `after`" is "strictly after its floor".
        let t = after.timestamp().max(SEARCH_FLOOR);
        if t >= SEARCH_CEILING {
            return None;
        }
        let local = local_naive(tz, t)?;
        let next_local = local.checked_add_signed(TimeDelta::seconds(1))?;
        let mut first_from = next_local;
        let mut best: Option<i64> = None;

        // Mapping each wall-clock time to its *first* instant (the gap end for a skipped time)
        // is monotone, so scanning wall-clock times upward from `local` finds the earliest
        // first-occurrence fire. The exceptions all come from a fall-back overlap, and a
        // second-pass fire can only beat that scan when `after` itself lies in the overlap
        // (in either pass), i.e. when its own wall-clock time is ambiguous. Handle that here.
        if let Some(overlap) = Overlap::around(tz, t, local) {
            if overlap.after_in_second_pass {
                // First passes of the rest of the overlap already happened before `after`.
                first_from = first_from.max(overlap.end);
            }
            if self.fires_in_both_passes() {
                let from = if overlap.after_in_second_pass { next_local } else { overlap.start };
                best = self
                    .next_match(from)
                    .filter(|n| *n < overlap.end)
                    .map(|n| n.and_utc().timestamp() - overlap.second_pass_offset);
            }
        }

        let mut from = first_from;
        while let Some(n) = self.next_match(from) {
            if best.is_some_and(|b| n.and_utc().timestamp() - MAX_OFFSET_SECS > b) {
                break; // Every later wall-clock time maps past the second-pass fire.
            }
            // Only a zone breaking the documented assumption can make this `None` or not
            // later than `t`; stepping on keeps the answer correct there, just slower.
            if let Some(u) = first_instant(tz, n).filter(|&u| u > t) {
                best = Some(best.map_or(u, |b| b.min(u)));
                break;
            }
            from = n.checked_add_signed(TimeDelta::seconds(1))?;
        }
        best.and_then(|secs| DateTime::from_timestamp(secs, 0))
    }

    /// The fire instants after `after`, in order: `next_after` applied repeatedly.
    pub fn upcoming(&self, tz: Tz, after: DateTime<Utc>) -> impl Iterator<Item = DateTime<Utc>> + '_ {
        std::iter::successors(self.next_after(tz, after), move |&t| self.next_after(tz, t))
    }

    /// Whether a repeated (fall-back) wall-clock time fires in both passes: true when the hour
    /// field matches every hour, because such jobs care about elapsed time, not the clock face.
    pub fn fires_in_both_passes(&self) -> bool {
        self.hours == ALL_HOURS
    }

    /// Whether the wall-clock time `n` matches every field (for the preview, which tells a fire
    /// moved by a daylight-saving gap from one that matched).
    pub fn matches_wall_clock(&self, n: NaiveDateTime) -> bool {
        self.next_match(n) == Some(n)
    }

    /// The first wall-clock time >= `from` matching every field, ignoring time zones.
    fn next_match(&self, from: NaiveDateTime) -> Option<NaiveDateTime> {
        // Cursor levels: month, day, hour, minute, second. When a level has no match left in
        // its parent unit, the parent is bumped and lower levels restart from their floor, so
        // every non-matching year/month/day/hour/minute is skipped whole.
        const FLOOR: [u32; 5] = [1, 1, 0, 0, 0];
        let mut year = from.year();
        let mut c = [from.month(), from.day(), from.hour(), from.minute(), from.second()];
        'search: loop {
            let y = self.years.next_from(year)?;
            if y != year {
                year = y;
                c = FLOOR;
            }
            for level in 0..c.len() {
                let found = match level {
                    0 => next_bit(self.months, c[0]),
                    1 => self.next_day(year, c[0], c[1]),
                    2 => next_bit(self.hours, c[2]),
                    3 => next_bit(self.minutes, c[3]),
                    _ => next_bit(self.seconds, c[4]),
                };
                match found {
                    Some(v) if v == c[level] => {}
                    Some(v) => {
                        c[level] = v;
                        c[level + 1..].copy_from_slice(&FLOOR[level + 1..]);
                    }
                    None => {
                        c[level..].copy_from_slice(&FLOOR[level..]);
                        match level {
                            0 => year += 1,
                            _ => c[level - 1] += 1,
                        }
                        continue 'search;
                    }
                }
            }
            return NaiveDate::from_ymd_opt(year, c[0], c[1])?.and_hms_opt(c[2], c[3], c[4]);
        }
    }

    /// The first day >= `from` of the given month matching the day fields.
    fn next_day(&self, year: i32, month: u32, from: u32) -> Option<u32> {
        let last = days_in_month(year, month)?;
        (from..=last).find(|&day| self.day_matches(year, month, day, last))
    }

    fn day_matches(&self, year: i32, month: u32, day: u32, days_in_month: u32) -> bool {
        let dom = &self.days_of_month;
        let dow = &self.days_of_week;
        let by_week = || {
            NaiveDate::from_ymd_opt(year, month, day)
                .is_some_and(|date| dow.matches(date.weekday().num_days_from_sunday(), day, days_in_month))
        };
        match (dom.restricted, dow.restricted) {
            (true, true) => dom.matches(day, days_in_month) || by_week(),
            (true, false) => dom.matches(day, days_in_month),
            (false, true) => by_week(),
            (false, false) => true,
        }
    }
}

impl FromStr for Cron {
    type Err = CronError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Cron::parse(s)
    }
}

/// The normalised 6-field (7 with a year restriction) form, which parses back to an equal
/// schedule: numbers instead of names, `*` for unrestricted fields, steps where they fit.
impl fmt::Display for Cron {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plain = |mask: u64, field: &Field| {
            let values: Vec<u32> = (field.min..=field.star_max).filter(|v| mask & (1 << v) != 0).collect();
            render_values(&values, field, false)
        };
        let dom = &self.days_of_month;
        let dom_text = if dom.restricted {
            let days: Vec<u32> = (1..=31).filter(|d| dom.days & (1 << d) != 0).collect();
            let mut parts: Vec<String> = Vec::new();
            if !days.is_empty() {
                parts.push(render_values(&days, &DAY_OF_MONTH, true));
            }
            parts.extend((0..31).filter(|n| dom.from_last & (1 << n) != 0).map(|n| match n {
                0 => "L".to_string(),
                n => format!("L-{n}"),
            }));
            parts.join(",")
        } else {
            "*".to_string()
        };
        let dow = &self.days_of_week;
        let dow_text = if dow.restricted {
            let days: Vec<u32> = (0..7).filter(|d| dow.days & (1 << d) != 0).collect();
            let mut parts: Vec<String> = Vec::new();
            if !days.is_empty() {
                parts.push(render_values(&days, &DAY_OF_WEEK, true));
            }
            parts.extend((0..7).filter(|w| dow.last & (1 << w) != 0).map(|w| format!("{w}L")));
            for (w, ks) in dow.nth.iter().enumerate() {
                parts.extend((1..=5).filter(|k| ks & (1 << k) != 0).map(|k| format!("{w}#{k}")));
            }
            parts.join(",")
        } else {
            "*".to_string()
        };
        write!(
            f,
            "{} {} {} {} {} {}",
            plain(self.seconds, &SECOND),
            plain(self.minutes, &MINUTE),
            plain(self.hours, &HOUR),
            dom_text,
            plain(self.months, &MONTH),
            dow_text,
        )?;
        if self.years != YearSet::ALL {
            let years: Vec<u32> = (MIN_YEAR..=MAX_YEAR).filter(|&y| self.years.contains(y)).map(|y| y as u32).collect();
            write!(f, " {}", render_values(&years, &YEAR, false))?;
        }
        Ok(())
    }
}

/// Renders sorted values compactly. `keep_full` renders a complete set as a range instead of
/// `*`, for the day fields where `*` would drop the "restricted" flag.
fn render_values(values: &[u32], field: &Field, keep_full: bool) -> String {
    let (min, max) = (field.min, field.star_max);
    let full = values.len() as u32 == max - min + 1;
    if full && !keep_full {
        return "*".to_string();
    }
    if let [first, second, .., last] = *values {
        let step = second - first;
        if step > 1 && values.windows(2).all(|w| w[1] - w[0] == step) {
            return if last + step <= max {
                format!("{first}-{last}/{step}")
            } else if first == min {
                format!("*/{step}")
            } else {
                format!("{first}/{step}")
            };
        }
    }
    let mut parts = Vec::new();
    let mut i = 0;
    while i < values.len() {
        let mut j = i;
        while j + 1 < values.len() && values[j + 1] == values[j] + 1 {
            j += 1;
        }
        match j - i {
            0 => parts.push(values[i].to_string()),
            1 => parts.push(format!("{},{}", values[i], values[j])),
            _ => parts.push(format!("{}-{}", values[i], values[j])),
        }
        i = j + 1;
    }
    parts.join(",")
}

/// Static description of one field, shared by the parser and the renderer.
struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    /// End of `*` and of `a/s`. Below `max` only for day-of-week, where 7 repeats Sunday.
    star_max: u32,
    /// `names[i]` stands for the value `min + i`.
    names: &'static [&'static str],
}

const SECOND: Field = Field::numeric("second", 0, 59);
const MINUTE: Field = Field::numeric("minute", 0, 59);
const HOUR: Field = Field::numeric("hour", 0, 23);
const DAY_OF_MONTH: Field = Field::numeric("day-of-month", 1, 31);
const MONTH: Field = Field {
    names: &["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"],
    ..Field::numeric("month", 1, 12)
};
const DAY_OF_WEEK: Field = Field {
    star_max: 6,
    names: &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"],
    ..Field::numeric("day-of-week", 0, 7)
};
const YEAR: Field = Field::numeric("year", MIN_YEAR as u32, MAX_YEAR as u32);

impl Field {
    const fn numeric(name: &'static str, min: u32, max: u32) -> Field {
        Field { name, min, max, star_max: max, names: &[] }
    }
}

/// Splits a field into its comma-separated elements, rejecting empty ones.
fn elements<'a>(field: &Field, text: &'a str) -> Result<Vec<&'a str>, CronError> {
    let parts: Vec<&str> = text.split(',').collect();
    if parts.iter().all(|p| p.is_empty()) {
        return Err(CronError::Empty { field: field.name });
    }
    if parts.iter().any(|p| p.is_empty()) {
        return Err(CronError::EmptyElement { field: field.name, text: text.to_string() });
    }
    Ok(parts)
}

/// Parses one value: a number within the field's bounds, or a name where the field has names.
/// `element` is the whole list element, reported when `piece` is empty (as in `5-`).
fn parse_value(field: &Field, piece: &str, element: &str) -> Result<u32, CronError> {
    if piece.is_empty() {
        return Err(CronError::InvalidValue { field: field.name, value: element.to_string() });
    }
    if piece.bytes().all(|b| b.is_ascii_digit()) {
        // An overflowing number is out of range too; `value` keeps the digits as written.
        return match piece.parse::<u32>() {
            Ok(v) if (field.min..=field.max).contains(&v) => Ok(v),
            _ => Err(CronError::OutOfRange {
                field: field.name,
                value: piece.to_string(),
                min: field.min,
                max: field.max,
            }),
        };
    }
    if !field.names.is_empty() && piece.chars().all(|c| c.is_ascii_alphabetic()) {
        return field
            .names
            .iter()
            .position(|name| name.eq_ignore_ascii_case(piece))
            .map(|i| field.min + i as u32)
            .ok_or_else(|| CronError::UnknownName { field: field.name, name: piece.to_string() });
    }
    Err(CronError::InvalidValue { field: field.name, value: piece.to_string() })
}

/// Parses `*`, `n`, `a-b`, each with an optional `/step`, into the values it denotes.
fn parse_range(field: &Field, element: &str) -> Result<impl Iterator<Item = u32>, CronError> {
    if element == "?" {
        return Err(CronError::MisplacedQuestionMark {
            field: field.name,
            reason: if field.name == DAY_OF_MONTH.name || field.name == DAY_OF_WEEK.name {
                "must be the whole field"
            } else {
                "is only allowed in day-of-month and day-of-week"
            },
        });
    }
    let (base, step) = match element.split_once('/') {
        Some((base, step)) => (base, Some(parse_step(field, step)?)),
        None => (element, None),
    };
    let (start, end) = if base == "*" {
        (field.min, field.star_max)
    } else if let Some((a, b)) = base.split_once('-') {
        let start = parse_value(field, a, element)?;
        let mut end = parse_value(field, b, element)?;
        // `FRI-SUN` plainly means Friday through Sunday, so the name SUN closes a range as 7.
        if field.name == DAY_OF_WEEK.name && b.eq_ignore_ascii_case("SUN") && start > 0 {
            end = 7;
        }
        if start > end {
            return Err(CronError::ReversedRange { field: field.name, range: base.to_string() });
        }
        (start, end)
    } else {
        let v = parse_value(field, base, element)?;
        match step {
            Some(_) => (v, field.star_max.max(v)),
            None => (v, v),
        }
    };
    Ok((start..=end).step_by(step.unwrap_or(1) as usize))
}

fn parse_step(field: &Field, text: &str) -> Result<u32, CronError> {
    let span = field.star_max - field.min + 1;
    match text.parse::<u32>() {
        Ok(step) if text.bytes().all(|b| b.is_ascii_digit()) && (1..=span).contains(&step) => Ok(step),
        _ => Err(CronError::InvalidStep { field: field.name, step: text.to_string() }),
    }
}

fn parse_plain(field: &Field, text: &str) -> Result<u64, CronError> {
    let mut mask = 0u64;
    for element in elements(field, text)? {
        for v in parse_range(field, element)? {
            mask |= 1 << v;
        }
    }
    Ok(mask)
}

fn parse_years(text: &str) -> Result<YearSet, CronError> {
    let mut years = YearSet([0; 4]);
    for element in elements(&YEAR, text)? {
        for y in parse_range(&YEAR, element)? {
            years.insert(y);
        }
    }
    Ok(years)
}

fn parse_days_of_month(text: &str) -> Result<DaysOfMonth, CronError> {
    if text == "*" || text == "?" {
        return Ok(DaysOfMonth::ANY);
    }
    let field = &DAY_OF_MONTH;
    let mut dom = DaysOfMonth { days: 0, from_last: 0, restricted: true };
    for element in elements(field, text)? {
        let upper = element.to_ascii_uppercase();
        if upper.contains('W') {
            return Err(CronError::Unsupported { field: field.name, token: element.to_string(), feature: "W" });
        }
        let Some(rest) = upper.strip_prefix('L') else {
            for d in parse_range(field, element)? {
                dom.days |= 1 << d;
            }
            continue;
        };
        let offset = match rest.strip_prefix('-') {
            None if rest.is_empty() => Some(0),
            None => None,
            Some(n) if n.bytes().all(|b| b.is_ascii_digit()) => n.parse::<u32>().ok().filter(|n| *n <= 30),
            Some(_) => None,
        };
        match offset {
            Some(n) => dom.from_last |= 1 << n,
            None => {
                return Err(CronError::InvalidModifier {
                    field: field.name,
                    value: element.to_string(),
                    reason: "expected L or L-n with n 0-30",
                })
            }
        }
    }
    Ok(dom)
}

fn parse_days_of_week(text: &str) -> Result<DaysOfWeek, CronError> {
    if text == "*" || text == "?" {
        return Ok(DaysOfWeek::ANY);
    }
    let field = &DAY_OF_WEEK;
    let mut dow = DaysOfWeek { days: 0, last: 0, nth: [0; 7], restricted: true };
    for element in elements(field, text)? {
        if let Some((weekday, k)) = element.split_once('#') {
            let weekday = parse_value(field, weekday, element)? % 7;
            let k = match k.parse::<u32>() {
                Ok(n) if k.bytes().all(|b| b.is_ascii_digit()) && (1..=5).contains(&n) => n,
                _ => {
                    return Err(CronError::InvalidModifier {
                        field: field.name,
                        value: element.to_string(),
                        reason: "the occurrence after '#' must be 1-5",
                    })
                }
            };
            dow.nth[weekday as usize] |= 1 << k;
        } else if let Some(weekday) = element.strip_suffix('L').or_else(|| element.strip_suffix('l')) {
            if weekday.is_empty() {
                return Err(CronError::InvalidModifier {
                    field: field.name,
                    value: element.to_string(),
                    reason: "'L' needs a weekday before it, e.g. 5L for the last Friday",
                });
            }
            dow.last |= 1 << (parse_value(field, weekday, element)? % 7);
        } else {
            for w in parse_range(field, element)? {
                dow.days |= 1 << (w % 7);
            }
        }
    }
    Ok(dow)
}

/// The lowest set bit of `mask` at position >= `from`.
fn next_bit(mask: u64, from: u32) -> Option<u32> {
    let rest = mask.checked_shr(from)?;
    (rest != 0).then(|| from + rest.trailing_zeros())
}

fn days_in_month(year: i32, month: u32) -> Option<u32> {
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => Some(31),
        4 | 6 | 9 | 11 => Some(30),
        2 if leap => Some(29),
        2 => Some(28),
        _ => None,
    }
}

fn naive_from_secs(secs: i64) -> Option<NaiveDateTime> {
    DateTime::from_timestamp(secs, 0).map(|d| d.naive_utc())
}

/// The UTC offset of `tz` at the instant `secs`, in seconds.
fn offset_at(tz: Tz, secs: i64) -> Option<i64> {
    let utc = naive_from_secs(secs)?;
    Some(i64::from(tz.offset_from_utc_datetime(&utc).fix().local_minus_utc()))
}

/// The wall-clock time of `tz` at the instant `secs`.
fn local_naive(tz: Tz, secs: i64) -> Option<NaiveDateTime> {
    naive_from_secs(secs.checked_add(offset_at(tz, secs)?)?)
}

/// A fall-back overlap whose repeated wall-clock span contains the wall-clock time of `after`.
struct Overlap {
    /// The repeated span is `start..end` on the wall clock.
    start: NaiveDateTime,
    end: NaiveDateTime,
    /// UTC offset during the second pass, in seconds.
    second_pass_offset: i64,
    after_in_second_pass: bool,
}

impl Overlap {
    /// `t` is `after` in whole seconds and `local` its wall-clock time; `None` when `local`
    /// happens only once.
    fn around(tz: Tz, t: i64, local: NaiveDateTime) -> Option<Overlap> {
        let MappedLocalTime::Ambiguous(early, late) = tz.from_local_datetime(&local) else {
            return None;
        };
        let (early, late) = (early.timestamp(), late.timestamp());
        let first_pass_offset = offset_at(tz, early)?;
        let second_pass_offset = offset_at(tz, late)?;
        let transition =
            first_instant_where(early, late, |v| offset_at(tz, v).is_some_and(|o| o != first_pass_offset))?;
        Some(Overlap {
            start: naive_from_secs(transition + second_pass_offset)?,
            end: naive_from_secs(transition + first_pass_offset)?,
            second_pass_offset,
            after_in_second_pass: t == late,
        })
    }
}

/// The instant at which the wall-clock time `n` first happens; for a time skipped by a gap,
/// the instant the clocks jump over it.
fn first_instant(tz: Tz, n: NaiveDateTime) -> Option<i64> {
    match tz.from_local_datetime(&n) {
        MappedLocalTime::Single(d) | MappedLocalTime::Ambiguous(d, _) => Some(d.timestamp()),
        MappedLocalTime::None => {
            // The gap's end is the first instant whose wall clock reads past `n`. Offsets are
            // bounded, so the predicate is false at n - 26 h and true at n + 26 h (read as UTC).
            let x = n.and_utc().timestamp();
            let past_n = |v: i64| offset_at(tz, v).is_some_and(|o| v + o > x);
            first_instant_where(x - MAX_OFFSET_SECS, x + MAX_OFFSET_SECS, past_n)
        }
    }
}

/// Binary search for the first instant in `(lo, hi]` where `pred` turns true, given that it
/// is false at `lo` and true at `hi`. `None` if those end conditions do not hold.
fn first_instant_where(mut lo: i64, mut hi: i64, pred: impl Fn(i64) -> bool) -> Option<i64> {
    if lo >= hi || pred(lo) || !pred(hi) {
        return None;
    }
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if pred(mid) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Some(hi)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::SecondsFormat;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse::<DateTime<Utc>>().unwrap_or_else(|e| panic!("bad test instant {s}: {e}"))
    }

    fn show(t: Option<DateTime<Utc>>) -> String {
        t.map_or("none".to_string(), |t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
    }

    fn zone(name: &str) -> Tz {
        parse_time_zone(name).unwrap_or_else(|e| panic!("{e}"))
    }

    fn sched(expr: &str) -> Cron {
        Cron::parse(expr).unwrap_or_else(|e| panic!("{expr}: {e}"))
    }

    /// The first `count` fires after `after`, as RFC 3339 strings.
    fn fires(expr: &str, tz: &str, after: &str, count: usize) -> Vec<String> {
        sched(expr).upcoming(zone(tz), at(after)).take(count).map(|t| show(Some(t))).collect()
    }

    /// Whether a wall-clock time matches, checked field by field independently of
    /// `next_match`, for the brute-force cross-check.
    fn matches(s: &Cron, n: NaiveDateTime) -> bool {
        let dim = days_in_month(n.year(), n.month()).unwrap_or(0);
        s.years.contains(n.year())
            && s.months & (1 << n.month()) != 0
            && s.day_matches(n.year(), n.month(), n.day(), dim)
            && s.hours & (1 << n.hour()) != 0
            && s.minutes & (1 << n.minute()) != 0
            && s.seconds & (1 << n.second()) != 0
    }

    #[test]
    fn parse_errors_display() {
        let cases: &[(&str, &str)] = &[
            ("", "expected 5, 6 or 7 fields, got 0"),
            ("   \t ", "expected 5, 6 or 7 fields, got 0"),
            ("* * *", "expected 5, 6 or 7 fields, got 3"),
            ("* * * * * * * *", "expected 5, 6 or 7 fields, got 8"),
            ("x * * * * *", "field 'second' has invalid value 'x'"),
            ("60 * * * * *", "field 'second' out of range: 60 (expected 0-59)"),
            ("0 x * * * *", "field 'minute' has invalid value 'x'"),
            ("0 60 * * * *", "field 'minute' out of range: 60 (expected 0-59)"),
            ("0 */0 * * * *", "field 'minute' has invalid step '0'"),
            ("0 */61 * * * *", "field 'minute' has invalid step '61'"),
            ("0 */x * * * *", "field 'minute' has invalid step 'x'"),
            ("0 */ * * * *", "field 'minute' has invalid step ''"),
            ("0 0 24 * * *", "field 'hour' out of range: 24 (expected 0-23)"),
            ("0 0 , * * *", "field 'hour' is empty"),
            ("0 0 1,,2 * * *", "field 'hour' has an empty list element in '1,,2'"),
            ("0 0 1, * * *", "field 'hour' has an empty list element in '1,'"),
            ("0 0 22-2 * * *", "field 'hour' has reversed range '22-2' (start is after end)"),
            ("0 0 5- * * *", "field 'hour' has invalid value '5-'"),
            ("0 0 -5 * * *", "field 'hour' has invalid value '-5'"),
            ("0 0 1-2-3 * * *", "field 'hour' has invalid value '2-3'"),
            ("0 0 /5 * * *", "field 'hour' has invalid value '/5'"),
            (
                "0 0 ? * * *",
                "field 'hour': '?' is only allowed in day-of-month and day-of-week",
            ),
            ("0 0 0 32 * *", "field 'day-of-month' out of range: 32 (expected 1-31)"),
            ("0 0 0 0 * *", "field 'day-of-month' out of range: 0 (expected 1-31)"),
            ("0 0 0 15W * *", "field 'day-of-month': '15W' is not supported (W)"),
            ("0 0 0 LW * *", "field 'day-of-month': 'LW' is not supported (W)"),
            (
                "0 0 0 L-31 * *",
                "field 'day-of-month' has invalid value 'L-31' (expected L or L-n with n 0-30)",
            ),
            (
                "0 0 0 Lx * *",
                "field 'day-of-month' has invalid value 'Lx' (expected L or L-n with n 0-30)",
            ),
            ("0 0 0 5L * *", "field 'day-of-month' has invalid value '5L'"),
            ("0 0 0 1,? * *", "field 'day-of-month': '?' must be the whole field"),
            ("0 0 0 * FOO *", "field 'month' has unknown name 'FOO'"),
            ("0 0 0 * 13 *", "field 'month' out of range: 13 (expected 1-12)"),
            ("0 0 0 * 0 *", "field 'month' out of range: 0 (expected 1-12)"),
            ("0 0 0 * J4N *", "field 'month' has invalid value 'J4N'"),
            ("0 0 0 * DEC-JAN *", "field 'month' has reversed range 'DEC-JAN' (start is after end)"),
            ("0 0 0 * * 8", "field 'day-of-week' out of range: 8 (expected 0-7)"),
            ("0 0 0 * * FUNDAY", "field 'day-of-week' has unknown name 'FUNDAY'"),
            ("0 0 0 * * */8", "field 'day-of-week' has invalid step '8'"),
            (
                "0 0 0 * * MON#6",
                "field 'day-of-week' has invalid value 'MON#6' (the occurrence after '#' must be 1-5)",
            ),
            (
                "0 0 0 * * MON#0",
                "field 'day-of-week' has invalid value 'MON#0' (the occurrence after '#' must be 1-5)",
            ),
            (
                "0 0 0 * * MON#",
                "field 'day-of-week' has invalid value 'MON#' (the occurrence after '#' must be 1-5)",
            ),
            ("0 0 0 * * X#1", "field 'day-of-week' has unknown name 'X'"),
            (
                "0 0 0 * * L",
                "field 'day-of-week' has invalid value 'L' ('L' needs a weekday before it, e.g. 5L for the last Friday)",
            ),
            ("0 0 0 * * 9L", "field 'day-of-week' out of range: 9 (expected 0-7)"),
            ("0 0 0 * * 1,?", "field 'day-of-week': '?' must be the whole field"),
            ("0 0 0 * * * 1969", "field 'year' out of range: 1969 (expected 1970-2199)"),
            ("0 0 0 * * * 2200", "field 'year' out of range: 2200 (expected 1970-2199)"),
            ("0 0 0 * * * 2030-2020", "field 'year' has reversed range '2030-2020' (start is after end)"),
            ("0 0 0 * * * ?", "field 'year': '?' is only allowed in day-of-month and day-of-week"),
            ("0 0 0 * * * 2030/0", "field 'year' has invalid step '0'"),
            (
                "99999999999999999999 * * * * *",
                "field 'second' out of range: 99999999999999999999 (expected 0-59)",
            ),
            (
                "0 */99999999999999999999 * * * *",
                "field 'minute' has invalid step '99999999999999999999'",
            ),
            ("é * * * * *", "field 'second' has invalid value 'é'"),
            ("0 0 0 * JAN-ÉTÉ *", "field 'month' has invalid value 'ÉTÉ'"),
            ("0 0 0 ÉW * *", "field 'day-of-month': 'ÉW' is not supported (W)"),
            ("0 0 0 * * MON#½", "field 'day-of-week' has invalid value 'MON#½' (the occurrence after '#' must be 1-5)"),
            ("0 0 0 * * ½L", "field 'day-of-week' has invalid value '½'"),
            ("0 0 0 * * +1", "field 'day-of-week' has invalid value '+1'"),
            ("0 */+5 * * * *", "field 'minute' has invalid step '+5'"),
            ("@often", "unknown alias '@often' (expected @yearly, @annually, @monthly, @weekly, @daily, @midnight or @hourly)"),
            ("@daily 5", "alias '@daily' must be the whole expression"),
        ];
        for (expr, want) in cases {
            match Cron::parse(expr) {
                Ok(s) => panic!("{expr:?} parsed as {s}, want error {want:?}"),
                Err(e) => assert_eq!(e.to_string(), *want, "for {expr:?}"),
            }
        }
    }

    #[test]
    fn parse_errors_are_structured() {
        assert_eq!(
            Cron::parse("0 0 0 32 * *"),
            Err(CronError::OutOfRange { field: "day-of-month", value: "32".into(), min: 1, max: 31 })
        );
        assert_eq!(Cron::parse("* * *"), Err(CronError::FieldCount(3)));
    }

    #[test]
    fn parse_forms_normalise() {
        // (expression, normalised Display)
        let cases: &[(&str, &str)] = &[
            ("* * * * *", "0 * * * * *"),
            ("  */5   0  *  *  * ", "0 */5 0 * * *"),
            ("* * * * * *", "* * * * * *"),
            ("0 0 12 * * ? 2030", "0 0 12 * * * 2030"),
            ("0 0 12 * * * *", "0 0 12 * * *"),
            ("0 0 12 * * * 2030-2032,2040", "0 0 12 * * * 2030-2032,2040"),
            ("0 0 0 1 JAN-MAR,jun *", "0 0 0 1 1-3,6 *"),
            ("0 0 0 * * mon-FRI", "0 0 0 * * 1-5"),
            ("0 0 0 * * FRI-SUN", "0 0 0 * * 0,5,6"),
            ("0 0 0 * * 5-7", "0 0 0 * * 0,5,6"),
            ("0 0 0 * * 7", "0 0 0 * * 0"),
            ("0 0 0 * * 1/2", "0 0 0 * * 1/2"),
            ("0 0 0 * * */2", "0 0 0 * * */2"),
            ("0 0 0 * * 1-7/2", "0 0 0 * * 0,1,3,5"),
            ("5/15 * * * * *", "5/15 * * * * *"),
            ("0 10-40/10 * * * *", "0 10-40/10 * * * *"),
            ("0 0 1,2,3,7,9,10 * * *", "0 0 1-3,7,9,10 * * *"),
            ("0 0 */1 * * *", "0 0 * * * *"),
            ("0 0 0-23 * * *", "0 0 * * * *"),
            ("0 0 0 */1 * *", "0 0 0 1-31 * *"),
            ("0 0 0 1/10 * *", "0 0 0 */10 * *"),
            ("0 0 0 5/10 * *", "0 0 0 5/10 * *"),
            ("0 0 0 L * ?", "0 0 0 L * *"),
            ("0 0 0 l-2,1,L * ?", "0 0 0 1,L,L-2 * *"),
            ("0 0 0 ? * 5L", "0 0 0 * * 5L"),
            ("0 0 0 ? * fril", "0 0 0 * * 5L"),
            ("0 0 0 ? * MON#2,7#1", "0 0 0 * * 0#1,1#2"),
            ("0 0 0 ? * * 2030/5", "0 0 0 * * * 2030/5"),
            ("@yearly", "0 0 0 1 1 *"),
            ("@annually", "0 0 0 1 1 *"),
            ("@monthly", "0 0 0 1 * *"),
            ("@weekly", "0 0 0 * * 0"),
            ("@daily", "0 0 0 * * *"),
            ("@MIDNIGHT", "0 0 0 * * *"),
            ("@hourly", "0 0 * * * *"),
        ];
        for (expr, want) in cases {
            let s = sched(expr);
            assert_eq!(s.to_string(), *want, "for {expr:?}");
            // The normalised form must denote the same schedule.
            assert_eq!(sched(want), s, "round trip of {expr:?}");
        }
    }

    #[test]
    fn equivalent_expressions_are_equal() {
        let pairs = [
            ("@daily", "0 0 0 ? * ?"),
            ("* * * * *", "0 * * * * *"),
            ("0 0 0 * * SUN", "0 0 0 * * 7"),
            ("0 0 0 * * SUN", "@weekly"),
            ("0 0 0 1 JAN *", "@yearly"),
            ("0 0 0 L * *", "0 0 0 L-0 * *"),
            ("0 0 0 * * * *", "0 0 0 * * *"),
            ("0 0/20 * * * *", "0 0,20,40 * * * *"),
        ];
        for (a, b) in pairs {
            assert_eq!(sched(a), sched(b), "{a:?} vs {b:?}");
        }
        assert_ne!(sched("0 0 0 */1 * *"), sched("0 0 0 * * *"));
    }

    /// (expression, zone, after, expected next fires)
    type Case = (&'static str, &'static str, &'static str, &'static [&'static str]);

    fn check(cases: &[Case]) {
        for (expr, tz, after, want) in cases {
            let got = fires(expr, tz, after, want.len().max(1));
            let want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
            assert_eq!(got, want, "{expr:?} in {tz} after {after}");
        }
    }

    #[test]
    fn every_second_and_steps() {
        check(&[
            // Every second; a sub-second `after` still yields the next whole second.
            ("* * * * * *", "UTC", "2026-01-01T00:00:00Z", &["2026-01-01T00:00:01Z", "2026-01-01T00:00:02Z"]),
            ("* * * * * *", "UTC", "2026-01-01T00:00:00.999Z", &["2026-01-01T00:00:01Z"]),
            ("* * * * * *", "UTC", "2025-12-31T23:59:59.5Z", &["2026-01-01T00:00:00Z"]),
            // Every 5 s across a minute boundary.
            (
                "*/5 * * * * *",
                "UTC",
                "2026-01-01T10:00:52Z",
                &["2026-01-01T10:00:55Z", "2026-01-01T10:01:00Z", "2026-01-01T10:01:05Z"],
            ),
            // Five-field form fires at second 0.
            ("*/30 * * * *", "UTC", "2026-01-01T10:00:00Z", &["2026-01-01T10:30:00Z", "2026-01-01T11:00:00Z"]),
        ]);
    }

    #[test]
    fn month_ends_and_last_day() {
        check(&[
            // Month ends: the 31st skips short months; Jan 31 rolls into February.
            (
                "0 0 0 31 * *",
                "UTC",
                "2026-01-15T00:00:00Z",
                &["2026-01-31T00:00:00Z", "2026-03-31T00:00:00Z", "2026-05-31T00:00:00Z"],
            ),
            ("0 0 0 * * *", "UTC", "2026-01-31T00:00:00Z", &["2026-02-01T00:00:00Z"]),
            ("0 0 12 L * *", "UTC", "2026-01-31T12:00:00Z", &["2026-02-28T12:00:00Z", "2026-03-31T12:00:00Z"]),
            ("0 0 12 L * *", "UTC", "2028-02-01T00:00:00Z", &["2028-02-29T12:00:00Z"]),
            ("0 0 12 L-1 * *", "UTC", "2026-02-01T00:00:00Z", &["2026-02-27T12:00:00Z", "2026-03-30T12:00:00Z"]),
        ]);
    }

    #[test]
    fn leap_years() {
        check(&[
            // Leap years: Feb 29 only in leap years, and 2100 is not one.
            ("0 0 0 29 2 *", "UTC", "2026-01-01T00:00:00Z", &["2028-02-29T00:00:00Z", "2032-02-29T00:00:00Z"]),
            ("0 0 0 29 2 *", "UTC", "2096-03-01T00:00:00Z", &["2104-02-29T00:00:00Z"]),
        ]);
    }

    #[test]
    fn names_lists_ranges() {
        check(&[
            // Names, lists, ranges with steps.
            ("0 0 9 * JAN,JUL MON", "UTC", "2026-01-01T00:00:00Z", &["2026-01-05T09:00:00Z", "2026-01-12T09:00:00Z"]),
            (
                "0 0 9-17/4 * * *",
                "UTC",
                "2026-01-01T10:00:00Z",
                &["2026-01-01T13:00:00Z", "2026-01-01T17:00:00Z", "2026-01-02T09:00:00Z"],
            ),
        ]);
    }

    #[test]
    fn last_and_nth_weekday() {
        check(&[
            // Last Friday; second Monday.
            ("0 0 0 ? * 5L", "UTC", "2026-01-01T00:00:00Z", &["2026-01-30T00:00:00Z", "2026-02-27T00:00:00Z"]),
            ("0 0 0 ? * MON#2", "UTC", "2026-01-01T00:00:00Z", &["2026-01-12T00:00:00Z", "2026-02-09T00:00:00Z"]),
            ("0 0 0 ? * SUN#5", "UTC", "2026-01-01T00:00:00Z", &["2026-03-29T00:00:00Z", "2026-05-31T00:00:00Z"]),
        ]);
    }

    #[test]
    fn day_of_month_or_day_of_week() {
        check(&[
            // Both day fields restricted: either matches (the 13th, or any Friday).
            (
                "0 0 0 13 * FRI",
                "UTC",
                "2026-02-01T00:00:00Z",
                &[
                    "2026-02-06T00:00:00Z",
                    "2026-02-13T00:00:00Z",
                    "2026-02-20T00:00:00Z",
                    "2026-02-27T00:00:00Z",
                    "2026-03-06T00:00:00Z",
                ],
            ),
            // Only one restricted: it alone decides.
            ("0 0 0 13 * *", "UTC", "2026-02-01T00:00:00Z", &["2026-02-13T00:00:00Z", "2026-03-13T00:00:00Z"]),
            ("0 0 0 ? * FRI", "UTC", "2026-02-01T00:00:00Z", &["2026-02-06T00:00:00Z", "2026-02-13T00:00:00Z"]),
            // `*/1` counts as restricted, so it ORs with day-of-week (every day).
            ("0 0 0 */1 * FRI", "UTC", "2026-02-01T00:00:00Z", &["2026-02-02T00:00:00Z", "2026-02-03T00:00:00Z"]),
        ]);
    }

    #[test]
    fn aliases_fire() {
        check(&[
            // Aliases.
            ("@hourly", "UTC", "2026-01-01T10:00:00Z", &["2026-01-01T11:00:00Z"]),
            ("@daily", "UTC", "2026-01-01T10:00:00Z", &["2026-01-02T00:00:00Z"]),
            ("@weekly", "UTC", "2026-01-01T10:00:00Z", &["2026-01-04T00:00:00Z"]),
            ("@monthly", "UTC", "2026-01-01T10:00:00Z", &["2026-02-01T00:00:00Z"]),
            ("@yearly", "UTC", "2026-01-01T00:00:00Z", &["2027-01-01T00:00:00Z", "2028-01-01T00:00:00Z"]),
        ]);
    }

    #[test]
    fn fixed_offset_zone() {
        check(&[
            // Time zone without DST involvement: 09:00 in Tokyo is 00:00Z.
            ("0 0 9 * * *", "Asia/Tokyo", "2026-01-01T00:00:00Z", &["2026-01-02T00:00:00Z"]),
        ]);
    }

    #[test]
    fn year_field() {
        check(&[
            // Year field.
            (
                "0 0 12 1 1 * 2030,2035",
                "UTC",
                "2026-06-01T00:00:00Z",
                &["2030-01-01T12:00:00Z", "2035-01-01T12:00:00Z"],
            ),
            ("0 0 0 1 1 * 2199", "UTC", "1900-01-01T00:00:00Z", &["2199-01-01T00:00:00Z"]),
            // `after` before 1970 starts at the first possible year.
            ("@yearly", "UTC", "1000-01-01T00:00:00Z", &["1970-01-01T00:00:00Z"]),
        ]);
    }

    #[test]
    fn next_after_none_and_limits() {
        let cases: &[(&str, &str, &str)] = &[
            ("0 0 12 1 1 * 2030", "UTC", "2030-01-01T12:00:00Z"),
            ("* * * * * * 1999", "UTC", "2026-01-01T00:00:00Z"),
            ("0 0 0 30 2 *", "UTC", "2026-01-01T00:00:00Z"),
            ("0 0 0 31 2,4,6,9,11 *", "Europe/Paris", "1970-01-01T00:00:00Z"),
            ("0 0 0 ? 2 MON#5 2026-2027", "UTC", "2026-01-01T00:00:00Z"),
            ("0 0 0 29 2 * 2100", "UTC", "2026-01-01T00:00:00Z"),
            ("* * * * * *", "UTC", "2199-12-31T23:59:59Z"),
            ("* * * * * *", "America/New_York", "2300-01-01T00:00:00Z"),
        ];
        for (expr, tz, after) in cases {
            assert_eq!(show(sched(expr).next_after(zone(tz), at(after))), "none", "{expr:?}");
        }
        // The extremes of DateTime<Utc> neither panic nor loop.
        for t in [DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC] {
            let _ = sched("* * * * * *").next_after(zone("Pacific/Kiritimati"), t);
        }
        // Year 2199 still fires in a zone behind UTC, past the end of 2199 in UTC.
        check(&[("0 0 20 31 12 *", "America/New_York", "2199-06-01T00:00:00Z", &["2200-01-01T01:00:00Z"])]);
    }

    #[test]
    fn new_york_gap() {
        check(&[
            // New York spring forward 2026-03-08: 02:00 EST -> 03:00 EDT at 07:00Z.
            (
                "0 30 2 * * *",
                "America/New_York",
                "2026-03-07T12:00:00Z",
                &["2026-03-08T07:00:00Z", "2026-03-09T06:30:00Z"],
            ),
            // Every quarter hour: 02:00-02:45 do not exist and collapse with 03:00 into one fire.
            (
                "0 */15 * * * *",
                "America/New_York",
                "2026-03-08T06:30:00Z",
                &["2026-03-08T06:45:00Z", "2026-03-08T07:00:00Z", "2026-03-08T07:15:00Z"],
            ),
            // Fixed hour 2 on the gap day, then normal days.
            (
                "0 0,30 2 * * *",
                "America/New_York",
                "2026-03-08T06:00:00Z",
                &["2026-03-08T07:00:00Z", "2026-03-09T06:00:00Z", "2026-03-09T06:30:00Z"],
            ),
        ]);
    }

    #[test]
    fn new_york_overlap() {
        check(&[
            // New York fall back 2026-11-01: 02:00 EDT -> 01:00 EST at 06:00Z.
            (
                "0 30 1 * * *",
                "America/New_York",
                "2026-10-31T12:00:00Z",
                &["2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"],
            ),
            (
                "0 30 * * * *",
                "America/New_York",
                "2026-11-01T04:00:00Z",
                &["2026-11-01T04:30:00Z", "2026-11-01T05:30:00Z", "2026-11-01T06:30:00Z", "2026-11-01T07:30:00Z"],
            ),
            (
                "0 */15 * * * *",
                "America/New_York",
                "2026-11-01T05:40:00Z",
                &["2026-11-01T05:45:00Z", "2026-11-01T06:00:00Z", "2026-11-01T06:15:00Z"],
            ),
            // Starting from inside the second pass: the fixed-hour job waits for the next day...
            ("0 30 1 * * *", "America/New_York", "2026-11-01T06:10:00Z", &["2026-11-02T06:30:00Z"]),
            // ...while the first-pass time that is earlier on the clock is not repeated.
            ("0 50 1 * * *", "America/New_York", "2026-11-01T06:10:00Z", &["2026-11-02T06:50:00Z"]),
            // The hourly job fires at 01:30 EST, which is later than `after` despite 01:50 EDT
            // reading later on the clock (and 01:50 EDT is in the past).
            (
                "0 30,50 * * * *",
                "America/New_York",
                "2026-11-01T05:55:00Z",
                &["2026-11-01T06:30:00Z", "2026-11-01T06:50:00Z", "2026-11-01T07:30:00Z"],
            ),
            // From inside the first pass: second-pass 01:10 EST (06:10Z) is before 02:10 EST.
            (
                "0 10 * * * *",
                "America/New_York",
                "2026-11-01T05:20:00Z",
                &["2026-11-01T06:10:00Z", "2026-11-01T07:10:00Z"],
            ),
        ]);
    }

    #[test]
    fn paris_gap_and_overlap() {
        check(&[
            // Paris spring forward 2026-03-29: 02:00 CET -> 03:00 CEST at 01:00Z.
            ("0 30 2 * * *", "Europe/Paris", "2026-03-28T12:00:00Z", &["2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z"]),
            (
                "0 */20 * * * *",
                "Europe/Paris",
                "2026-03-29T00:30:00Z",
                &["2026-03-29T00:40:00Z", "2026-03-29T01:00:00Z", "2026-03-29T01:20:00Z"],
            ),
            // Paris fall back 2026-10-25: 03:00 CEST -> 02:00 CET at 01:00Z.
            ("0 30 2 * * *", "Europe/Paris", "2026-10-24T12:00:00Z", &["2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"]),
            (
                "0 30 * * * *",
                "Europe/Paris",
                "2026-10-24T23:00:00Z",
                &["2026-10-24T23:30:00Z", "2026-10-25T00:30:00Z", "2026-10-25T01:30:00Z", "2026-10-25T02:30:00Z"],
            ),
        ]);
    }

    #[test]
    fn lord_howe_half_hour_shift() {
        check(&[
            // Lord Howe shifts by 30 minutes. Spring forward 2026-10-04 02:00 (+10:30) -> 02:30
            // (+11) at 15:30Z on Oct 3: 02:15 does not exist and fires at the jump.
            (
                "0 15 2 * * *",
                "Australia/Lord_Howe",
                "2026-10-03T00:00:00Z",
                &["2026-10-03T15:30:00Z", "2026-10-04T15:15:00Z"],
            ),
            // Fall back 2026-04-05 02:00 (+11) -> 01:30 (+10:30) at 15:00Z on Apr 4.
            (
                "0 45 1 * * *",
                "Australia/Lord_Howe",
                "2026-04-04T00:00:00Z",
                &["2026-04-04T14:45:00Z", "2026-04-05T15:15:00Z"],
            ),
            (
                "0 45 * * * *",
                "Australia/Lord_Howe",
                "2026-04-04T14:00:00Z",
                &["2026-04-04T14:45:00Z", "2026-04-04T15:15:00Z", "2026-04-04T16:15:00Z"],
            ),
        ]);
    }

    #[test]
    fn samoa_skipped_day() {
        check(&[
            // Samoa skipped 2011-12-30 entirely (-10 -> +14 at 10:00Z): noon that day fires
            // at the jump, and the next noon follows normally.
            ("0 0 12 * * *", "Pacific/Apia", "2011-12-29T22:00:00Z", &["2011-12-30T10:00:00Z", "2011-12-30T22:00:00Z"]),
        ]);
    }

    /// A per-second schedule through New York's repeated hour: exactly one fire per second,
    /// strictly increasing, no gaps, no repeats.
    #[test]
    fn every_second_through_fall_back_is_contiguous() {
        let s = sched("* * * * * *");
        let tz = zone("America/New_York");
        let start = at("2026-11-01T04:00:00Z");
        let mut t = start;
        for _ in 0..3 * 3600 {
            let next = s.next_after(tz, t).expect("per-second schedule always fires");
            assert_eq!(next - t, TimeDelta::seconds(1), "after {t}");
            t = next;
        }
        assert_eq!(t, at("2026-11-01T07:00:00Z"));
    }

    /// Fires in `(from, to]` by a brute-force walk over every second that applies the
    /// documented rules directly: an instant fires when its wall-clock time is seen for the
    /// first time and matches, or when it ends a gap containing a matching time, or when its
    /// wall-clock time is a repeat that matches and the hour field is `*`. The walk starts
    /// 6 h early so that `from` may lie inside an overlap.
    fn brute_force(s: &Cron, tz: Tz, from: i64, to: i64) -> Vec<i64> {
        let warm_up = from - 6 * 3600;
        let mut high_water = local_naive(tz, warm_up).expect("in range");
        let mut fired = Vec::new();
        for u in warm_up + 1..=to {
            let local = local_naive(tz, u).expect("in range");
            let fire = if local > high_water {
                let mut n = high_water + TimeDelta::seconds(1);
                let mut any = false;
                while n <= local && !any {
                    any = matches(s, n);
                    n += TimeDelta::seconds(1);
                }
                high_water = local;
                any
            } else {
                s.fires_in_both_passes() && matches(s, local)
            };
            if fire && u > from {
                fired.push(u);
            }
        }
        fired
    }

    /// Cross-checks `next_after` against `brute_force` around real transitions, both as a
    /// sequence from the window start and from many starting points inside the window
    /// (including both passes of each overlap).
    #[test]
    fn agrees_with_brute_force_around_transitions() {
        let windows = [
            ("America/New_York", "2026-03-08T05:30:00Z"),
            ("America/New_York", "2026-11-01T04:30:00Z"),
            ("Europe/Paris", "2026-03-29T00:00:00Z"),
            ("Europe/Paris", "2026-10-24T23:30:00Z"),
            ("Australia/Lord_Howe", "2026-04-04T14:00:00Z"),
            ("Australia/Lord_Howe", "2026-10-03T14:30:00Z"),
            ("Pacific/Apia", "2011-12-30T08:00:00Z"),
        ];
        let exprs = [
            "0 */7 * * * *",
            "0 0,30 * * * *",
            "0 10,50 1,2 * * *",
            "0 15 2 * * *",
            "0 45 1 * * *",
            "30 */20 * * * *",
            "0 0 3 * * *",
            "*/13 * * * * *",
        ];
        for (tz_name, start) in windows {
            let tz = zone(tz_name);
            let start = at(start).timestamp();
            let end = start + 4 * 3600;
            for expr in exprs {
                let s = sched(expr);
                let expected = brute_force(&s, tz, start, end);
                let got: Vec<i64> = s
                    .upcoming(tz, DateTime::from_timestamp(start, 0).expect("in range"))
                    .map(|t| t.timestamp())
                    .take_while(|&t| t <= end)
                    .collect();
                assert_eq!(got, expected, "{expr:?} in {tz_name} from {start}");
                for probe in (start..end).step_by(397) {
                    let Some(&want) = expected.iter().find(|&&t| t > probe) else {
                        break;
                    };
                    let after = DateTime::from_timestamp(probe, 0).expect("in range");
                    let got = s.next_after(tz, after).map(|t| t.timestamp());
                    assert_eq!(got, Some(want), "{expr:?} in {tz_name} after {after}");
                }
            }
        }
    }

    #[test]
    fn parse_time_zone_cases() {
        assert_eq!(parse_time_zone(""), Ok(Tz::UTC));
        assert_eq!(parse_time_zone("UTC"), Ok(Tz::UTC));
        assert_eq!(parse_time_zone("America/New_York"), Ok(Tz::America__New_York));
        assert_eq!(parse_time_zone("Europe/Paris"), Ok(Tz::Europe__Paris));
        for bad in ["Mars/Base", " UTC", "europe/paris", "Ω"] {
            assert_eq!(parse_time_zone(bad).map_err(|e| e.to_string()), Err(format!("unknown IANA time zone '{bad}'")));
        }
    }

    /// A tiny deterministic xorshift generator, so the fuzz-style tests need no dependency.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }

        fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
            items[self.below(items.len())]
        }
    }

    /// Pseudo-random junk must produce errors or schedules, never panics.
    #[test]
    fn never_panics_on_junk() {
        let atoms = [
            "*",
            "?",
            "/",
            "-",
            ",",
            "L",
            "W",
            "#",
            "0",
            "7",
            "59",
            "60",
            "99999999999999999999",
            "MON",
            "jan",
            "é",
            "½",
            "L-",
            "5L",
            "#5",
            " ",
            "\t",
            "@",
            "@daily",
            "2199",
            "1970",
        ];
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        for _ in 0..20_000 {
            let len = rng.below(24);
            let expr: String = (0..len).map(|_| rng.pick(&atoms)).collect();
            if let Ok(s) = Cron::parse(&expr) {
                let _ = s.next_after(Tz::UTC, at("2026-01-01T00:00:00Z"));
            }
        }
    }

    /// Randomly built valid expressions render (Display) to a form that parses back to an equal
    /// schedule, and their next fire is a matching wall-clock time.
    #[test]
    fn display_round_trips_random_expressions() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let fields: [(u32, u32); 7] = [(0, 59), (0, 59), (0, 23), (1, 31), (1, 12), (0, 7), (1970, 2199)];
        let tz = zone("America/New_York");
        let after = at("2026-03-01T00:00:00Z");
        for _ in 0..2_000 {
            let count = 6 + rng.below(2);
            let mut parts = Vec::new();
            for (i, &(min, max)) in fields.iter().take(count).enumerate() {
                let span = (max - min + 1) as usize;
                let value = |rng: &mut Rng| min + rng.below(span) as u32;
                let elements = 1 + rng.below(3);
                let mut list = Vec::new();
                for _ in 0..elements {
                    let a = value(&mut rng);
                    let b = value(&mut rng);
                    let (lo, hi) = (a.min(b), a.max(b));
                    let step = 1 + rng.below(span.min(7));
                    list.push(match (i, rng.below(9)) {
                        (3, 7) => "L".to_string(),
                        (3, 8) => format!("L-{}", rng.below(5)),
                        (5, 7) => format!("{}L", rng.below(7)),
                        (5, 8) => format!("{}#{}", rng.below(7), 1 + rng.below(5)),
                        (_, 0) => "*".to_string(),
                        (_, 1) => format!("*/{step}"),
                        (_, 2) => format!("{lo}/{step}"),
                        (_, 3) => format!("{lo}-{hi}/{step}"),
                        (_, 4) => format!("{lo}-{hi}"),
                        _ => a.to_string(),
                    });
                }
                parts.push(list.join(","));
            }
            let expr = parts.join(" ");
            let s = sched(&expr);
            assert_eq!(Cron::parse(&s.to_string()).as_ref(), Ok(&s), "{expr:?} -> {s}");
            if let Some(next) = s.next_after(tz, after) {
                let local = next.with_timezone(&tz).naive_local();
                // A fire either shows a matching wall clock or ends a gap (a jump instant).
                let jumped =
                    local_naive(tz, next.timestamp() - 1).is_some_and(|prev| local - prev > TimeDelta::seconds(1));
                assert!(matches(&s, local) || jumped, "{expr:?} fired at {next}");
            }
        }
    }
}
