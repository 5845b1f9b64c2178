//! The jobs file: what an operator writes (`rota server --jobs FILE`'s `[[job]]` tables, and
//! `rota job put --file`, which also takes one bare table of fields). Owns the file's shape, read
//! strictly: an unknown key is refused with its name and line (a misspelt `timeot` must not become
//! a job without a timeout), and durations are the command line's (`timeout = "30s"`). The store
//! keeps reading `JobSpec` JSON tolerantly; only what a person writes is strict.
//! Uses: `job` (JobSpec, Declared, parse_duration). Parse errors are toml's: the caller names the
//! file (`config::toml_error`, which quotes no values).
use std::collections::BTreeMap;

use serde::Deserialize;

use super::{parse_duration, Concurrency, Declared, JobSpec, Misfire, Priority, Recovery, Routing, Shards};
use crate::error::{Error, Result};

/// One job as the file gives it. Every key a file may hold; any other is an error.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileJob {
    pub id: String,
    /// The schedule: one of `cron`, `every` ("70m"), `at` (one time or a list), `after_previous`
    /// ("5m": a delay from the end of the previous fire).
    pub cron: String,
    pub every: Option<String>,
    pub after_previous: Option<String>,
    /// With `every`: the grid's first instant (RFC 3339, or a local time in `time_zone`).
    pub anchor: Option<String>,
    pub at: Option<Instants>,
    /// Read only to be refused: a file is applied at every start, so "10 minutes from now" would
    /// move each time (use `at`).
    pub after: Option<String>,
    /// Bounds: RFC 3339, or a local time in `time_zone`.
    pub start_time: Option<String>,
    pub end_time: Option<String>,
    /// "30m": a stable per-job offset below it.
    pub spread: Option<String>,
    /// Each fire's own delay past its instant, up to this ("10s").
    pub jitter: Option<String>,
    /// Most fires the job makes (absent: no limit).
    pub max_fires: u32,
    /// Pause after this many failed fires in a row (absent: never).
    pub pause_after_failures: u32,
    pub time_zone: String,
    pub handler: String,
    pub args: serde_json::Value,
    pub invoke: String,
    pub master_only: bool,
    /// allow (absent), forbid, replace, buffer_one or buffer.
    pub concurrency: String,
    /// With `concurrency = "buffer"`: how many fires may wait.
    pub buffer_limit: u32,
    pub misfire: Misfire,
    /// With `misfire = "fire_all"`: most missed fires one catch-up runs, and how far back it
    /// looks ("1h").
    pub catch_up_limit: u32,
    pub catch_up_window: Option<String>,
    pub recovery: Recovery,
    /// "30s", "5m", "250ms": as `--timeout` on the command line.
    pub timeout: Option<String>,
    /// The same in milliseconds (the older key, still read); not with `timeout`.
    pub timeout_ms: Option<u64>,
    pub retries: u32,
    /// "2s": as `--retry-backoff`.
    pub retry_backoff: Option<String>,
    /// The same in milliseconds; not with `retry_backoff`.
    pub retry_backoff_ms: Option<u64>,
    /// Absent: the file leaves the pause state to operators (`rota job pause/resume`).
    pub paused: Option<bool>,
    pub description: String,
    pub labels: BTreeMap<String, String>,
    /// Executions kept per job (absent: the node's default).
    pub keep_last: Option<u32>,
    /// Older failed executions kept besides (absent: the node's default).
    pub keep_failed: Option<u32>,
    /// A one-shot job stays after it completed (default: deleted after the execution retention).
    pub keep_completed: bool,
    /// Tags an external worker must have to run the job (`selector = { region = "eu" }`).
    pub selector: BTreeMap<String, String>,
    /// How a fire picks its node (`routing = "round_robin"`; absent: `load`).
    pub routing: Routing,
    /// For `routing = "failover"`: node ids, first choice first.
    pub failover_nodes: Vec<String>,
    /// Which queue list its fires wait in on a busy node (`priority = "high"`; absent: `normal`).
    pub priority: Priority,
    /// Sharding broadcast: `shards = 4`, or `shards = "all"` (one per live node); absent: 1.
    pub shards: Shards,
    /// Names of calendars (put with `rota calendar put`) whose excluded time the job skips.
    pub calendars: Vec<String>,
}

/// `at = "2026-12-24T18:00"` or `at = ["...", "..."]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Instants {
    One(String),
    Many(Vec<String>),
}

/// `[[job]]` and `[[calendar]]` tables and nothing else.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobsFile {
    #[serde(default)]
    pub job: Vec<FileJob>,
    /// Calendars the jobs name, put before the jobs at every start (a file's calendar replaces
    /// one changed through the API: the file is where it is kept).
    #[serde(default)]
    pub calendar: Vec<FileCalendar>,
}

/// A `[[calendar]]` table: `calendar::CalendarDef`'s fields, strictly.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileCalendar {
    pub name: String,
    #[serde(default)]
    pub time_zone: String,
    #[serde(default)]
    pub excluded_dates: Vec<String>,
    #[serde(default)]
    pub excluded_windows: Vec<String>,
    #[serde(default)]
    pub included_dates: Vec<String>,
    #[serde(default)]
    pub on_excluded: super::calendar::OnExcluded,
    #[serde(default)]
    pub description: String,
}

impl FileCalendar {
    pub fn def(&self) -> super::calendar::CalendarDef {
        super::calendar::CalendarDef {
            name: self.name.clone(),
            time_zone: self.time_zone.clone(),
            excluded_dates: self.excluded_dates.clone(),
            excluded_windows: self.excluded_windows.clone(),
            included_dates: self.included_dates.clone(),
            on_excluded: self.on_excluded,
            description: self.description.clone(),
        }
    }
}

/// A jobs file (`--jobs`): `[[job]]` and `[[calendar]]` tables.
pub fn parse_jobs_file(text: &str) -> std::result::Result<JobsFile, toml::de::Error> {
    toml::from_str::<JobsFile>(text)
}

/// `job put --file`: `[[job]]` tables (as in a jobs file), or one bare table of a job's fields.
pub fn parse_put_file(text: &str) -> std::result::Result<Vec<FileJob>, toml::de::Error> {
    let table: toml::Table = toml::from_str(text)?;
    if table.contains_key("job") || table.contains_key("calendar") {
        parse_jobs_file(text).map(|f| f.job)
    } else {
        toml::from_str::<FileJob>(text).map(|j| vec![j])
    }
}

impl FileJob {
    /// The job this declares. Checks only what is the file's own (a duration's form, a value given
    /// twice); the definition itself is validated where every definition is (`Job::new`).
    pub fn declared(&self) -> Result<Declared> {
        if self.after.is_some() {
            return Err(Error::invalid(
                "after",
                "not in a jobs file, which is applied at every start (it would move each time): give `at`",
            ));
        }
        let tz = super::cron::parse_time_zone(&self.time_zone).map_err(|e| Error::invalid("time_zone", e))?;
        let instant =
            |key: &str, text: &str| super::schedule::parse_instant(text, tz).map_err(|e| Error::invalid(key, e));
        let optional = |key: &str, text: &Option<String>| text.as_deref().map(|t| instant(key, t)).transpose();
        let at = match &self.at {
            None => Vec::new(),
            Some(Instants::One(t)) => vec![instant("at", t)?],
            Some(Instants::Many(ts)) if ts.is_empty() => return Err(Error::invalid("at", "needs at least one time")),
            Some(Instants::Many(ts)) => ts.iter().map(|t| instant("at", t)).collect::<Result<_>>()?,
        };
        let spec = JobSpec {
            id: self.id.clone(),
            cron: self.cron.clone(),
            every_ms: match duration_ms("every", self.every.as_deref(), None)? {
                0 if self.every.is_some() => return Err(Error::invalid("every", "must be longer than 0")),
                ms => ms,
            },
            anchor_ms: optional("anchor", &self.anchor)?,
            at_ms: at,
            after_previous_ms: match duration_ms("after_previous", self.after_previous.as_deref(), None)? {
                0 if self.after_previous.is_some() => {
                    return Err(Error::invalid("after_previous", "must be longer than 0"))
                }
                ms => ms,
            },
            start_ms: optional("start_time", &self.start_time)?,
            end_ms: optional("end_time", &self.end_time)?,
            spread_ms: duration_ms("spread", self.spread.as_deref(), None)?,
            jitter_ms: duration_ms("jitter", self.jitter.as_deref(), None)?,
            max_fires: self.max_fires,
            pause_after_failures: self.pause_after_failures,
            time_zone: self.time_zone.clone(),
            handler: self.handler.clone(),
            args: self.args.clone(),
            invoke: self.invoke.clone(),
            master_only: self.master_only,
            concurrency: Concurrency::from_parts(&self.concurrency, self.buffer_limit)?,
            misfire: self.misfire,
            catch_up_limit: self.catch_up_limit,
            catch_up_window_ms: duration_ms("catch_up_window", self.catch_up_window.as_deref(), None)?,
            recovery: self.recovery,
            timeout_ms: duration_ms("timeout", self.timeout.as_deref(), self.timeout_ms)?,
            retries: self.retries,
            retry_backoff_ms: duration_ms("retry_backoff", self.retry_backoff.as_deref(), self.retry_backoff_ms)?,
            paused: false,
            description: self.description.clone(),
            labels: self.labels.clone(),
            keep_last: self.keep_last.unwrap_or(0),
            keep_failed: self.keep_failed,
            keep_completed: self.keep_completed,
            selector: self.selector.clone(),
            routing: self.routing,
            failover_nodes: self.failover_nodes.clone(),
            priority: self.priority,
            shards: self.shards,
            calendars: self.calendars.clone(),
        };
        Ok(Declared { spec, paused: self.paused })
    }
}

/// What applying a declared job over what is stored comes to (`plan_apply`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Apply {
    /// Not stored: create it.
    Create,
    /// The file has not changed since it was last applied: what is stored stays, including what was
    /// changed through the API since (`drift`, the fields; empty: nothing) and the pause state.
    Keep { drift: Vec<&'static str> },
    /// The file changed since it was last applied, or never was: its definition is written (the
    /// newer intent wins), replacing the fields in `overwrites`, changed through the API (empty:
    /// none). The pause state changes only if the file says `paused`.
    Write { overwrites: Vec<&'static str> },
}

/// Decides what the jobs file does to one job, from the declaration and what is stored: its
/// definition and the declaration last applied to it. Pure; the caller writes under a
/// compare-and-set, so a concurrent writer makes it decide again on what that one wrote.
pub fn plan_apply(declared: &Declared, stored: Option<(&JobSpec, Option<&Declared>)>) -> Apply {
    let Some((spec, applied)) = stored else { return Apply::Create };
    match applied {
        Some(last) if last == declared => {
            let mut drift = super::differing_fields(spec, &declared.spec);
            if declared.paused.is_some_and(|p| p != spec.paused) {
                drift.push("paused");
            }
            Apply::Keep { drift }
        }
        Some(last) => {
            // What the API changed since the last apply, and this write undoes.
            let api = super::differing_fields(spec, &last.spec);
            let overwrites =
                super::differing_fields(spec, &declared.spec).into_iter().filter(|f| api.contains(f)).collect();
            Apply::Write { overwrites }
        }
        // Never applied from a file (put through the API, or stored before rota kept the applied
        // declaration): every difference may be someone's change.
        None => Apply::Write { overwrites: super::differing_fields(spec, &declared.spec) },
    }
}

/// A duration given as text (`key`) or in milliseconds (`key_ms`), not both.
fn duration_ms(key: &str, text: Option<&str>, ms: Option<u64>) -> Result<u64> {
    match (text, ms) {
        (Some(_), Some(_)) => Err(Error::invalid(key, format!("give {key} or {key}_ms, not both"))),
        (Some(t), None) => {
            let d = parse_duration(t).map_err(|e| Error::invalid(key, e))?;
            u64::try_from(d.as_millis()).map_err(|_| Error::invalid(key, "is out of range"))
        }
        (None, ms) => Ok(ms.unwrap_or(0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file's jobs (its calendars aside).
    fn parse_jobs(text: &str) -> std::result::Result<Vec<FileJob>, toml::de::Error> {
        parse_jobs_file(text).map(|f| f.job)
    }

    #[test]
    fn human_durations_and_milliseconds_both_read() {
        let jobs = parse_jobs(
            "[[job]]\nid = \"a\"\ncron = \"@daily\"\nhandler = \"noop\"\ntimeout = \"5s\"\nretry_backoff = \"250ms\"\n\
             [[job]]\nid = \"b\"\ncron = \"@daily\"\nhandler = \"noop\"\ntimeout_ms = 7000\nretry_backoff_ms = 2000\n",
        )
        .expect("parses");
        let d: Vec<Declared> = jobs.iter().map(|j| j.declared().expect("valid")).collect();
        assert_eq!((d[0].spec.timeout_ms, d[0].spec.retry_backoff_ms), (5000, 250));
        assert_eq!((d[1].spec.timeout_ms, d[1].spec.retry_backoff_ms), (7000, 2000));
        assert_eq!(d[0].paused, None, "a file that does not say paused leaves the pause state alone");
    }

    #[test]
    fn history_caps_read_and_absent_ones_mean_the_nodes() {
        let jobs = parse_jobs(
            "[[job]]\nid = \"a\"\ncron = \"@daily\"\nhandler = \"noop\"\nkeep_last = 5\nkeep_failed = 0\n\
             [[job]]\nid = \"b\"\ncron = \"@daily\"\nhandler = \"noop\"\n",
        )
        .expect("parses");
        let d: Vec<Declared> = jobs.iter().map(|j| j.declared().expect("valid")).collect();
        assert_eq!((d[0].spec.keep_last, d[0].spec.keep_failed), (5, Some(0)));
        assert_eq!((d[1].spec.keep_last, d[1].spec.keep_failed), (0, None));
        let text = "[[job]]\nid = \"a\"\nkeep_last = -1\n";
        let e = parse_jobs(text).expect_err("negative");
        let said = crate::config::toml_error("f.toml", text, &e).to_string();
        assert!(said.contains("line 3") && said.contains("keep_last"), "{said}");
    }

    #[test]
    fn priority_reads_by_name_and_an_unknown_one_is_refused() {
        let d = parse_jobs(
            "[[job]]\nid = \"a\"\ncron = \"@daily\"\nhandler = \"noop\"\npriority = \"high\"\n\
             [[job]]\nid = \"b\"\ncron = \"@daily\"\nhandler = \"noop\"\n",
        )
        .unwrap();
        assert_eq!(d[0].declared().unwrap().spec.priority, Priority::High);
        assert_eq!(d[1].declared().unwrap().spec.priority, Priority::Normal);
        let e = parse_jobs("[[job]]\nid = \"a\"\ncron = \"@daily\"\nhandler = \"noop\"\npriority = \"urgent\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("priority") && e.contains("urgent"), "{e}");
    }

    #[test]
    fn shards_read_as_a_count_or_all_and_anything_else_is_refused() {
        let job = |v: &str| format!("[[job]]\nid = \"a\"\ncron = \"@daily\"\nhandler = \"noop\"\nshards = {v}\n");
        let d = |v: &str| parse_jobs(&job(v)).map(|d| d[0].declared().map(|d| d.spec.shards));
        assert_eq!(d("4").unwrap().unwrap(), Shards::Count(4));
        assert_eq!(d("\"all\"").unwrap().unwrap(), Shards::PerNode);
        assert_eq!(d("1").unwrap().unwrap(), Shards::One);
        for bad in ["\"half\"", "-2", "2.5", "true", "[]"] {
            let e = parse_jobs(&job(bad)).map(|_| ()).unwrap_err().to_string();
            assert!(e.contains("shards"), "{bad}: {e}");
            // What a valid value is, never serde's words for its own types.
            assert!(e.contains("count from 1 to 128") && !e.contains("untagged"), "{bad}: {e}");
        }
        // A count over the most is refused when the job is made.
        let spec = parse_jobs(&job("129")).unwrap()[0].declared().unwrap().spec;
        let e = crate::job::Job::new(spec).map(|_| ()).unwrap_err().to_string();
        assert!(e.contains("shards") && e.contains("128"), "{e}");
    }

    #[test]
    fn routing_reads_by_name_and_an_unknown_one_names_the_key() {
        let jobs = parse_jobs(
            "[[job]]\nid = \"a\"\ncron = \"@daily\"\nhandler = \"noop\"\nrouting = \"failover\"\n\
             failover_nodes = [\"n2\", \"n1\"]\n\
             [[job]]\nid = \"b\"\ncron = \"@daily\"\nhandler = \"noop\"\nrouting = \"least_recently_used\"\n\
             [[job]]\nid = \"c\"\ncron = \"@daily\"\nhandler = \"noop\"\n",
        )
        .expect("parses");
        let d: Vec<Declared> = jobs.iter().map(|j| j.declared().expect("valid")).collect();
        assert_eq!(
            (d[0].spec.routing, d[0].spec.failover_nodes.as_slice()),
            (Routing::Failover, &["n2".to_string(), "n1".to_string()][..])
        );
        assert_eq!(d[1].spec.routing, Routing::LeastRecentlyUsed);
        assert_eq!(d[2].spec.routing, Routing::Load, "absent: the default");
        let text = "[[job]]\nid = \"a\"\nrouting = \"nearest\"\n";
        let e = parse_jobs(text).expect_err("unknown routing");
        let said = crate::config::toml_error("f.toml", text, &e).to_string();
        assert!(said.contains("line 3") && said.contains("routing") && said.contains("round_robin"), "{said}");
    }

    #[test]
    fn a_duration_given_twice_or_malformed_names_the_key() {
        let both = FileJob { timeout: Some("5s".into()), timeout_ms: Some(5000), ..Default::default() };
        assert_eq!(both.declared().expect_err("both").to_string(), "timeout: give timeout or timeout_ms, not both");
        let bad = FileJob { retry_backoff: Some("2 parsecs".into()), ..Default::default() };
        assert!(bad
            .declared()
            .expect_err("bad")
            .to_string()
            .starts_with("retry_backoff: '2 parsecs' has unknown unit"));
    }

    #[test]
    fn unknown_keys_are_refused_in_both_shapes() {
        let e = parse_jobs("[[job]]\nid = \"a\"\ntimeot = \"5s\"\n").expect_err("unknown key");
        assert!(e.message().contains("unknown field `timeot`"), "{e}");
        let e = parse_put_file("id = \"a\"\ntimeot = \"5s\"\n").expect_err("unknown key");
        assert!(e.message().contains("unknown field `timeot`"), "{e}");
        let e = parse_jobs("[[jobs]]\nid = \"a\"\n").expect_err("unknown table");
        assert!(e.message().contains("unknown field `jobs`"), "{e}");
    }

    fn declared(description: &str, paused: Option<bool>) -> Declared {
        let spec = JobSpec { id: "j".into(), cron: "@daily".into(), handler: "noop".into(), ..Default::default() };
        Declared { spec: JobSpec { description: description.into(), ..spec }, paused }
    }

    #[test]
    fn the_file_applies_when_it_changed_and_keeps_api_changes_when_not() {
        let file = declared("from the file", None);
        assert_eq!(plan_apply(&file, None), Apply::Create);
        // Unchanged file, unchanged job: nothing to do, no drift.
        assert_eq!(plan_apply(&file, Some((&file.spec, Some(&file)))), Apply::Keep { drift: vec![] });
        // Unchanged file, job edited through the API (and paused): kept, the edit is the drift; a
        // file that does not say paused does not count the pause as drift.
        let edited = JobSpec { description: "on-call edit".into(), paused: true, ..file.spec.clone() };
        assert_eq!(plan_apply(&file, Some((&edited, Some(&file)))), Apply::Keep { drift: vec!["description"] });
        let says_running = declared("from the file", Some(false));
        assert_eq!(
            plan_apply(&says_running, Some((&edited, Some(&says_running)))),
            Apply::Keep { drift: vec!["description", "paused"] }
        );
        // The file changed: it applies, naming the API's change it replaces (and only that one).
        let newer = JobSpec { retries: 2, ..declared("newer file", None).spec };
        let newer = Declared { spec: newer, paused: None };
        assert_eq!(plan_apply(&newer, Some((&edited, Some(&file)))), Apply::Write { overwrites: vec!["description"] });
        assert_eq!(plan_apply(&newer, Some((&file.spec, Some(&file)))), Apply::Write { overwrites: vec![] });
        // Never applied from a file: every difference is named.
        assert_eq!(plan_apply(&file, Some((&edited, None))), Apply::Write { overwrites: vec!["description"] });
    }

    #[test]
    fn put_file_takes_job_tables_or_a_bare_table() {
        let one = parse_put_file("[[job]]\nid = \"a\"\ncron = \"@daily\"\n").expect("[[job]]");
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].id, "a");
        let bare = parse_put_file("id = \"b\"\ncron = \"@daily\"\npaused = true\n").expect("bare");
        assert_eq!((bare[0].id.as_str(), bare[0].paused), ("b", Some(true)));
    }
}
