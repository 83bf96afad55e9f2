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

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, SystemTime},
};

use axum::{
    extract::State,
    http::{header, HeaderMap, StatusCode},
    response::IntoResponse,
    routing::get,
    Router,
};
use serde::Serialize;
use tokio::sync::oneshot;

pub use client_ip::ClientIpResolver;
pub use error::IngestError;

use crate::{
    config::Config,
    dispatch::{
        request_log::RequestRecord, Delivery, DispatchHandle, Enqueued, RequestLog, RouteId,
    },
    event::{new_trace_id, EventData, RequestContext},
    queue::{EventBody, Queue, QueueError, QueuedEvent},
    tags::{SetCookie, Tag, TagDecision},
};

/// A configured tag and the dispatch route of its destination.
#[derive(Clone)]
pub struct TagSlot {
    pub tag: Arc<dyn Tag>,
    pub route: RouteId,
}

/// Everything the handlers share.
pub struct AppState {
    pub config: Arc<Config>,
    pub pipeline: Pipeline,
    pub client_ip: ClientIpResolver,
    /// Set when the drain starts: `/readyz` answers 503.
    pub draining: AtomicBool,
}

/// Tags plus the way to the queue and the dispatcher.
pub struct Pipeline {
    pub tags: Vec<TagSlot>,
    pub queue: Queue,
    pub dispatch: DispatchHandle,
    pub log: Arc<dyn RequestLog>,
    /// Longest a `wait_for_response` caller waits for the destination's answer.
    pub reply_timeout: Duration,
}

/// One tag's outcome for one event, as reported to `wait_for_response` callers.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TagReport {
    pub name: String,
    /// `sent`, `skipped`, `failed`, or `pending` (no answer within the wait; delivery goes on).
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The pipeline's result for one event.
#[derive(Debug, Clone)]
pub struct Processed {
    /// The id tags use for this event (`event_id`, else `transaction_id`).
    pub event_id: Option<String>,
    pub client_id: Option<String>,
    pub tags: Vec<TagReport>,
    /// Whether a tag is in `wait_for_response` mode (then `tags` goes into the answer).
    pub waited: bool,
}

enum Pending {
    Done(TagReport),
    /// Queued; the receiver when the tag waits for the destination.
    Queued(String, Option<oneshot::Receiver<Delivery>>),
}

impl Pipeline {
    /// Runs every tag on every event, appends what they send to the durable queue in one
    /// group commit, tells the dispatcher, and waits for the destinations' answers where a
    /// tag asks for it. Returns one [`Processed`] per event and the cookies to set.
    ///
    /// # Errors
    /// [`IngestError::QueueFull`] / [`IngestError::Storage`] when the queue refuses: then
    /// nothing of this request was queued.
    pub async fn run(
        &self,
        events: Vec<EventData>,
        req: &RequestContext,
    ) -> Result<(Vec<Processed>, Vec<SetCookie>), IngestError> {
        let received_ms = req
            .received_at
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let mut cookies: Vec<SetCookie> = Vec::new();
        let mut records: Vec<QueuedEvent> = Vec::new();
        let mut routes: Vec<(RouteId, Option<oneshot::Sender<Delivery>>)> = Vec::new();
        let mut per_event = Vec::with_capacity(events.len());
        for event in &events {
            let debug = req.debug || event.is_debug();
            let mut pending = Vec::with_capacity(self.tags.len());
            for slot in &self.tags {
                let out = slot.tag.evaluate(event, req);
                for c in out.cookies {
                    cookies.retain(|old| old.name != c.name);
                    cookies.push(c);
                }
                let name = slot.tag.name().to_owned();
                let tag_label = name.clone();
                match out.decision {
                    TagDecision::Send(ob) => {
                        metrics::counter!("tagbridge_events_mapped_total", "tag" => tag_label)
                            .increment(1);
                        let (reply, rx) = if slot.tag.wait_for_response() {
                            let (tx, rx) = oneshot::channel();
                            (Some(tx), Some(rx))
                        } else {
                            (None, None)
                        };
                        pending.push(Pending::Queued(name.clone(), rx));
                        routes.push((slot.route, reply));
                        records.push(QueuedEvent {
                            tag: name,
                            received_ms,
                            body: EventBody {
                                event: raw_json(&ob.event),
                                event_id: ob.event_id,
                                event_name: ob.event_name,
                                trace_id: req.trace_id.clone(),
                                log: slot.tag.log_mode().logs(debug),
                            },
                        });
                    }
                    TagDecision::DryRun(ob) => {
                        metrics::counter!("tagbridge_events_skipped_total", "tag" => tag_label, "reason" => "dry_run").increment(1);
                        let dest = slot.tag.destination();
                        let body = EventBody {
                            event: raw_json(&ob.event),
                            event_id: ob.event_id,
                            event_name: ob.event_name,
                            trace_id: req.trace_id.clone(),
                            log: true,
                        };
                        self.log.write(
                            RequestRecord {
                                kind: dest.kind(),
                                meta: &body,
                                tag: &name,
                                url: dest.url(),
                                batch_size: 1,
                                dry_run: true,
                            }
                            .to_json(),
                        );
                        pending.push(Pending::Done(TagReport {
                            name,
                            status: "skipped",
                            detail: Some("dry_run".into()),
                        }));
                    }
                    TagDecision::Skip(reason) => {
                        metrics::counter!("tagbridge_events_skipped_total", "tag" => tag_label, "reason" => reason.as_str()).increment(1);
                        tracing::debug!(tag = %name, reason = reason.as_str(), trace_id = %req.trace_id, "Tag skipped the event.");
                        pending.push(Pending::Done(TagReport {
                            name,
                            status: "skipped",
                            detail: Some(reason.as_str().into()),
                        }));
                    }
                }
            }
            per_event.push(pending);
        }

        // One durable append for the whole request: answered only once it is on disk.
        let seqs = self.queue.append(&records).await.map_err(|e| match e {
            QueueError::Full { .. } => IngestError::QueueFull,
            other => {
                tracing::error!(error = %other, "Queue append failed.");
                IngestError::Storage
            }
        })?;
        metrics::counter!("tagbridge_events_queued_total").increment(seqs.len() as u64);
        let notices = seqs
            .into_iter()
            .zip(routes)
            .map(|((seq, bytes), (route, reply))| Enqueued {
                route,
                seq,
                bytes,
                received_ms,
                reply,
            })
            .collect();
        self.dispatch.notify(notices);

        // Any waiting tag puts the per-tag outcomes into the answer, whatever it decided.
        let waited = self.tags.iter().any(|s| s.tag.wait_for_response());
        let mut processed = Vec::with_capacity(events.len());
        for (event, pending) in events.iter().zip(per_event) {
            let mut reports = Vec::with_capacity(pending.len());
            for p in pending {
                reports.push(match p {
                    Pending::Done(r) => r,
                    Pending::Queued(name, None) => TagReport {
                        name,
                        status: "sent",
                        detail: Some("queued".into()),
                    },
                    Pending::Queued(name, Some(rx)) => {
                        match tokio::time::timeout(self.reply_timeout, rx).await {
                            Ok(Ok(Delivery::Sent)) => TagReport {
                                name,
                                status: "sent",
                                detail: None,
                            },
                            Ok(Ok(Delivery::Failed(why))) => TagReport {
                                name,
                                status: "failed",
                                detail: Some(why),
                            },
                            Ok(Err(_)) | Err(_) => TagReport {
                                name,
                                status: "pending",
                                detail: Some("queued; no answer yet, delivery continues".into()),
                            },
                        }
                    }
                });
            }
            processed.push(Processed {
                event_id: event
                    .text("event_id")
                    .or_else(|| event.text("transaction_id")),
                client_id: event.text("client_id"),
                tags: reports,
                waited,
            });
        }
        Ok((processed, cookies))
    }
}

/// A mapped event as JSON text (serializing a `Value` cannot fail; `null` if it ever did).
fn raw_json(value: &serde_json::Value) -> Box<serde_json::value::RawValue> {
    serde_json::value::to_raw_value(value).unwrap_or_else(|_| {
        serde_json::value::RawValue::from_string("null".to_owned()).unwrap_or_default()
    })
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
    if state.draining.load(Ordering::Acquire) {
        (StatusCode::SERVICE_UNAVAILABLE, "draining")
    } else {
        (StatusCode::OK, "ready")
    }
}
