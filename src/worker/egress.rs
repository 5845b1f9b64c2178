//! Where http jobs may connect. Whoever can put a job chooses its URL, so without a rule an http
//! job reaches everything the node reaches: its own Redis (an HTTP request line runs there as a
//! command), its gRPC and metrics ports, the cloud metadata service on 169.254.169.254, services
//! bound to loopback. The rule, judged per address:
//!
//! 1. Always refused, even if listed: this node's own Redis, gRPC and metrics ports on any local
//!    address (loopback, unspecified, this host's interfaces) and Redis's port on Redis's host.
//! 2. Loopback (127.0.0.0/8, ::1), link-local (169.254.0.0/16, fe80::/10) and unspecified
//!    (0.0.0.0/8, ::) addresses, IPv4-mapped forms included, are refused unless an `http_allow`
//!    network *inside* that range lists them (`127.0.0.1`, `169.254.169.254/32`): a listed host
//!    name or a wide network such as `0.0.0.0/0` does not open them, so a name whose DNS record
//!    is changed to 127.0.0.1 stays refused.
//! 3. Everything else: allowed when `http_allow` is empty; otherwise only a listed host name
//!    (exact, case-insensitive) or an address inside a listed network.
//!
//! PutJob judges literal addresses fully and host names only by name (no DNS at PutJob); every run
//! resolves the name itself, judges every address, and connects only to those addresses, so a DNS
//! answer cannot change between the check and the connection.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::Url;

/// An IP network: an address and a prefix length, host bits zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Net {
    addr: IpAddr,
    prefix: u8,
}

impl Net {
    const fn v4(a: u8, b: u8, c: u8, d: u8, prefix: u8) -> Net {
        Net { addr: IpAddr::V4(Ipv4Addr::new(a, b, c, d)), prefix }
    }

    const fn v6(first: u16, last: u16, prefix: u8) -> Net {
        Net { addr: IpAddr::V6(Ipv6Addr::new(first, 0, 0, 0, 0, 0, 0, last)), prefix }
    }

    /// `10.0.0.0/8`, `fd00::/8`, or a single address (`127.0.0.1`, `::1`).
    pub fn parse(s: &str) -> Result<Net, String> {
        let (ip, prefix) = match s.split_once('/') {
            Some((ip, p)) => (ip, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = ip.parse().map_err(|_| format!("'{s}' is not an IP address or network"))?;
        let addr = canonical(addr);
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => {
                p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(|| format!("'{s}' has a bad prefix length"))?
            }
        };
        let net = Net { addr, prefix };
        if net.network() != addr {
            return Err(format!("'{s}' has host bits set (did you mean {}/{prefix}?)", net.network()));
        }
        Ok(net)
    }

    fn bits(ip: IpAddr) -> (u128, u8) {
        match ip {
            IpAddr::V4(a) => (u128::from(u32::from(a)), 32),
            IpAddr::V6(a) => (u128::from(a), 128),
        }
    }

    fn mask(&self) -> u128 {
        let width = if self.addr.is_ipv4() { 32 } else { 128 };
        let ones = u128::MAX.checked_shl(u32::from(width - self.prefix)).unwrap_or(0);
        if width == 32 {
            ones & u128::from(u32::MAX)
        } else {
            ones
        }
    }

    fn network(&self) -> IpAddr {
        let (b, _) = Self::bits(self.addr);
        match self.addr {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from((b & self.mask()) as u32)),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(b & self.mask())),
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        if ip.is_ipv4() != self.addr.is_ipv4() {
            return false;
        }
        let ((a, _), (b, _)) = (Self::bits(ip), Self::bits(self.addr));
        a & self.mask() == b & self.mask()
    }

    /// True when every address of `self` is inside `outer`.
    fn within(&self, outer: &Net) -> bool {
        self.prefix >= outer.prefix && outer.contains(self.addr)
    }
}

impl std::fmt::Display for Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Ranges refused unless a network inside them is listed (rule 2).
const GUARDED: [(Net, &str, &str); 8] = [
    (Net::v4(127, 0, 0, 0, 8), "loopback", "127.0.0.1"),
    (Net::v6(0, 1, 128), "loopback", "::1"),
    (Net::v4(169, 254, 0, 0, 16), "link-local", "169.254.169.254/32"),
    (Net::v6(0xfe80, 0, 10), "link-local", "fe80::/10"),
    (Net::v4(0, 0, 0, 0, 8), "unspecified", "0.0.0.0/8"),
    (Net::v6(0, 0, 128), "unspecified", "::"),
    // Cloud metadata services outside link-local: AWS's over IPv6 (a unique-local address) and
    // Alibaba Cloud's (shared address space). Their answers hold credentials.
    (
        Net { addr: IpAddr::V6(Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)), prefix: 128 },
        "a cloud metadata service",
        "fd00:ec2::254",
    ),
    (Net::v4(100, 100, 100, 200, 32), "a cloud metadata service", "100.100.100.200"),
];

/// ::ffff:a.b.c.d is a.b.c.d on the wire (a dual-stack socket connects to the IPv4 address).
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// An address of this host: loopback, unspecified (connecting to 0.0.0.0 reaches this host), or
/// one bound to an interface (binding a socket to it works only then).
fn is_local(ip: IpAddr) -> bool {
    ip.is_loopback()
        || ip.is_unspecified()
        || matches!(ip, IpAddr::V4(v4) if v4.octets()[0] == 0)
        || std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

/// Why a destination is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("{addr} is this node's own {what} port, which http jobs never reach (http_allow or not)")]
    OwnPort { addr: SocketAddr, what: &'static str },
    #[error("{ip} is {kind}, which http jobs reach only when the node's http_allow lists it (e.g. {example})")]
    Guarded { ip: IpAddr, kind: &'static str, example: &'static str },
    #[error("{host}:{port} is this node's own Redis, which http jobs never reach (http_allow or not)")]
    RedisByName { host: String, port: u16 },
    #[error("{what} is not in the node's http_allow")]
    NotListed { what: String },
    #[error("cannot resolve '{host}': {reason}")]
    Resolve { host: String, reason: String },
}

/// The node's own ports, denied on any local address (rule 1).
#[derive(Debug, Clone, Default)]
pub struct OwnPorts {
    pub grpc: Option<u16>,
    pub metrics: Option<u16>,
    /// Redis's hosts as its URL names them, and their ports: the one server, or every node of a
    /// Redis Cluster or Sentinel the URL lists (servers found at run time are not known here).
    pub redis: Vec<(String, u16)>,
}

/// The destination rule of one node: its `http_allow` list and its own ports.
#[derive(Debug, Clone, Default)]
pub struct Egress {
    /// Listed host names, lower case, without a trailing dot.
    names: Vec<String>,
    nets: Vec<Net>,
    own: OwnPorts,
}

impl Egress {
    /// Parses `http_allow` (host names and networks); an entry that is neither is named.
    pub fn new(allow: &[String], own: OwnPorts) -> Result<Egress, String> {
        let mut e = Egress { names: Vec::new(), nets: Vec::new(), own };
        for entry in allow {
            let entry = entry.trim();
            if entry.contains(['/', ':']) || entry.parse::<IpAddr>().is_ok() {
                e.nets.push(Net::parse(entry)?);
            } else {
                e.names.push(host_name(entry)?);
            }
        }
        Ok(e)
    }

    /// PutJob's check of a URL: literal addresses fully, host names by name only.
    pub fn check_url(&self, url: &Url) -> Result<(), Refused> {
        let port = url.port_or_known_default().unwrap_or(0);
        match host(url) {
            Host::Ip(ip) => self.judge(ip, port, false),
            Host::Name(name) => self.check_name(name, port),
            Host::None => Err(Refused::NotListed { what: "a URL without a host".into() }),
        }
    }

    /// What can be said of a host name without resolving it.
    fn check_name(&self, name: &str, port: u16) -> Result<(), Refused> {
        let name = normal(name);
        if self.own.redis.iter().any(|(host, p)| normal(host) == name && *p == port) {
            return Err(Refused::RedisByName { host: name, port });
        }
        // With only names listed, an unlisted name cannot pass at run time either.
        if !self.names.is_empty() && self.nets.is_empty() && !self.names.contains(&name) {
            return Err(Refused::NotListed { what: format!("host '{name}'") });
        }
        Ok(())
    }

    /// Resolves `host` (unless it is an address), judges every address it resolves to, and returns
    /// them all: the caller connects to these and no others.
    pub async fn resolve(&self, url: &Url) -> Result<Vec<SocketAddr>, Refused> {
        let port = url.port_or_known_default().unwrap_or(0);
        let name = match host(url) {
            Host::Name(name) => name,
            Host::Ip(ip) => {
                self.check_url(url)?;
                // Redis may be configured by name (`redis://redis:6379`): its address by IP
                // literal is still its own Redis.
                self.refuse_redis(&[SocketAddr::new(ip, port)], port).await?;
                return Ok(Vec::new());
            }
            Host::None => {
                self.check_url(url)?;
                return Ok(Vec::new());
            }
        };
        self.check_name(name, port)?;
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name, port))
            .await
            .map_err(|e| Refused::Resolve { host: name.to_string(), reason: e.to_string() })?
            .collect();
        if addrs.is_empty() {
            return Err(Refused::Resolve { host: name.to_string(), reason: "no addresses".into() });
        }
        let listed = self.names.contains(&normal(name));
        for a in &addrs {
            self.judge(a.ip(), port, listed)?;
        }
        self.refuse_redis(&addrs, port).await?;
        Ok(addrs)
    }

    /// Refuses any of `addrs` that is the cluster's Redis (its host resolved now, on its port).
    async fn refuse_redis(&self, addrs: &[SocketAddr], port: u16) -> Result<(), Refused> {
        for (redis_host, _) in self.own.redis.iter().filter(|(_, p)| *p == port) {
            let redis: Vec<IpAddr> = match tokio::net::lookup_host((redis_host.as_str(), port)).await {
                Ok(r) => r.map(|a| canonical(a.ip())).collect(),
                // Cannot tell whether it is Redis: refuse rather than guess.
                Err(e) => return Err(Refused::Resolve { host: redis_host.clone(), reason: e.to_string() }),
            };
            if let Some(a) = addrs.iter().find(|a| redis.contains(&canonical(a.ip()))) {
                return Err(Refused::OwnPort { addr: *a, what: "Redis" });
            }
        }
        Ok(())
    }

    /// Rules 1 to 3 for one address. `listed`: the URL's host name is on http_allow.
    fn judge(&self, ip: IpAddr, port: u16, listed: bool) -> Result<(), Refused> {
        let ip = canonical(ip);
        let literal = |h: &str| h.trim_matches(['[', ']']).parse::<IpAddr>().ok().map(canonical);
        let redis = self.own.redis.iter().any(|(h, p)| *p == port && (is_local(ip) || literal(h) == Some(ip)));
        if redis {
            return Err(Refused::OwnPort { addr: SocketAddr::new(ip, port), what: "Redis" });
        }
        let own = [(self.own.grpc, "gRPC"), (self.own.metrics, "metrics")];
        if let Some((_, what)) = own.iter().find(|(p, _)| *p == Some(port)) {
            if is_local(ip) {
                return Err(Refused::OwnPort { addr: SocketAddr::new(ip, port), what });
            }
        }
        if let Some((range, kind, example)) = GUARDED.iter().find(|(n, _, _)| n.contains(ip)) {
            if self.nets.iter().any(|n| n.contains(ip) && n.within(range)) {
                return Ok(());
            }
            return Err(Refused::Guarded { ip, kind, example });
        }
        if (self.names.is_empty() && self.nets.is_empty()) || listed || self.nets.iter().any(|n| n.contains(ip)) {
            return Ok(());
        }
        Err(Refused::NotListed { what: ip.to_string() })
    }
}

enum Host<'a> {
    Ip(IpAddr),
    Name(&'a str),
    None,
}

/// The URL's host. The URL parser has already turned every spelling of an IPv4 address
/// (`127.1`, `2130706433`, `0x7f.0.0.1`) into dotted decimal, and IPv6 comes in brackets.
fn host(url: &Url) -> Host<'_> {
    match url.host_str() {
        None | Some("") => Host::None,
        Some(h) => match h.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
            Ok(ip) => Host::Ip(ip),
            Err(_) => Host::Name(h),
        },
    }
}

fn normal(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// A host name entry: letters, digits, '-' and '.', not all-numeric in its last label (a URL
/// parser reads `10.1` as an address).
fn host_name(entry: &str) -> Result<String, String> {
    let name = normal(entry);
    let ok = !name.is_empty()
        && name.split('.').all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        && !name.rsplit('.').next().is_some_and(|l| l.chars().all(|c| c.is_ascii_digit()));
    if ok {
        Ok(name)
    } else {
        Err(format!("'{entry}' is neither a host name, an IP address nor a network (a.b.c.d/n)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn networks() {
        let n = Net::parse("10.0.0.0/8").expect("net");
        assert!(n.contains(ip("10.255.0.1")) && !n.contains(ip("11.0.0.1")) && !n.contains(ip("::1")));
        assert!(n.contains(ip("::ffff:10.1.2.3")), "mapped form");
        assert!(Net::parse("fe80::/10").expect("v6").contains(ip("febf::1")));
        assert!(Net::parse("0.0.0.0/0").expect("all").contains(ip("8.8.8.8")));
        assert_eq!(Net::parse("127.0.0.1").expect("host"), Net::v4(127, 0, 0, 1, 32));
        assert!(Net::parse("10.1.2.3/8").expect_err("host bits").contains("did you mean 10.0.0.0/8"));
        assert!(Net::parse("10.0.0.0/33").is_err());
        assert!(Net::parse("nope/8").is_err());
    }

    #[test]
    fn entries() {
        let e = Egress::new(&["Hooks.Example.com.".into(), "10.0.0.0/8".into(), "::1".into()], OwnPorts::default())
            .expect("valid");
        assert_eq!(e.names, ["hooks.example.com"]);
        assert_eq!(e.nets.len(), 2);
        for bad in ["a b", "10.1", "", "x_y.example", "10.0.0.1/40"] {
            assert!(Egress::new(&[bad.into()], OwnPorts::default()).is_err(), "{bad}");
        }
    }

    fn own() -> OwnPorts {
        OwnPorts { grpc: Some(7700), metrics: Some(9464), redis: vec![("127.0.0.1".into(), 6379)] }
    }

    #[test]
    fn the_nodes_own_ports_are_refused_even_when_listed() {
        let e = Egress::new(&["127.0.0.0/8".into(), "0.0.0.0/8".into(), "::1".into()], own()).expect("valid");
        for (addr, what) in [
            ("127.0.0.1:6379", "Redis"),
            ("127.0.0.2:6379", "Redis"),
            ("0.0.0.0:7700", "gRPC"),
            ("[::1]:9464", "metrics"),
            ("[::ffff:127.0.0.1]:6379", "Redis"),
        ] {
            let a: SocketAddr = addr.parse().expect("addr");
            match e.judge(a.ip(), a.port(), true) {
                Err(Refused::OwnPort { what: w, .. }) => assert_eq!(w, what, "{addr}"),
                other => panic!("{addr}: {other:?}"),
            }
        }
        // Listed loopback on another port is fine.
        e.judge(ip("127.0.0.1"), 8080, false).expect("listed loopback");
        // A remote Redis: its own address and port, not other hosts on that port.
        let remote = OwnPorts { redis: vec![("10.0.0.5".into(), 6379)], ..own() };
        let e = Egress::new(&[], remote).expect("valid");
        assert!(matches!(e.judge(ip("10.0.0.5"), 6379, false), Err(Refused::OwnPort { .. })));
        e.judge(ip("10.0.0.6"), 6379, false).expect("another host's Redis port");
        let named = OwnPorts { redis: vec![("Redis.Internal".into(), 6379)], ..own() };
        let e = Egress::new(&[], named).expect("valid");
        let url = Url::parse("http://redis.internal:6379/").expect("url");
        assert!(e.check_url(&url).is_err(), "Redis by its name");
        // A Redis Cluster or Sentinel URL lists several servers: each is refused on its port.
        let listed = OwnPorts { redis: vec![("10.0.0.5".into(), 7000), ("10.0.0.6".into(), 7001)], ..own() };
        let e = Egress::new(&[], listed).expect("valid");
        assert!(matches!(e.judge(ip("10.0.0.6"), 7001, false), Err(Refused::OwnPort { .. })));
        assert!(matches!(e.judge(ip("127.0.0.1"), 7000, false), Err(Refused::OwnPort { .. })));
        e.judge(ip("10.0.0.6"), 7000, false).expect("another listed host's port");
    }

    #[test]
    fn guarded_ranges_open_only_to_an_entry_inside_them() {
        let open = Egress::default();
        for a in [
            "127.0.0.1",
            "127.9.9.9",
            "::1",
            "169.254.169.254",
            "fe80::1",
            "0.0.0.0",
            "::",
            "::ffff:127.0.0.1",
            "fd00:ec2::254",
            "100.100.100.200",
        ] {
            assert!(matches!(open.judge(ip(a), 80, false), Err(Refused::Guarded { .. })), "{a}");
        }
        for a in ["10.0.0.1", "192.168.0.1", "8.8.8.8", "2001:db8::1", "fd00::1"] {
            open.judge(ip(a), 80, false).expect(a);
        }
        let wide = Egress::new(&["0.0.0.0/0".into(), "::/0".into()], OwnPorts::default()).expect("valid");
        assert!(wide.judge(ip("127.0.0.1"), 80, false).is_err(), "0.0.0.0/0 does not open loopback");
        assert!(wide.judge(ip("::1"), 80, false).is_err(), "::/0 does not open ::1");
        let meta = Egress::new(&["169.254.169.254".into()], OwnPorts::default()).expect("valid");
        meta.judge(ip("169.254.169.254"), 80, false).expect("listed");
        assert!(meta.judge(ip("169.254.1.1"), 80, false).is_err());
        assert!(meta.judge(ip("8.8.8.8"), 80, false).is_err(), "a list allows only what it lists");
        // A listed name does not open loopback (its DNS record could say 127.0.0.1).
        let named = Egress::new(&["hooks.example".into()], OwnPorts::default()).expect("valid");
        assert!(named.judge(ip("127.0.0.1"), 80, true).is_err());
        named.judge(ip("10.1.1.1"), 80, true).expect("listed name, ordinary address");
        assert!(named.judge(ip("10.1.1.1"), 80, false).is_err());
    }

    #[test]
    fn put_time_checks_of_names() {
        let named = Egress::new(&["hooks.example".into()], OwnPorts::default()).expect("valid");
        named.check_url(&Url::parse("https://HOOKS.example./x").expect("url")).expect("listed");
        let e = named.check_url(&Url::parse("https://other.example/").expect("url")).expect_err("unlisted");
        assert_eq!(e.to_string(), "host 'other.example' is not in the node's http_allow");
        // With a network listed, a name may resolve into it: judged at run time.
        let mixed = Egress::new(&["hooks.example".into(), "10.0.0.0/8".into()], OwnPorts::default()).expect("valid");
        mixed.check_url(&Url::parse("https://svc.internal/").expect("url")).expect("deferred");
    }

    #[tokio::test]
    async fn resolution_checks_every_address() {
        let open = Egress::default();
        let e = open.resolve(&Url::parse("http://localhost:8080/").expect("url")).await.expect_err("loopback");
        assert!(matches!(e, Refused::Guarded { kind: "loopback", .. }), "{e:?}");
        let listed = Egress::new(&["127.0.0.1".into()], own()).expect("valid");
        let addrs = listed.resolve(&Url::parse("http://localhost:8080/").expect("url")).await.expect("listed");
        assert!(addrs.iter().all(|a| a.ip() == ip("127.0.0.1") && a.port() == 8080), "{addrs:?}");
        let e = listed.resolve(&Url::parse("http://localhost:6379/").expect("url")).await.expect_err("Redis");
        assert!(matches!(e, Refused::OwnPort { what: "Redis", .. }), "{e:?}");
        let e = open.resolve(&Url::parse("http://no-such-host.invalid/").expect("url")).await.expect_err("nx");
        assert!(matches!(e, Refused::Resolve { .. }), "{e:?}");
    }
}
