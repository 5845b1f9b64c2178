//! The gRPC edge: `SchedulerService` and `NodeService`, plus the standard health service and server
//! reflection, assembled in one builder chain (`serve`) that `main` and the tests share. Handlers
//! validate requests, call into the node, and map errors to `Status` through `status.rs` only.
pub mod auth;
pub mod convert;
pub mod http;
pub mod limits;
pub mod node_service;
pub mod scheduler_service;
pub mod status;

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::Server;
use tonic_health::server::HealthReporter;

use crate::error::{Error, Result};
use crate::node::Node;
use crate::pb;

/// Largest request accepted (bigger ones get RESOURCE_EXHAUSTED): a job with 64 KiB of arguments
/// fits with room to spare.
pub const MAX_REQUEST_BYTES: usize = 1024 * 1024;

/// The health service names rota's services report under (plus "" for the whole node).
pub const HEALTH_SERVICES: [&str; 3] = ["", "rota.v1.SchedulerService", "rota.v1.NodeService"];

/// Serves every rota service on `listener` until `shutdown` resolves.
pub async fn serve(
    node: Arc<Node>,
    listener: TcpListener,
    health: tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| Error::Config { key: "reflection".into(), reason: e.to_string() })?;
    // Older grpcurl and grpcui builds still ask v1alpha.
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(|e| Error::Config { key: "reflection".into(), reason: e.to_string() })?;
    let scheduler = pb::scheduler_service_server::SchedulerServiceServer::new(scheduler_service::SchedulerApi::new(
        Arc::clone(&node),
    ))
    .max_decoding_message_size(MAX_REQUEST_BYTES);
    let node_svc = pb::node_service_server::NodeServiceServer::new(node_service::NodeApi::new(Arc::clone(&node)))
        .max_decoding_message_size(MAX_REQUEST_BYTES);
    let mut builder = Server::builder();
    if let Some(tls) = &node.tls {
        let mut cfg = tonic::transport::ServerTlsConfig::new().identity(tls.identity.clone());
        if let Some(ca) = &tls.ca {
            // Optional at the handshake: clients and load balancers without a certificate may still
            // connect; node-only calls then need a certificate from this CA (see `auth`).
            cfg = cfg.client_ca_root(ca.clone()).client_auth_optional(true);
        }
        builder = builder.tls_config(cfg).map_err(|e| Error::Config { key: "tls".into(), reason: e.to_string() })?;
    }
    builder
        .trace_fn(|req| tracing::debug_span!("grpc", path = %req.uri().path()))
        .layer(limits::SizeStatusLayer)
        .layer(auth::AuthLayer::new(Arc::clone(&node.auth)))
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(scheduler)
        .add_service(node_svc)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await
        .map_err(|e| Error::io("gRPC server", std::io::Error::other(e)))
}

/// Sets every rota health entry to serving or not.
pub async fn set_health(reporter: &HealthReporter, serving: bool) {
    let status = if serving { tonic_health::ServingStatus::Serving } else { tonic_health::ServingStatus::NotServing };
    for s in HEALTH_SERVICES {
        reporter.set_service_status(s, status).await;
    }
}
