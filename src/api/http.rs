//! The node's HTTP side: `/metrics` (Prometheus / OpenMetrics text), `/healthz` (the process runs),
//! `/readyz` (the node can do its part, as grpc.health.v1 says), and, in a fault-injection build,
//! `PUT /failpoints/<name>` for the chaos runner. Uses: `node` (its readiness and metrics).
use std::sync::Arc;

/// Serves /metrics, /healthz and /readyz until `shutdown`.
pub async fn serve(
    node: Arc<crate::node::Node>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::http::{header, StatusCode};
    use axum::routing::get;
    let app = axum::Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(|axum::extract::State(n): axum::extract::State<Arc<crate::node::Node>>| async move {
                if n.is_serving() {
                    (StatusCode::OK, "ready\n")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
                }
            }),
        )
        .route(
            "/metrics",
            get(|axum::extract::State(n): axum::extract::State<Arc<crate::node::Node>>| async move {
                n.refresh_metrics().await;
                (
                    [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
                    n.metrics.encode(),
                )
            }),
        )
        .with_state(node);
    // The chaos runner arms failpoints here: PUT /failpoints/<name> with the actions as the body.
    #[cfg(feature = "failpoints")]
    let app = app.route(
        "/failpoints/{name}",
        axum::routing::put(|axum::extract::Path(name): axum::extract::Path<String>, body: String| async move {
            match crate::failpoints::configure(&name, body.trim()) {
                Ok(()) => (StatusCode::OK, "armed\n".to_string()),
                Err(e) => (StatusCode::BAD_REQUEST, format!("{e}\n")),
            }
        }),
    );
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}
