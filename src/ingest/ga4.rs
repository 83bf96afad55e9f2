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
fn is_common_cookie(name: &str) -> bool {
    matches!(
        name,
        "_epik" | "_ga" | "FPID" | "FPLC" | "_fbp" | "_fbc" | "_ttp" | "ttclid"
    ) || name.starts_with("_ga_")
        || name.starts_with("_gcl_")
}

/// The server-added keys, and a generated `event_id` when the event has neither an
/// `event_id` nor a `transaction_id` (all tags then use the same id).
fn enrich<'a>(
    (obj, shared): (Obj<'a>, Option<&'a Shared<'a>>),
    ip: &'a str,
    info: &RequestInfo<'a>,
    cookies: &Obj<'a>,
    ua_from_header: bool,
) -> EventData<'a> {
    let mut e = match shared {
        Some(shared) => EventData::with_shared(obj, shared),
        None => EventData::new(obj),
    };
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
    if ua_from_header && !e.contains("user_agent") {
        if let Some(ua) = info.user_agent {
            e.insert("user_agent", Val::str(ua));
        }
    }
    if !cookies.is_empty() {
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
    let shared = &split.shared;
    let events: Vec<EventData<'_>> = split
        .events
        .into_iter()
        .map(|(o, reads_shared)| {
            let with = (o, reads_shared.then_some(shared));
            enrich(with, &info.client_ip, info, &cookies, true)
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
        .map(|o| enrich((o, None), &ip, &info, &cookies, false))
        .collect();
    match state.run(&info, &events).await {
        Ok(outcome) => with_cookies(StatusCode::NO_CONTENT.into_response(), &outcome.cookies),
        Err(e) => state.reject(&info, e),
    }
}
