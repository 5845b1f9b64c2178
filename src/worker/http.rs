//! The `http` handler: one HTTP request per execution; success is decided by the response status
//! (2xx unless the job lists the statuses it accepts). The fire's context goes out as `X-Rota-*`
//! headers so the receiving service can deduplicate by execution or fire id.
//!
//! Where a job may connect is the node's rule (`egress`): judged at PutJob for what can be judged
//! without DNS, and at every run after resolving the host, connecting only to the addresses judged.
//!
//! Arguments: `http('POST', 'https://…')`, `["https://…"]` (GET), or
//! `{"method": "POST", "url": "…", "headers": {"K": "V"}, "body": "…", "success_status": [200, 202]}`.
use std::time::Duration;

use async_trait::async_trait;
use reqwest::{Method, Url};
use serde_json::Value;

use super::egress::Egress;
use super::handlers::{map_field, str_field, ArgsError, FireContext, Handler, HandlerFailure};
use crate::execution::{truncate_utf8, MAX_OUTPUT_BYTES};

/// The methods a job may use. Any other token would be sent as is, and a request line such as
/// `SET /key HTTP/1.1` is a command to a line-oriented server (Redis runs it).
const METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/// The timeout of an http run whose job sets none: a server that accepts and never answers would
/// otherwise hold a worker until the node stops. A job's own timeout (up to 7 days) replaces it.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Http {
    egress: Egress,
}

#[derive(Debug)]
struct Spec {
    method: Method,
    url: Url,
    /// Where the URL sits in the arguments (`url`, `[0]`, `[1]`), for PutJob's message.
    url_path: &'static str,
    headers: Vec<(String, String)>,
    body: Option<String>,
    success: Vec<u16>,
}

impl Http {
    /// With no destination list and no ports of a node to protect: loopback, link-local and
    /// unspecified addresses are still refused. `node` builds it `with_egress`.
    pub fn new() -> Http {
        Http::with_egress(Egress::default())
    }

    pub fn with_egress(egress: Egress) -> Http {
        Http { egress }
    }

    fn spec(args: &Value) -> Result<Spec, ArgsError> {
        // (method, its path), (url, its path), headers, body, statuses
        let ((method, method_path), (url, url_path), headers, body, success) = match args {
            Value::Array(a) => match a.as_slice() {
                [Value::String(u)] => (("GET".to_string(), "[0]"), (u.clone(), "[0]"), Vec::new(), None, Vec::new()),
                [Value::String(m), Value::String(u)] => {
                    ((m.clone(), "[0]"), (u.clone(), "[1]"), Vec::new(), None, Vec::new())
                }
                [Value::String(m), Value::String(u), Value::String(b)] => {
                    ((m.clone(), "[0]"), (u.clone(), "[1]"), Vec::new(), Some(b.clone()), Vec::new())
                }
                _ => return Err("http takes (url), (method, url) or (method, url, body) as strings".into()),
            },
            Value::Object(o) => {
                let url = str_field(o, "url")?.ok_or("http needs 'url'")?.to_string();
                let method = str_field(o, "method")?.unwrap_or("GET").to_string();
                let success = match o.get("success_status") {
                    None | Some(Value::Null) => Vec::new(),
                    Some(Value::Array(a)) => a
                        .iter()
                        .map(|v| v.as_u64().and_then(|n| u16::try_from(n).ok()).filter(|n| (100..600).contains(n)))
                        .collect::<Option<Vec<u16>>>()
                        .ok_or("'success_status' must be a list of HTTP status codes (100-599)")?,
                    Some(v) => return Err(format!("'success_status' must be a list, got {v}").into()),
                };
                let (headers, body) = (map_field(o, "headers")?, str_field(o, "body")?.map(str::to_string));
                ((method, "method"), (url, "url"), headers, body, success)
            }
            _ => return Err("http takes ['https://…'] or {\"url\": \"…\"}".into()),
        };
        let upper = method.to_ascii_uppercase();
        if !METHODS.contains(&upper.as_str()) {
            let shown: String = method.chars().take(32).flat_map(char::escape_debug).collect();
            return Err(ArgsError::at(method_path, format!("'{shown}' is not one of {}", METHODS.join(", "))));
        }
        let method = Method::from_bytes(upper.as_bytes())
            .map_err(|_| ArgsError::at(method_path, format!("'{upper}' is not an HTTP method")))?;
        let url = Url::parse(&url).map_err(|e| ArgsError::at(url_path, format!("not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ArgsError::at(
                url_path,
                format!("scheme '{}': only http and https are supported", url.scheme()),
            ));
        }
        for (k, v) in &headers {
            let path = || format!("headers.{}", k.chars().take(64).flat_map(char::escape_debug).collect::<String>());
            reqwest::header::HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| ArgsError::at(path(), "is not a valid header name"))?;
            // HeaderValue refuses CR, LF, NUL and the other control bytes (tab aside): each would
            // end the header early and start another, or another request.
            reqwest::header::HeaderValue::from_str(v)
                .map_err(|_| ArgsError::at(path(), "the value has a control character (CR, LF, NUL, …)"))?;
        }
        Ok(Spec { method, url, url_path, headers, body, success })
    }

    /// A client for one run: no redirects (a 3xx is recorded rather than silently becoming a
    /// request to somewhere unchecked), no proxy (the node connects to the address it checked),
    /// and the host name pinned to the addresses checked, so DNS is not asked again.
    fn client(&self, url: &Url, addrs: &[std::net::SocketAddr]) -> Result<reqwest::Client, HandlerFailure> {
        let mut b = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent(concat!("rota/", env!("CARGO_PKG_VERSION")));
        if let (Some(host), false) = (url.host_str(), addrs.is_empty()) {
            b = b.resolve_to_addrs(host, addrs);
        }
        b.build().map_err(|e| HandlerFailure::new(format!("cannot build the http client: {e}")))
    }
}

impl Default for Http {
    fn default() -> Self {
        Http::new()
    }
}

#[async_trait]
impl Handler for Http {
    fn validate(&self, args: &Value) -> Result<(), ArgsError> {
        let spec = Self::spec(args)?;
        self.egress.check_url(&spec.url).map_err(|r| {
            let dest =
                format!("{}:{}", spec.url.host_str().unwrap_or(""), spec.url.port_or_known_default().unwrap_or(0));
            ArgsError::at(spec.url_path, format!("destination {dest} refused: {r}"))
        })
    }

    fn default_timeout(&self) -> Option<Duration> {
        Some(DEFAULT_TIMEOUT)
    }

    async fn run(&self, ctx: &FireContext, args: &Value) -> Result<String, HandlerFailure> {
        let spec = Self::spec(args).map_err(|e| HandlerFailure::new(e.to_string()))?;
        // Judged again at every run, after resolving: the list may have changed since the job was
        // put, and a name's addresses are only known now.
        let addrs = self.egress.resolve(&spec.url).await.map_err(|r| {
            let dest =
                format!("{}:{}", spec.url.host_str().unwrap_or(""), spec.url.port_or_known_default().unwrap_or(0));
            tracing::warn!(job = %ctx.job_id, execution = %ctx.execution_id, destination = %crate::redact::parsed_url(&spec.url),
                reason = %r, "http job destination refused");
            HandlerFailure::new(format!("destination {dest} refused: {r}"))
        })?;
        let client = self.client(&spec.url, &addrs)?;
        let mut req = client.request(spec.method, spec.url.clone());
        for (k, v) in ctx.fields() {
            req = req.header(format!("X-Rota-{}", header_case(k)), v);
        }
        for (k, v) in &spec.headers {
            req = req.header(k, v);
        }
        if let Some(b) = spec.body {
            req = req.body(b);
        }
        let resp = req.send().await.map_err(|e| {
            let shown = crate::redact::parsed_url(&spec.url);
            HandlerFailure::new(format!("request to {shown} failed: {}", cause_chain(e, &spec.url, &shown)))
        })?;
        let status = resp.status();
        let output = truncate_utf8(read_capped(resp, MAX_OUTPUT_BYTES).await, MAX_OUTPUT_BYTES);
        let ok = if spec.success.is_empty() { status.is_success() } else { spec.success.contains(&status.as_u16()) };
        if ok {
            Ok(output)
        } else {
            Err(HandlerFailure { output, ..HandlerFailure::new(format!("HTTP status {status}")) })
        }
    }
}

/// A failed request's whole story, outermost first, joined by ": " ("error sending request: client
/// error (Connect): tcp connect error: Connection refused (os error 111)"): the top error alone
/// says nothing of the cause. `without_url` drops the URL from reqwest's own message (its path and
/// query may be a credential); the inner errors (hyper, io, TLS) do not carry it. A level whose text
/// the previous one already contains is skipped, so a wrapper that repeats its source is not shown
/// twice. Should a level ever quote the whole URL, it is replaced by `shown` (scheme://host:port).
fn cause_chain(e: reqwest::Error, url: &reqwest::Url, shown: &str) -> String {
    let top = e.without_url();
    let mut parts = vec![top.to_string()];
    let mut cur: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(&top);
    while let Some(err) = cur {
        let text = err.to_string();
        if !text.is_empty() && !parts.last().is_some_and(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = err.source();
    }
    parts.join(": ").replace(url.as_str(), shown)
}

/// The body up to `cap` bytes: a huge (or endless) response is not read past the cap, so it cannot
/// grow the node's memory; dropping the response closes the connection.
async fn read_capped(mut resp: reqwest::Response, cap: usize) -> String {
    let mut kept = Vec::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        let room = cap.saturating_sub(kept.len());
        kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if kept.len() >= cap {
            break;
        }
    }
    String::from_utf8_lossy(&kept).into_owned()
}

/// "SCHEDULED_AT_MS" -> "Scheduled-At-Ms".
fn header_case(k: &str) -> String {
    k.split('_')
        .map(|w| {
            let lower = w.to_ascii_lowercase();
            let mut c = lower.chars();
            c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join("-")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn argument_shapes() {
        assert!(Http::spec(&json!(["http://127.0.0.1:1/x"])).is_ok());
        assert!(Http::spec(&json!(["post", "https://example.invalid/"])).is_ok());
        assert!(Http::spec(&json!({"url": "http://h/", "headers": {"A": "b"}, "success_status": [204]})).is_ok());
        let e = Http::spec(&json!(["ftp://h/"])).expect_err("scheme").to_string();
        assert!(e.starts_with("args[0]: scheme 'ftp': only http and https"), "{e}");
        let e = Http::spec(&json!(["GE T", "http://h/"])).expect_err("method").to_string();
        assert!(e.starts_with("args[0]: 'GE T' is not one of GET, HEAD"), "{e}");
        assert!(Http::spec(&json!({"url": "http://h/", "success_status": [999]})).is_err());
        assert!(Http::spec(&json!({"url": "http://h/", "headers": {"bad header": "x"}})).is_err());
        assert!(Http::spec(&json!({})).is_err());
    }

    fn refused(args: serde_json::Value) -> String {
        let r = crate::worker::handlers::Registry::with_builtins();
        r.validate("http", &args).expect_err(&args.to_string()).to_string()
    }

    /// Any token-shaped method used to pass: `SET` against Redis runs as a command.
    #[test]
    fn methods_are_a_fixed_list() {
        let r = crate::worker::handlers::Registry::with_builtins();
        for m in ["GET", "head", "Post", "PUT", "PATCH", "delete", "OPTIONS"] {
            r.validate("http", &json!({"method": m, "url": "https://h.example/"})).expect(m);
        }
        for m in ["SET", "CONNECT", "TRACE", "FLUSHALL", "PROPFIND"] {
            let e = refused(json!({"method": m, "url": "https://h.example/"}));
            assert!(e.starts_with("args.method: "), "{m}: {e}");
        }
        assert!(refused(json!(["SET", "https://h.example/"])).starts_with("args[0]: "));
    }

    /// A header value with CR or LF would be a second header (or a second request) on the wire.
    #[test]
    fn header_injection_is_refused_at_put() {
        for v in ["a\r\nX-Evil: 1", "a\nb", "a\u{0}b"] {
            let e = refused(json!({"url": "https://h.example/", "headers": {"X-A": v}}));
            assert!(e.starts_with("args.headers.X-A: "), "{v:?}: {e}");
        }
        let e = refused(json!({"url": "https://h.example/", "headers": {"X-A\r\nB": "v"}}));
        assert!(e.starts_with("args.headers."), "{e}");
    }

    /// With no http_allow, loopback, link-local and unspecified destinations are refused (in every
    /// spelling the URL parser accepts), private and public ones pass.
    #[test]
    fn default_destinations_refuse_loopback_and_link_local() {
        for url in [
            "http://127.0.0.1:6379/ssrf-key",
            "http://127.1/",
            "http://2130706433/",
            "http://0x7f.0.0.1/",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:169.254.169.254]/",
            "http://169.254.169.254/latest/meta-data/",
            "http://[fe80::1]/",
            "http://0.0.0.0:8080/",
            "http://0/",
            "http://[::]/",
        ] {
            let e = refused(json!({"method": "GET", "url": url}));
            assert!(e.starts_with("args.url: "), "{url}: {e}");
            assert!(e.contains("http_allow"), "{url}: the reason says how to allow it: {e}");
        }
        assert!(refused(json!(["http://127.0.0.1/"])).starts_with("args[0]: "));
        assert!(refused(json!(["POST", "http://127.0.0.1/"])).starts_with("args[1]: "));
        let r = crate::worker::handlers::Registry::with_builtins();
        for url in ["http://10.0.0.1/", "http://192.168.1.1:8080/", "https://93.184.216.34/", "https://h.example/"] {
            r.validate("http", &json!([url])).expect(url);
        }
    }

    /// A host name is resolved at run time, and every address it resolves to is checked before
    /// the connection: `localhost` passes PutJob and is refused when it runs.
    #[tokio::test]
    async fn a_name_resolving_to_loopback_is_refused_at_run_time() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.expect("accept");
            let mut buf = vec![0u8; 4096];
            let _ = s.read(&mut buf).await;
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await;
        });
        let args = json!([format!("http://localhost:{port}/hook?token=secret")]);
        let h = Http::new();
        h.validate(&args).expect("names are not resolved at PutJob");
        let f = h.run(&ctx(), &args).await.expect_err("refused at run time");
        assert!(f.message.contains(&format!("localhost:{port}")), "{}", f.message);
        assert!(f.message.contains("127.0.0.1") && f.message.contains("loopback"), "{}", f.message);
        assert!(!f.message.contains("secret"), "the path and query are not echoed: {}", f.message);
        assert!(!server.is_finished(), "no connection was made");
        server.abort();
    }

    #[test]
    fn header_names() {
        assert_eq!(header_case("SCHEDULED_AT_MS"), "Scheduled-At-Ms");
        assert_eq!(header_case("JOB_ID"), "Job-Id");
    }

    fn ctx() -> FireContext {
        FireContext::example()
    }

    /// A refused connection says so (the cause chain, not just "error sending request"), and
    /// never shows the URL's user info, path or query.
    #[tokio::test]
    async fn a_failed_request_shows_its_cause_without_the_url() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port()
        };
        let allow = Egress::new(&["127.0.0.1".into()], Default::default()).expect("valid");
        let h = Http::with_egress(allow);
        let url = format!("http://user:pa55word@127.0.0.1:{port}/hook/s3cret-token?key=s3cret-key");
        let f = h.run(&ctx(), &json!([url])).await.expect_err("closed port");
        assert!(f.message.starts_with(&format!("request to http://127.0.0.1:{port} failed: ")), "{}", f.message);
        assert!(f.message.contains("Connection refused"), "{}", f.message);
        for secret in ["pa55word", "s3cret", "user:", "/hook"] {
            assert!(!f.message.contains(secret), "{secret} in {}", f.message);
        }
    }

    #[tokio::test]
    async fn sends_context_headers_and_judges_status() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let mut seen = Vec::new();
            for status in ["200 OK", "500 Internal Server Error"] {
                let (mut s, _) = listener.accept().await.expect("accept");
                let mut buf = vec![0u8; 8192];
                let n = s.read(&mut buf).await.expect("read");
                seen.push(String::from_utf8_lossy(&buf[..n]).to_string());
                let reply = format!("HTTP/1.1 {status}\r\ncontent-length: 4\r\nconnection: close\r\n\r\nbody");
                s.write_all(reply.as_bytes()).await.expect("write");
            }
            seen
        });
        let ctx = FireContext { attempt: 3, fire_id: "j@1000/1of4".into(), ..ctx() };
        // The test server is on loopback: listed, as an operator would.
        let allow = Egress::new(&["127.0.0.1".into()], Default::default()).expect("valid");
        let h = Http::with_egress(allow);
        let url = format!("http://{addr}/hook");
        assert_eq!(h.run(&ctx, &json!(["POST", url, "payload"])).await, Ok("body".to_string()));
        let f = h.run(&ctx, &json!([url])).await.expect_err("500");
        assert_eq!(f.message, "HTTP status 500 Internal Server Error");
        let seen = server.await.expect("server");
        let first = seen[0].to_ascii_lowercase();
        assert!(first.starts_with("post /hook"), "{first}");
        assert!(first.contains("x-rota-execution-id: e1"), "{first}");
        assert!(first.contains("x-rota-attempt: 3"), "{first}");
        assert!(first.contains("x-rota-scheduled-at-ms: 1000"), "{first}");
        assert!(first.contains("x-rota-shard-index: 1") && first.contains("x-rota-shard-total: 4"), "{first}");
        assert!(first.ends_with("payload"), "{first}");
    }
}
