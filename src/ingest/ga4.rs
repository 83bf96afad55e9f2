//! GA4 endpoints: `/g/collect` (gtag.js with `server_container_url` or `transport_url`
//! pointing here) and `/mp/collect` (the Measurement Protocol, server to server).
//! Parsing lives in `gtag_parse` / `mp_parse` (pure); here: HTTP, the server-added keys
//! (`ip_override`, `user_agent`, `common_cookie`), and the answer.

use std::{net::SocketAddr, sync::Arc};

use axum::{
    body::Body,
    extract::{ConnectInfo, RawQuery, State},
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde_json::{Map, Value};

use super::{body, gtag_parse, mp_parse, request_context, with_cookies, AppState};
use crate::event::{EventData, RequestContext};

/// Cookies copied into `common_cookie` (the first-party ids tags read).
fn is_common_cookie(name: &str) -> bool {
    matches!(
        name,
        "_epik" | "_ga" | "FPID" | "FPLC" | "_fbp" | "_fbc" | "_ttp" | "ttclid"
    ) || name.starts_with("_ga_")
        || name.starts_with("_gcl_")
}

fn gtag_error(e: gtag_parse::GtagError) -> Response {
    let (status, reason) = match &e {
        gtag_parse::GtagError::NoEvents => (StatusCode::BAD_REQUEST, "no_events"),
        gtag_parse::GtagError::TooManyEvents { .. } => (StatusCode::BAD_REQUEST, "too_many_events"),
    };
    metrics::counter!("tagbridge_ingest_rejected_total", "reason" => reason).increment(1);
    (status, Json(serde_json::json!({"error": e.to_string()}))).into_response()
}

fn mp_error(e: mp_parse::MpError) -> Response {
    metrics::counter!("tagbridge_ingest_rejected_total", "reason" => "invalid_mp").increment(1);
    (
        StatusCode::BAD_REQUEST,
        Json(serde_json::json!({"error": e.to_string()})),
    )
        .into_response()
}

/// The server-added keys, and a generated `event_id` when the event has neither an
/// `event_id` nor a `transaction_id` (all tags then use the same id).
fn enrich(
    mut map: Map<String, Value>,
    ip: &str,
    headers: &HeaderMap,
    req: &RequestContext,
    ua_from_header: bool,
) -> EventData {
    map.entry("ip_override")
        .or_insert_with(|| Value::String(ip.to_owned()));
    if ua_from_header && !map.contains_key("user_agent") {
        if let Some(ua) = headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
        {
            map.insert("user_agent".into(), Value::String(ua.to_owned()));
        }
    }
    let cookies: Map<String, Value> = req
        .cookies
        .iter()
        .filter(|(k, _)| is_common_cookie(k))
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    if !cookies.is_empty() {
        map.insert("common_cookie".into(), Value::Object(cookies));
    }
    let has_id = ["event_id", "transaction_id"]
        .iter()
        .any(|k| map.get(*k).and_then(crate::event::value_text).is_some());
    if !has_id {
        map.insert(
            "event_id".into(),
            Value::String(uuid::Uuid::new_v4().to_string()),
        );
    }
    EventData::new(map)
}

async fn run_and_answer(
    state: &AppState,
    req: &RequestContext,
    events: Vec<EventData>,
) -> Response {
    match state.pipeline.run(&events, req).await {
        // GA4 clients read nothing: an empty 204, with the cookies tags set.
        Ok(outcome) => with_cookies(StatusCode::NO_CONTENT.into_response(), &outcome.cookies),
        Err(e) => e.into_response(),
    }
}

pub async fn gtag_get(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    gtag(&state, peer, &headers, &query.unwrap_or_default(), "").await
}

pub async fn gtag_post(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Body,
) -> Response {
    let bytes = match body::read_for(&state.config.server, body, &headers).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let text = String::from_utf8_lossy(&bytes);
    gtag(&state, peer, &headers, &query.unwrap_or_default(), &text).await
}

async fn gtag(
    state: &AppState,
    peer: SocketAddr,
    headers: &HeaderMap,
    query: &str,
    body: &str,
) -> Response {
    let parsed = match gtag_parse::parse(query, body) {
        Ok(p) => p,
        Err(e) => return gtag_error(e),
    };
    if parsed.skipped_lines > 0 {
        metrics::counter!("tagbridge_ingest_skipped_lines_total")
            .increment(parsed.skipped_lines as u64);
    }
    let req = request_context(headers, None);
    let ip = state.client_ip.resolve(peer.ip(), headers).to_string();
    let events = parsed
        .events
        .into_iter()
        .map(|m| enrich(m, &ip, headers, &req, true))
        .collect();
    run_and_answer(state, &req, events).await
}

/// Whether the caller presented the configured ingest key (`X-Tagbridge-Key` header, or
/// the Measurement Protocol's `api_secret` query parameter).
fn authenticated(state: &AppState, headers: &HeaderMap, query: &str) -> bool {
    let key = state.config.server.ingest_key.expose();
    if key.trim().is_empty() {
        return false;
    }
    let from_header = headers
        .get("x-tagbridge-key")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| constant_time_eq(v.as_bytes(), key.as_bytes()));
    from_header
        || form_urlencoded::parse(query.as_bytes())
            .any(|(k, v)| k == "api_secret" && constant_time_eq(v.as_bytes(), key.as_bytes()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub async fn mp_post(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Body,
) -> Response {
    let bytes = match body::read_for(&state.config.server, body, &headers).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let query = query.unwrap_or_default();
    let parsed = match mp_parse::parse(&bytes, authenticated(&state, &headers, &query)) {
        Ok(p) => p,
        Err(e) => return mp_error(e),
    };
    let req = request_context(&headers, None);
    let ip = parsed
        .ip_override
        .clone()
        .unwrap_or_else(|| state.client_ip.resolve(peer.ip(), &headers).to_string());
    // Server-to-server: the caller's own User-Agent is not the visitor's.
    let events = parsed
        .events
        .into_iter()
        .map(|m| enrich(m, &ip, &headers, &req, false))
        .collect();
    run_and_answer(&state, &req, events).await
}
