//! Request size limits: tonic refuses an oversized message with OUT_OF_RANGE; gRPC's own
//! convention (and what clients and load balancers expect) is RESOURCE_EXHAUSTED. This layer
//! rewrites that one status on its way out, and nothing else. Every rota RPC takes a unary request,
//! so a refused request is always a trailers-only answer: the status is in the headers.
use std::task::{Context, Poll};

use futures_util::FutureExt;

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

const OUT_OF_RANGE: &str = "11";
const RESOURCE_EXHAUSTED: &str = "8";

fn fix(h: &mut http::HeaderMap) {
    let too_large = h.get("grpc-status").is_some_and(|v| v == OUT_OF_RANGE)
        && h.get("grpc-message").and_then(|m| m.to_str().ok()).is_some_and(|m| {
            // grpc-message is percent-encoded on the wire.
            m.replace("%20", " ").contains("message length too large")
        });
    if too_large {
        h.insert("grpc-status", http::HeaderValue::from_static(RESOURCE_EXHAUSTED));
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
                fix(&mut parts.headers);
                http::Response::from_parts(parts, body)
            })
        }))
    }
}
