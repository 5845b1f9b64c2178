//! Failpoints for the chaos runner (`tests/chaos.rs`), compiled in only with the `failpoints`
//! feature: the named points in the fire protocol where a fault can be injected, arming them at run
//! time (`api::http` takes `PUT /failpoints/<name>` on the metrics listener), and what a point does
//! when armed with `return`: kill the process here, now (`crash`), or throw a committed script's
//! reply away (`lost_reply`). A ground-floor room: the rooms that hold the points call it; it uses
//! nothing of theirs. The runner's side-log handler is in `chaos`.

/// Failpoints where `return` kills the process, at the narrow windows of the fire protocol.
pub const CRASH_POINTS: [&str; 4] = [
    // master: the fire is claimed (state dispatching) but not yet run here, sent or queued
    "after_claim",
    // worker: SubmitTask's accept script ran, the reply has not been sent
    "after_accept",
    // worker: the handler finished, its outcome is not yet recorded (finish + ack)
    "before_finish",
    // archiver: a batch is committed in PostgreSQL, the outbox not yet trimmed
    "history_after_store",
];

/// Failpoints where `return` throws a committed script's reply away, as when Redis restarts or the
/// connection breaks between the two: the caller sees an error for a write that happened.
pub const LOST_REPLY_POINTS: [&str; 6] = [
    "lose_claim_reply",
    "lose_accept_reply",
    "lose_start_reply",
    "lose_finish_reply",
    "lose_reap_reply",
    "lose_cancel_reply",
];

/// Failpoints where `return` makes a call between nodes fail before it is sent, as when the peer
/// cannot be reached: CancelExecution's StopRun to the node running the execution (`fail_stop_run`),
/// which then takes the request from its stop list in Redis.
pub const FAILED_CALL_POINTS: [&str; 1] = ["fail_stop_run"];

/// The error a caller sees when a `lose_*_reply` failpoint threw a committed script's reply away.
pub fn lost_reply(point: &str) -> crate::Error {
    tracing::warn!(failpoint = point, "failpoint hit: a committed script's reply is thrown away");
    crate::Error::unavailable(format!("reply lost ({point})"))
}

/// Dies like a SIGKILLed process: no drain, no deregistration, nothing flushed to the store.
pub fn crash(point: &str) -> ! {
    tracing::error!(failpoint = point, "failpoint hit: killing this process");
    let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    std::process::abort()
}

/// Arms (or with "off" disarms) a failpoint. `actions` is the `fail` crate's syntax, e.g. `1*return`.
pub fn configure(name: &str, actions: &str) -> Result<(), String> {
    let known: Vec<&str> = CRASH_POINTS.iter().chain(&LOST_REPLY_POINTS).chain(&FAILED_CALL_POINTS).copied().collect();
    if !known.contains(&name) {
        return Err(format!("unknown failpoint '{name}' (known: {})", known.join(", ")));
    }
    fail::cfg(name, actions)
}
