//! The edge of a node: `start` binds its ports, starts the node and serves, on the gRPC port,
//! `SchedulerService`, `NodeService` and `WorkerService` plus the standard health service and server reflection (one
//! builder chain, `serve`), and on the HTTP port /metrics, /healthz and /readyz (`http`). Handlers
//! validate requests, call into the node, and map errors to `Status` through `status.rs` only.
//! Protobuf conversion happens here (`convert`), and access control (`auth`).
//! Uses: `node` and the rooms below it; nothing below imports this room.
pub mod auth;
pub mod convert;
pub mod http;
pub mod limits;
pub mod node_service;
pub mod scheduler_service;
pub mod status;
pub mod worker_service;

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::Server;
use tonic_health::server::HealthReporter;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::node::{Bound, Node, TlsFiles};
use crate::pb;
use crate::worker::handlers::Registry;

/// Largest request accepted (bigger ones get RESOURCE_EXHAUSTED): a job with 64 KiB of arguments
/// fits with room to spare.
pub const MAX_REQUEST_BYTES: usize = 1024 * 1024;

/// The health service names rota's services report under (plus "" for the whole node).
pub const HEALTH_SERVICES: [&str; 3] = ["", "rota.v1.SchedulerService", "rota.v1.NodeService"];

/// Runs a node: loads its access rules, binds its ports, starts it (`Node::start`), and serves
/// until it stops. Health reads NOT_SERVING until the node's readiness loop first finds it ready.
pub async fn start(config: Config, registry: Registry) -> Result<Arc<Node>> {
    config.validate()?;
    let auth = Arc::new(load_auth(&config)?);
    let listener =
        TcpListener::bind(&config.listen).await.map_err(|e| Error::io(format!("binding {}", config.listen), e))?;
    let grpc = listener.local_addr().map_err(|e| Error::io("reading the bound address", e))?;
    let http_listener = match &config.metrics_listen {
        Some(a) => {
            let l = TcpListener::bind(a).await.map_err(|e| Error::io(format!("binding {a}"), e))?;
            if let Ok(addr) = l.local_addr() {
                tracing::info!(address = %addr, "metrics and HTTP health on /metrics, /healthz, /readyz");
            }
            Some(l)
        }
        None => None,
    };
    let bound = Bound { grpc, http: http_listener.as_ref().and_then(|l| l.local_addr().ok()) };
    let node = Node::start(config, registry, bound).await?;
    if !grpc.ip().is_loopback() && (node.tls.is_none() || !auth.enabled()) {
        tracing::warn!(address = %grpc,
            "listening beyond loopback without TLS and tokens: anyone who reaches this port can run jobs");
    }
    let (health, health_service) = tonic_health::server::health_reporter();
    set_health(&health, false).await;
    node.spawn(publish_health(Arc::clone(&node), health));
    let (n, stop) = (Arc::clone(&node), node.stopping());
    node.spawn(async move {
        if let Err(e) = serve(n, auth, listener, health_service, stop.cancelled_owned()).await {
            tracing::error!(error = %e, "gRPC server stopped");
        }
    });
    if let Some(listener) = http_listener {
        let (n, stop) = (Arc::clone(&node), node.stopping());
        node.spawn(async move {
            if let Err(e) = http::serve(n, listener, stop.cancelled_owned()).await {
                tracing::error!(error = %e, "metrics/health HTTP server stopped");
            }
        });
    }
    Ok(node)
}

/// Checks every file a config names (jobs, tokens, TLS) without starting anything: `rota server
/// --check` (which then tries the store: `node::check_store`). What the node would run with.
pub fn check(config: &Config, registry: &Registry) -> Result<Checked> {
    let jobs = crate::node::check_files(config, registry)?;
    let auth = load_auth(config)?;
    Ok(Checked { jobs, tokens: auth.enabled() })
}

/// What `check` found, for `--check`'s summary.
#[derive(Debug, Clone, Copy)]
pub struct Checked {
    /// Jobs in the jobs file (0 without one).
    pub jobs: usize,
    /// Calls need a token (a tokens file or a cluster secret).
    pub tokens: bool,
}

impl Checked {
    /// The summary `--check` prints: one `name: value` line per setting an operator checks first.
    /// Never a secret: the store's address is shown without its user or password. `store` says
    /// whether Redis answered.
    pub fn summary(&self, config: &Config, store: &str) -> Vec<String> {
        let jobs = match &config.jobs_file {
            Some(p) => format!("{} from {}", self.jobs, p.display()),
            None => "none (no jobs file)".into(),
        };
        let shell = match (config.enable_shell, config.shell_allow.is_empty()) {
            (false, _) => "off".to_string(),
            (true, true) => "on, but shell_allow is empty: every shell job is refused".into(),
            (true, false) => format!("on, allowed: {}", config.shell_allow.join(", ")),
        };
        let tls = match (&config.tls_cert_file, &config.tls_ca_file) {
            (None, _) => "off",
            (Some(_), None) => "on",
            (Some(_), Some(_)) => "on, with the cluster CA (mutual TLS for node calls)",
        };
        vec![
            format!("listen: {}", config.listen),
            format!("node_id: {}", config.node_id),
            match config.redis {
                Some(_) => format!("store: {} ({store})", crate::node::store_address(config)),
                None => format!("store: {}", crate::node::store_address(config)),
            },
            format!("jobs: {jobs}"),
            format!("shell: {shell}"),
            format!("tls: {tls}"),
            format!("tokens: {}", if self.tokens { "on" } else { "off: every caller is admin" }),
        ]
    }
}

/// The tokens file and cluster secret; node-only calls also take a certificate from the cluster CA
/// when the node has one (mutual TLS).
fn load_auth(config: &Config) -> Result<auth::Auth> {
    let mutual_tls = TlsFiles::load(config)?.is_some_and(|t| t.ca.is_some());
    auth::Auth::load(config.tokens_file.as_deref(), config.cluster_secret.as_ref().map(|s| s.0.as_str()), mutual_tls)
}

/// Mirrors the node's readiness into grpc.health.v1 until the node stops.
async fn publish_health(node: Arc<Node>, reporter: HealthReporter) {
    let (mut ready, stop) = (node.readiness(), node.stopping());
    drop(node);
    loop {
        let now = *ready.borrow_and_update();
        set_health(&reporter, now).await;
        tokio::select! {
            _ = stop.cancelled() => return,
            changed = ready.changed() => if changed.is_err() { return },
        }
    }
}

/// Serves every rota service on `listener` until `shutdown` resolves.
pub async fn serve(
    node: Arc<Node>,
    auth: Arc<auth::Auth>,
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
    let worker_svc =
        pb::worker_service_server::WorkerServiceServer::new(worker_service::WorkerApi::new(Arc::clone(&node)))
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
        .layer(auth::AuthLayer::new(auth))
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(scheduler)
        .add_service(node_svc)
        .add_service(worker_svc)
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
