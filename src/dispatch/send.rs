//! Delivery of one batch: the HTTP call, the destination's verdict, retries, outcomes.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use serde_json::{Map, Value};
use tokio::sync::{watch, Semaphore};

use super::{
    backoff::Backoff,
    request_log::{response_record, RequestLog, RequestRecord},
    Delivery, Envelope,
};
use crate::tags::{retry_after, BatchVerdict, Destination, EventOutcome};

/// Shared by all batch deliveries.
pub(super) struct SendContext {
    pub client: reqwest::Client,
    pub backoff: Backoff,
    pub give_up_after: Duration,
    pub log: Arc<dyn RequestLog>,
    /// Events handed to a delivery task and not yet settled.
    pub unsettled: AtomicUsize,
}

/// One attempt's result, before the retry decision.
enum Attempt {
    Verdict {
        verdict: BatchVerdict,
        retry_after: Option<Duration>,
    },
    Transport(String),
}

/// Delivers `batch` to `dest`, retrying transient failures until delivered, refused,
/// `give_up_after` elapsed, or the drain deadline passed. Settles every envelope.
pub(super) async fn deliver(
    ctx: Arc<SendContext>,
    dest: Arc<dyn Destination>,
    permits: Arc<Semaphore>,
    batch: Vec<Envelope>,
    mut drain: watch::Receiver<Option<Instant>>,
) {
    let started = Instant::now();
    let kind = dest.kind();
    let events: Vec<&Value> = batch.iter().map(|e| &e.event).collect();
    let request = dest.encode(&events);
    for env in batch.iter().filter(|e| e.meta.log) {
        ctx.log.write(
            RequestRecord {
                kind,
                meta: &env.meta,
                url: dest.url(),
                event: &env.event,
                batch_size: batch.len(),
                dry_run: false,
            }
            .to_json(),
        );
    }
    let mut attempt: u32 = 0;
    loop {
        let outcome = {
            let _permit = permits.acquire().await;
            send_once(&ctx, &*dest, &request, &batch).await
        };
        let (reason, hint) = match outcome {
            Attempt::Verdict {
                verdict: BatchVerdict::Delivered(outcomes),
                ..
            } => {
                settle_delivered(&ctx, kind, batch, outcomes);
                return;
            }
            Attempt::Verdict {
                verdict: BatchVerdict::Reject { reason },
                ..
            } => {
                tracing::error!(
                    destination = kind,
                    url = dest.url(),
                    events = batch.len(),
                    error = %reason,
                    "Destination refused the batch; not retried."
                );
                settle_all(&ctx, batch, Delivery::Failed(reason));
                return;
            }
            Attempt::Verdict {
                verdict: BatchVerdict::Retry { reason },
                retry_after,
            } => (reason, retry_after),
            Attempt::Transport(reason) => (reason, None),
        };
        if started.elapsed() >= ctx.give_up_after {
            tracing::error!(
                destination = kind,
                events = batch.len(),
                attempts = attempt + 1,
                error = %reason,
                "Giving up on a batch after retries."
            );
            settle_all(&ctx, batch, Delivery::Failed(format!("gave up: {reason}")));
            return;
        }
        let delay = ctx.backoff.delay(attempt, hint, &mut rand::rng());
        tracing::warn!(
            destination = kind,
            events = batch.len(),
            attempt = attempt + 1,
            retry_in_ms = delay.as_millis() as u64,
            error = %reason,
            "Batch not delivered; will retry."
        );
        if !wait(delay, &mut drain).await {
            tracing::error!(
                destination = kind,
                events = batch.len(),
                error = %reason,
                "Drain deadline passed before the batch could be delivered."
            );
            settle_all(
                &ctx,
                batch,
                Delivery::Failed(format!("not delivered before shutdown: {reason}")),
            );
            return;
        }
        attempt = attempt.saturating_add(1);
    }
}

async fn send_once(
    ctx: &SendContext,
    dest: &dyn Destination,
    request: &crate::tags::OutboundRequest,
    batch: &[Envelope],
) -> Attempt {
    let mut builder = ctx.client.post(&request.url).body(request.body.clone());
    for (name, value) in &request.headers {
        builder = builder.header(*name, value);
    }
    let response = match builder.send().await {
        Ok(r) => r,
        Err(e) => return Attempt::Transport(transport_reason(&e)),
    };
    let status = response.status().as_u16();
    let hint = retry_after(
        response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
    );
    let headers = headers_json(response.headers());
    let body = match response.bytes().await {
        Ok(b) => b,
        Err(e) => return Attempt::Transport(transport_reason(&e)),
    };
    let verdict = dest.classify(status, &body, batch.len());
    if batch.iter().any(|e| e.meta.log) {
        let parsed: Value = serde_json::from_slice(&body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
        for (i, env) in batch.iter().enumerate().filter(|(_, e)| e.meta.log) {
            // A 2xx body lists one entry per event: log this event's own entry.
            let own = match (&verdict, parsed.get("events").and_then(|e| e.get(i))) {
                (BatchVerdict::Delivered(_), Some(entry)) => entry.clone(),
                _ => parsed.clone(),
            };
            ctx.log.write(response_record(
                dest.kind(),
                &env.meta,
                status,
                &headers,
                own,
            ));
        }
    }
    Attempt::Verdict {
        verdict,
        retry_after: hint,
    }
}

fn transport_reason(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timeout".into()
    } else if e.is_connect() {
        "connection failed".into()
    } else {
        // Only the error kind: the text could carry the URL.
        let kind = if e.is_body() || e.is_decode() {
            "reading the answer failed"
        } else if e.is_request() {
            "request failed"
        } else {
            "transport error"
        };
        kind.to_owned()
    }
}

fn headers_json(headers: &reqwest::header::HeaderMap) -> Value {
    let mut map = Map::new();
    for (name, value) in headers {
        map.insert(
            name.as_str().to_owned(),
            Value::String(String::from_utf8_lossy(value.as_bytes()).into_owned()),
        );
    }
    Value::Object(map)
}

/// Waits `delay`, or until the drain deadline; false when the deadline came first.
async fn wait(delay: Duration, drain: &mut watch::Receiver<Option<Instant>>) -> bool {
    let wake = tokio::time::Instant::now() + delay;
    loop {
        let deadline = *drain.borrow_and_update();
        if let Some(d) = deadline {
            let d = tokio::time::Instant::from_std(d);
            if d <= wake {
                tokio::time::sleep_until(d).await;
                return false;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep_until(wake) => return true,
            changed = drain.changed() => {
                if changed.is_err() {
                    // The dispatcher is gone: nobody will wait for this batch.
                    return false;
                }
            }
        }
    }
}

fn settle_delivered(
    ctx: &SendContext,
    kind: &str,
    batch: Vec<Envelope>,
    outcomes: Vec<EventOutcome>,
) {
    let n = batch.len();
    let mut failed = 0usize;
    for (env, outcome) in batch.into_iter().zip(outcomes) {
        let delivery = match outcome {
            EventOutcome::Accepted { warning } => {
                if let Some(w) = warning {
                    tracing::info!(destination = kind, tag = %env.meta.tag, event_id = %env.meta.event_id, warning = %w, "Destination accepted the event with a warning.");
                }
                Delivery::Sent
            }
            EventOutcome::Failed { error } => {
                failed += 1;
                tracing::warn!(destination = kind, tag = %env.meta.tag, event_id = %env.meta.event_id, event_name = %env.meta.event_name, error_message = %error, "Destination refused an event.");
                Delivery::Failed(error)
            }
        };
        if let Some(reply) = env.reply {
            let _ = reply.send(delivery);
        }
    }
    ctx.unsettled.fetch_sub(n, Ordering::AcqRel);
    tracing::debug!(destination = kind, events = n, failed, "Batch delivered.");
}

fn settle_all(ctx: &SendContext, batch: Vec<Envelope>, delivery: Delivery) {
    ctx.unsettled.fetch_sub(batch.len(), Ordering::AcqRel);
    for env in batch {
        if let Some(reply) = env.reply {
            let _ = reply.send(delivery.clone());
        }
    }
}
