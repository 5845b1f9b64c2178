//! Concurrency limits shared by a group of jobs (PROTOCOL §3.21): a limit names the jobs it covers
//! (by handler, or by one label) and how many of their fires may run at once, cluster-wide. This
//! module owns the definition and its checks; the slots themselves are the store's
//! (`store::LimitStore`), taken by the worker before a handler begins. Uses: `error`.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::JobSpec;
use crate::error::{Error, Result};

/// The most fires one limit lets run at once.
pub const MAX_LIMIT: u32 = 100_000;
/// The most limits a cluster keeps.
pub const MAX_LIMITS: usize = 1_000;

/// A limit as the API gives it and the store keeps it (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limit {
    pub name: String,
    pub max: u32,
    pub covers: Covers,
}

/// Which jobs a limit covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Covers {
    /// Jobs of this handler.
    Handler(String),
    /// Jobs with this label (key, value).
    Label(String, String),
}

impl Limit {
    /// From the API's fields: exactly one of `handler` and `label` (`key=value`).
    pub fn new(name: &str, max: u32, handler: &str, label: &str) -> Result<Limit> {
        super::validate_name("name", name, 64)?;
        if max == 0 || max > MAX_LIMIT {
            return Err(Error::invalid("max", format!("{max} is not between 1 and {MAX_LIMIT}")));
        }
        let covers = match (handler.is_empty(), label.is_empty()) {
            (false, true) => {
                // Any name a handler may have (an invoke target's `_job` too): printable, no spaces.
                if handler.len() > 128 || handler.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    return Err(Error::invalid("handler", format!("'{handler}' is not a handler name")));
                }
                Covers::Handler(handler.to_string())
            }
            (true, false) => {
                let (k, v) = label
                    .split_once('=')
                    .ok_or_else(|| Error::invalid("label", format!("'{label}' is not key=value")))?;
                let one = BTreeMap::from([(k.to_string(), v.to_string())]);
                super::validate_labels(&one).map_err(|e| Error::invalid("label", e.to_string()))?;
                Covers::Label(k.to_string(), v.to_string())
            }
            (true, true) => return Err(Error::invalid("handler", "give the jobs it covers: a handler or a label")),
            (false, false) => return Err(Error::invalid("label", "give a handler or a label, not both")),
        };
        Ok(Limit { name: name.to_string(), max, covers })
    }

    /// Whether it covers the job.
    pub fn covers(&self, job: &JobSpec) -> bool {
        match &self.covers {
            Covers::Handler(h) => job.handler == *h,
            Covers::Label(k, v) => job.labels.get(k) == Some(v),
        }
    }

    /// The API's `handler` and `label` fields.
    pub fn fields(&self) -> (String, String) {
        match &self.covers {
            Covers::Handler(h) => (h.clone(), String::new()),
            Covers::Label(k, v) => (String::new(), format!("{k}={v}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_covers_its_handler_or_its_label() {
        let by_handler = Limit::new("db", 3, "mysql.report", "").expect("valid");
        let by_label = Limit::new("reports", 30, "", "team=reports").expect("valid");
        let mut job = JobSpec { handler: "mysql.report".into(), ..Default::default() };
        assert!(by_handler.covers(&job) && !by_label.covers(&job));
        job.labels.insert("team".into(), "reports".into());
        assert!(by_label.covers(&job));
        job.labels.insert("team".into(), "other".into());
        assert!(!by_label.covers(&job));
        assert_eq!(by_label.fields(), (String::new(), "team=reports".to_string()));
    }

    #[test]
    fn bad_limits_name_the_field() {
        for (name, max, handler, label, field) in [
            ("", 3, "h", "", "name"),
            ("-x", 3, "h", "", "name"),
            ("a b", 3, "h", "", "name"),
            ("ok", 0, "h", "", "max"),
            ("ok", MAX_LIMIT + 1, "h", "", "max"),
            ("ok", 3, "", "", "handler"),
            ("ok", 3, "h", "a=b", "label"),
            ("ok", 3, "", "novalue", "label"),
            ("ok", 3, "", "bad key=v", "label"),
            ("ok", 3, "bad handler", "", "handler"),
            ("ok", 3, "tab\there", "", "handler"),
        ] {
            let e = Limit::new(name, max, handler, label).expect_err(name).to_string();
            assert!(e.starts_with(&format!("{field}: ")), "{name} {max} {handler} {label}: {e}");
        }
    }
}
