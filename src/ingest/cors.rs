//! CORS for the ingest endpoints (`docs/INGEST.md` §5).
//!
//! - A request without `Origin` (server calls, image beacons) is processed.
//! - With `server.allowed_origins` set, an `Origin` on the list (exact match, or `*`) is
//!   echoed with `Access-Control-Allow-Credentials: true` (never `*` with credentials);
//!   any other origin gets 403 and the request is not processed.
//! - With an empty list, only same-site origins are allowed: the origin's registrable domain
//!   (public suffix list) equals the request host's (`shop.example.com` → `track.shop.example.com`).
//! - A preflight (`OPTIONS` with an allowed origin) is answered 204 with the allowed methods
//!   and the requested headers.

use std::sync::Arc;

use axum::{
    extract::{Request, State},
    http::{header, HeaderMap, HeaderValue, Method, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
};

use super::{AppState, IngestError};
use crate::web::{host_of, registrable_domain};

const ALLOW_METHODS: &str = "GET, POST, OPTIONS";

/// Whether `origin` may call this gateway, given the request's `Host`.
pub fn origin_allowed(origin: &str, allowed: &[String], host: Option<&str>) -> bool {
    if !allowed.is_empty() {
        return allowed
            .iter()
            .any(|a| a == "*" || a.trim_end_matches('/').eq_ignore_ascii_case(origin));
    }
    // Same-site answers depend only on (origin, host); browsers send the same pair on every
    // beacon, so each worker thread remembers its last answer (parsing the origin and two
    // public-suffix lookups per request were ~3 % of the gateway's CPU).
    thread_local! {
        static LAST: std::cell::RefCell<Option<(String, Option<String>, bool)>> =
            const { std::cell::RefCell::new(None) };
    }
    let cached = LAST.with_borrow(|last| {
        last.as_ref()
            .filter(|(o, h, _)| o == origin && h.as_deref() == host)
            .map(|&(_, _, ok)| ok)
    });
    if let Some(ok) = cached {
        return ok;
    }
    let ok = same_site(origin, host);
    LAST.with_borrow_mut(|last| *last = Some((origin.to_owned(), host.map(str::to_owned), ok)));
    ok
}

/// The same-site rule (module docs), uncached.
fn same_site(origin: &str, host: Option<&str>) -> bool {
    let Some((scheme, origin_host)) = url::Url::parse(origin).ok().and_then(|u| {
        let host = u.host_str()?.to_ascii_lowercase();
        Some((u.scheme().to_owned(), host))
    }) else {
        return false;
    };
    // Same site means https (an `http://` page of the site could be anyone on the path),
    // except for local development.
    let local = origin_host == "localhost"
        || origin_host
            .trim_matches(|c| c == '[' || c == ']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if scheme != "https" && !local {
        return false;
    }
    let Some(host) = host.and_then(host_of).map(str::to_ascii_lowercase) else {
        return false;
    };
    if origin_host == host {
        return true;
    }
    match (registrable_domain(&origin_host), registrable_domain(&host)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

fn cors_headers(headers: &mut HeaderMap, origin: &HeaderValue) {
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
        HeaderValue::from_static("true"),
    );
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
}

/// The middleware around the ingest routes.
pub async fn layer(
    State(state): State<Arc<AppState>>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<std::net::SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    let Some(origin) = request.headers().get(header::ORIGIN).cloned() else {
        return next.run(request).await;
    };
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let allowed = origin
        .to_str()
        .map(|o| origin_allowed(o, &state.config.server.allowed_origins, host.as_deref()))
        .unwrap_or(false);
    if !allowed {
        return state.reject_before_handler(&request, peer, IngestError::OriginNotAllowed);
    }
    if request.method() == Method::OPTIONS {
        let mut response = StatusCode::NO_CONTENT.into_response();
        let h = response.headers_mut();
        cors_headers(h, &origin);
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static(ALLOW_METHODS),
        );
        let requested = request
            .headers()
            .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
            .cloned()
            .unwrap_or_else(|| HeaderValue::from_static("content-type"));
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, requested);
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("86400"),
        );
        return response;
    }
    let mut response = next.run(request).await;
    cors_headers(response.headers_mut(), &origin);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowlist_and_same_site() {
        let list = vec!["https://shop.example".to_string()];
        assert!(origin_allowed("https://shop.example", &list, None));
        assert!(!origin_allowed("https://evil.example", &list, None));
        assert!(!origin_allowed("https://shop.example.evil", &list, None));
        assert!(origin_allowed("https://x.y", &["*".to_string()], None));
        // Empty list: same site only.
        let none: Vec<String> = Vec::new();
        assert!(origin_allowed(
            "https://shop.example.com",
            &none,
            Some("track.shop.example.com")
        ));
        assert!(origin_allowed(
            "https://www.shop.co.uk",
            &none,
            Some("track.shop.co.uk:443")
        ));
        assert!(!origin_allowed(
            "https://other.co.uk",
            &none,
            Some("track.shop.co.uk")
        ));
        assert!(!origin_allowed(
            "https://evil.com",
            &none,
            Some("track.shop.example.com")
        ));
        assert!(origin_allowed(
            "http://127.0.0.1:3000",
            &none,
            Some("127.0.0.1:8080")
        ));
        assert!(!origin_allowed(
            "null",
            &none,
            Some("track.shop.example.com")
        ));
        assert!(!origin_allowed("https://shop.example.com", &none, None));
        assert!(!origin_allowed(
            "http://www.shop.example.com",
            &none,
            Some("track.shop.example.com")
        ));
        assert!(origin_allowed(
            "http://localhost:3000",
            &none,
            Some("localhost:8080")
        ));
    }
}
