//! A job's schedule: the instants its fires are made at.
//!
//! Owns the kinds a schedule may be, the bounds and the spread every kind takes, and the preview:
//! - `cron`: an expression on the wall clock of the job's zone (`cron`).
//! - `every`: a fixed interval on a grid counted from an anchor instant (the first fire), so the
//!   grid survives restarts and failovers: the instants are `anchor + k * every`, k >= 0. Without
//!   an anchor the grid is counted from 1970-01-01T00:00:00Z (`every 1h` fires on the hour in
//!   UTC). An interval is absolute time: across a daylight-saving change the local time of its
//!   fires moves by the change (`every 24h` at 09:00 fires at 10:00 local after spring forward).
//! - `at`: one instant or a short list (a one-shot job; `after` on PutJob is `at` now + after).
//! - `after_previous`: a fixed delay counted from the end of the previous fire (PowerJob's fixed
//!   delay). It has no grid: the first fire is at the next whole second after the put (or at
//!   `start`), and each later one is set when the one before has ended, to its end plus the delay
//!   (the store's chain: `Store::chain_next`). So its fires never overlap, whatever their length;
//!   a retried fire ends after its last attempt.
//! - bounds: no instant before `start`, none after `end`, for every kind.
//! - spread: a stable per-job offset in `[0, spread)`, derived from the job id (FNV-1a), whole
//!   seconds, added to every instant, so a thousand `@daily` jobs do not all fire at midnight.
//!
//! Each instant is a fire id (`job@ms`): the scheduler asks `next_after_ms` for the instant after
//! the last one it claimed, and nothing else decides when a job fires. Pure: no clock, no state.
//! Uses: `cron` (expressions, zones).
use chrono::{DateTime, NaiveDateTime, Offset, TimeZone, Utc};
use chrono_tz::Tz;

use super::cron::{self, Cron};
use super::JobSpec;
use crate::error::{Error, Result};

/// Shortest interval: as fine as a cron expression's seconds; finer belongs in a loop, not a job.
pub const MIN_EVERY_MS: u64 = 1_000;
/// Longest interval: a year (longer is a cron expression's or an `at`'s job).
pub const MAX_EVERY_MS: u64 = 366 * 86_400_000;
/// Most instants an `at` schedule lists: a one-shot job, not a calendar.
pub const MAX_AT: usize = 100;
/// Widest spread: a day.
pub const MAX_SPREAD_MS: u64 = 86_400_000;
/// Longest jitter: 30 s. A fire waits it out holding its job's no-overlap lock (and a worker), and
/// the lock's lease, taken at its claim, is the misfire threshold plus 30 s, renewed only once the
/// run begins; a wider scatter of a job's start is `spread`'s.
pub const MAX_JITTER_MS: u64 = 30_000;
/// 2200-01-01T00:00:00Z: no schedule names an instant from here on (cron searches end in 2199).
pub const END_OF_TIME_MS: i64 = 7_258_118_400_000;

/// Which instants, before bounds and spread.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Cron(Cron),
    Every {
        every_ms: i64,
        anchor_ms: i64,
    },
    /// Sorted, no repeats.
    At(Vec<i64>),
    /// Each fire this long after the previous one ended; the first at the next whole second.
    AfterPrevious {
        delay_ms: i64,
    },
}

/// A validated schedule: kind, zone, bounds and the job's spread offset.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub kind: Kind,
    pub tz: Tz,
    pub start_ms: Option<i64>,
    pub end_ms: Option<i64>,
    /// Added to each of the kind's instants (from `spread` and the job id).
    pub offset_ms: i64,
}

/// One instant of a preview, with what shaped it (daylight saving, the spread, the end, the
/// job's calendars).
#[derive(Debug, Clone, PartialEq)]
pub struct Upcoming {
    pub at_ms: i64,
    pub notes: Vec<String>,
    /// A calendar excludes it: recorded skipped, not run.
    pub skipped: bool,
}

/// An instant as something beyond the schedule shaped it (a job's calendars: `Job::preview`).
#[derive(Debug, Clone, PartialEq)]
pub struct Shaped {
    pub at_ms: i64,
    pub notes: Vec<String>,
    pub skipped: bool,
    /// Moved off the schedule's own instants: the schedule's notes (daylight saving, spread) do
    /// not apply to it.
    pub moved: bool,
}

impl Schedule {
    /// The schedule a spec gives, checked: exactly one kind, fields in range. Errors name the
    /// field as the API does (`cron`, `every`, `anchor`, `at`, `start_time`, `end_time`, `spread`,
    /// `time_zone`). Whether it still fires after now is the writer's check (`never_fires`).
    pub fn of(spec: &JobSpec) -> Result<Schedule> {
        let tz = cron::parse_time_zone(&spec.time_zone).map_err(|e| Error::invalid("time_zone", e))?;
        let given: Vec<&str> = [
            (!spec.cron.trim().is_empty()).then_some("cron"),
            (spec.every_ms != 0).then_some("every"),
            (!spec.at_ms.is_empty()).then_some("at"),
            (spec.after_previous_ms != 0).then_some("after_previous"),
        ]
        .into_iter()
        .flatten()
        .collect();
        let kind = match given.as_slice() {
            [] => return Err(Error::invalid("cron", "a job needs a schedule: cron, every, at or after_previous")),
            [a, b, ..] => {
                return Err(Error::invalid(*b, format!("a job has one schedule: give {a} or {b}, not both")));
            }
            ["cron"] => Kind::Cron(Cron::parse(&spec.cron).map_err(|e| Error::invalid("cron", e))?),
            ["every"] => {
                if !(MIN_EVERY_MS..=MAX_EVERY_MS).contains(&spec.every_ms) {
                    return Err(Error::invalid(
                        "every",
                        format!("{} is not between 1s and 366 days", length_text(spec.every_ms)),
                    ));
                }
                let anchor_ms = spec.anchor_ms.unwrap_or(0);
                check_instant("anchor", anchor_ms)?;
                Kind::Every { every_ms: spec.every_ms as i64, anchor_ms }
            }
            ["after_previous"] => {
                if !(MIN_EVERY_MS..=MAX_EVERY_MS).contains(&spec.after_previous_ms) {
                    return Err(Error::invalid(
                        "after_previous",
                        format!("{} is not between 1s and 366 days", length_text(spec.after_previous_ms)),
                    ));
                }
                if spec.spread_ms != 0 {
                    return Err(Error::invalid(
                        "spread",
                        "not with after_previous (its fires follow the previous end, not a clock)",
                    ));
                }
                Kind::AfterPrevious { delay_ms: spec.after_previous_ms as i64 }
            }
            // "at", the one left.
            [_] => {
                if spec.at_ms.len() > MAX_AT {
                    return Err(Error::invalid("at", format!("{} instants; at most {MAX_AT}", spec.at_ms.len())));
                }
                for t in &spec.at_ms {
                    check_instant("at", *t)?;
                }
                let mut at = spec.at_ms.clone();
                at.sort_unstable();
                at.dedup();
                Kind::At(at)
            }
        };
        if spec.anchor_ms.is_some() && !matches!(kind, Kind::Every { .. }) {
            return Err(Error::invalid("anchor", "only with every (it is where an interval's grid starts)"));
        }
        for (field, t) in [("start_time", spec.start_ms), ("end_time", spec.end_ms)] {
            if let Some(t) = t {
                check_instant(field, t)?;
            }
        }
        if let (Some(s), Some(e)) = (spec.start_ms, spec.end_ms) {
            if e < s {
                return Err(Error::invalid("end_time", "is before start_time"));
            }
        }
        if spec.jitter_ms > MAX_JITTER_MS {
            return Err(Error::invalid("jitter", format!("{} is more than 30s", length_text(spec.jitter_ms))));
        }
        if spec.spread_ms != 0 && !(1_000..=MAX_SPREAD_MS).contains(&spec.spread_ms) {
            return Err(Error::invalid("spread", format!("{} is not between 1s and 24h", length_text(spec.spread_ms))));
        }
        Ok(Schedule {
            kind,
            tz,
            start_ms: spec.start_ms,
            end_ms: spec.end_ms,
            offset_ms: spread_offset_ms(&spec.id, spec.spread_ms),
        })
    }

    /// The first instant strictly after `after_ms` (UTC epoch ms), if any.
    pub fn next_after_ms(&self, after_ms: i64) -> Option<i64> {
        let from = self.start_ms.map_or(after_ms, |s| after_ms.max(s.saturating_sub(1)));
        let t = self.kind_next(from.checked_sub(self.offset_ms)?)?.checked_add(self.offset_ms)?;
        (t <= self.end_ms.unwrap_or(END_OF_TIME_MS).min(END_OF_TIME_MS)).then_some(t)
    }

    fn kind_next(&self, after: i64) -> Option<i64> {
        match &self.kind {
            Kind::Cron(c) => {
                let after = Utc.timestamp_millis_opt(after).single()?;
                c.next_after(self.tz, after).map(|t| t.timestamp_millis())
            }
            Kind::Every { every_ms, anchor_ms } => {
                if after < *anchor_ms {
                    return Some(*anchor_ms);
                }
                let k = (after - anchor_ms) / every_ms + 1;
                anchor_ms.checked_add(k.checked_mul(*every_ms)?)
            }
            Kind::At(at) => at.iter().copied().find(|t| *t > after),
            // The first fire of a chain (a put, a resume): the next whole second.
            Kind::AfterPrevious { .. } => after.div_euclid(1000).checked_add(1)?.checked_mul(1000),
        }
    }

    /// An `after_previous` schedule's delay: its fires after the first are set by the store's
    /// chain, not by `next_after_ms`.
    pub fn after_previous_ms(&self) -> Option<i64> {
        match self.kind {
            Kind::AfterPrevious { delay_ms } => Some(delay_ms),
            _ => None,
        }
    }

    /// Why a schedule with no instant after `now_ms` is refused, naming the field that ends it:
    /// an end in the past; else a kind with no instant from now (or from start_time) on; else the
    /// end comes before the first instant.
    pub fn never_fires(&self, spec: &JobSpec, now_ms: i64) -> Option<Error> {
        if self.next_after_ms(now_ms).is_some() {
            return None;
        }
        let past = |t: i64| format!("{} is in the past: the job would never fire", rfc3339(t));
        if let Some(end) = self.end_ms.filter(|e| *e <= now_ms) {
            return Some(Error::invalid("end_time", past(end)));
        }
        let start = self.start_ms.filter(|s| *s > now_ms);
        let from = start.map_or(now_ms, |s| s - 1);
        let kind_fires = from.checked_sub(self.offset_ms).and_then(|f| self.kind_next(f)).is_some();
        Some(match (&self.kind, start) {
            (_, _) if kind_fires && self.end_ms.is_none() => {
                Error::invalid("spread", "moves every instant left past 2199: the job would never fire")
            }
            (_, _) if kind_fires => {
                Error::invalid("end_time", "no instant of the schedule falls before it: the job would never fire")
            }
            (Kind::At(_), Some(s)) => Error::invalid(
                "at",
                format!("no instant is at or after start_time ({}): the job would never fire", rfc3339(s)),
            ),
            (Kind::At(at), None) if at.len() == 1 => Error::invalid("at", past(at[0])),
            (Kind::At(_), None) => Error::invalid("at", "every instant is in the past: the job would never fire"),
            (Kind::Cron(_), Some(s)) => {
                Error::invalid("cron", format!("'{}' never fires after start_time ({})", spec.cron, rfc3339(s)))
            }
            (Kind::Cron(_), None) => Error::invalid("cron", format!("'{}' never fires after now", spec.cron)),
            // An interval always has a next instant, short of the year 2200.
            (Kind::Every { .. }, _) => Error::invalid("every", "its grid has no instant before 2200"),
            (Kind::AfterPrevious { .. }, _) => Error::invalid("after_previous", "no instant before 2200"),
        })
    }

    /// The next `count` instants after `after_ms`, each with notes on what shaped it: a
    /// daylight-saving gap that moved it, the pass of a repeated hour, the local time an interval
    /// moved to, the spread, and the last instant. What `plan` claims, in order (a property test
    /// holds the scheduler to it).
    pub fn preview(&self, after_ms: i64, count: usize) -> Vec<Upcoming> {
        let plain =
            |t| self.next_after_ms(t).map(|at_ms| Shaped { at_ms, notes: Vec::new(), skipped: false, moved: false });
        self.preview_with(after_ms, count, &plain)
    }

    /// `preview` over the instants `next` gives (the instant after one), each with its own notes
    /// first.
    pub fn preview_with(&self, after_ms: i64, count: usize, next: &dyn Fn(i64) -> Option<Shaped>) -> Vec<Upcoming> {
        let mut out = Vec::new();
        let mut prev = after_ms;
        let mut prev_offset = self.utc_offset_s(after_ms);
        while out.len() < count {
            let Some(shaped) = next(prev) else { break };
            let t = shaped.at_ms;
            let mut notes = shaped.notes;
            let base = t - self.offset_ms;
            if let (Kind::Cron(c), false) = (&self.kind, shaped.moved) {
                notes.extend(self.dst_note(c, base));
            }
            let offset = self.utc_offset_s(t);
            if matches!(self.kind, Kind::Every { .. }) && offset != prev_offset && !out.is_empty() {
                notes.push(format!(
                    "daylight saving: local time moves by {} (an interval is absolute time)",
                    duration_text((offset - prev_offset) * 1000)
                ));
            }
            if self.offset_ms > 0 && !shaped.moved {
                notes.push(format!(
                    "spread: {} after {}",
                    duration_text(self.offset_ms),
                    self.local(base).format("%Y-%m-%d %H:%M:%S")
                ));
            }
            if let Kind::AfterPrevious { delay_ms } = self.kind {
                // The fires after it depend on how long each runs: the preview ends here.
                notes.push(format!("then each fire starts {} after the previous one ends", duration_text(delay_ms)));
                out.push(Upcoming { at_ms: t, notes, skipped: shaped.skipped });
                break;
            }
            if next(t).is_none() {
                notes.push(match (&self.kind, self.end_ms) {
                    (_, Some(end)) if self.kind_next(t - self.offset_ms).is_some() => {
                        format!("last fire: end_time is {}", rfc3339(end))
                    }
                    (Kind::At(_), _) => "last fire: the job is completed after it".to_string(),
                    _ => "last fire".to_string(),
                });
            }
            out.push(Upcoming { at_ms: t, notes, skipped: shaped.skipped });
            prev = t;
            prev_offset = offset;
        }
        out
    }

    /// The instant in the job's zone.
    pub fn local(&self, ms: i64) -> DateTime<Tz> {
        self.tz.from_utc_datetime(&super::ms_to_datetime(ms).naive_utc())
    }

    fn utc_offset_s(&self, ms: i64) -> i64 {
        i64::from(self.local(ms).offset().fix().local_minus_utc())
    }

    /// A cron fire at a daylight-saving change or in a repeated hour says so.
    fn dst_note(&self, c: &Cron, t: i64) -> Option<String> {
        let wall = self.local(t).naive_local();
        if self.utc_offset_s(t - 1) < self.utc_offset_s(t) && !c.matches_wall_clock(wall) {
            return Some(format!(
                "daylight-saving gap: its local time does not exist that day; fires at {}, when the clocks jump",
                wall.format("%H:%M:%S")
            ));
        }
        match self.tz.from_local_datetime(&wall) {
            chrono::LocalResult::Ambiguous(first, _) => Some(if first.timestamp_millis() == t {
                format!("daylight-saving overlap: {} happens twice; this is the first pass", wall.format("%H:%M:%S"))
            } else {
                format!("daylight-saving overlap: {} happens twice; this is the second pass", wall.format("%H:%M:%S"))
            }),
            _ => None,
        }
    }
}

/// An `after_previous` job's next fire once its fire at `sched_ms` ended at `end_ms`: the end plus
/// the delay (never at or before `sched_ms`); None past its end_time. chain.lua computes the same.
pub fn chain_next_ms(spec: &JobSpec, sched_ms: i64, end_ms: i64) -> Option<i64> {
    let t = end_ms.saturating_add(spec.after_previous_ms as i64).max(sched_ms.saturating_add(1));
    (t <= spec.end_ms.unwrap_or(END_OF_TIME_MS).min(END_OF_TIME_MS)).then_some(t)
}

/// A job's spread offset: FNV-1a of its id, in whole seconds below `spread_ms` (0 without one).
/// Fixed here, so every node and every version gives the same job the same offset.
pub fn spread_offset_ms(job_id: &str, spread_ms: u64) -> i64 {
    let secs = spread_ms / 1000;
    if secs == 0 {
        return 0;
    }
    ((fnv1a(job_id) % secs) * 1000) as i64
}

/// A fire's jitter: how long after its instant it starts, in [0, `jitter_ms`), whole ms: FNV-1a of
/// its fire id, so every node, a restarted one and the preview give a fire the same delay, and two
/// fires of a job almost never the same. 0 without a jitter.
pub fn fire_jitter_ms(fire_id: &str, jitter_ms: u64) -> u64 {
    match jitter_ms {
        0 => 0,
        j => fnv1a(fire_id) % j,
    }
}

/// FNV-1a, 64 bits: fixed here, so every node and every release hashes the same.
fn fnv1a(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn check_instant(field: &str, t: i64) -> Result<()> {
    if (0..END_OF_TIME_MS).contains(&t) {
        Ok(())
    } else {
        Err(Error::invalid(field, "must lie between 1970 and 2199"))
    }
}

/// An instant as people write it: RFC 3339 with an offset (`2026-12-24T18:00:00Z`), or a local
/// date and time in `tz` (`2026-12-24T18:00`, `2026-12-24 18:00:30`, `2026-12-24` for midnight).
/// A local time a daylight-saving gap skips is refused; one an overlap repeats is its first pass.
pub fn parse_instant(s: &str, tz: Tz) -> std::result::Result<i64, String> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_millis());
    }
    let naive = ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
        .or_else(|| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok().and_then(|d| d.and_hms_opt(0, 0, 0)))
        .ok_or_else(|| {
            format!(
                "'{}' is not a time (RFC 3339 such as 2026-12-24T18:00:00Z, or a local 2026-12-24T18:00 in the job's \
                 zone)",
                crate::redact::value(s)
            )
        })?;
    match tz.from_local_datetime(&naive) {
        chrono::LocalResult::Single(t) | chrono::LocalResult::Ambiguous(t, _) => Ok(t.timestamp_millis()),
        chrono::LocalResult::None => Err(format!("{naive} does not exist in {tz} (a daylight-saving gap)")),
    }
}

/// "70m", "1h30m", "250ms", "-1h": for errors and notes.
pub fn duration_text(ms: i64) -> String {
    let sign = if ms < 0 { "-" } else { "" };
    // unsigned_abs: i64::MIN has no negation.
    format!("{sign}{}", length_text(ms.unsigned_abs()))
}

/// A length of time as `duration_text` says it, from a u64 of ms as given (2^64 - 1 prints whole).
pub fn length_text(ms: u64) -> String {
    if ms == 0 {
        return "0s".into();
    }
    if !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    let (d, h, m, s) = (ms / 86_400_000, ms / 3_600_000 % 24, ms / 60_000 % 60, ms / 1000 % 60);
    let mut out = String::new();
    for (n, unit) in [(d, "d"), (h, "h"), (m, "m"), (s, "s")] {
        if n != 0 {
            out.push_str(&format!("{n}{unit}"));
        }
    }
    out
}

pub fn rfc3339(ms: i64) -> String {
    super::ms_to_datetime(ms).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> i64 {
        DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis()
    }

    fn spec(f: impl FnOnce(&mut JobSpec)) -> JobSpec {
        let mut s = JobSpec { id: "j".into(), handler: "noop".into(), ..Default::default() };
        f(&mut s);
        s
    }

    fn instants(s: &Schedule, after: i64, n: usize) -> Vec<String> {
        s.preview(after, n).into_iter().map(|u| rfc3339(u.at_ms)).collect()
    }

    /// `after_previous`: the first fire at the next whole second (or start_time); the preview shows
    /// that one only, saying what follows; each next is the end plus the delay, never at or before
    /// the fire it follows, none past end_time.
    #[test]
    fn after_previous_starts_at_the_next_second_and_follows_each_end() {
        let s = Schedule::of(&spec(|s| s.after_previous_ms = 300_000)).unwrap();
        assert_eq!(s.next_after_ms(ms("2026-03-01T09:15:00.400Z")), Some(ms("2026-03-01T09:15:01Z")));
        assert_eq!(s.next_after_ms(ms("2026-03-01T09:15:00Z")), Some(ms("2026-03-01T09:15:01Z")));
        let p = s.preview(ms("2026-03-01T09:15:00.400Z"), 10);
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].notes, ["then each fire starts 5m after the previous one ends"]);
        let later = Schedule::of(&spec(|s| {
            s.after_previous_ms = 300_000;
            s.start_ms = Some(ms("2026-04-01T00:00:00Z"));
        }))
        .unwrap();
        assert_eq!(later.next_after_ms(ms("2026-03-01T09:15:00Z")), Some(ms("2026-04-01T00:00:00Z")));
        let sp = spec(|s| {
            s.after_previous_ms = 300_000;
            s.end_ms = Some(ms("2026-03-01T10:00:00Z"));
        });
        let t = ms("2026-03-01T09:00:00Z");
        assert_eq!(chain_next_ms(&sp, t, t + 60_000), Some(t + 360_000));
        assert_eq!(chain_next_ms(&sp, t, t - 1_000_000), Some(t + 1), "never at or before its fire");
        assert_eq!(chain_next_ms(&sp, t, ms("2026-03-01T09:56:00Z")), None, "past end_time");
        let spread = spec(|s| {
            s.after_previous_ms = 300_000;
            s.spread_ms = 60_000;
        });
        assert!(Schedule::of(&spread).is_err());
    }

    /// A fire's jitter: below its bound, the same for the same fire id, mostly not for two; over
    /// 30 s is refused. (The preview's note of it is the API's: PreviewSchedule, tested with a node.)
    #[test]
    fn a_fires_jitter_is_its_own_and_below_the_bound() {
        let ids: Vec<String> = (0..200).map(|i| format!("j@{}", 1_000_000 + i * 1000)).collect();
        let js: Vec<u64> = ids.iter().map(|f| fire_jitter_ms(f, 1500)).collect();
        assert!(js.iter().all(|j| *j < 1500));
        assert_eq!(js, ids.iter().map(|f| fire_jitter_ms(f, 1500)).collect::<Vec<_>>());
        assert!(js.iter().collect::<std::collections::HashSet<_>>().len() > 150, "{js:?}");
        assert_eq!(fire_jitter_ms("j@1", 0), 0);
        let over = spec(|s| {
            s.every_ms = 60_000;
            s.jitter_ms = 30_001;
        });
        assert_eq!(Schedule::of(&over).map(|_| ()).unwrap_err().to_string(), "jitter: 30001ms is more than 30s");
    }

    #[test]
    fn every_is_a_grid_from_its_anchor_that_starts_at_the_anchor() {
        let anchor = ms("2026-03-01T09:15:00Z");
        let s = Schedule::of(&spec(|s| {
            s.every_ms = 70 * 60_000;
            s.anchor_ms = Some(anchor);
        }))
        .unwrap();
        // Before the anchor: the anchor is the first fire.
        assert_eq!(
            instants(&s, ms("2026-01-01T00:00:00Z"), 3),
            ["2026-03-01T09:15:00Z", "2026-03-01T10:25:00Z", "2026-03-01T11:35:00Z"]
        );
        // From any instant the grid is the same: a restart or a new master finds the same fires.
        assert_eq!(s.next_after_ms(ms("2026-03-01T10:25:00Z")), Some(ms("2026-03-01T11:35:00Z")));
        assert_eq!(s.next_after_ms(ms("2026-03-01T10:24:59.999Z")), Some(ms("2026-03-01T10:25:00Z")));
        // No anchor: counted from the Unix epoch.
        let hourly = Schedule::of(&spec(|s| s.every_ms = 3_600_000)).unwrap();
        assert_eq!(hourly.next_after_ms(ms("2026-03-01T10:24:59Z")), Some(ms("2026-03-01T11:00:00Z")));
    }

    #[test]
    fn every_is_absolute_time_across_daylight_saving_and_says_so() {
        // New York springs forward on 2026-03-08 at 02:00 EST (07:00Z).
        let s = Schedule::of(&spec(|s| {
            s.every_ms = 86_400_000;
            s.anchor_ms = Some(ms("2026-03-06T14:00:00Z")); // 09:00 EST
            s.time_zone = "America/New_York".into();
        }))
        .unwrap();
        let p = s.preview(ms("2026-03-06T00:00:00Z"), 4);
        let local: Vec<String> = p.iter().map(|u| s.local(u.at_ms).format("%d %H:%M").to_string()).collect();
        assert_eq!(local, ["06 09:00", "07 09:00", "08 10:00", "09 10:00"]);
        assert!(p[1].notes.is_empty(), "{:?}", p[1].notes);
        assert_eq!(p[2].notes, ["daylight saving: local time moves by 1h (an interval is absolute time)"]);
        assert!(p[3].notes.is_empty());
    }

    #[test]
    fn a_cron_preview_names_the_gap_and_the_overlap() {
        let ny = |cron: &str| {
            Schedule::of(&spec(|s| {
                s.cron = cron.into();
                s.time_zone = "America/New_York".into();
            }))
            .unwrap()
        };
        let gap = ny("0 30 2 * * *").preview(ms("2026-03-07T12:00:00Z"), 2);
        assert_eq!(rfc3339(gap[0].at_ms), "2026-03-08T07:00:00Z");
        assert_eq!(
            gap[0].notes,
            ["daylight-saving gap: its local time does not exist that day; fires at 03:00:00, when the clocks jump"]
        );
        assert!(gap[1].notes.is_empty());
        // A job at 03:00 itself matched: no gap note.
        assert!(ny("0 0 3 * * *").preview(ms("2026-03-07T12:00:00Z"), 1)[0].notes.is_empty());
        let overlap = ny("0 30 * * * *").preview(ms("2026-11-01T05:00:00Z"), 2);
        assert_eq!(overlap[0].notes, ["daylight-saving overlap: 01:30:00 happens twice; this is the first pass"]);
        assert_eq!(overlap[1].notes, ["daylight-saving overlap: 01:30:00 happens twice; this is the second pass"]);
    }

    #[test]
    fn at_fires_its_instants_once_each_then_nothing() {
        let s =
            Schedule::of(&spec(|s| s.at_ms = vec![ms("2026-05-01T10:00:00Z"), ms("2026-04-01T10:00:00Z")])).unwrap();
        let p = s.preview(ms("2026-01-01T00:00:00Z"), 5);
        assert_eq!(p.len(), 2);
        assert_eq!(rfc3339(p[0].at_ms), "2026-04-01T10:00:00Z");
        assert_eq!(p[1].notes, ["last fire: the job is completed after it"]);
        assert_eq!(s.next_after_ms(ms("2026-05-01T10:00:00Z")), None);
        let why = s.never_fires(&JobSpec::default(), ms("2026-06-01T00:00:00Z")).unwrap();
        assert_eq!(why.to_string(), "at: every instant is in the past: the job would never fire");
    }

    #[test]
    fn bounds_hold_every_kind_and_the_last_fire_says_why() {
        let s = Schedule::of(&spec(|s| {
            s.cron = "0 0 * * * *".into();
            s.start_ms = Some(ms("2026-01-01T10:30:00Z"));
            s.end_ms = Some(ms("2026-01-01T13:00:00Z"));
        }))
        .unwrap();
        let p = s.preview(ms("2026-01-01T00:00:00Z"), 10);
        let got: Vec<String> = p.iter().map(|u| rfc3339(u.at_ms)).collect();
        assert_eq!(got, ["2026-01-01T11:00:00Z", "2026-01-01T12:00:00Z", "2026-01-01T13:00:00Z"]);
        assert_eq!(p[2].notes, ["last fire: end_time is 2026-01-01T13:00:00Z"]);
        // An instant at start_time itself fires.
        let at_start = Schedule::of(&spec(|s| {
            s.every_ms = 60_000;
            s.start_ms = Some(ms("2026-01-01T10:30:00Z"));
        }))
        .unwrap();
        assert_eq!(at_start.next_after_ms(0), Some(ms("2026-01-01T10:30:00Z")));
        let why = s.never_fires(&JobSpec::default(), ms("2026-02-01T00:00:00Z")).unwrap();
        assert_eq!(why.to_string(), "end_time: 2026-01-01T13:00:00Z is in the past: the job would never fire");
    }

    #[test]
    fn spread_is_stable_per_job_whole_seconds_inside_the_window() {
        let off = |id: &str| spread_offset_ms(id, 3_600_000);
        assert_eq!(off("report"), off("report"));
        let offsets: std::collections::BTreeSet<i64> = (0..1000).map(|i| off(&format!("job-{i}"))).collect();
        assert!(offsets.len() > 600, "a thousand jobs spread over {} distinct seconds", offsets.len());
        assert!(offsets.iter().all(|o| (0..3_600_000).contains(o) && o % 1000 == 0));
        let s = Schedule::of(&spec(|s| {
            s.id = "report".into();
            s.cron = "@daily".into();
            s.spread_ms = 3_600_000;
        }))
        .unwrap();
        // Midnight plus the offset is after midnight: the same day's fire is the first.
        let p = s.preview(ms("2026-01-01T00:00:00Z"), 2);
        let o = off("report");
        assert_eq!(p[0].at_ms, ms("2026-01-01T00:00:00Z") + o);
        assert_eq!(p[1].at_ms - p[0].at_ms, 86_400_000);
        assert_eq!(p[0].notes, [format!("spread: {} after 2026-01-01 00:00:00", duration_text(o))]);
    }

    #[test]
    fn bad_schedules_are_refused_naming_the_field() {
        let cases: Vec<(JobSpec, &str)> = vec![
            (spec(|_| {}), "cron: a job needs a schedule: cron, every, at or after_previous"),
            (
                spec(|s| {
                    s.cron = "@daily".into();
                    s.every_ms = 60_000;
                }),
                "every: a job has one schedule: give cron or every, not both",
            ),
            (
                spec(|s| {
                    s.every_ms = 60_000;
                    s.at_ms = vec![1];
                }),
                "at: a job has one schedule: give every or at, not both",
            ),
            (spec(|s| s.every_ms = 500), "every: 500ms is not between 1s and 366 days"),
            (spec(|s| s.every_ms = MAX_EVERY_MS + 1000), "every: 366d1s is not between 1s and 366 days"),
            (
                spec(|s| {
                    s.cron = "@daily".into();
                    s.anchor_ms = Some(0);
                }),
                "anchor: only with every (it is where an interval's grid starts)",
            ),
            (spec(|s| s.at_ms = vec![-5]), "at: must lie between 1970 and 2199"),
            (spec(|s| s.at_ms = (0..101).collect()), "at: 101 instants; at most 100"),
            (
                spec(|s| {
                    s.every_ms = 60_000;
                    s.start_ms = Some(10_000);
                    s.end_ms = Some(5_000);
                }),
                "end_time: is before start_time",
            ),
            (
                spec(|s| {
                    s.cron = "@daily".into();
                    s.spread_ms = 500;
                }),
                "spread: 500ms is not between 1s and 24h",
            ),
            (
                spec(|s| {
                    s.cron = "@daily".into();
                    s.time_zone = "Mars/Olympus".into();
                }),
                "time_zone: unknown IANA time zone 'Mars/Olympus'",
            ),
        ];
        for (s, want) in cases {
            let got = Schedule::of(&s).map(|_| ()).unwrap_err().to_string();
            assert_eq!(got, want, "{s:?}");
        }
    }

    #[test]
    fn never_fires_names_what_ends_the_schedule() {
        let now = ms("2026-06-01T00:00:00Z");
        let why = |f: &dyn Fn(&mut JobSpec)| {
            let s = spec(f);
            Schedule::of(&s).unwrap().never_fires(&s, now).map(|e| e.to_string()).unwrap_or_default()
        };
        assert_eq!(why(&|s| s.at_ms = vec![ms("2026-07-01T00:00:00Z")]), "");
        assert_eq!(
            why(&|s| {
                s.at_ms = vec![ms("2026-07-01T00:00:00Z")];
                s.start_ms = Some(ms("2026-08-01T00:00:00Z"));
            }),
            "at: no instant is at or after start_time (2026-08-01T00:00:00Z): the job would never fire"
        );
        assert_eq!(
            why(&|s| {
                s.cron = "0 0 0 1 1 * 2026".into();
                s.start_ms = Some(ms("2026-08-01T00:00:00Z"));
            }),
            "cron: '0 0 0 1 1 * 2026' never fires after start_time (2026-08-01T00:00:00Z)"
        );
        assert_eq!(
            why(&|s| {
                s.cron = "@daily".into();
                s.start_ms = Some(ms("2026-08-01T10:00:00Z"));
                s.end_ms = Some(ms("2026-08-01T20:00:00Z"));
            }),
            "end_time: no instant of the schedule falls before it: the job would never fire"
        );
    }

    #[test]
    fn durations_print_whole_even_at_the_limits() {
        assert_eq!(duration_text(4_200_000), "1h10m");
        assert_eq!(duration_text(-1500), "-1500ms");
        assert_eq!(duration_text(i64::MIN), "-9223372036854775808ms");
        assert_eq!(length_text(u64::MAX), "18446744073709551615ms");
        assert_eq!(length_text(9_223_372_036_854_775_000), "106751991167d7h12m55s");
    }

    #[test]
    fn instants_parse_as_rfc3339_or_local_time_in_the_zone() {
        let ny: Tz = "America/New_York".parse().unwrap();
        assert_eq!(parse_instant("2026-12-24T18:00:00Z", ny), Ok(ms("2026-12-24T18:00:00Z")));
        assert_eq!(parse_instant("2026-12-24T18:00", ny), Ok(ms("2026-12-24T23:00:00Z")));
        assert_eq!(parse_instant("2026-12-24 18:00:30", ny), Ok(ms("2026-12-24T23:00:30Z")));
        assert_eq!(parse_instant("2026-12-24", ny), Ok(ms("2026-12-24T05:00:00Z")));
        // The first pass of a repeated hour; a skipped one is refused.
        assert_eq!(parse_instant("2026-11-01T01:30", ny), Ok(ms("2026-11-01T05:30:00Z")));
        assert_eq!(
            parse_instant("2026-03-08T02:30", ny),
            Err("2026-03-08 02:30:00 does not exist in America/New_York (a daylight-saving gap)".into())
        );
        assert!(parse_instant("tomorrow", ny).unwrap_err().contains("is not a time"));
    }
}
