//! The one place where errors become gRPC statuses. User errors carry their precise message and are
//! not logged as errors; internal faults get a generic message and are logged once, here.
use tonic::Status;

use crate::error::Error;

impl From<Error> for Status {
    fn from(e: Error) -> Status {
        match &e {
            Error::Invalid { .. } => Status::invalid_argument(e.to_string()),
            Error::JobNotFound(_) | Error::ExecutionNotFound(_) => Status::not_found(e.to_string()),
            Error::FailedPrecondition(_) | Error::Fenced(_) => Status::failed_precondition(e.to_string()),
            Error::Busy(_) => Status::resource_exhausted(e.to_string()),
            Error::StoreUnavailable(_) => {
                tracing::warn!(error = %e, "store unavailable");
                Status::unavailable("store unavailable; try again")
            }
            Error::Corrupt { .. } | Error::Config { .. } | Error::Io { .. } => {
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
            (Error::FailedPrecondition("draining".into()), Code::FailedPrecondition, "draining"),
            (Error::Busy("busy".into()), Code::ResourceExhausted, "busy"),
            (Error::StoreUnavailable("conn refused".into()), Code::Unavailable, "store unavailable; try again"),
            (Error::Corrupt { key: "k".into(), reason: "r".into() }, Code::Internal, "internal error"),
        ];
        for (e, code, msg) in cases {
            let s = Status::from(e);
            assert_eq!((s.code(), s.message()), (code, msg));
        }
    }
}
