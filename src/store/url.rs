//! The form of a store URL (`redis://`, `rediss://`, `unix://`, `redis+cluster://`,
//! `redis+sentinel://`), checked without connecting: what the config's validation, the node's
//! descriptions and the Redis store's topology share.
/// The form of a `redis` URL, checked without connecting (what `validate` and the Redis store
/// share). Its errors say what is wrong without echoing the URL, which may carry a password.
#[derive(Debug, PartialEq, Eq)]
pub enum RedisUrl<'a> {
    /// `redis://`, `rediss://` or `unix://`: one server; the `redis` crate reads the rest.
    Single,
    /// `redis+cluster://` or `rediss+cluster://`: the user info (`user:pass@` or empty) and the
    /// listed nodes (`host:port`), any of which leads to the rest of the cluster.
    Cluster { tls: bool, userinfo: &'a str, hosts: Vec<&'a str> },
    /// `redis+sentinel://` or `rediss+sentinel://` (TLS to the Sentinels and to the primary): the
    /// user info and database are the primary's; the hosts are Sentinels (their own credentials
    /// are the config's `redis_sentinel_username` / `redis_sentinel_password`).
    Sentinel { tls: bool, userinfo: &'a str, hosts: Vec<&'a str>, master: &'a str, db: &'a str },
}

impl<'a> RedisUrl<'a> {
    pub fn parse(url: &'a str) -> std::result::Result<RedisUrl<'a>, String> {
        let scheme = [
            "redis+cluster://",
            "rediss+cluster://",
            "redis+sentinel://",
            "rediss+sentinel://",
            "redis://",
            "rediss://",
            "unix://",
        ]
        .into_iter()
        .find(|s| url.starts_with(s));
        let Some(scheme) = scheme else {
            return Err("must start with redis://, rediss:// (TLS), unix://, redis+cluster://, \
                        rediss+cluster:// (TLS), redis+sentinel:// or rediss+sentinel:// (TLS)"
                .into());
        };
        let rest = &url[scheme.len()..];
        let form = scheme.trim_end_matches("://");
        match scheme {
            "redis+cluster://" | "rediss+cluster://" => {
                let (userinfo, hosts, path) = split_hosts(rest, form)?;
                if !(path.is_empty() || path == "0") {
                    return Err(format!("{form} takes no database number (a Redis Cluster has only db 0)"));
                }
                Ok(RedisUrl::Cluster { tls: scheme.starts_with("rediss"), userinfo, hosts })
            }
            "redis+sentinel://" | "rediss+sentinel://" => {
                let (userinfo, hosts, path) = split_hosts(rest, form)?;
                let (master, db) = path.split_once('/').unwrap_or((path, ""));
                if master.is_empty() {
                    return Err(format!("{form} needs the primary's name: {form}://host:port,.../name"));
                }
                if !db.is_empty() && db.parse::<u16>().is_err() {
                    return Err(format!("{form}: the part after the primary's name is not a database number"));
                }
                Ok(RedisUrl::Sentinel { tls: scheme.starts_with("rediss"), userinfo, hosts, master, db })
            }
            _ => Ok(RedisUrl::Single),
        }
    }
}

/// A URL with a list of hosts: its user info (`user:pass@`, maybe empty), its `host:port` items and
/// the path after the first `/` (maybe empty).
fn split_hosts<'a>(rest: &'a str, form: &str) -> std::result::Result<(&'a str, Vec<&'a str>, &'a str), String> {
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, ""),
    };
    if authority.contains('?') || path.contains('?') || path.contains('#') || authority.contains('#') {
        return Err(format!("{form} takes no query or fragment"));
    }
    let (userinfo, hosts) = match authority.rfind('@') {
        Some(i) => (&authority[..=i], &authority[i + 1..]),
        None => ("", authority),
    };
    let hosts: Vec<&str> = hosts.split(',').map(str::trim).collect();
    if hosts.iter().all(|h| h.is_empty()) {
        return Err(format!("{form} lists no host:port"));
    }
    for (i, h) in hosts.iter().enumerate() {
        match h.rsplit_once(':').map(|(host, p)| (host, p.parse::<u16>())) {
            Some((host, Ok(p))) if !host.is_empty() && p != 0 => {}
            _ => return Err(format!("host {} of {form} is not host:port", i + 1)),
        }
    }
    Ok((userinfo, hosts, path))
}
