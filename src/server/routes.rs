//! The routers: the public one (ingest paths, `/healthz`, `/readyz`) and the admin one
//! (`/metrics`, `/debug`), and the request counter around them.

use std::sync::Arc;

use axum::{
    extract::State,
    http::{header, StatusCode},
    response::IntoResponse,
    routing::get,
    Router,
};

use crate::ingest::{self, AppState};

/// The public listener's routes: ingest and the probes. `/metrics` and `/debug` are not
/// here (404): they are on the admin listener only.
pub fn public(state: Arc<AppState>) -> Router {
    // Make sure the recorder exists before the first request counts anything.
    let _ = crate::telemetry::prometheus();
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .merge(ingest::routes(state.clone()))
        // Bad input gets a short JSON error, a wrong path or method too (axum's own answers
        // have an empty body; the ingest routes set theirs inside their CORS layer). A 405
        // keeps its `Allow` header.
        .fallback(|| async { ingest::IngestError::NotFound })
        .method_not_allowed_fallback(|| async { ingest::IngestError::MethodNotAllowed })
        .layer(axum::middleware::from_fn(count_requests))
        .with_state(state)
}

/// The admin listener's routes: `/metrics`, the debug page and its API, the probes.
pub fn admin(state: Arc<AppState>) -> Router {
    let _ = crate::telemetry::prometheus();
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .merge(crate::debug::routes::routes(state.clone()))
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
        .cloned();
    let response = next.run(request).await;
    let route = route.as_ref().map_or("unmatched", |p| p.as_str());
    request_counter(route, response.status()).increment(1);
    response
}

thread_local! {
    /// Counter handles by route and status, per worker thread: registering a labelled
    /// counter is a registry lookup; a handle is an atomic add. Bounded: routes are the
    /// configured paths (a short list) and statuses are at most a few hundred codes.
    static REQUEST_COUNTERS: std::cell::RefCell<
        Vec<(String, rustc_hash::FxHashMap<u16, metrics::Counter>)>,
    > = Default::default();
}

fn request_counter(route: &str, status: StatusCode) -> metrics::Counter {
    REQUEST_COUNTERS.with(|cache| {
        let mut cache = cache.borrow_mut();
        let i = match cache.iter().position(|(r, _)| r == route) {
            Some(i) => i,
            None => {
                cache.push((route.to_owned(), Default::default()));
                cache.len() - 1
            }
        };
        cache[i]
            .1
            .entry(status.as_u16())
            .or_insert_with(|| {
                metrics::counter!("tagbridge_http_requests_total", "route" => route.to_owned(), "status" => status_label(status))
            })
            .clone()
    })
}

/// Status codes as labels (no allocation for the common ones).
fn status_label(s: StatusCode) -> std::borrow::Cow<'static, str> {
    match common_status(s) {
        Some(l) => std::borrow::Cow::Borrowed(l),
        None => std::borrow::Cow::Owned(s.as_u16().to_string()),
    }
}

fn common_status(s: StatusCode) -> Option<&'static str> {
    Some(match s.as_u16() {
        200 => "200",
        204 => "204",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        408 => "408",
        413 => "413",
        429 => "429",
        500 => "500",
        503 => "503",
        _ => return None,
    })
}

async fn metrics_text(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    queue_gauges(&state.pipeline.queue);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::telemetry::prometheus().render(),
    )
}

/// The queue's gauges, read at scrape time so they are never stale (the dispatcher may sleep
/// for minutes while a route backs off or the queue is empty).
fn queue_gauges(queue: &crate::queue::Queue) {
    let stats = queue.stats();
    metrics::gauge!("tagbridge_queue_pending_events").set(stats.depth as f64);
    metrics::gauge!("tagbridge_queue_bytes").set(stats.bytes as f64);
    metrics::gauge!("tagbridge_queue_disk_bytes").set(stats.disk_bytes as f64);
    metrics::gauge!("tagbridge_queue_oldest_age_seconds")
        .set(stats.oldest_age_s.unwrap_or(0) as f64);
    metrics::gauge!("tagbridge_dead_letter_bytes").set(stats.dead_letter_bytes as f64);
    // Every reason, so a reason whose dead letters were evicted or replayed drops to 0
    // instead of keeping its last value.
    for reason in crate::queue::DeadReason::ALL {
        let n = stats
            .dead_by_reason
            .get(reason.as_str())
            .copied()
            .unwrap_or(0);
        metrics::gauge!("tagbridge_dead_letters", "reason" => reason.as_str()).set(n as f64);
    }
    metrics::gauge!("tagbridge_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
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
