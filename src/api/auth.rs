//! Who may call what. Tokens (bearer, in the `authorization` metadata) carry a role: `viewer`
//! (reads), `operator` (also pause, resume, trigger), `admin` (also put and delete jobs), and
//! `worker` (an external worker's `WorkerService.Attach`, which `admin` may call too, and nothing
//! else). Node-to-node
//! calls (SubmitTask(s), ReportLoad) need the cluster secret whenever one is configured (or, with
//! mutual TLS, a certificate from the cluster CA). Health and reflection stay open: a load balancer
//! has no token. Tokens are configured as SHA-256 hashes and compared in constant time; the clear
//! token is never logged. With no tokens configured, the client API is open (local use).
//! Refusals are logged at WARN, at most one line per reason per [`REFUSAL_LOG_EVERY`], with a count.
//! This is a tower layer in front of every service, so handlers never deal with it.
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use serde::Deserialize;
use sha2::{Digest, Sha256};
use tonic::Status;

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// An external worker (`WorkerService` only): below `viewer`, so it reads and changes nothing.
    Worker,
    Viewer,
    Operator,
    Admin,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Worker => "worker",
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

/// What a method needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    Open,
    Role(Role),
    /// A peer node (the cluster secret).
    Node,
    /// An external worker: a `worker` or an `admin` token.
    Worker,
}

/// `[[token]]` entries of the tokens file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokensFile {
    #[serde(default)]
    token: Vec<TokenEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenEntry {
    /// Who it is for (logged on refusals; never the token).
    name: String,
    role: Role,
    /// Hex SHA-256 of the token: `printf %s "$TOKEN" | sha256sum`.
    sha256: String,
}

/// At most one log line per refusal reason per this interval (a client retrying a wrong token, or a
/// scan, must not flood the log).
pub const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

/// Counts refusals per reason and says when one should be logged.
#[derive(Debug, Default)]
struct RefusalLog {
    /// reason -> (when last logged, refusals since)
    by_reason: HashMap<&'static str, (Instant, u64)>,
}

impl RefusalLog {
    /// Some(refusals since the last line, this one included) when a line is due now.
    fn note(&mut self, reason: &'static str, now: Instant) -> Option<u64> {
        match self.by_reason.get_mut(reason) {
            Some((last, count)) if now.duration_since(*last) < REFUSAL_LOG_EVERY => {
                *count += 1;
                None
            }
            Some((last, count)) => {
                let n = *count + 1;
                (*last, *count) = (now, 0);
                Some(n)
            }
            None => {
                self.by_reason.insert(reason, (now, 0));
                Some(1)
            }
        }
    }
}

/// Why a call was refused: what is logged (never the credential) and what the caller gets.
struct Refusal {
    reason: &'static str,
    /// The token's configured name, when the token was known (role too low).
    token: Option<String>,
    status: Status,
}

impl Refusal {
    fn new(reason: &'static str, status: Status) -> Refusal {
        Refusal { reason, token: None, status }
    }
}

#[derive(Debug, Default)]
pub struct Auth {
    /// sha256 -> (name, role)
    tokens: HashMap<[u8; 32], (String, Role)>,
    cluster_secret: Option<[u8; 32]>,
    /// Mutual TLS with a cluster CA: node-only calls need a verified peer certificate (or the secret).
    mtls: bool,
    refusals: Mutex<RefusalLog>,
}

impl Auth {
    /// No tokens: everything open.
    pub fn open() -> Auth {
        Auth::default()
    }

    pub fn enabled(&self) -> bool {
        !self.tokens.is_empty()
    }

    pub fn load(tokens_file: Option<&std::path::Path>, cluster_secret: Option<&str>, mtls: bool) -> Result<Auth> {
        if cluster_secret.is_some_and(|s| s.trim().is_empty()) {
            return Err(Error::Config { key: "cluster_secret".into(), reason: "is empty".into() });
        }
        let mut auth = Auth {
            tokens: HashMap::new(),
            cluster_secret: cluster_secret.map(|s| hash(s.trim())),
            mtls,
            refusals: Mutex::default(),
        };
        if let Some(path) = tokens_file {
            let key = format!("tokens_file {}", path.display());
            let text =
                std::fs::read_to_string(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
            let file: TokensFile = toml::from_str(&text).map_err(|e| crate::config::toml_error(&key, &text, &e))?;
            for t in file.token {
                let h = parse_hex(&t.sha256).ok_or_else(|| Error::Config {
                    key: key.clone(),
                    reason: format!("token '{}': sha256 must be 64 hex digits", crate::redact::value(&t.name)),
                })?;
                let name = t.name.clone();
                // One token under two names: a refusal or an audit line would name the wrong one.
                if let Some((first, _)) = auth.tokens.insert(h, (t.name, t.role)) {
                    return Err(Error::Config {
                        key,
                        reason: format!(
                            "tokens '{}' and '{}' have the same sha256: give each its own token",
                            crate::redact::value(&first),
                            crate::redact::value(&name)
                        ),
                    });
                }
            }
            if auth.tokens.is_empty() {
                return Err(Error::Config { key, reason: "no [[token]] entries".into() });
            }
        }
        Ok(auth)
    }

    /// Checks one call. `path` is `/package.Service/Method`; `peer_verified` is true when the caller
    /// presented a client certificate that chains to the cluster CA (checked by the TLS handshake).
    pub fn check(&self, path: &str, headers: &http::HeaderMap, peer_verified: bool) -> std::result::Result<(), Status> {
        self.check_from(path, headers, peer_verified, None).map(|_| ())
    }

    /// `check`, logging a refusal with the caller's address (rate-limited per reason). Allowed: the
    /// name and role of the caller's token (None: no token was needed or checked).
    pub fn check_from(
        &self,
        path: &str,
        headers: &http::HeaderMap,
        peer_verified: bool,
        peer: Option<SocketAddr>,
    ) -> std::result::Result<Option<(String, Role)>, Status> {
        let r = match self.decide(path, headers, peer_verified) {
            Ok(name) => return Ok(name),
            Err(r) => r,
        };
        let due = self.refusals.lock().ok().and_then(|mut log| log.note(r.reason, Instant::now()));
        if let Some(count) = due {
            let peer = peer.map(|p| p.ip().to_string()).unwrap_or_default();
            let token = r.token.as_deref().unwrap_or("");
            tracing::warn!(reason = r.reason, path, peer = %peer, token_name = token, count,
                window_s = REFUSAL_LOG_EVERY.as_secs(), "authentication refused");
        }
        Err(r.status)
    }

    fn decide(
        &self,
        path: &str,
        headers: &http::HeaderMap,
        peer_verified: bool,
    ) -> std::result::Result<Option<(String, Role)>, Refusal> {
        let need = need(path);
        if need == Need::Open {
            return Ok(None);
        }
        if need == Need::Node {
            // A configured secret, mutual TLS or tokens each close the node calls; none: a local node.
            if self.cluster_secret.is_none() && !self.mtls && !self.enabled() {
                return Ok(None);
            }
            let token = bearer(headers);
            let secret_ok = token.zip(self.cluster_secret.as_ref()).is_some_and(|(t, s)| ct_eq(s, &hash(t)));
            if secret_ok || (self.mtls && peer_verified) {
                return Ok(None);
            }
            return Err(if self.mtls {
                Refusal::new(
                    "node call without a cluster certificate or secret",
                    Status::permission_denied(
                        "this call is for cluster nodes: present a certificate from the cluster CA",
                    ),
                )
            } else if token.is_none() {
                Refusal::new(
                    "node call without a credential",
                    Status::unauthenticated(
                        "this call is for cluster nodes: send 'authorization: Bearer <cluster secret>'",
                    ),
                )
            } else {
                Refusal::new(
                    "node call with a wrong credential",
                    Status::permission_denied("this call is for cluster nodes (cluster secret required)"),
                )
            });
        }
        if !self.enabled() {
            return Ok(None);
        }
        let Some(token) = bearer(headers) else {
            return Err(Refusal::new(
                "missing token",
                Status::unauthenticated("missing token: send 'authorization: Bearer <token>'"),
            ));
        };
        let h = hash(token);
        let want = match need {
            Need::Role(want) => want,
            // Any role but viewer and operator; `worker` ranks lowest, so it is checked apart.
            Need::Worker => Role::Worker,
            Need::Open | Need::Node => return Ok(None),
        };
        // Constant time over every configured token, so timing does not tell which one is close.
        let mut found: Option<&(String, Role)> = None;
        for (k, v) in &self.tokens {
            if ct_eq(k, &h) {
                found = Some(v);
            }
        }
        match found {
            None => Err(Refusal::new("unknown token", Status::unauthenticated("unknown token"))),
            Some((name, role)) if need == Need::Worker && matches!(role, Role::Worker | Role::Admin) => {
                Ok(Some((name.clone(), *role)))
            }
            Some((name, role)) if need != Need::Worker && *role >= want => Ok(Some((name.clone(), *role))),
            Some((name, role)) => Err(Refusal {
                reason: "role too low",
                token: Some(name.clone()),
                status: Status::permission_denied(match need {
                    Need::Worker => format!("{path} needs role 'worker' or 'admin' (this token has '{}')", role.name()),
                    _ => format!("{path} needs role '{}' (this token has '{}')", want.name(), role.name()),
                }),
            }),
        }
    }
}

fn need(path: &str) -> Need {
    let method = path.rsplit('/').next().unwrap_or("");
    if path.starts_with("/grpc.health.") || path.starts_with("/grpc.reflection.") {
        return Need::Open;
    }
    if path.starts_with("/rota.v1.NodeService/") {
        return match method {
            "GetNodeInfo" => Need::Role(Role::Viewer),
            _ => Need::Node,
        };
    }
    if path.starts_with("/rota.v1.WorkerService/") {
        return Need::Worker;
    }
    match method {
        "PutJob" | "DeleteJob" | "PutLimit" | "DeleteLimit" | "PutCalendar" | "DeleteCalendar" => {
            Need::Role(Role::Admin)
        }
        "PauseJob" | "ResumeJob" | "TriggerJob" | "BackfillJob" | "CancelExecution" => Need::Role(Role::Operator),
        // Reads (GetJob, ListJobs, PreviewSchedule, ListExecutions, ...), and anything added later,
        // need at least a viewer.
        _ => Need::Role(Role::Viewer),
    }
}

/// The token of `authorization: Bearer <token>`; the scheme name is case-insensitive (RFC 9110).
fn bearer(headers: &http::HeaderMap) -> Option<&str> {
    let v = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.trim_start().split_once([' ', '\t'])?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

pub fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

pub fn hex(h: &[u8; 32]) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_hex(s: &str) -> Option<[u8; 32]> {
    let s = s.trim();
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

fn ct_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The caller of an allowed request, put in its extensions by `AuthService`: its token's name and
/// role (None when no token was needed: tokens are off, or a node call).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller(pub Option<(String, Role)>);

impl Caller {
    /// Who asked, as a record says it: the token's name, or `anonymous` where tokens are off.
    pub fn of<T>(req: &tonic::Request<T>) -> String {
        req.extensions()
            .get::<Caller>()
            .and_then(|c| c.0.as_ref().map(|(n, _)| n.clone()))
            .unwrap_or_else(|| "anonymous".into())
    }

    /// Refuses a part of a call that needs more than the call's own role (`what` says which part),
    /// PERMISSION_DENIED naming the role it needs. Where tokens are off, everything is allowed.
    pub fn require<T>(req: &tonic::Request<T>, need: Role, what: &str) -> std::result::Result<(), Status> {
        match req.extensions().get::<Caller>().and_then(|c| c.0.as_ref()) {
            Some((_, role)) if *role < need => Err(Status::permission_denied(format!(
                "{what} needs role '{}' (this token has '{}')",
                need.name(),
                role.name()
            ))),
            _ => Ok(()),
        }
    }
}

/// The tower layer that applies `Auth` to every request.
#[derive(Clone)]
pub struct AuthLayer {
    auth: Arc<Auth>,
}

impl AuthLayer {
    pub fn new(auth: Arc<Auth>) -> Self {
        AuthLayer { auth }
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = AuthService<S>;
    fn layer(&self, inner: S) -> AuthService<S> {
        AuthService { inner, auth: Arc::clone(&self.auth) }
    }
}

#[derive(Clone)]
pub struct AuthService<S> {
    inner: S,
    auth: Arc<Auth>,
}

type BoxFuture<T, E> = std::pin::Pin<Box<dyn std::future::Future<Output = std::result::Result<T, E>> + Send>>;

impl<S, B, RB> tower::Service<http::Request<B>> for AuthService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>> + Send,
    S::Future: Send + 'static,
    RB: Default + Send + 'static,
{
    type Response = http::Response<RB>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<std::result::Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
        let tls = req.extensions().get::<TlsConnectInfo<TcpConnectInfo>>();
        let verified = tls.and_then(|i| i.peer_certs()).is_some_and(|c| !c.is_empty());
        let peer = match tls {
            Some(i) => i.get_ref().remote_addr(),
            None => req.extensions().get::<TcpConnectInfo>().and_then(|i| i.remote_addr()),
        };
        match self.auth.check_from(req.uri().path(), req.headers(), verified, peer) {
            Ok(name) => {
                // Who asked, for what a call records (CancelExecution's record names its caller).
                req.extensions_mut().insert(Caller(name));
                Box::pin(self.inner.call(req))
            }
            Err(status) => Box::pin(async move { Ok(status.into_http()) }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(token: Option<&str>) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        if let Some(t) = token {
            h.insert(http::header::AUTHORIZATION, format!("Bearer {t}").parse().expect("header"));
        }
        h
    }

    fn auth() -> Auth {
        let mut a = Auth { cluster_secret: Some(hash("s3cret")), ..Auth::default() };
        a.tokens.insert(hash("v"), ("viewer-bot".into(), Role::Viewer));
        a.tokens.insert(hash("o"), ("ops".into(), Role::Operator));
        a.tokens.insert(hash("a"), ("root".into(), Role::Admin));
        a.tokens.insert(hash("w"), ("pyworker".into(), Role::Worker));
        a
    }

    #[test]
    fn roles_table() {
        use tonic::Code::*;
        let a = auth();
        let cases = [
            ("/grpc.health.v1.Health/Check", None, None),
            ("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", None, None),
            ("/rota.v1.SchedulerService/ListJobs", None, Some(Unauthenticated)),
            ("/rota.v1.SchedulerService/ListJobs", Some("nope"), Some(Unauthenticated)),
            ("/rota.v1.SchedulerService/ListJobs", Some("v"), None),
            ("/rota.v1.SchedulerService/TriggerJob", Some("v"), Some(PermissionDenied)),
            ("/rota.v1.SchedulerService/TriggerJob", Some("o"), None),
            ("/rota.v1.SchedulerService/BackfillJob", None, Some(Unauthenticated)),
            ("/rota.v1.SchedulerService/BackfillJob", Some("v"), Some(PermissionDenied)),
            ("/rota.v1.SchedulerService/BackfillJob", Some("w"), Some(PermissionDenied)),
            ("/rota.v1.SchedulerService/BackfillJob", Some("o"), None),
            ("/rota.v1.SchedulerService/CancelExecution", Some("v"), Some(PermissionDenied)),
            ("/rota.v1.SchedulerService/CancelExecution", Some("o"), None),
            ("/rota.v1.SchedulerService/CancelExecution", Some("a"), None),
            ("/rota.v1.SchedulerService/CancelExecution", Some("w"), Some(PermissionDenied)),
            ("/rota.v1.NodeService/StopRun", Some("s3cret"), None),
            ("/rota.v1.NodeService/StopRun", Some("a"), Some(PermissionDenied)),
            ("/rota.v1.SchedulerService/PutJob", Some("o"), Some(PermissionDenied)),
            ("/rota.v1.SchedulerService/PutJob", Some("a"), None),
            ("/rota.v1.SchedulerService/PutLimit", Some("o"), Some(PermissionDenied)),
            ("/rota.v1.SchedulerService/PutLimit", Some("a"), None),
            ("/rota.v1.SchedulerService/DeleteLimit", Some("o"), Some(PermissionDenied)),
            ("/rota.v1.SchedulerService/DeleteLimit", Some("a"), None),
            ("/rota.v1.SchedulerService/ListLimits", Some("v"), None),
            ("/rota.v1.SchedulerService/ListLimits", Some("w"), Some(PermissionDenied)),
            ("/rota.v1.SchedulerService/PutCalendar", Some("o"), Some(PermissionDenied)),
            ("/rota.v1.SchedulerService/PutCalendar", Some("a"), None),
            ("/rota.v1.SchedulerService/DeleteCalendar", Some("o"), Some(PermissionDenied)),
            ("/rota.v1.SchedulerService/DeleteCalendar", Some("a"), None),
            ("/rota.v1.SchedulerService/ListCalendars", Some("v"), None),
            ("/rota.v1.SchedulerService/ListCalendars", Some(""), Some(Unauthenticated)),
            ("/rota.v1.SchedulerService/PreviewSchedule", None, Some(Unauthenticated)),
            ("/rota.v1.SchedulerService/PreviewSchedule", Some("v"), None),
            ("/rota.v1.SchedulerService/PreviewSchedule", Some("w"), Some(PermissionDenied)),
            ("/rota.v1.SchedulerService/PauseJob", Some("v"), Some(PermissionDenied)),
            ("/rota.v1.SchedulerService/PauseJob", Some("o"), None),
            ("/rota.v1.NodeService/SubmitTask", Some("a"), Some(PermissionDenied)),
            ("/rota.v1.NodeService/SubmitTask", Some("s3cret"), None),
            ("/rota.v1.NodeService/SubmitTasks", Some("a"), Some(PermissionDenied)),
            ("/rota.v1.NodeService/SubmitTasks", Some("s3cret"), None),
            ("/rota.v1.NodeService/SubmitTasks", None, Some(Unauthenticated)),
            ("/rota.v1.NodeService/ReportLoad", None, Some(Unauthenticated)),
            ("/rota.v1.NodeService/ReportLoad", Some("v"), Some(PermissionDenied)),
            ("/rota.v1.NodeService/ReportLoad", Some("s3cret"), None),
            ("/rota.v1.NodeService/GetNodeInfo", Some("v"), None),
            ("/rota.v1.NodeService/GetNodeInfo", Some("s3cret"), Some(Unauthenticated)),
            ("/rota.v1.SchedulerService/WatchExecutionOutput", Some("v"), None),
            ("/rota.v1.SchedulerService/WatchExecutionOutput", Some("w"), Some(PermissionDenied)),
            ("/rota.v1.NodeService/WatchOutput", Some("s3cret"), None),
            ("/rota.v1.NodeService/WatchOutput", Some("a"), Some(PermissionDenied)),
            ("/rota.v1.WorkerService/Attach", None, Some(Unauthenticated)),
            ("/rota.v1.WorkerService/Attach", Some("w"), None),
            ("/rota.v1.WorkerService/Attach", Some("a"), None),
            ("/rota.v1.WorkerService/Attach", Some("o"), Some(PermissionDenied)),
            ("/rota.v1.WorkerService/Attach", Some("v"), Some(PermissionDenied)),
            ("/rota.v1.WorkerService/Attach", Some("s3cret"), Some(Unauthenticated)),
            // A worker's token opens nothing else.
            ("/rota.v1.SchedulerService/ListJobs", Some("w"), Some(PermissionDenied)),
            ("/rota.v1.SchedulerService/PutJob", Some("w"), Some(PermissionDenied)),
            ("/rota.v1.NodeService/GetNodeInfo", Some("w"), Some(PermissionDenied)),
            ("/rota.v1.NodeService/SubmitTasks", Some("w"), Some(PermissionDenied)),
        ];
        for (path, token, want) in cases {
            let got = a.check(path, &headers(token), false).err().map(|s| s.code());
            assert_eq!(got, want, "{path} with {token:?}");
        }
        let e = a.check("/rota.v1.SchedulerService/PutJob", &headers(Some("v")), false).expect_err("denied");
        assert_eq!(e.message(), "/rota.v1.SchedulerService/PutJob needs role 'admin' (this token has 'viewer')");
        assert!(Auth::open().check("/rota.v1.SchedulerService/PutJob", &headers(None), false).is_ok());
        // Mutual TLS, no tokens: node calls need a verified certificate (or the secret); the rest is open.
        let m = Auth { mtls: true, cluster_secret: Some(hash("s3cret")), ..Auth::default() };
        assert!(m.check("/rota.v1.NodeService/SubmitTask", &headers(None), true).is_ok());
        assert!(m.check("/rota.v1.NodeService/SubmitTask", &headers(Some("s3cret")), false).is_ok());
        assert_eq!(
            m.check("/rota.v1.NodeService/SubmitTask", &headers(None), false).err().map(|s| s.code()),
            Some(PermissionDenied)
        );
        assert!(m.check("/rota.v1.SchedulerService/ListJobs", &headers(None), false).is_ok());
    }

    fn with_auth(value: &str) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert(http::header::AUTHORIZATION, value.parse().expect("header"));
        h
    }

    /// A cluster secret without a tokens file guards the node-to-node calls (before, it was ignored
    /// and they were open); the rest of the API stays open (no tokens).
    #[test]
    fn a_cluster_secret_alone_guards_node_calls() {
        use tonic::Code::*;
        let a = Auth { cluster_secret: Some(hash("s3cret")), ..Auth::default() };
        for path in
            ["/rota.v1.NodeService/SubmitTask", "/rota.v1.NodeService/SubmitTasks", "/rota.v1.NodeService/ReportLoad"]
        {
            assert_eq!(a.check(path, &headers(None), false).err().map(|s| s.code()), Some(Unauthenticated), "{path}");
            assert_eq!(a.check(path, &headers(Some("nope")), false).err().map(|s| s.code()), Some(PermissionDenied));
            assert!(a.check(path, &headers(Some("s3cret")), false).is_ok(), "{path}");
        }
        assert!(a.check("/rota.v1.SchedulerService/PutJob", &headers(None), false).is_ok());
        assert!(a.check("/rota.v1.NodeService/GetNodeInfo", &headers(None), false).is_ok());
    }

    /// Scheme names are case-insensitive (RFC 9110 11.1): `BEARER x` is `Bearer x`.
    #[test]
    fn bearer_scheme_is_case_insensitive() {
        let a = auth();
        for v in ["Bearer v", "bearer v", "BEARER v", "bEaReR   v "] {
            assert!(a.check("/rota.v1.SchedulerService/ListJobs", &with_auth(v), false).is_ok(), "{v}");
        }
        for v in ["Basic v", "Bearerv", "v", "Bearer "] {
            assert!(a.check("/rota.v1.SchedulerService/ListJobs", &with_auth(v), false).is_err(), "{v}");
        }
        assert!(a.check("/rota.v1.NodeService/SubmitTasks", &with_auth("BEARER s3cret"), false).is_ok());
    }

    fn load_text(text: &str) -> Result<Auth> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("tokens.toml");
        std::fs::write(&path, text).expect("write");
        Auth::load(Some(&path), None, false)
    }

    /// Two entries with one hash are one token under two names: refused, naming both.
    #[test]
    fn two_tokens_with_one_hash_refuse_the_file() {
        let h = hex(&hash("same"));
        let text = format!(
            "[[token]]\nname = \"a\"\nrole = \"viewer\"\nsha256 = \"{h}\"\n[[token]]\nname = \"b\"\nrole = \"admin\"\nsha256 = \"{}\"\n",
            h.to_uppercase()
        );
        let e = load_text(&text).expect_err("duplicate").to_string();
        assert!(e.contains("'a'") && e.contains("'b'") && e.contains("same sha256"), "{e}");
    }

    /// A parse error names the file and line, never the line's text (it may be a token).
    #[test]
    fn tokens_file_errors_name_the_line_not_its_text() {
        for text in ["raw-token-s3cret\n", "[[token]]\nname = \"x\"\nrole = \"root-s3cret\"\nsha256 = \"00\"\n"] {
            let e = load_text(text).expect_err("bad file").to_string();
            assert!(e.contains("line"), "{e}");
            assert!(!e.contains("s3cret"), "{e}");
        }
    }

    /// A blank secret is a missing secret, not a credential anyone can present.
    #[test]
    fn a_blank_cluster_secret_is_refused() {
        for s in ["", "  ", "\t"] {
            assert!(Auth::load(None, Some(s), false).is_err(), "{s:?}");
        }
    }

    /// At most one line per reason per window, carrying the count of refusals since the last line.
    #[test]
    fn refusals_are_logged_at_most_once_per_window() {
        let mut log = RefusalLog::default();
        let t0 = std::time::Instant::now();
        assert_eq!(log.note("unknown token", t0), Some(1));
        for i in 1..50 {
            assert_eq!(log.note("unknown token", t0 + std::time::Duration::from_millis(i)), None);
        }
        assert_eq!(log.note("missing credential", t0), Some(1), "each reason has its own window");
        assert_eq!(log.note("unknown token", t0 + REFUSAL_LOG_EVERY), Some(50));
    }

    #[test]
    fn hex_round_trip() {
        let h = hash("token");
        assert_eq!(parse_hex(&hex(&h)), Some(h));
        assert_eq!(parse_hex("zz"), None);
    }
}
