//! Reaching a node: the endpoints (one or several, tried in order), TLS, the API token, failing
//! over to the next endpoint, and the client's errors with their exit codes.
use std::future::Future;
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};
use tonic::Code;

use super::ClientArgs;
use crate::pb::scheduler_service_client::SchedulerServiceClient;

/// Exit code of `--wait` when the wait itself ran out before the fire's outcome (here, with every
/// other exit code, so that all of them are read in one place).
pub const WAIT_TIMED_OUT_EXIT: i32 = 9;

/// A client-side failure, with the exit code it maps to (the README's "Exit codes" lists them).
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Usage(String),
    #[error(
        "cannot reach rota at {endpoint}: {reason} (is `rota server` running there? set --endpoint or ROTA_ENDPOINT)"
    )]
    Connect { endpoint: String, reason: String },
    /// The server said NOT_FOUND: a job or execution id that does not exist. Its own exit code, so
    /// a script can tell "no such thing" from "the call failed".
    #[error("NotFound: {0}")]
    NotFound(String),
    #[error("{code:?}: {message}")]
    Call { code: tonic::Code, message: String },
    /// `--wait`: the fire is over, and did not succeed; `code` says how it ended (see `wait`).
    #[error("fire {fire_id} ended {state} (attempt {attempt})")]
    Outcome { fire_id: String, state: String, attempt: u32, code: i32 },
    /// `--wait`: the wait ran out before the fire's outcome.
    #[error("gave up waiting after {waited}: fire {fire_id} is not over ({now})")]
    WaitTimedOut { fire_id: String, waited: String, now: String },
    /// `exec cancel`: the execution reads otherwise than cancelled after the server's wait.
    #[error(
        "execution {id} is {state}, not cancelled (it ended otherwise meanwhile, or its node has not stopped it yet)"
    )]
    NotCancelled { id: String, state: String },
}

impl CliError {
    /// The same error, its message led by `what` (which of several things failed), same exit code.
    pub(super) fn in_context(self, what: String) -> CliError {
        match self {
            CliError::Call { code, message } => CliError::Call { code, message: format!("{what}: {message}") },
            CliError::NotFound(m) => CliError::NotFound(format!("{what}: {m}")),
            CliError::Usage(m) => CliError::Usage(format!("{what}: {m}")),
            other => other,
        }
    }

    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Call { .. } | CliError::NotCancelled { .. } => 1,
            CliError::Usage(_) => 2,
            CliError::Connect { .. } => 3,
            CliError::NotFound(_) => 4,
            CliError::Outcome { code, .. } => *code,
            CliError::WaitTimedOut { .. } => WAIT_TIMED_OUT_EXIT,
        }
    }
}

impl From<tonic::Status> for CliError {
    fn from(s: tonic::Status) -> Self {
        match s.code() {
            Code::NotFound => CliError::NotFound(s.message().to_string()),
            code => CliError::Call { code, message: s.message().to_string() },
        }
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

/// A connection to one of the endpoints given, able to move to the next one. Endpoints are tried
/// in the order given; a call that gets UNAVAILABLE is repeated once on each other endpoint.
pub(super) struct Conn {
    /// Every endpoint as a URL, checked up front (a malformed one is a usage error at once).
    endpoints: Vec<Endpoint>,
    token: TokenInterceptor,
    /// Index in `endpoints` of the one `client` talks to.
    at: usize,
    client: Client,
}

/// The endpoints of `--endpoint` (repeated, or comma-separated) or ROTA_ENDPOINT (comma-separated),
/// as URLs: `host:port` gets http, or https with `--ca-file`.
fn endpoints(args: &ClientArgs) -> Result<Vec<Endpoint>, CliError> {
    let scheme = if args.ca_file.is_some() { "https" } else { "http" };
    let tls = match &args.ca_file {
        Some(ca) => {
            let pem = std::fs::read(ca).map_err(|e| CliError::Usage(format!("--ca-file {}: {e}", ca.display())))?;
            Some(tonic::transport::ClientTlsConfig::new().ca_certificate(tonic::transport::Certificate::from_pem(pem)))
        }
        None => None,
    };
    let mut out = Vec::new();
    for given in args.endpoint.iter().map(|e| e.trim()) {
        if given.is_empty() {
            return Err(CliError::Usage("--endpoint: an empty endpoint in the list".into()));
        }
        let url = if given.contains("://") { given.to_string() } else { format!("{scheme}://{given}") };
        let mut ep = Endpoint::from_shared(url)
            .map_err(|e| CliError::Usage(format!("--endpoint '{given}': {e}")))?
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(30));
        if let Some(t) = &tls {
            ep = ep.tls_config(t.clone()).map_err(|e| CliError::Usage(format!("--ca-file: {e}")))?;
        }
        out.push(ep);
    }
    if out.is_empty() {
        return Err(CliError::Usage("--endpoint: no endpoint given".into()));
    }
    Ok(out)
}

fn token() -> Result<TokenInterceptor, CliError> {
    match std::env::var("ROTA_TOKEN") {
        Ok(t) if !t.is_empty() => Ok(TokenInterceptor(Some(
            format!("Bearer {t}")
                .parse()
                .map_err(|_| CliError::Usage("ROTA_TOKEN has characters not allowed in a header".into()))?,
        ))),
        _ => Ok(TokenInterceptor(None)),
    }
}

impl Conn {
    /// Connects to the first endpoint that answers, in the order given.
    pub(super) async fn open(args: &ClientArgs) -> Result<Conn, CliError> {
        let endpoints = endpoints(args)?;
        let token = token()?;
        let (at, ch) = first_reachable(&endpoints, 0).await?;
        let client = SchedulerServiceClient::with_interceptor(ch, token.clone());
        Ok(Conn { endpoints, token, at, client })
    }

    /// The endpoint talked to now.
    pub(super) fn endpoint(&self) -> String {
        uri_name(&self.endpoints[self.at])
    }

    /// A client of the current endpoint (cheap: it shares the connection).
    pub(super) fn client(&self) -> Client {
        self.client.clone()
    }

    /// Moves to the first endpoint that answers, starting with the one after the current one and
    /// ending with the current one.
    pub(super) async fn next(&mut self) -> Result<(), CliError> {
        let (at, ch) = first_reachable(&self.endpoints, self.at + 1).await?;
        self.at = at;
        self.client = SchedulerServiceClient::with_interceptor(ch, self.token.clone());
        Ok(())
    }

    /// Makes a unary call, repeating it on the other endpoints while it gets UNAVAILABLE (the node
    /// is going away, or cannot reach the store). Only for calls that are safe to repeat: a call
    /// that is not idempotent by itself (TriggerJob) carries an idempotency key.
    pub(super) async fn call<T, F, Fut>(&mut self, mut f: F) -> Result<T, CliError>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let mut failovers = 0;
        loop {
            match f(self.client()).await {
                Ok(r) => return Ok(r.into_inner()),
                Err(s) if s.code() == Code::Unavailable && failovers + 1 < self.endpoints.len() => {
                    failovers += 1;
                    let from = self.endpoint();
                    self.next().await?;
                    eprintln!("rota: {from} is unavailable ({}); trying {}", s.message(), self.endpoint());
                }
                Err(s) => return Err(s.into()),
            }
        }
    }
}

/// `call!(conn, method, request)`: `Conn::call` of one SchedulerService method (the request is
/// cloned for each try).
macro_rules! call {
    ($conn:expr, $method:ident, $req:expr) => {{
        let req = $req;
        $conn
            .call(move |mut c| {
                let req = req.clone();
                async move { c.$method(req).await }
            })
            .await
    }};
}
pub(super) use call;

/// The first endpoint that accepts a connection, trying each once from `start` (wrapping around).
async fn first_reachable(endpoints: &[Endpoint], start: usize) -> Result<(usize, Channel), CliError> {
    let mut last = String::new();
    for k in 0..endpoints.len() {
        let i = (start + k) % endpoints.len();
        match endpoints[i].connect().await {
            Ok(ch) => return Ok((i, ch)),
            Err(e) => last = root_cause(&e),
        }
    }
    let names: Vec<String> = endpoints.iter().map(uri_name).collect();
    let endpoint = if names.len() == 1 { names[0].clone() } else { format!("any of {}", names.join(", ")) };
    Err(CliError::Connect { endpoint, reason: last })
}

/// An endpoint as the user would write it (`http://host:port`, without the path's `/`).
fn uri_name(e: &Endpoint) -> String {
    e.uri().to_string().trim_end_matches('/').to_string()
}

/// The innermost error's text ("Connection refused", not "transport error").
pub(super) fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}
