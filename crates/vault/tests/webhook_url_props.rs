//! Property tests for the webhook egress policy's parsers (`webhook_policy`): a client chooses the URL, so every
//! string must end in a parsed URL or a specific refusal, never a panic; what is accepted re-parses to itself;
//! every non-public literal address is refused with its class, however it is spelled (IPv4, IPv4-mapped IPv6).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use linkvault_vault::WebhookPolicy;
use linkvault_vault::webhook_policy::{AddressClass, MAX_URL_LEN, Refusal, classify, parse_cidr, parse_host};
use proptest::prelude::*;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

/// Strings that look like URLs some of the time: schemes, hosts, ports and paths mixed with garbage.
fn url_like() -> impl Strategy<Value = String> {
    let scheme = prop_oneof![
        Just("https://"),
        Just("http://"),
        Just("ftp://"),
        Just("javascript:"),
        Just("HTTPS://"),
        Just("//"),
        Just("")
    ];
    let host = prop_oneof![
        "[a-z]{1,10}\\.example\\.com",
        "[a-z0-9-]{0,12}",
        Just("localhost".to_owned()),
        Just("api.localhost.".to_owned()),
        (any::<u8>(), any::<u8>(), any::<u8>(), any::<u8>()).prop_map(|(a, b, c, d)| format!("{a}.{b}.{c}.{d}")),
        any::<u128>().prop_map(|n| format!("[{}]", Ipv6Addr::from(n))),
        any::<u32>().prop_map(|n| n.to_string()),
        ".{0,12}",
    ];
    let port = prop_oneof![Just(String::new()), (0u32..70_000).prop_map(|p| format!(":{p}")), ":[a-z]{1,3}"];
    let rest = prop_oneof![Just(String::new()), "/[a-zA-Z0-9/._~%-]{0,30}", "[?#][ -~]{0,20}", ".{0,20}"];
    (scheme, host, port, rest).prop_map(|(s, h, p, r)| format!("{s}{h}{p}{r}"))
}

fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![3 => url_like(), 1 => ".{0,80}", 1 => any::<Vec<u8>>().prop_map(|b| String::from_utf8_lossy(&b).into_owned())]
}

proptest! {
    #![proptest_config(config(600))]

    /// Any string: a URL the policy accepts is absolute https with a host, bounded, and re-checks to the same
    /// URL; a refusal says which kind (plain http and non-public hosts are told apart from malformed input).
    #[test]
    fn any_string_is_a_checked_url_or_a_specific_refusal(raw in any_text()) {
        let strict = WebhookPolicy::default();
        match strict.check_url(&raw) {
            Ok(url) => {
                prop_assert_eq!(url.scheme(), "https");
                prop_assert!(url.host().is_some());
                prop_assert!(raw.trim().len() <= MAX_URL_LEN);
                prop_assert!(!raw.trim().chars().any(|c| c.is_whitespace() || c.is_control()));
                // What was accepted is a fixed point: checking its serialisation gives the same URL.
                prop_assert_eq!(strict.check_url(url.as_str()), Ok(url.clone()));
            }
            Err(Refusal::HttpNotAllowed) => {
                prop_assert!(raw.trim().to_ascii_lowercase().starts_with("http:"), "{:?}", raw);
                // The same URL under a policy that allows http is no longer refused for its scheme.
                let lax = WebhookPolicy::default().with_http_allowed(true);
                prop_assert_ne!(lax.check_url(&raw), Err(Refusal::HttpNotAllowed));
            }
            Err(Refusal::Address { ip, class, .. }) => {
                if let Some(ip) = ip {
                    prop_assert_eq!(classify(ip), Some(class));
                } else {
                    prop_assert_eq!(class, AddressClass::Loopback);
                }
            }
            Err(Refusal::Malformed) => {}
        }
    }

    /// Well-formed https URLs on public names are accepted with their host, port and path intact.
    #[test]
    fn public_https_urls_round_trip(
        host in "[a-z][a-z0-9]{0,11}\\.(com|org|io)",
        port in proptest::option::of(1u16..=65535),
        path in "(/[a-zA-Z0-9][a-zA-Z0-9._~-]{0,11}){0,4}",
    ) {
        let raw = match port {
            Some(p) => format!("https://{host}:{p}{path}"),
            None => format!("https://{host}{path}"),
        };
        let url = WebhookPolicy::default().check_url(&raw).map_err(|e| TestCaseError::fail(format!("{raw}: {e}")))?;
        prop_assert_eq!(url.host_str(), Some(host.as_str()));
        prop_assert_eq!(url.port(), port.filter(|p| *p != 443));
        let expected_path = if path.is_empty() { "/".to_owned() } else { path.clone() };
        prop_assert_eq!(url.path(), expected_path.as_str());
    }

    /// Every non-public IPv4 literal is refused with its class, written as IPv4 or as IPv4-mapped IPv6; the
    /// sandbox policy lets loopback through and nothing else.
    #[test]
    fn non_public_literals_are_refused_however_written(octets in any::<[u8; 4]>(), https in any::<bool>()) {
        let v4 = Ipv4Addr::from(octets);
        let scheme = if https { "https" } else { "http" };
        let policy = WebhookPolicy::default().with_http_allowed(true);
        let sandbox = WebhookPolicy::default().sandbox();
        for raw in [format!("{scheme}://{v4}/hook"), format!("{scheme}://[::ffff:{v4}]/hook")] {
            match classify(IpAddr::V4(v4)) {
                None => {
                    prop_assert!(policy.check_url(&raw).is_ok(), "{} refused", raw);
                }
                Some(class) => {
                    let refused = matches!(policy.check_url(&raw), Err(Refusal::Address { class: c, .. }) if c == class);
                    prop_assert!(refused, "{} not refused as {:?}: {:?}", raw, class, policy.check_url(&raw));
                    prop_assert_eq!(sandbox.check_url(&raw).is_ok(), class == AddressClass::Loopback, "{}", raw);
                }
            }
        }
    }

    /// Anything longer than the bound is refused as malformed, whatever it holds.
    #[test]
    fn over_long_urls_are_refused(extra in 1usize..200, fill in "[a-z]{1}") {
        let path = fill.repeat(MAX_URL_LEN + extra);
        let raw = format!("https://hooks.example.com/{path}");
        prop_assert_eq!(WebhookPolicy::default().check_url(&raw), Err(Refusal::Malformed));
    }

    /// The operator's allow-list parsers: never a panic; an accepted host is normalised (lower case, no trailing
    /// dot, valid labels) and parses to itself again; an accepted network contains the address it was given.
    #[test]
    fn allow_list_entries_parse_or_are_refused(raw in any_text(), octets in any::<[u8; 4]>(), prefix in 0u8..=32) {
        if let Ok(host) = parse_host(&raw) {
            prop_assert!(!host.is_empty() && host.len() <= 253);
            prop_assert!(!host.ends_with('.') && host == host.to_ascii_lowercase());
            prop_assert_eq!(parse_host(&host), Ok(host.clone()));
        }
        let _ = parse_cidr(&raw);
        let v4 = Ipv4Addr::from(octets);
        let net = parse_cidr(&format!("{v4}/{prefix}")).map_err(TestCaseError::fail)?;
        prop_assert!(net.contains(&IpAddr::V4(v4)));
        prop_assert_eq!(net.prefix_len(), prefix);
        let too_long = format!("{v4}/{}", u32::from(prefix) + 33);
        prop_assert!(parse_cidr(&too_long).is_err(), "{} accepted", too_long);
    }
}
