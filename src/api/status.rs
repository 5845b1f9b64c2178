//! The one place where errors become gRPC statuses. User errors carry their precise message and are
//! not logged as errors; internal faults get a generic message and are logged once, here.
use tonic::Status;

use crate::error::Error;

/// A user error's message, with any value it echoes cut short (a 100 kB id must not come back whole).
fn user_message(e: &Error) -> String {
    crate::redact::quoted_values(&e.to_string()).into_owned()
}

impl From<Error> for Status {
    fn from(e: Error) -> Status {
        match &e {
            Error::Invalid { .. } => Status::invalid_argument(user_message(&e)),
            Error::JobNotFound(_)
            | Error::ExecutionNotFound(_)
            | Error::FireNotFound(_)
            | Error::LimitNotFound(_)
            | Error::CalendarNotFound(_) => Status::not_found(user_message(&e)),
            Error::FailedPrecondition(_) | Error::Fenced(_) | Error::StaleEpoch { .. } => {
                Status::failed_precondition(user_message(&e))
            }
            Error::NotLive => Status::aborted(user_message(&e)),
            Error::Busy(_) => Status::resource_exhausted(user_message(&e)),
            Error::Draining(_) => Status::unavailable(user_message(&e)),
            Error::StoreUnavailable { .. } => {
                tracing::warn!(error = %e, "store unavailable");
                Status::unavailable("store unavailable; try again")
            }
            // Made for the caller: the store's address (no credentials) and this node's view.
            Error::StoreDown { .. } => {
                tracing::warn!(error = %e, "store unavailable");
                Status::unavailable(e.to_string())
            }
            Error::Corrupt { .. } | Error::Config { .. } | Error::NodeIdInUse { .. } | Error::Io { .. } => {
                tracing::error!(error = %e, "internal error");
                Status::internal("internal error")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn codes() {
        let cases = [
            (Error::invalid("cron", "bad"), Code::InvalidArgument, "cron: bad"),
            (Error::JobNotFound("j".into()), Code::NotFound, "job 'j' not found"),
            (
                Error::StaleEpoch { epoch: 5, why: "a newer master exists".into() },
                Code::FailedPrecondition,
                "stale epoch 5: a newer master exists",
            ),
            (Error::NotLive, Code::Aborted, "this node's incarnation is not live; it is re-registering"),
            (Error::FailedPrecondition("draining".into()), Code::FailedPrecondition, "draining"),
            (Error::Draining("n1".into()), Code::Unavailable, "node n1 is shutting down; try another node"),
            (Error::Busy("busy".into()), Code::ResourceExhausted, "busy"),
            (Error::unavailable("conn refused"), Code::Unavailable, "store unavailable; try again"),
            (
                Error::StoreDown {
                    store: "redis at 10.0.0.1:6379".into(),
                    reason: "refused".into(),
                    known: "n1 knows".into(),
                },
                Code::Unavailable,
                "store unavailable: redis at 10.0.0.1:6379 does not answer (refused); try again. n1 knows",
            ),
            (Error::Corrupt { key: "k".into(), reason: "r".into() }, Code::Internal, "internal error"),
        ];
        for (e, code, msg) in cases {
            let s = Status::from(e);
            assert_eq!((s.code(), s.message()), (code, msg));
        }
    }

    /// An echoed value is cut to its first characters and its size.
    #[test]
    fn echoed_values_are_cut() {
        let huge = "x".repeat(100_000);
        for e in [
            Error::invalid("id", format!("'{huge}' is not an execution id")),
            Error::JobNotFound(huge.clone()),
            Error::ExecutionNotFound(huge.clone()),
            Error::FireNotFound(huge.clone()),
        ] {
            let s = Status::from(e);
            assert!(s.message().len() < 200 && s.message().contains("…(100000 bytes)"), "{:.300}", s.message());
        }
    }
}
