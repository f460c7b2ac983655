//! Where webhooks may go. A webhook URL is chosen by a client, but the POST leaves from the operator's
//! network: without this policy a client could make linkvault send signed requests to loopback services, the
//! private network or a cloud metadata endpoint (SSRF). Non-public addresses are refused unless the operator
//! allows them (on-premises receivers), and plain http only when the operator allows it. The same policy
//! checks a URL when it is registered (its literal host) and every address a name resolves to at delivery.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use ipnet::IpNet;
use url::{Host, Url};

/// Longest URL accepted as a webhook endpoint.
pub const MAX_URL_LEN: usize = 2048;

/// Why an address is not public (and so refused unless allowed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressClass {
    Loopback,
    Private,
    LinkLocal,
    Unspecified,
    Multicast,
    SharedCgnat,
    Documentation,
    Reserved,
}

impl fmt::Display for AddressClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Loopback => "a loopback address",
            Self::Private => "a private-network address",
            Self::LinkLocal => "a link-local address (where cloud metadata services live)",
            Self::Unspecified => "an unspecified address",
            Self::Multicast => "a multicast or broadcast address",
            Self::SharedCgnat => "a carrier-grade NAT (shared) address",
            Self::Documentation => "a documentation or benchmarking address",
            Self::Reserved => "a reserved or transition address",
        })
    }
}

/// The class of a non-public address, `None` for a public one. IPv6 forms that embed an IPv4 address
/// (IPv4-mapped, NAT64, 6to4) are judged by the address they embed.
pub fn classify(ip: IpAddr) -> Option<AddressClass> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<AddressClass> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        (0, _, _) => AddressClass::Unspecified,
        (127, _, _) => AddressClass::Loopback,
        (10, _, _) | (192, 168, _) => AddressClass::Private,
        (172, 16..=31, _) => AddressClass::Private,
        (169, 254, _) => AddressClass::LinkLocal,
        (100, 64..=127, _) => AddressClass::SharedCgnat,
        (192, 0, 0) => AddressClass::Reserved,
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) | (198, 18..=19, _) => AddressClass::Documentation,
        (224..=239, _, _) => AddressClass::Multicast,
        (240..=255, _, _) if ip == Ipv4Addr::BROADCAST => AddressClass::Multicast,
        (240..=255, _, _) => AddressClass::Reserved,
        _ => return None,
    })
}

fn classify_v6(ip: Ipv6Addr) -> Option<AddressClass> {
    if let Some(v4) = embedded_v4(ip) {
        return classify_v4(v4);
    }
    let segments = ip.segments();
    let first = segments[0];
    Some(if ip.is_unspecified() {
        AddressClass::Unspecified
    } else if ip.is_loopback() {
        AddressClass::Loopback
    } else if first & 0xffc0 == 0xfe80 {
        AddressClass::LinkLocal
    } else if first & 0xfe00 == 0xfc00 || first & 0xffc0 == 0xfec0 {
        // Unique local (fc00::/7, e.g. AWS's IPv6 metadata fd00:ec2::254) and the old site-local fec0::/10.
        AddressClass::Private
    } else if first & 0xff00 == 0xff00 {
        AddressClass::Multicast
    } else if first == 0x2001 && segments[1] == 0x0db8 {
        AddressClass::Documentation
    } else if segments[..6] == [0; 6]
        || (first == 0x2001 && segments[1] == 0)
        || (first == 0x0100 && segments[1..4] == [0; 3])
    {
        // IPv4-compatible ::a.b.c.d (deprecated), Teredo 2001::/32 (a tunnel to anywhere), discard 100::/64.
        AddressClass::Reserved
    } else {
        return None;
    })
}

/// The IPv4 address inside an IPv4-mapped (::ffff:a.b.c.d), NAT64 (64:ff9b::a.b.c.d) or 6to4 (2002:aabb:ccdd::)
/// address: a connection to it reaches that IPv4 address.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    let s = ip.segments();
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return Some(low);
    }
    if s[0] == 0x2002 {
        return Some(Ipv4Addr::new((s[1] >> 8) as u8, s[1] as u8, (s[2] >> 8) as u8, s[2] as u8));
    }
    None
}

/// A webhook URL or address the policy refuses, with what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Not an absolute http(s) URL with a host, too long, or with whitespace.
    Malformed,
    /// Plain http and the operator did not allow it.
    HttpNotAllowed,
    /// The URL's host, or an address its name resolves to, is not public and not allowed.
    Address { host: String, ip: Option<IpAddr>, class: AddressClass },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed => {
                f.write_str("must be an absolute http(s) URL such as https://app.example.com/hooks/linkvault")
            }
            Self::HttpNotAllowed => f.write_str(
                "must use https (plain http is refused unless the operator starts linkvault with \
                 --webhook-allow-http)",
            ),
            Self::Address { host, ip, class } => {
                match ip {
                    Some(ip) if ip.to_string() != *host => write!(f, "{host} resolves to {ip}, {class}")?,
                    _ => write!(f, "{host} is {class}")?,
                }
                f.write_str(
                    "; webhooks are not sent to loopback, private, link-local or metadata addresses (an operator \
                     can allow an on-premises receiver with --webhook-allow-hosts or --webhook-allow-cidrs)",
                )
            }
        }
    }
}

impl std::error::Error for Refusal {}

/// The operator's webhook egress policy. The default refuses every non-public address and plain http.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebhookPolicy {
    allow_http: bool,
    /// Host names (lower case, no trailing dot) whose addresses may be non-public.
    allow_hosts: Vec<String>,
    /// Networks that may be reached although not public.
    allow_cidrs: Vec<IpNet>,
}

/// Loopback networks, the receivers a developer runs beside `serve --sandbox`.
const LOOPBACK: [&str; 2] = ["127.0.0.0/8", "::1/128"];

impl WebhookPolicy {
    /// What `serve --sandbox` allows on top of the operator's policy: loopback receivers, over plain http.
    /// Still refused: the private network, link-local (metadata) and every other non-public class.
    pub fn sandbox(mut self) -> Self {
        self.allow_http = true;
        for net in LOOPBACK {
            if let Ok(net) = IpNet::from_str(net) {
                self.allow_cidrs.push(net);
            }
        }
        self
    }

    /// Allows plain http webhook URLs.
    pub fn with_http_allowed(mut self, allowed: bool) -> Self {
        self.allow_http = allowed;
        self
    }

    /// Allows these host names to resolve to non-public addresses (an on-premises receiver).
    pub fn with_allowed_hosts<I: IntoIterator<Item = S>, S: AsRef<str>>(mut self, hosts: I) -> Self {
        self.allow_hosts.extend(hosts.into_iter().map(|h| normalize_host(h.as_ref())));
        self
    }

    /// Allows these networks to be reached although they are not public.
    pub fn with_allowed_cidrs<I: IntoIterator<Item = IpNet>>(mut self, cidrs: I) -> Self {
        self.allow_cidrs.extend(cidrs);
        self
    }

    pub fn http_allowed(&self) -> bool {
        self.allow_http
    }

    /// Checks a URL as far as it can without resolving names: scheme, shape, and a literal IP host (or a
    /// `localhost` name, RFC 6761). Returns the parsed URL.
    pub fn check_url(&self, raw: &str) -> Result<Url, Refusal> {
        let raw = raw.trim();
        if raw.len() > MAX_URL_LEN || raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(Refusal::Malformed);
        }
        let url = Url::parse(raw).map_err(|_| Refusal::Malformed)?;
        match url.scheme() {
            "https" => {}
            "http" if self.allow_http => {}
            "http" => return Err(Refusal::HttpNotAllowed),
            _ => return Err(Refusal::Malformed),
        }
        match url.host() {
            None => Err(Refusal::Malformed),
            Some(Host::Ipv4(ip)) => self.check_address(&ip.to_string(), IpAddr::V4(ip)).map(|()| url),
            Some(Host::Ipv6(ip)) => self.check_address(&ip.to_string(), IpAddr::V6(ip)).map(|()| url),
            Some(Host::Domain(name)) => {
                let name = normalize_host(name);
                let local = name == "localhost" || name.ends_with(".localhost");
                if local && !self.host_allowed(&name) && !self.loopback_allowed() {
                    return Err(Refusal::Address { host: name, ip: None, class: AddressClass::Loopback });
                }
                Ok(url)
            }
        }
    }

    /// Whether a connection for `host` may go to `ip` (an address `host` resolved to, or `host` itself).
    pub fn check_address(&self, host: &str, ip: IpAddr) -> Result<(), Refusal> {
        let Some(class) = classify(ip) else { return Ok(()) };
        let canonical = canonical(ip);
        if self.host_allowed(&normalize_host(host))
            || self.allow_cidrs.iter().any(|net| net.contains(&canonical) || net.contains(&ip))
        {
            return Ok(());
        }
        Err(Refusal::Address { host: host.to_owned(), ip: Some(ip), class })
    }

    fn host_allowed(&self, normalized: &str) -> bool {
        self.allow_hosts.iter().any(|h| h == normalized)
    }

    fn loopback_allowed(&self) -> bool {
        let v4 = IpAddr::V4(Ipv4Addr::LOCALHOST);
        self.allow_cidrs.iter().any(|net| net.contains(&v4))
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it reaches (so `127.0.0.0/8` also allows ::ffff:127.0.0.1).
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn normalize_host(host: &str) -> String {
    host.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// Parses an allow-list entry: a network in CIDR notation (`10.0.0.0/8`, `fd00::/8`) or one address.
pub fn parse_cidr(raw: &str) -> Result<IpNet, String> {
    let raw = raw.trim();
    IpNet::from_str(raw)
        .map(|net| net.trunc())
        .or_else(|_| IpAddr::from_str(raw).map(IpNet::from))
        .map_err(|_| format!("{raw:?} is not a network such as 10.20.0.0/16 or fd00::/8, nor an IP address"))
}

/// Parses an allowed host name (what the webhook URL names; no scheme, port or path).
pub fn parse_host(raw: &str) -> Result<String, String> {
    let host = normalize_host(raw);
    let valid = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    if valid { Ok(host) } else { Err(format!("{raw:?} is not a host name such as hooks.internal.example")) }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on failure
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        IpAddr::from_str(s).unwrap()
    }

    #[test]
    fn every_non_public_class_is_classified() {
        for (addr, class) in [
            ("127.0.0.1", AddressClass::Loopback),
            ("127.255.0.9", AddressClass::Loopback),
            ("::1", AddressClass::Loopback),
            ("10.1.2.3", AddressClass::Private),
            ("172.16.0.1", AddressClass::Private),
            ("172.31.255.255", AddressClass::Private),
            ("192.168.1.1", AddressClass::Private),
            ("fc00::1", AddressClass::Private),
            ("fd00:ec2::254", AddressClass::Private),
            ("169.254.169.254", AddressClass::LinkLocal),
            ("fe80::1", AddressClass::LinkLocal),
            ("0.0.0.0", AddressClass::Unspecified),
            ("::", AddressClass::Unspecified),
            ("224.0.0.1", AddressClass::Multicast),
            ("255.255.255.255", AddressClass::Multicast),
            ("ff02::1", AddressClass::Multicast),
            ("100.64.0.1", AddressClass::SharedCgnat),
            ("100.100.100.200", AddressClass::SharedCgnat),
            ("::ffff:127.0.0.1", AddressClass::Loopback),
            ("::ffff:169.254.169.254", AddressClass::LinkLocal),
            ("::ffff:10.0.0.1", AddressClass::Private),
            ("64:ff9b::7f00:1", AddressClass::Loopback),
            ("2002:a9fe:a9fe::1", AddressClass::LinkLocal),
            ("2001:db8::1", AddressClass::Documentation),
            ("240.0.0.1", AddressClass::Reserved),
        ] {
            assert_eq!(classify(ip(addr)), Some(class), "{addr}");
        }
        for public in ["93.184.216.34", "8.8.8.8", "172.32.0.1", "100.128.0.1", "2606:4700::1111", "::ffff:8.8.8.8"] {
            assert_eq!(classify(ip(public)), None, "{public}");
        }
    }

    #[test]
    fn literal_hosts_are_refused_by_default() {
        let policy = WebhookPolicy::default();
        for url in [
            "https://169.254.169.254/latest/meta-data/",
            "https://127.0.0.1/hook",
            "https://[::1]:5432/",
            "https://[::ffff:127.0.0.1]/",
            "https://10.0.0.8/",
            "https://[fd12::1]/",
            "https://0.0.0.0/",
            "https://100.64.1.1/",
            "https://2130706433/",
            "https://0x7f.1/",
            "https://localhost/",
            "https://api.localhost./",
        ] {
            assert!(matches!(policy.check_url(url), Err(Refusal::Address { .. })), "{url}");
        }
        assert!(policy.check_url("https://app.example.com/hooks").is_ok());
        assert!(policy.check_url("https://93.184.216.34/hooks").is_ok());
        assert_eq!(policy.check_url("http://app.example.com/hooks").err(), Some(Refusal::HttpNotAllowed));
        for bad in ["ftp://x.example", "nope", "https://", "https://a b.example/", "file:///etc/passwd"] {
            assert_eq!(policy.check_url(bad).err(), Some(Refusal::Malformed), "{bad}");
        }
    }

    #[test]
    fn the_allow_list_opens_exactly_what_it_names() {
        let policy = WebhookPolicy::default()
            .with_allowed_cidrs([parse_cidr("10.20.0.0/16").unwrap()])
            .with_allowed_hosts(["Hooks.Internal.Example."]);
        assert!(policy.check_address("10.20.3.4", ip("10.20.3.4")).is_ok());
        assert!(policy.check_address("10.21.0.1", ip("10.21.0.1")).is_err());
        assert!(policy.check_address("hooks.internal.example", ip("192.168.1.10")).is_ok());
        assert!(policy.check_address("other.internal.example", ip("192.168.1.10")).is_err());
        assert!(policy.check_url("http://10.20.0.5/").is_err(), "http still needs --webhook-allow-http");
    }

    #[test]
    fn sandbox_allows_loopback_over_http_and_nothing_else() {
        let policy = WebhookPolicy::default().sandbox();
        assert!(policy.check_url("http://127.0.0.1:9000/hook").is_ok());
        assert!(policy.check_url("http://[::1]:9000/hook").is_ok());
        assert!(policy.check_url("http://localhost:9000/hook").is_ok());
        assert!(policy.check_address("x", ip("::ffff:127.0.0.1")).is_ok());
        assert!(policy.check_url("http://169.254.169.254/").is_err());
        assert!(policy.check_url("http://192.168.0.1/").is_err());
    }

    #[test]
    fn allow_list_entries_are_parsed() {
        assert_eq!(parse_cidr("10.1.2.3/8").map(|n| n.to_string()), Ok("10.0.0.0/8".into()));
        assert_eq!(parse_cidr("::1").map(|n| n.to_string()), Ok("::1/128".into()));
        assert!(parse_cidr("10.0.0.0/33").is_err());
        assert!(parse_cidr("example.com").is_err());
        assert_eq!(parse_host("Hooks.Example."), Ok("hooks.example".into()));
        assert!(parse_host("https://hooks.example").is_err());
        assert!(parse_host("").is_err());
    }
}
