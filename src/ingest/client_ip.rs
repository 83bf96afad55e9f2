//! The client address (`docs/INGEST.md` §4).
//!
//! The TCP peer, unless the peer is a trusted proxy: then the configured client-IP header
//! (`CF-Connecting-IP`, ...) when set, else the right-most `X-Forwarded-For` entry that is
//! not itself a trusted proxy (the peer when there is none, or when an entry before it is
//! not an address). Forwarding headers from an
//! untrusted peer are ignored: anyone can send them.

use std::net::IpAddr;

use axum::http::{HeaderMap, HeaderName};
use ipnet::IpNet;

#[derive(Debug, Clone, Default)]
pub struct ClientIpResolver {
    trusted: Vec<IpNet>,
    header: Option<HeaderName>,
}

impl ClientIpResolver {
    pub fn new(trusted: Vec<IpNet>, header: Option<&str>) -> Self {
        Self {
            trusted,
            header: header.and_then(|h| HeaderName::try_from(h.trim()).ok()),
        }
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.trusted.iter().any(|net| net.contains(&ip))
    }

    pub fn resolve(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer);
        if !self.is_trusted(peer) {
            return peer;
        }
        if let Some(name) = &self.header {
            if let Some(ip) = headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_ip)
            {
                return ip;
            }
        }
        let hops: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .collect();
        // From the right: trusted hops are skipped; an entry that is not an address (a
        // proxy writing `unknown`) ends the walk, since what is left of it is not vouched
        // for by anyone we trust.
        for hop in hops.iter().rev() {
            match parse_ip(hop) {
                Some(ip) if self.is_trusted(ip) => {}
                Some(ip) => return ip,
                None => return peer,
            }
        }
        peer
    }
}

/// IPv4-mapped IPv6 (`::ffff:1.2.3.4`) as plain IPv4, so CIDRs match either way.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// One address as proxies write it: `1.2.3.4`, `1.2.3.4:5678`, `[::1]:80`, `::1`.
fn parse_ip(text: &str) -> Option<IpAddr> {
    let t = text.trim().trim_matches('"');
    if let Ok(ip) = t.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Ok(sa) = t.parse::<std::net::SocketAddr>() {
        return Some(canonical(sa.ip()));
    }
    let unbracketed = t.strip_prefix('[').and_then(|r| r.split(']').next());
    unbracketed
        .and_then(|s| s.parse::<IpAddr>().ok())
        .map(canonical)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(HeaderName::try_from(*k).unwrap(), v.parse().unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn resolver(header: Option<&str>) -> ClientIpResolver {
        ClientIpResolver::new(
            vec![
                "10.0.0.0/8".parse().unwrap(),
                "192.168.1.1/32".parse().unwrap(),
            ],
            header,
        )
    }

    #[test]
    fn untrusted_peer_headers_are_ignored() {
        let h = headers(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("cf-connecting-ip", "2.2.2.2"),
        ]);
        assert_eq!(
            resolver(Some("CF-Connecting-IP")).resolve(ip("203.0.113.9"), &h),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn an_entry_that_is_not_an_address_ends_the_walk() {
        let r = resolver(None);
        // The proxy at 10.0.0.2 wrote `unknown`; 198.51.100.9 left of it came from the
        // client and is not trusted.
        let h = headers(&[("x-forwarded-for", "198.51.100.9, unknown, 10.0.0.2")]);
        assert_eq!(r.resolve(ip("10.0.0.1"), &h), ip("10.0.0.1"));
    }

    #[test]
    fn rightmost_untrusted_forwarded_entry_wins() {
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 198.51.100.4, 10.1.1.1")]);
        assert_eq!(
            resolver(None).resolve(ip("10.0.0.2"), &h),
            ip("198.51.100.4")
        );
        // Several header lines count as one list.
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "198.51.100.5:4431"),
        ]);
        assert_eq!(
            resolver(None).resolve(ip("10.0.0.2"), &h),
            ip("198.51.100.5")
        );
    }

    #[test]
    fn only_trusted_hops_or_no_header_give_the_peer() {
        let h = headers(&[("x-forwarded-for", "10.9.9.9, 192.168.1.1")]);
        assert_eq!(resolver(None).resolve(ip("10.0.0.2"), &h), ip("10.0.0.2"));
        assert_eq!(
            resolver(None).resolve(ip("10.0.0.2"), &HeaderMap::new()),
            ip("10.0.0.2")
        );
        let h = headers(&[("x-forwarded-for", "garbage, ???")]);
        assert_eq!(resolver(None).resolve(ip("10.0.0.2"), &h), ip("10.0.0.2"));
    }

    #[test]
    fn configured_header_from_trusted_peer() {
        let h = headers(&[
            ("cf-connecting-ip", "2001:db8::7"),
            ("x-forwarded-for", "1.1.1.1"),
        ]);
        assert_eq!(
            resolver(Some("CF-Connecting-IP")).resolve(ip("10.0.0.2"), &h),
            ip("2001:db8::7")
        );
        // Missing header: fall back to X-Forwarded-For.
        let h = headers(&[("x-forwarded-for", "1.1.1.1")]);
        assert_eq!(
            resolver(Some("CF-Connecting-IP")).resolve(ip("10.0.0.2"), &h),
            ip("1.1.1.1")
        );
    }

    #[test]
    fn ipv4_mapped_peers_match_ipv4_cidrs() {
        let h = headers(&[("x-forwarded-for", "[2001:db8::1]:443")]);
        assert_eq!(
            resolver(None).resolve(ip("::ffff:10.0.0.2"), &h),
            ip("2001:db8::1")
        );
    }
}
