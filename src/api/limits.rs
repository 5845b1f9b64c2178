//! The statuses tonic makes on its own, before a handler runs, rewritten on their way out so the
//! edge keeps the README's promises:
//! - an oversized message: tonic says OUT_OF_RANGE; gRPC's own convention (and what clients and load
//!   balancers expect) is RESOURCE_EXHAUSTED;
//! - a message that does not decode (malformed, or nested past the decoder's recursion limit, as
//!   job arguments 50 levels deep are): tonic says INTERNAL with the decoder's stack of type
//!   names; it is the caller's error, INVALID_ARGUMENT naming the field;
//! - any other INTERNAL says only "internal error" (the details are logged here).
//!
//! Every rota RPC takes a unary request, so a refused request is always a trailers-only answer:
//! the status is in the headers.
use std::task::{Context, Poll};

use futures_util::FutureExt;
use tonic::{Code, Status};

#[derive(Clone, Default)]
pub struct SizeStatusLayer;

impl<S> tower::Layer<S> for SizeStatusLayer {
    type Service = SizeStatus<S>;
    fn layer(&self, inner: S) -> SizeStatus<S> {
        SizeStatus { inner }
    }
}

#[derive(Clone)]
pub struct SizeStatus<S> {
    inner: S,
}

type BoxFuture<T, E> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, E>> + Send>>;

const DECODE_ERROR_PREFIX: &str = "failed to decode Protobuf message: ";

/// Protobuf's well-known types: never the field to name (the rota field holding them is).
const WELL_KNOWN: [&str; 5] = ["Value", "ListValue", "Struct", "Timestamp", "Duration"];

/// The status to send instead of `status`, if it must change.
fn fix(status: &Status) -> Option<Status> {
    match status.code() {
        Code::OutOfRange if status.message().contains("message length too large") => {
            Some(Status::resource_exhausted(status.message()))
        }
        Code::Internal => {
            if let Some(detail) = status.message().strip_prefix(DECODE_ERROR_PREFIX) {
                return Some(Status::invalid_argument(decode_error_message(detail)));
            }
            if status.message() == "internal error" {
                return None;
            }
            tracing::error!(error = %crate::redact::value(status.message()), "internal error");
            Some(Status::internal("internal error"))
        }
        _ => None,
    }
}

/// prost's decode error (`Type.field: ...: description`, innermost field first) as
/// `<field>: cannot be decoded (<description>)`, naming the innermost rota field.
fn decode_error_message(detail: &str) -> String {
    let mut parts: Vec<&str> = detail.split(": ").collect();
    let description = parts.pop().unwrap_or("malformed");
    let field = parts
        .iter()
        .filter_map(|p| p.split_once('.'))
        .find(|(ty, _)| !WELL_KNOWN.contains(ty))
        .map_or("request", |(_, field)| field);
    let why = if description.contains("recursion limit") { "nested too deeply" } else { description };
    format!("{field}: cannot be decoded ({why})")
}

fn fix_headers(h: &mut http::HeaderMap) {
    let Some(status) = Status::from_header_map(h) else { return };
    if let Some(new) = fix(&status) {
        h.remove("grpc-message");
        if new.add_header(h).is_err() {
            // Cannot happen for these messages; the generic code is still right.
            h.insert("grpc-status", http::HeaderValue::from_static("13"));
        }
    }
}

impl<S, B, RB> tower::Service<http::Request<B>> for SizeStatus<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>> + Send,
    S::Future: Send + 'static,
    RB: Send + 'static,
{
    type Response = http::Response<RB>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        Box::pin(self.inner.call(req).map(|r| {
            r.map(|resp| {
                let (mut parts, body) = resp.into_parts();
                fix_headers(&mut parts.headers);
                http::Response::from_parts(parts, body)
            })
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    /// What the decoder says about arguments nested 50 levels deep becomes the caller's error,
    /// naming the field and none of the decoder's internals.
    #[test]
    fn decode_errors_are_invalid_argument_naming_the_field() {
        let mut v = serde_json::json!(1);
        for _ in 0..50 {
            v = serde_json::json!([v]);
        }
        let job = crate::pb::Job { args: Some(crate::api::convert::json_to_pb(&v)), ..Default::default() };
        let bytes = crate::pb::PutJobRequest { job: Some(job) }.encode_to_vec();
        let e = crate::pb::PutJobRequest::decode(bytes.as_slice()).expect_err("too deep");
        let fixed = fix(&Status::internal(e.to_string())).expect("rewritten");
        assert_eq!(
            (fixed.code(), fixed.message()),
            (Code::InvalidArgument, "args: cannot be decoded (nested too deeply)")
        );
        let fixed = fix(&Status::internal(format!("{DECODE_ERROR_PREFIX}invalid varint"))).expect("rewritten");
        assert_eq!(fixed.message(), "request: cannot be decoded (invalid varint)");
    }

    #[test]
    fn internal_errors_say_only_internal_error() {
        let fixed = fix(&Status::internal("no result for the task at /var/lib/x")).expect("rewritten");
        assert_eq!((fixed.code(), fixed.message()), (Code::Internal, "internal error"));
        assert!(fix(&Status::internal("internal error")).is_none());
        assert!(fix(&Status::invalid_argument("id: bad")).is_none());
        let big = fix(&Status::out_of_range("decoded message length too large: 2 > 1")).expect("rewritten");
        assert_eq!(big.code(), Code::ResourceExhausted);
    }
}
