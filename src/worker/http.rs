//! The `http` handler: one HTTP request per execution; success is decided by the response status
//! (2xx unless the job lists the statuses it accepts). The fire's context goes out as `X-Rota-*`
//! headers so the receiving service can deduplicate by execution or fire id.
//!
//! Arguments: `http('POST', 'https://…')`, `["https://…"]` (GET), or
//! `{"method": "POST", "url": "…", "headers": {"K": "V"}, "body": "…", "success_status": [200, 202]}`.
use async_trait::async_trait;
use reqwest::{Method, Url};
use serde_json::Value;

use super::handlers::{map_field, str_field, ArgsError, FireContext, Handler, HandlerFailure};
use crate::execution::{truncate_utf8, MAX_OUTPUT_BYTES};

pub struct Http {
    client: reqwest::Client,
}

#[derive(Debug)]
struct Spec {
    method: Method,
    url: Url,
    headers: Vec<(String, String)>,
    body: Option<String>,
    success: Vec<u16>,
}

impl Http {
    pub fn new() -> Http {
        // Timeouts are the job's (the worker drops the future); redirects are not followed, so a
        // 3xx is visible in the record rather than silently becoming another request.
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("rota/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Http { client }
    }

    fn spec(args: &Value) -> Result<Spec, String> {
        let (method, url, headers, body, success) = match args {
            Value::Array(a) => match a.as_slice() {
                [Value::String(u)] => ("GET".to_string(), u.clone(), Vec::new(), None, Vec::new()),
                [Value::String(m), Value::String(u)] => (m.clone(), u.clone(), Vec::new(), None, Vec::new()),
                [Value::String(m), Value::String(u), Value::String(b)] => {
                    (m.clone(), u.clone(), Vec::new(), Some(b.clone()), Vec::new())
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
                    Some(v) => return Err(format!("'success_status' must be a list, got {v}")),
                };
                (method, url, map_field(o, "headers")?, str_field(o, "body")?.map(str::to_string), success)
            }
            _ => return Err("http takes ['https://…'] or {\"url\": \"…\"}".into()),
        };
        let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes())
            .map_err(|_| format!("'{method}' is not an HTTP method"))?;
        let url = Url::parse(&url).map_err(|e| format!("url '{url}': {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("url '{url}': only http and https are supported"));
        }
        for (k, _) in &headers {
            reqwest::header::HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| format!("header name '{k}' is invalid"))?;
        }
        Ok(Spec { method, url, headers, body, success })
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
        Self::spec(args).map(|_| ()).map_err(ArgsError::from)
    }

    async fn run(&self, ctx: &FireContext, args: &Value) -> Result<String, HandlerFailure> {
        let spec = Self::spec(args).map_err(HandlerFailure::new)?;
        let mut req = self.client.request(spec.method, spec.url);
        for (k, v) in ctx.fields() {
            req = req.header(format!("X-Rota-{}", header_case(k)), v);
        }
        for (k, v) in &spec.headers {
            req = req.header(k, v);
        }
        if let Some(b) = spec.body {
            req = req.body(b);
        }
        let resp = req.send().await.map_err(|e| HandlerFailure::new(format!("request failed: {e}")))?;
        let status = resp.status();
        let output = truncate_utf8(read_capped(resp, MAX_OUTPUT_BYTES).await, MAX_OUTPUT_BYTES);
        let ok = if spec.success.is_empty() { status.is_success() } else { spec.success.contains(&status.as_u16()) };
        if ok {
            Ok(output)
        } else {
            Err(HandlerFailure { message: format!("HTTP status {status}"), output })
        }
    }
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
        assert!(Http::spec(&json!(["ftp://h/"])).expect_err("scheme").contains("only http and https"));
        assert!(Http::spec(&json!(["GE T", "http://h/"])).expect_err("method").contains("not an HTTP method"));
        assert!(Http::spec(&json!({"url": "http://h/", "success_status": [999]})).is_err());
        assert!(Http::spec(&json!({"url": "http://h/", "headers": {"bad header": "x"}})).is_err());
        assert!(Http::spec(&json!({})).is_err());
    }

    #[test]
    fn header_names() {
        assert_eq!(header_case("SCHEDULED_AT_MS"), "Scheduled-At-Ms");
        assert_eq!(header_case("JOB_ID"), "Job-Id");
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
        let ctx = FireContext {
            job_id: "j".into(),
            fire_id: "j@1000".into(),
            execution_id: "e1".into(),
            scheduled_ms: 1000,
            attempt: 3,
            node_id: "n1".into(),
            epoch: 0,
            manual: false,
        };
        let h = Http::new();
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
        assert!(first.ends_with("payload"), "{first}");
    }
}
