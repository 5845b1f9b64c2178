//! Reaching a node: the endpoint, TLS, the API token, and the client's errors with their exit codes.
use std::time::Duration;

use tonic::transport::Channel;

use super::ClientArgs;
use crate::pb::scheduler_service_client::SchedulerServiceClient;
/// A client-side failure, with the exit code it maps to.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Usage(String),
    #[error(
        "cannot reach rota at {endpoint}: {reason} (is `rota server` running there? set --endpoint or ROTA_ENDPOINT)"
    )]
    Connect { endpoint: String, reason: String },
    #[error("{code:?}: {message}")]
    Call { code: tonic::Code, message: String },
    /// `--wait`: the fire is over, and did not succeed; `code` says how it ended (see `wait`).
    #[error("fire {fire_id} ended {state} (attempt {attempt})")]
    Outcome { fire_id: String, state: String, attempt: u32, code: i32 },
    /// `--wait`: the wait ran out before the fire's outcome.
    #[error("gave up waiting after {waited}: fire {fire_id} is not over ({now})")]
    WaitTimedOut { fire_id: String, waited: String, now: String },
}

impl CliError {
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Usage(_) => 2,
            CliError::Connect { .. } => 3,
            CliError::Call { .. } => 1,
            CliError::Outcome { code, .. } => *code,
            CliError::WaitTimedOut { .. } => super::wait::WAIT_TIMED_OUT_EXIT,
        }
    }
}

impl From<tonic::Status> for CliError {
    fn from(s: tonic::Status) -> Self {
        CliError::Call { code: s.code(), message: s.message().to_string() }
    }
}

/// Adds the API token (env ROTA_TOKEN, never a flag: argv is visible to every user) to each call.
#[derive(Clone)]
pub struct TokenInterceptor(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for TokenInterceptor {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

pub(super) type Client =
    SchedulerServiceClient<tonic::service::interceptor::InterceptedService<Channel, TokenInterceptor>>;

pub(super) async fn connect(args: &ClientArgs) -> Result<Client, CliError> {
    let endpoint = args.endpoint.as_str();
    let scheme = if args.ca_file.is_some() { "https" } else { "http" };
    let url = if endpoint.contains("://") { endpoint.to_string() } else { format!("{scheme}://{endpoint}") };
    let mut ep = tonic::transport::Endpoint::from_shared(url.clone())
        .map_err(|e| CliError::Usage(format!("--endpoint '{endpoint}': {e}")))?
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(30));
    if let Some(ca) = &args.ca_file {
        let pem = std::fs::read(ca).map_err(|e| CliError::Usage(format!("--ca-file {}: {e}", ca.display())))?;
        let tls = tonic::transport::ClientTlsConfig::new().ca_certificate(tonic::transport::Certificate::from_pem(pem));
        ep = ep.tls_config(tls).map_err(|e| CliError::Usage(format!("--ca-file: {e}")))?;
    }
    let ch = ep.connect().await.map_err(|e| CliError::Connect { endpoint: url, reason: root_cause(&e) })?;
    let token = match std::env::var("ROTA_TOKEN") {
        Ok(t) if !t.is_empty() => Some(
            format!("Bearer {t}")
                .parse()
                .map_err(|_| CliError::Usage("ROTA_TOKEN has characters not allowed in a header".into()))?,
        ),
        _ => None,
    };
    Ok(SchedulerServiceClient::with_interceptor(ch, TokenInterceptor(token)))
}

/// The innermost error's text ("Connection refused", not "transport error").
pub(super) fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}
