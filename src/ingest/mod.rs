//! Ingest: HTTP requests → event data → tags → dispatch, and the answer to the caller.
//!
//! Each endpoint module (`data`, later `gtag` and `mp`) only turns its request format into
//! [`EventData`]s; [`Pipeline::run`] does the rest the same way for all of them.
//!
//! Answer policy: an event that is queued, or skipped on purpose (trigger, consent, dry
//! run), is a success for the caller. 4xx is only for malformed input. 503 (with
//! `Retry-After`) only when the dispatcher cannot take more events or the gateway drains.

mod body;
mod client_ip;
pub mod cors;
mod data;
pub mod error;
mod ga4;
pub mod gtag_parse;
pub mod mp_parse;

use std::{sync::Arc, time::SystemTime};

use axum::{
    extract::State,
    http::{header, HeaderMap, StatusCode},
    response::IntoResponse,
    routing::get,
    Router,
};

pub use client_ip::ClientIpResolver;
pub use error::IngestError;

use crate::{
    config::Config,
    event::{new_trace_id, RequestContext},
    health::Health,
    pipeline::Pipeline,
    tags::SetCookie,
};

/// Everything the handlers share.
pub struct AppState {
    pub config: Arc<Config>,
    pub pipeline: Pipeline,
    pub client_ip: ClientIpResolver,
    pub health: Arc<Health>,
}

/// What every handler reads from the request besides its body.
pub(crate) fn request_context(headers: &HeaderMap, host_from_uri: Option<&str>) -> RequestContext {
    let cookies = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            let v = v.trim().trim_matches('"');
            Some((k.trim().to_owned(), v.to_owned()))
        })
        .collect();
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or(host_from_uri)
        .map(strip_port);
    let referer = headers
        .get(header::REFERER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let debug =
        headers.contains_key("x-tagbridge-debug") || headers.contains_key("x-gtm-server-preview");
    let trace_id = trace_id(headers).unwrap_or_else(new_trace_id);
    RequestContext {
        received_at: SystemTime::now(),
        cookies,
        host,
        referer,
        debug,
        trace_id,
    }
}

pub(crate) fn strip_port(host: &str) -> String {
    let h = host.trim();
    if let Some(rest) = h.strip_prefix('[') {
        // [v6]:port
        return rest.split(']').next().unwrap_or(rest).to_owned();
    }
    match h.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name.to_owned(),
        _ => h.to_owned(),
    }
}

/// The trace id of a W3C `traceparent` or Google's `X-Cloud-Trace-Context`, if valid.
fn trace_id(headers: &HeaderMap) -> Option<String> {
    let valid = |t: &str| t.len() == 32 && t.bytes().all(|b| b.is_ascii_hexdigit());
    if let Some(tp) = headers.get("traceparent").and_then(|v| v.to_str().ok()) {
        if let Some(id) = tp.split('-').nth(1).filter(|t| valid(t)) {
            return Some(id.to_ascii_lowercase());
        }
    }
    headers
        .get("x-cloud-trace-context")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split('/').next())
        .filter(|t| valid(t))
        .map(str::to_ascii_lowercase)
}

/// Adds `Set-Cookie` headers to a response.
pub(crate) fn with_cookies(
    mut response: axum::response::Response,
    cookies: &[SetCookie],
) -> axum::response::Response {
    for c in cookies {
        if let Ok(v) = header::HeaderValue::from_str(&c.header_value()) {
            response.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    response
}

/// The gateway's routes.
pub fn router(state: Arc<AppState>) -> Router {
    let paths = state.config.server.paths.clone();
    // Make sure the recorder exists before the first request counts anything.
    let _ = crate::telemetry::prometheus();
    let ingest = Router::new()
        .route(&paths.data, get(data::get).post(data::post))
        .route(&paths.gtag, get(ga4::gtag_get).post(ga4::gtag_post))
        .route(&paths.mp, axum::routing::post(ga4::mp_post))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            cors::layer,
        ));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .merge(ingest)
        .layer(axum::middleware::from_fn(count_requests))
        .with_state(state)
}

/// Counts requests by route (the configured path, never the raw URL) and status.
async fn count_requests(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    metrics::counter!("tagbridge_http_requests_total", "route" => route, "status" => response.status().as_u16().to_string()).increment(1);
    response
}

async fn metrics_text() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::telemetry::prometheus().render(),
    )
}

async fn healthz() -> impl IntoResponse {
    (StatusCode::OK, "ok")
}

async fn readyz(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    match state.health.readiness(&state.pipeline.queue) {
        Ok(()) => (StatusCode::OK, "ready"),
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, reason),
    }
}
