//! Host names, registrable domains and cookies: shared by ingest (CORS, the client's host)
//! and tags (first-party cookies such as `_epik`). Knows no destination.

/// A cookie a tag asks the ingest response to set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetCookie {
    pub name: String,
    pub value: String,
    pub domain: Option<String>,
    pub path: String,
    pub max_age_s: u64,
    pub secure: bool,
    pub http_only: bool,
    pub same_site: &'static str,
}

impl SetCookie {
    /// The `Set-Cookie` header value. The value is kept to RFC 6265 cookie octets and the
    /// domain, when set, came from [`registrable_domain`] of a valid host, so no attribute
    /// can be injected.
    pub fn header_value(&self) -> String {
        let mut out = format!(
            "{}={}; Path={}; Max-Age={}",
            self.name,
            cookie_safe(&self.value),
            self.path,
            self.max_age_s
        );
        if let Some(d) = self.domain.as_deref().filter(|d| is_valid_host(d)) {
            out.push_str("; Domain=");
            out.push_str(d);
        }
        if self.secure {
            out.push_str("; Secure");
        }
        if self.http_only {
            out.push_str("; HttpOnly");
        }
        out.push_str("; SameSite=");
        out.push_str(self.same_site);
        out
    }
}

/// Keeps a cookie value within RFC 6265 `cookie-octet`s (percent-encodes the rest).
pub fn cookie_safe(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            0x21 | 0x23..=0x2B | 0x2D..=0x3A | 0x3C..=0x5B | 0x5D..=0x7E => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A host name per RFC 1123 (letters, digits, hyphens; labels of 1–63 characters, not
/// starting or ending with a hyphen; 253 characters at most; a trailing dot allowed).
pub fn is_valid_host(host: &str) -> bool {
    let h = host.strip_suffix('.').unwrap_or(host);
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// The host of a `Host` header value without its port: a valid host name or an IP
/// address, else `None` (`track.shop.example.com;HttpOnly;Domain=victim.com` is not a host).
pub fn host_of(header: &str) -> Option<&str> {
    let h = header.trim();
    if let Some(rest) = h.strip_prefix('[') {
        // [v6]:port
        let v6 = rest.split(']').next()?;
        return v6.parse::<std::net::Ipv6Addr>().is_ok().then_some(v6);
    }
    let name = match h.rsplit_once(':') {
        Some((name, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => h,
    };
    (name.parse::<std::net::IpAddr>().is_ok() || is_valid_host(name)).then_some(name)
}

/// eTLD+1 of a host (`track.shop.example.com` → `example.com`), from the public suffix list.
/// IP addresses, invalid host names and bare public suffixes have none: a cookie for them is
/// host-only.
pub fn registrable_domain(host: &str) -> Option<String> {
    let host = host.trim().trim_end_matches('.').to_ascii_lowercase();
    if host.is_empty() || host.parse::<std::net::IpAddr>().is_ok() || !is_valid_host(&host) {
        return None;
    }
    psl::domain_str(&host)
        .filter(|d| d.contains('.'))
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_validated() {
        assert_eq!(
            host_of("track.shop.example.com:8443"),
            Some("track.shop.example.com")
        );
        assert_eq!(host_of("[::1]:8080"), Some("::1"));
        assert_eq!(host_of("127.0.0.1:80"), Some("127.0.0.1"));
        assert_eq!(
            host_of("track.shop.example.com;HttpOnly;Domain=victim.com"),
            None
        );
        assert_eq!(host_of("a b"), None);
        assert_eq!(host_of("-bad.example"), None);
        assert_eq!(host_of(""), None);
    }

    #[test]
    fn registrable_domains() {
        assert_eq!(
            registrable_domain("track.shop.example.com").as_deref(),
            Some("example.com")
        );
        assert_eq!(
            registrable_domain("track.shop.co.uk").as_deref(),
            Some("shop.co.uk")
        );
        assert_eq!(registrable_domain("co.uk"), None);
        assert_eq!(registrable_domain("127.0.0.1"), None);
        assert_eq!(registrable_domain("x;domain=victim.com"), None);
    }

    #[test]
    fn cookie_values_and_domains_cannot_inject_attributes() {
        let c = SetCookie {
            name: "_epik".into(),
            value: "a;b c".into(),
            domain: Some("com;httponly".into()),
            path: "/".into(),
            max_age_s: 10,
            secure: true,
            http_only: false,
            same_site: "Lax",
        };
        assert_eq!(
            c.header_value(),
            "_epik=a%3Bb%20c; Path=/; Max-Age=10; Secure; SameSite=Lax"
        );
    }
}
