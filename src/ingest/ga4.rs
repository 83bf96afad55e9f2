//! GA4 endpoints: `/g/collect` (gtag.js with `server_container_url` or `transport_url`
//! pointing here) and `/mp/collect` (the Measurement Protocol, server to server).
//! Parsing lives in `gtag_parse` / `mp_parse` (pure); here: HTTP, the server-added keys
//! (`ip_override`, `user_agent`, `common_cookie`), and the answer.

use std::{net::SocketAddr, sync::Arc};

use axum::{
    extract::{ConnectInfo, RawQuery, Request, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};

use super::{
    body, gtag_parse, mp_parse, with_cookies, AppState, Endpoint, IngestError, RequestInfo,
};
use crate::event::{new_event_id, value_text, EventData, Obj, Shared, Val};

/// Cookies copied into `common_cookie` (the first-party ids tags read).
pub(crate) fn is_common_cookie(name: &str) -> bool {
    matches!(
        name,
        "_epik" | "_ga" | "FPID" | "FPLC" | "_fbp" | "_fbc" | "_ttp" | "ttclid"
    ) || name.starts_with("_ga_")
        || name.starts_with("_gcl_")
}

/// The server-added keys, and a generated `event_id` when the event has neither an
/// `event_id` nor a `transaction_id` (all tags then use the same id).
///
/// An event that reads `shared` keys finds the server-added ones there
/// ([`enrich_shared`] ran first): only what its own keys override is set on it.
fn enrich<'a>(
    (obj, shared): (Obj<'a>, Option<&'a Shared<'a>>),
    ip: &'a str,
    user_agent: Option<&'a str>,
    cookies: &Obj<'a>,
) -> EventData<'a> {
    let mut e = match shared {
        Some(shared) => EventData::with_shared(obj, shared),
        None => EventData::new(obj),
    };
    // Shared keys hold valid server-added ones: only an event's own can change anything.
    if shared.is_none() || e.get_own("ip_override").is_some() || e.get_own("user_agent").is_some() {
        server_keys(&mut e, ip, user_agent);
    }
    // The request's cookies replace an event's `common_cookie` (shared keys carry them).
    if !cookies.is_empty() && (shared.is_none() || e.get_own("common_cookie").is_some()) {
        e.insert("common_cookie", Val::Obj(cookies.clone()));
    }
    let has_id = ["event_id", "transaction_id"]
        .iter()
        .any(|k| e.get(k).and_then(value_text).is_some());
    if !has_id {
        e.insert("event_id", Val::string(new_event_id()));
    }
    e
}

/// The server-added keys on the keys a request's events share (a gtag URL's), once per
/// request instead of once per event: `ip_override`, `user_agent`, `common_cookie`.
fn enrich_shared<'a>(
    shared: Shared<'a>,
    ip: &'a str,
    user_agent: Option<&'a str>,
    cookies: &Obj<'a>,
) -> Shared<'a> {
    let mut e = EventData::from_shared(shared);
    server_keys(&mut e, ip, user_agent);
    if !cookies.is_empty() {
        e.insert("common_cookie", Val::Obj(cookies.clone()));
    }
    e.into_shared()
}

/// `ip_override` (kept when valid) and `user_agent` (the header's, for browser traffic)
/// where the event has none.
fn server_keys<'a>(e: &mut EventData<'a>, ip: &'a str, user_agent: Option<&'a str>) {
    // An event's own `ip_override` (kept only with the ingest key) must be an address.
    let own = e
        .text("ip_override")
        .map(|t| t.trim().parse::<std::net::IpAddr>().is_ok());
    match own {
        Some(true) => {}
        Some(false) => {
            metrics::counter!("tagbridge_ingest_invalid_ip_total").increment(1);
            e.insert("ip_override", Val::str(ip));
        }
        None => e.insert("ip_override", Val::str(ip)),
    }
    if !e.contains("user_agent") {
        if let Some(ua) = user_agent {
            e.insert("user_agent", Val::str(ua));
        }
    }
}

fn common_cookies<'a>(info: &RequestInfo<'a>) -> Obj<'a> {
    let mut cookies = Obj::new();
    for (k, v) in &info.ctx.cookies {
        if is_common_cookie(k) {
            cookies.insert(*k, Val::str(v));
        }
    }
    cookies
}

pub async fn gtag_get(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let query = query.unwrap_or_default();
    let info = RequestInfo::new(&state, ("GET", Endpoint::Gtag), peer, &headers, &query);
    gtag(&state, &info, &query, "").await
}

pub async fn gtag_post(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    // The request's own headers and query, borrowed (axum's `HeaderMap` and `RawQuery`
    // extractors copy them).
    let (parts, body) = request.into_parts();
    let (headers, query) = (&parts.headers, parts.uri.query().unwrap_or_default());
    let mut info = RequestInfo::new(&state, ("POST", Endpoint::Gtag), peer, headers, query);
    let bytes = match body::read_for(&state.config.server, body, headers).await {
        Ok(b) => b,
        Err(e) => return state.reject(&info, e),
    };
    info.request_bytes += bytes.len();
    // Checked at SIMD speed first (from_utf8_lossy walks byte by byte); a body that is not
    // UTF-8 is repaired the lossy way.
    let text = match std::str::from_utf8(&bytes) {
        Ok(t) => std::borrow::Cow::Borrowed(t),
        Err(_) => String::from_utf8_lossy(&bytes),
    };
    gtag(&state, &info, query, &text).await
}

async fn gtag(state: &AppState, info: &RequestInfo<'_>, query: &str, body: &str) -> Response {
    let decoded = match gtag_parse::decode(query, body) {
        Ok(d) => d,
        Err(e) => return state.reject(info, IngestError::from(e)),
    };
    // The URL's parameters are built once and read through by every event.
    let split = match decoded.split_events(info.authenticated) {
        Ok(e) => e,
        Err(e) => return state.reject(info, IngestError::from(e)),
    };
    if split.skipped > 0 {
        metrics::counter!("tagbridge_ingest_skipped_lines_total").increment(split.skipped as u64);
    }
    let cookies = common_cookies(info);
    let shared = &enrich_shared(split.shared, &info.client_ip, info.user_agent, &cookies);
    let events: Vec<EventData<'_>> = split
        .events
        .into_iter()
        .map(|(o, reads_shared)| {
            let with = (o, reads_shared.then_some(shared));
            enrich(with, &info.client_ip, info.user_agent, &cookies)
        })
        .collect();
    match state.run(info, &events).await {
        // GA4 clients read nothing: an empty 204, with the cookies tags set.
        Ok(outcome) => with_cookies(StatusCode::NO_CONTENT.into_response(), &outcome.cookies),
        Err(e) => state.reject(info, e),
    }
}

pub async fn mp_post(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let (headers, query) = (&parts.headers, parts.uri.query().unwrap_or_default());
    let mut info = RequestInfo::new(&state, ("POST", Endpoint::Mp), peer, headers, query);
    let bytes = match body::read_for(&state.config.server, body, headers).await {
        Ok(b) => b,
        Err(e) => return state.reject(&info, e),
    };
    info.request_bytes += bytes.len();
    let parsed = match mp_parse::parse_borrowed(&bytes, info.authenticated) {
        Ok(p) => p,
        Err(e) => return state.reject(&info, IngestError::from(e)),
    };
    let ip = match parsed.ip_override.as_deref() {
        Some(ip) if ip.parse::<std::net::IpAddr>().is_ok() => ip.to_owned(),
        Some(_) => {
            metrics::counter!("tagbridge_ingest_invalid_ip_total").increment(1);
            info.client_ip.clone()
        }
        None => info.client_ip.clone(),
    };
    let cookies = common_cookies(&info);
    // Server-to-server: the caller's own User-Agent is not the visitor's.
    let events: Vec<EventData<'_>> = parsed
        .events
        .into_iter()
        .map(|o| enrich((o, None), &ip, None, &cookies))
        .collect();
    match state.run(&info, &events).await {
        Ok(outcome) => with_cookies(StatusCode::NO_CONTENT.into_response(), &outcome.cookies),
        Err(e) => state.reject(&info, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Enriching the URL's keys once (split events) gives every event exactly what
    /// enriching each merged event gives it.
    #[test]
    fn shared_enrichment_matches_per_event_enrichment() {
        let url = |extra: &str| format!("v=2&tid=G-1&cid=1.2&dl=https%3A%2F%2Fx%2F{extra}");
        let cases = [
            (
                url(""),
                "en=page_view&_et=1\nen=purchase&ep.transaction_id=T1",
            ),
            (
                url("&ep.ip_override=9.9.9.9"),
                "en=a\nen=b&ep.ip_override=bad",
            ),
            (
                url("&ep.ip_override=bad"),
                "en=a\nen=b&ep.ip_override=8.8.8.8",
            ),
            (
                url("&ep.user_agent=UA-url"),
                "en=a\nen=b&ep.user_agent=UA-line",
            ),
            (url("&ep.common_cookie=x"), "en=a\nen=b&ep.common_cookie=y"),
            (url("&ep.event_id=E-url"), "en=a\nen=b&ep.event_id=E-line"),
            (
                url(""),
                "en=a&ep.user_agent=own\nen=b&ep.ip_override=7.7.7.7",
            ),
            (
                url(""),
                "en=a&ep.common_cookie=own\nen=b&ep.ip_override=bad",
            ),
        ];
        let mut cookies = Obj::new();
        cookies.insert("_epik", Val::str("ep1"));
        for (query, body) in &cases {
            let decoded = gtag_parse::decode(query, body).expect("decodes");
            let (merged, _) = decoded.events(true).expect("events");
            let want: Vec<serde_json::Value> = merged
                .into_iter()
                .map(|o| enrich((o, None), "1.1.1.1", Some("UA-header"), &cookies))
                .map(|e| without_generated_id(e.to_json()))
                .collect();
            let split = decoded.split_events(true).expect("split");
            let shared = &enrich_shared(split.shared, "1.1.1.1", Some("UA-header"), &cookies);
            let got: Vec<serde_json::Value> = split
                .events
                .into_iter()
                .map(|(o, reads)| {
                    enrich(
                        (o, reads.then_some(shared)),
                        "1.1.1.1",
                        Some("UA-header"),
                        &cookies,
                    )
                })
                .map(|e| without_generated_id(e.to_json()))
                .collect();
            assert_eq!(got, want, "{query} {body}");
        }
    }

    /// A generated id is random: replaced by a marker when it has the shape of one.
    fn without_generated_id(mut v: serde_json::Value) -> serde_json::Value {
        if let Some(id) = v.get_mut("event_id") {
            if id
                .as_str()
                .is_some_and(|s| s.len() == 36 && s.matches('-').count() == 4)
            {
                *id = "generated".into();
            }
        }
        v
    }
}
