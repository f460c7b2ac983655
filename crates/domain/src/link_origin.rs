//! The origins allowed to embed a client's Link pages. An origin ends up verbatim in a CSP
//! `frame-ancestors` source list, so it is parsed here once: a bare `scheme://host[:port]`, nothing that
//! could add a directive or widen the list.

use std::fmt;

use crate::ValidationError;

/// A bare `http(s)://host[:port]` origin, safe to put in a CSP source list.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct LinkOrigin(String);

impl LinkOrigin {
    /// Parses an origin as an operator types it: surrounding spaces and a trailing `/` are dropped.
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let origin = raw.trim().trim_end_matches('/');
        if Self::is_valid(origin) {
            Ok(Self(origin.to_owned()))
        } else {
            Err(ValidationError::new(
                "origin",
                format!(
                    "{origin:?} is not an origin; give scheme://host[:port] with no path, e.g. https://app.example.com"
                ),
            ))
        }
    }

    /// Whether `origin` is exactly a bare `scheme://host[:port]` (no trimming).
    pub fn is_valid(origin: &str) -> bool {
        let Some((scheme, rest)) = origin.split_once("://") else { return false };
        if !matches!(scheme, "http" | "https") || rest.is_empty() || rest.len() > 253 {
            return false;
        }
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) if !h.contains(']') || h.ends_with(']') => (h, Some(p)),
            _ => (rest, None),
        };
        let host_ok = !host.is_empty()
            && host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '[' | ']' | ':'))
            && !host.starts_with('.')
            && !host.ends_with('.');
        let port_ok = port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.chars().all(|c| c.is_ascii_digit()));
        host_ok && port_ok
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for LinkOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_checked_before_they_reach_the_csp() {
        for good in ["https://app.example", "http://localhost:3000", "https://a-b.example.com:8443"] {
            assert!(LinkOrigin::is_valid(good), "{good}");
        }
        for bad in [
            "app.example",
            "https://app.example/path",
            "https://a.example; script-src *",
            "javascript://x",
            "https://",
            "https://a.example:",
            "https://*.example",
        ] {
            assert!(!LinkOrigin::is_valid(bad), "{bad}");
        }
    }

    #[test]
    fn parse_trims_what_an_operator_types() {
        assert_eq!(
            LinkOrigin::parse(" https://app.example/ ").map(|o| o.to_string()),
            Ok("https://app.example".into())
        );
        assert!(LinkOrigin::parse("https://app.example/x").is_err());
    }
}
