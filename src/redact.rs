//! What may be shown of a value in a log line or an error message. Two rules, one helper each:
//! - a URL is shown as `scheme://host:port` only: paths, queries and user info carry secrets
//!   (Slack-style webhook URLs are credentials; Redis URLs carry passwords) ([`url`]);
//! - a value echoed back in an error is cut to its first 64 characters plus its size, so a
//!   100 kB input does not come back whole ([`value`], and [`quoted_values`] for a message already
//!   made).
use std::borrow::Cow;

/// Characters of an echoed value kept before it is cut.
pub const SHOWN_CHARS: usize = 64;

/// `scheme://host:port` of a URL (the port only when the URL has one or its scheme has a default),
/// or `<unparsable URL>`: never the user, password, path, query or fragment.
pub fn url(s: &str) -> String {
    match reqwest::Url::parse(s) {
        Ok(u) => parsed_url(&u),
        Err(_) => "<unparsable URL>".to_string(),
    }
}

/// As [`url`], for a URL already parsed.
pub fn parsed_url(u: &reqwest::Url) -> String {
    let Some(host) = u.host_str() else { return format!("{}://", u.scheme()) };
    match u.port_or_known_default() {
        Some(p) => format!("{}://{host}:{p}", u.scheme()),
        None => format!("{}://{host}", u.scheme()),
    }
}

/// `s` itself when short, else its first [`SHOWN_CHARS`] characters, `…` and its size in bytes.
pub fn value(s: &str) -> Cow<'_, str> {
    match s.char_indices().nth(SHOWN_CHARS) {
        None => Cow::Borrowed(s),
        Some((cut, _)) => Cow::Owned(format!("{}…({} bytes)", &s[..cut], s.len())),
    }
}

/// A message with every `'…'`-quoted part longer than [`SHOWN_CHARS`] cut by [`value`]: the last
/// guard at the edge for messages that echo what the caller sent.
pub fn quoted_values(msg: &str) -> Cow<'_, str> {
    if msg.len() <= 4 * SHOWN_CHARS {
        return Cow::Borrowed(msg);
    }
    let mut out = String::with_capacity(1024);
    let mut rest = msg;
    while let Some(open) = rest.find('\'') {
        out.push_str(&rest[..=open]);
        rest = &rest[open + 1..];
        let Some(close) = rest.find('\'') else { break };
        out.push_str(&value(&rest[..close]));
        out.push('\'');
        rest = &rest[close + 1..];
    }
    out.push_str(&value(rest));
    Cow::Owned(out)
}

/// A message with the content of every quoted part (`'…'`, `"…"`, `` `…` ``) replaced by `…`: for
/// reasons about values that may be secrets (a job's arguments in a jobs file).
pub fn without_quoted(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut open: Option<char> = None;
    for c in msg.chars() {
        match open {
            Some(q) if c == q => {
                out.push('…');
                out.push(c);
                open = None;
            }
            Some(_) => {}
            None => {
                out.push(c);
                if matches!(c, '\'' | '"' | '`') {
                    open = Some(c);
                }
            }
        }
    }
    if open.is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_keep_scheme_host_and_port_only() {
        let cases = [
            ("https://hooks.slack.com/services/T0/B0/s3cret?token=x#f", "https://hooks.slack.com:443"),
            ("http://user:pw@127.0.0.1:9000/hook", "http://127.0.0.1:9000"),
            ("redis://rota:pw@10.0.0.1:6379/0", "redis://10.0.0.1:6379"),
            ("redis://rota:pw@10.0.0.1/0", "redis://10.0.0.1"),
            ("not a url s3cret", "<unparsable URL>"),
            ("unix:///run/redis.sock", "unix://"),
        ];
        for (input, want) in cases {
            assert_eq!(url(input), want, "{input}");
        }
    }

    #[test]
    fn long_values_are_cut_with_their_size() {
        assert_eq!(value("short"), "short");
        let long = "é".repeat(100);
        let v = value(&long);
        assert!(v.starts_with(&"é".repeat(SHOWN_CHARS)) && v.ends_with("…(200 bytes)"), "{v}");
        let msg = format!("id: '{}' has ' '; allowed are A-Z", "x".repeat(100_000));
        let q = quoted_values(&msg);
        assert!(q.len() < 200 && q.contains("…(100000 bytes)") && q.ends_with("allowed are A-Z"), "{q}");
        assert_eq!(quoted_values("id: 'a' is short"), "id: 'a' is short");
    }

    #[test]
    fn quoted_parts_are_removed() {
        assert_eq!(without_quoted("url 'http://h/s3cret': bad"), "url '…': bad");
        assert_eq!(without_quoted("x \"s3cret\" and `k` and 'open"), "x \"…\" and `…` and '…");
    }
}
