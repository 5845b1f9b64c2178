//! The state of a fire (docs/PROTOCOL.md §4.1), shared by both stores: the in-memory store keeps it
//! typed; the Redis scripts write it as the `state` field of the fire hash, with exactly the strings
//! of `FireState::as_str`, and what the Redis store reads back is parsed here. A string that names no
//! state is an `UnknownFireState`, never a panic.
//! Uses: `execution` (a fire ends in the state of its last record).
use std::fmt;
use std::str::FromStr;

use crate::execution::ExecState;

/// Where a fire is: being handed over, taken, running, or over. Every hand-off compares and sets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FireState {
    /// Claimed (or triggered) and not yet taken by a node: being dispatched.
    Dispatching,
    /// Taken by a node (SubmitTask(s), its own or a manual fire, or stolen): in its processing list.
    Accepted,
    /// In a node's durable queue (no incarnation owns it until one takes it).
    Queued,
    /// Waiting for its job's no-overlap lock (concurrency replace or buffer), in the job's held
    /// list: the fire that lets the lock go hands it on (PROTOCOL §3.20).
    Held,
    Running,
    /// The states below end a fire. `finish` writes the state of the record it is given, so every
    /// state an execution can have is one a fire can end in.
    Succeeded,
    Failed,
    TimedOut,
    /// At claim or trigger (the no-overlap lock was held), or by `finish`.
    Skipped,
    /// At claim (a summary of missed instants), or at start (past the start deadline).
    Misfired,
    /// By a reap (its node died with it), or by `finish` (cancelled at shutdown).
    Lost,
    Superseded,
    /// By CancelExecution: taken out before it began (`cancel`), or stopped by its node (`finish`).
    Cancelled,
    /// Only if `finish` is given a record still pending (the worker never does).
    Pending,
}

impl FireState {
    /// Whether the fire has not ended: not yet started, or running (a failed attempt waiting for
    /// its retry is `dispatching` or `queued` again).
    pub fn is_open(self) -> bool {
        matches!(
            self,
            FireState::Dispatching | FireState::Accepted | FireState::Queued | FireState::Held | FireState::Running
        )
    }

    /// The string the stores keep (the fire hash's `state` field in Redis).
    pub fn as_str(self) -> &'static str {
        match self {
            FireState::Dispatching => "dispatching",
            FireState::Accepted => "accepted",
            FireState::Queued => "queued",
            FireState::Held => "held",
            FireState::Running => "running",
            FireState::Succeeded => "succeeded",
            FireState::Failed => "failed",
            FireState::TimedOut => "timed_out",
            FireState::Skipped => "skipped",
            FireState::Misfired => "misfired",
            FireState::Lost => "lost",
            FireState::Superseded => "superseded",
            FireState::Cancelled => "cancelled",
            FireState::Pending => "pending",
        }
    }
}

/// A fire ends in the state of the record its outcome was written with (`finish`).
impl From<ExecState> for FireState {
    fn from(s: ExecState) -> FireState {
        match s {
            ExecState::Pending => FireState::Pending,
            ExecState::Running => FireState::Running,
            ExecState::Succeeded => FireState::Succeeded,
            ExecState::Failed => FireState::Failed,
            ExecState::TimedOut => FireState::TimedOut,
            ExecState::Skipped => FireState::Skipped,
            ExecState::Misfired => FireState::Misfired,
            ExecState::Lost => FireState::Lost,
            ExecState::Superseded => FireState::Superseded,
            ExecState::Cancelled => FireState::Cancelled,
        }
    }
}

impl fmt::Display for FireState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stored fire state that is none of `FireState`'s (a hash written by hand or by a foreign writer).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a fire state: {0:?}")]
pub struct UnknownFireState(pub String);

impl FromStr for FireState {
    type Err = UnknownFireState;

    fn from_str(s: &str) -> Result<FireState, UnknownFireState> {
        Ok(match s {
            "dispatching" => FireState::Dispatching,
            "accepted" => FireState::Accepted,
            "queued" => FireState::Queued,
            "held" => FireState::Held,
            "running" => FireState::Running,
            "succeeded" => FireState::Succeeded,
            "failed" => FireState::Failed,
            "timed_out" => FireState::TimedOut,
            "skipped" => FireState::Skipped,
            "misfired" => FireState::Misfired,
            "lost" => FireState::Lost,
            "superseded" => FireState::Superseded,
            "cancelled" => FireState::Cancelled,
            "pending" => FireState::Pending,
            _ => return Err(UnknownFireState(s.chars().take(64).collect())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [FireState; 14] = [
        FireState::Dispatching,
        FireState::Accepted,
        FireState::Queued,
        FireState::Held,
        FireState::Running,
        FireState::Succeeded,
        FireState::Failed,
        FireState::TimedOut,
        FireState::Skipped,
        FireState::Misfired,
        FireState::Lost,
        FireState::Superseded,
        FireState::Cancelled,
        FireState::Pending,
    ];

    #[test]
    fn every_state_reads_back_as_itself() {
        for s in ALL {
            assert_eq!(s.as_str().parse::<FireState>(), Ok(s));
            assert_eq!(s.to_string(), s.as_str());
        }
        assert_eq!("RUNNING".parse::<FireState>(), Err(UnknownFireState("RUNNING".into())));
        assert!("".parse::<FireState>().is_err());
    }

    #[test]
    fn an_outcome_names_the_same_state_as_its_record() {
        for e in [
            ExecState::Pending,
            ExecState::Running,
            ExecState::Succeeded,
            ExecState::Failed,
            ExecState::TimedOut,
            ExecState::Skipped,
            ExecState::Misfired,
            ExecState::Lost,
            ExecState::Superseded,
            ExecState::Cancelled,
        ] {
            assert_eq!(FireState::from(e).as_str(), e.as_str());
        }
    }

    /// Every state literal a script writes into a fire hash, or compares one with, is a `FireState`.
    #[test]
    fn the_scripts_states_parse() {
        let scripts = [
            include_str!("lua/accept.lua"),
            include_str!("lua/cancel.lua"),
            include_str!("lua/claim.lua"),
            include_str!("lua/enqueue.lua"),
            include_str!("lua/finish.lua"),
            include_str!("lua/prelude.lua"),
            include_str!("lua/promote.lua"),
            include_str!("lua/reap.lua"),
            include_str!("lua/retry.lua"),
            include_str!("lua/start.lua"),
            include_str!("lua/steal.lua"),
            include_str!("lua/trigger.lua"),
        ];
        // What follows each of these is a state literal: written (`HSET ... 'state', '<s>'`, claim's
        // `fs`) or compared with.
        let patterns = ["'state', '", "local fs = '", "; fs = '", "st == '", "st ~= '", "f[1] == '", "f[1] ~= '"];
        let mut seen = 0;
        for text in scripts {
            for pat in patterns {
                for (i, _) in text.match_indices(pat) {
                    let line = text[..i].rsplit('\n').next().unwrap_or_default();
                    if pat.starts_with("'state'") && !line.contains("'HSET'") {
                        continue; // a read (HMGET ... 'state', 'node'), not a write
                    }
                    let lit: String = text[i + pat.len()..].chars().take_while(|c| *c != '\'').collect();
                    assert!(lit.parse::<FireState>().is_ok(), "a script uses {lit:?} as a fire state");
                    seen += 1;
                }
            }
        }
        assert!(seen >= 25, "found only {seen} state literals: has the scripts' form changed?");
    }
}
