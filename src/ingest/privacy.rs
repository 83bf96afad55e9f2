//! Privacy redaction before mapping: e-mail addresses anywhere in the event's URLs
//! (`page_location`, `page_referrer`, `event_source_url` and the `/data` aliases they are
//! read from: `pageLocation`, `url`, `href`, `pageReferrer`, `referrer`; raw or
//! percent-encoded) and the
//! values of `privacy.redact_query_params` are replaced by `(redacted)`. Other parameters
//! (`utm_*`, `epik`, `gclid`) stay byte for byte. What is redacted here reaches neither a
//! destination, nor the queue, nor the logs, nor the debug page.

use crate::event::{EventData, Shared, Val};

/// The keys of event data that hold URLs (the canonical ones and the `/data` aliases that
/// stay in the event beside them).
pub const URL_KEYS: [&str; 8] = [
    "page_location",
    "page_referrer",
    "event_source_url",
    "pageLocation",
    "pageReferrer",
    "url",
    "href",
    "referrer",
];

/// The searcher for `%40` (an encoded `@`), built once rather than per URL.
static ENCODED_AT: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"%40"));

/// What replaces redacted text.
pub const REDACTED: &str = "(redacted)";

#[derive(Debug, Clone, Default)]
pub struct Redactor {
    /// Query parameter names whose values are redacted, lowercase.
    params: Vec<String>,
}

impl Redactor {
    pub fn new(params: &[String]) -> Self {
        Self {
            params: params
                .iter()
                .map(|p| p.trim().to_ascii_lowercase())
                .filter(|p| !p.is_empty())
                .collect(),
        }
    }

    /// Whether any URL of any of `events` needs redaction (a cheap scan; the common case
    /// is no). The keys a request's events
    /// share (a gtag URL's) are scanned once, not once per event; an event's own keys
    /// after them (a shared URL an own key overrides can only make the answer a
    /// needless yes: [`Self::apply`] then changes nothing).
    pub fn needed_any(&self, events: &[EventData<'_>]) -> bool {
        let mut scanned: Option<&Shared<'_>> = None;
        events.iter().any(|e| {
            if let Some(s) = e.shared() {
                if !scanned.is_some_and(|done| std::ptr::eq(done, s)) {
                    scanned = Some(s);
                    if self.urls_need(|k| s.get(k)) {
                        return true;
                    }
                }
            }
            self.urls_need(|k| e.get_own(k))
        })
    }

    fn urls_need<'v, 'a: 'v>(&self, get: impl Fn(&str) -> Option<&'v Val<'a>>) -> bool {
        URL_KEYS.iter().any(|k| {
            get(k)
                .and_then(Val::as_str)
                .is_some_and(|u| self.may_need(u))
        })
    }

    /// Whether [`Self::redact_url`] could change `url`: an `@` or `%40` anywhere (an e-mail
    /// address), or a query parameter whose name is listed (ASCII case ignored) or encoded
    /// (`%`, `+`: decided by the full pass). One pass over the query, no allocation: this
    /// runs for every URL of every event.
    fn may_need(&self, url: &str) -> bool {
        let b = url.as_bytes();
        // `%40` has no letters, so no case to ignore.
        if memchr::memchr(b'@', b).is_some() || ENCODED_AT.find(b).is_some() {
            return true;
        }
        if self.params.is_empty() {
            return false;
        }
        // The query as `redact_params` finds it: after the first `?`, up to a `#`.
        let Some(q) = memchr::memchr(b'?', b) else {
            return false;
        };
        let query = &b[q + 1..];
        let query = memchr::memchr(b'#', query).map_or(query, |h| &query[..h]);
        query.split(|&c| c == b'&').any(|pair| {
            let name = pair.split(|&c| c == b'=').next().unwrap_or_default();
            name.iter().any(|&c| c == b'%' || c == b'+')
                || self
                    .params
                    .iter()
                    .any(|p| name.eq_ignore_ascii_case(p.as_bytes()))
        })
    }

    /// The event with its URLs redacted.
    pub fn apply<'a>(&self, e: &EventData<'a>) -> EventData<'a> {
        let mut out = e.clone();
        for key in URL_KEYS {
            if let Some(url) = e.get(key).and_then(Val::as_str) {
                if let Some(r) = self.redact_url(url) {
                    metrics::counter!("tagbridge_privacy_redactions_total").increment(1);
                    out.insert(key, Val::string(r));
                }
            }
        }
        out
    }

    /// `url` with e-mail addresses and the listed parameters' values redacted; `None` when
    /// nothing changed.
    pub fn redact_url(&self, url: &str) -> Option<String> {
        if !self.may_need(url) {
            return None;
        }
        let mut out = redact_emails(url);
        if !self.params.is_empty() {
            out = self.redact_params(&out);
        }
        (out != url).then_some(out)
    }

    fn redact_params(&self, url: &str) -> String {
        let Some((base, rest)) = url.split_once('?') else {
            return url.to_owned();
        };
        let (query, fragment) = match rest.split_once('#') {
            Some((q, f)) => (q, Some(f)),
            None => (rest, None),
        };
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| {
                let (k, _) = pair.split_once('=').unwrap_or((pair, ""));
                let name: String = form_urlencoded::parse(k.as_bytes())
                    .next()
                    .map(|(k, _)| k.to_ascii_lowercase())
                    .unwrap_or_default();
                if pair.contains('=') && self.params.contains(&name) {
                    format!("{k}={REDACTED}")
                } else {
                    pair.to_owned()
                }
            })
            .collect();
        let mut out = format!("{base}?{}", pairs.join("&"));
        if let Some(f) = fragment {
            out.push('#');
            out.push_str(f);
        }
        out
    }
}

/// Bytes of an address's local part. Non-ASCII bytes count (an internationalized address
/// sent raw, `jäne@…`): a run of them is whole UTF-8 characters, so the scan still stops on
/// a character boundary.
fn local_char(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || !b.is_ascii()
        || matches!(
            b,
            b'.' | b'_'
                | b'%'
                | b'+'
                | b'-'
                | b'!'
                | b'#'
                | b'$'
                | b'&'
                | b'\''
                | b'*'
                | b'/'
                | b'='
                | b'?'
                | b'^'
                | b'`'
                | b'{'
                | b'|'
                | b'}'
                | b'~'
        )
}

/// Bytes of an address's domain (non-ASCII as in [`local_char`]: `…@exämple.com`).
fn domain_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || !b.is_ascii() || matches!(b, b'.' | b'-')
}

/// Replaces `local@domain.tld` (with `@` raw or as `%40`) by [`REDACTED`].
fn redact_emails(url: &str) -> String {
    let b = url.as_bytes();
    let mut out = String::with_capacity(url.len());
    let mut copied = 0; // bytes of `url` already in `out`
    let mut i = 0;
    while i < b.len() {
        let at_len = if b[i] == b'@' {
            1
        } else if b[i] == b'%' && b.get(i + 1) == Some(&b'4') && b.get(i + 2) == Some(&b'0') {
            3
        } else {
            i += 1;
            continue;
        };
        // Local part: back from the `@` while it looks like one (stop at `=`, `/`, `?`, `&`
        // that separate it from the URL around it).
        let mut start = i;
        while start > copied
            && local_char(b[start - 1])
            && !matches!(b[start - 1], b'=' | b'/' | b'?' | b'&')
        {
            start -= 1;
        }
        // An encoded separator (`%3D`, `%2F`) right before the address ends the local part.
        let mut s = start;
        while s + 3 <= i {
            if b[s] == b'%'
                && matches!(
                    &b[s + 1..s + 3],
                    b"3D" | b"3d" | b"2F" | b"2f" | b"26" | b"3F" | b"3f"
                )
            {
                start = s + 3;
            }
            s += 1;
        }
        let mut end = i + at_len;
        while end < b.len() && domain_char(b[end]) {
            end += 1;
        }
        let domain = &url[i + at_len..end];
        let domain = domain.trim_end_matches(['.', '-']);
        let end = i + at_len + domain.len();
        let tld_ok = domain.rsplit_once('.').is_some_and(|(name, tld)| {
            !name.is_empty() && tld.len() >= 2 && tld.bytes().all(|c| c.is_ascii_alphabetic())
        });
        if start < i && tld_ok && url.is_char_boundary(start) && url.is_char_boundary(end) {
            out.push_str(&url[copied..start]);
            out.push_str(REDACTED);
            copied = end;
            i = end;
        } else {
            i += at_len;
        }
    }
    out.push_str(&url[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The unconditional redaction (`redact_url` without its cheap gate).
    fn full(r: &Redactor, url: &str) -> String {
        let out = redact_emails(url);
        if r.params.is_empty() {
            out
        } else {
            r.redact_params(&out)
        }
    }

    /// Shared URLs are read once per request, own URLs per event; either can need it.
    #[test]
    fn needed_any_reads_shared_and_own_urls() {
        use crate::event::{Obj, Shared};
        let r = Redactor::new(&[]);
        let obj = |pairs: &[(&'static str, &'static str)]| {
            let mut o = Obj::new();
            for (k, v) in pairs {
                o.insert(*k, Val::str(v));
            }
            o
        };
        let clean = Shared::new(obj(&[("page_location", "https://x/?a=1")]));
        let dirty = Shared::new(obj(&[("page_referrer", "https://x/?m=a%40b.c")]));
        let own_clean = || obj(&[("event_name", "a")]);
        let own_dirty = || obj(&[("url", "https://x/u/a@b.c")]);
        let with = |own, s| EventData::with_shared(own, s);
        assert!(!r.needed_any(&[with(own_clean(), &clean), with(own_clean(), &clean)]));
        assert!(r.needed_any(&[with(own_clean(), &clean), with(own_dirty(), &clean)]));
        assert!(r.needed_any(&[with(own_clean(), &dirty), with(own_clean(), &dirty)]));
        assert!(r.needed_any(&[with(own_clean(), &clean), with(own_clean(), &dirty)]));
        assert!(r.needed_any(&[EventData::new(own_dirty())]));
        assert!(!r.needed_any(&[EventData::new(own_clean())]));
    }

    #[test]
    fn the_cheap_gate_never_skips_a_url_the_full_pass_would_change() {
        let r = Redactor::new(&crate::config::PrivacyConfig::default().redact_query_params);
        for url in [
            "https://x/?EMAIL=a",
            "https://x/?e%6Dail=a",
            "https://x/?a=1&Phone=2#f",
            "https://x/#?email=a",
            "https://x/?utm=1#email=a",
            "https://x/path-email?utm=1",
            "https://x/?mail",
            "https://x/?tel=",
            "https://x/?x=a%40b",
            "https://x/?x=a@b",
        ] {
            if !r.may_need(url) {
                assert_eq!(full(&r, url), url, "{url}");
            }
        }
        proptest::proptest!(|(url in "[a-zA-Z0-9%+=&?#@./:-]{0,40}")| {
            if !r.may_need(&url) {
                proptest::prop_assert_eq!(full(&r, &url), url);
            }
        });
    }

    fn r() -> Redactor {
        Redactor::new(&[
            "email".into(),
            "e-mail".into(),
            "mail".into(),
            "phone".into(),
            "tel".into(),
            "mobile".into(),
        ])
    }

    #[test]
    fn emails_anywhere_raw_or_encoded() {
        let r = r();
        assert_eq!(
            r.redact_url("https://shop.example.com/thanks?x=jane.doe%40example.com&utm_source=pin")
                .as_deref(),
            Some("https://shop.example.com/thanks?x=(redacted)&utm_source=pin")
        );
        assert_eq!(
            r.redact_url("https://shop.example.com/u/jane+1@example.co.uk/profile?epik=abc")
                .as_deref(),
            Some("https://shop.example.com/u/(redacted)/profile?epik=abc")
        );
        assert_eq!(
            r.redact_url("https://shop.example.com/?next=%2Fa%3Fe%3Djane%40example.com")
                .as_deref(),
            Some("https://shop.example.com/?next=%2Fa%3Fe%3D(redacted)")
        );
        // A user-info style or a bare `@` is not an e-mail address.
        assert_eq!(r.redact_url("https://shop.example.com/@handle"), None);
        // Internationalized addresses sent raw: no part of the address is left.
        assert_eq!(
            r.redact_url("https://shop.example.com/?u=jäne@exämple.com&x=1")
                .as_deref(),
            Some("https://shop.example.com/?u=(redacted)&x=1")
        );
        assert_eq!(
            r.redact_url("https://shop.example.com/?u=ünïcødé%40example.de")
                .as_deref(),
            Some("https://shop.example.com/?u=(redacted)")
        );
    }

    #[test]
    fn listed_parameters_are_redacted_others_kept() {
        let r = r();
        assert_eq!(
            r.redact_url("https://shop.example.com/?Email=x&phone=%2B15551234567&utm_campaign=a%20b&epik=E#frag").as_deref(),
            Some("https://shop.example.com/?Email=(redacted)&phone=(redacted)&utm_campaign=a%20b&epik=E#frag")
        );
        assert_eq!(
            r.redact_url("https://shop.example.com/?utm_source=mailchimp"),
            None
        );
        assert_eq!(
            r.redact_url("https://shop.example.com/telephones?x=1"),
            None
        );
    }
}
