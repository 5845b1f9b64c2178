//! Who may call what. Tokens (bearer, in the `authorization` metadata) carry a role: `viewer`
//! (reads), `operator` (also pause, resume, trigger), `admin` (also put and delete jobs). Node-to-node
//! calls (SubmitTask(s), ReportLoad) need the cluster secret. Health and reflection stay open: a load
//! balancer has no token. Tokens are configured as SHA-256 hashes and compared in constant time;
//! the clear token is never logged. With no tokens configured, everything is open (local use).
//! This is a tower layer in front of every service, so handlers never deal with it.
use std::collections::HashMap;
use std::sync::Arc;
use std::task::{Context, Poll};

use serde::Deserialize;
use sha2::{Digest, Sha256};
use tonic::Status;

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Viewer,
    Operator,
    Admin,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
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

#[derive(Debug, Default)]
pub struct Auth {
    /// sha256 -> (name, role)
    tokens: HashMap<[u8; 32], (String, Role)>,
    cluster_secret: Option<[u8; 32]>,
    /// Mutual TLS with a cluster CA: node-only calls need a verified peer certificate (or the secret).
    mtls: bool,
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
        let mut auth = Auth { tokens: HashMap::new(), cluster_secret: cluster_secret.map(|s| hash(s.trim())), mtls };
        if let Some(path) = tokens_file {
            let key = format!("tokens_file {}", path.display());
            let text =
                std::fs::read_to_string(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
            let file: TokensFile =
                toml::from_str(&text).map_err(|e| Error::Config { key: key.clone(), reason: e.to_string() })?;
            for t in file.token {
                let h = parse_hex(&t.sha256).ok_or_else(|| Error::Config {
                    key: key.clone(),
                    reason: format!("token '{}': sha256 must be 64 hex digits", t.name),
                })?;
                auth.tokens.insert(h, (t.name, t.role));
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
        let need = need(path);
        if need == Need::Open {
            return Ok(());
        }
        if need == Need::Node && self.mtls {
            let secret_ok = bearer(headers).zip(self.cluster_secret.as_ref()).is_some_and(|(t, s)| ct_eq(s, &hash(t)));
            return if peer_verified || secret_ok {
                Ok(())
            } else {
                Err(Status::permission_denied(
                    "this call is for cluster nodes: present a certificate from the cluster CA",
                ))
            };
        }
        if !self.enabled() {
            return Ok(());
        }
        let Some(token) = bearer(headers) else {
            return Err(Status::unauthenticated("missing token: send 'authorization: Bearer <token>'"));
        };
        let h = hash(token);
        if need == Need::Node {
            return match &self.cluster_secret {
                Some(s) if ct_eq(s, &h) => Ok(()),
                _ => Err(Status::permission_denied("this call is for cluster nodes (cluster secret required)")),
            };
        }
        let Need::Role(want) = need else { return Ok(()) };
        // Constant time over every configured token, so timing does not tell which one is close.
        let mut found: Option<&(String, Role)> = None;
        for (k, v) in &self.tokens {
            if ct_eq(k, &h) {
                found = Some(v);
            }
        }
        match found {
            None => Err(Status::unauthenticated("unknown token")),
            Some((_, role)) if *role >= want => Ok(()),
            Some((name, role)) => {
                tracing::info!(token = %name, role = role.name(), need = want.name(), path, "call refused: role too low");
                Err(Status::permission_denied(format!(
                    "{path} needs role '{}' (this token has '{}')",
                    want.name(),
                    role.name()
                )))
            }
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
    match method {
        "PutJob" | "DeleteJob" => Need::Role(Role::Admin),
        "PauseJob" | "ResumeJob" | "TriggerJob" => Need::Role(Role::Operator),
        // Reads, and anything added later, need at least a viewer.
        _ => Need::Role(Role::Viewer),
    }
}

fn bearer(headers: &http::HeaderMap) -> Option<&str> {
    let v = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")).map(str::trim).filter(|t| !t.is_empty())
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

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
        let verified = req
            .extensions()
            .get::<TlsConnectInfo<TcpConnectInfo>>()
            .and_then(|i| i.peer_certs())
            .is_some_and(|c| !c.is_empty());
        match self.auth.check(req.uri().path(), req.headers(), verified) {
            Ok(()) => Box::pin(self.inner.call(req)),
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
        let mut a = Auth { tokens: HashMap::new(), cluster_secret: Some(hash("s3cret")), mtls: false };
        a.tokens.insert(hash("v"), ("viewer-bot".into(), Role::Viewer));
        a.tokens.insert(hash("o"), ("ops".into(), Role::Operator));
        a.tokens.insert(hash("a"), ("root".into(), Role::Admin));
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
            ("/rota.v1.SchedulerService/PutJob", Some("o"), Some(PermissionDenied)),
            ("/rota.v1.SchedulerService/PutJob", Some("a"), None),
            ("/rota.v1.NodeService/SubmitTask", Some("a"), Some(PermissionDenied)),
            ("/rota.v1.NodeService/SubmitTask", Some("s3cret"), None),
            ("/rota.v1.NodeService/SubmitTasks", Some("a"), Some(PermissionDenied)),
            ("/rota.v1.NodeService/SubmitTasks", Some("s3cret"), None),
            ("/rota.v1.NodeService/GetNodeInfo", Some("v"), None),
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

    #[test]
    fn hex_round_trip() {
        let h = hash("token");
        assert_eq!(parse_hex(&hex(&h)), Some(h));
        assert_eq!(parse_hex("zz"), None);
    }
}
