//! One delivery attempt of one batch: read the records, send, classify, settle the final
//! outcomes in the queue. Retry decisions are the worker's (they are per route).

use std::{sync::Arc, time::Duration};

use governor::DefaultDirectRateLimiter;
use serde_json::{Map, Value};

use super::{
    request_log::{response_record, RequestLog, RequestRecord},
    Delivery, RouteId,
};
use crate::{
    queue::{now_ms, DeadLetter, DeadReason, Queue, QueuedEvent, Seq, Stored},
    tags::{retry_after, BatchVerdict, Destination, EventOutcome, OutboundRequest},
};

/// A pending event in the worker's index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Entry {
    pub seq: Seq,
    pub bytes: u64,
    pub received_ms: u64,
}

pub(super) struct Batch {
    pub route: RouteId,
    pub dest: Arc<dyn Destination>,
    pub limiter: Arc<DefaultDirectRateLimiter>,
    pub entries: Vec<Entry>,
}

/// Shared by all deliveries.
pub(super) struct SendContext {
    pub client: reqwest::Client,
    pub queue: Queue,
    pub log: Arc<dyn RequestLog>,
    pub give_up_after_ms: u64,
}

/// What a delivery settled, for the worker.
pub(super) struct Done {
    pub route: RouteId,
    /// Final outcomes (already settled in the queue), for replies and metrics.
    pub settled: Vec<(Seq, Delivery)>,
    /// Put these back: a transient failure.
    pub retry: Option<Retry>,
    /// The route's credential or account was refused (401/403): pause the route.
    pub refused_credentials: bool,
}

pub(super) struct Retry {
    pub entries: Vec<Entry>,
    pub reason: String,
    pub after: Option<Duration>,
}

pub(super) async fn deliver(ctx: Arc<SendContext>, batch: Batch) -> Done {
    let route = batch.route;
    let kind = batch.dest.kind();
    let seqs: Vec<Seq> = batch.entries.iter().map(|e| e.seq).collect();
    let records = match ctx.queue.read_blocking(seqs).await {
        Ok(r) => r,
        Err(e) => return retry_all(route, batch.entries, format!("queue read failed: {e}")),
    };
    // Unreadable records go to the dead letters; missing ones were settled already.
    let mut corrupt = Vec::new();
    let mut events: Vec<(Entry, QueuedEvent)> = Vec::with_capacity(records.len());
    for (entry, stored) in batch.entries.iter().copied().zip(records) {
        match stored {
            Stored::Event(r) => events.push((entry, r)),
            Stored::Missing => {}
            Stored::Corrupt => corrupt.push((
                entry.seq,
                entry.bytes,
                dead(
                    DeadReason::Corrupt,
                    None,
                    "record could not be decoded".into(),
                    None,
                ),
            )),
        }
    }
    let mut done = Done {
        route,
        settled: corrupt
            .iter()
            .map(|(s, _, _)| (*s, Delivery::Failed("corrupt record".into())))
            .collect(),
        retry: None,
        refused_credentials: false,
    };
    if events.is_empty() {
        settle(&ctx, Vec::new(), corrupt).await;
        return done;
    }

    let bodies: Vec<&serde_json::value::RawValue> =
        events.iter().map(|(_, r)| &*r.body.event).collect();
    let request = batch.dest.encode(&bodies);
    for (_, r) in events.iter().filter(|(_, r)| r.body.log) {
        ctx.log.write(
            RequestRecord {
                kind,
                meta: &r.body,
                tag: &r.tag,
                url: batch.dest.url(),
                batch_size: events.len(),
                dry_run: false,
            }
            .to_json(),
        );
    }
    batch.limiter.until_ready().await;
    metrics::histogram!("tagbridge_batch_size_events", "destination" => kind)
        .record(events.len() as f64);
    let started = std::time::Instant::now();
    let answer = send_once(&ctx, &*batch.dest, &request, &events).await;
    metrics::histogram!("tagbridge_destination_request_seconds", "destination" => kind)
        .record(started.elapsed().as_secs_f64());

    let (verdict, status, hint) = match answer {
        Ok(a) => a,
        Err(reason) => {
            metrics::counter!("tagbridge_destination_responses_total", "destination" => kind, "status" => "transport_error").increment(1);
            let entries = events.into_iter().map(|(e, _)| e).collect();
            settle(&ctx, Vec::new(), corrupt).await;
            done.retry = Some(Retry {
                entries,
                reason,
                after: None,
            });
            return expire(&ctx, done).await;
        }
    };
    metrics::counter!("tagbridge_destination_responses_total", "destination" => kind, "status" => status.to_string()).increment(1);
    match verdict {
        BatchVerdict::Delivered(outcomes) => {
            let mut delete = Vec::new();
            let mut dead_letters = corrupt;
            for ((entry, record), outcome) in events.into_iter().zip(outcomes) {
                match outcome {
                    EventOutcome::Accepted { warning } => {
                        if let Some(w) = warning {
                            tracing::info!(destination = kind, tag = %record.tag, event_id = %record.body.event_id, warning = %w, "Destination accepted the event with a warning.");
                        }
                        delete.push((entry.seq, entry.bytes));
                        done.settled.push((entry.seq, Delivery::Sent));
                        metrics::counter!("tagbridge_events_sent_total", "tag" => record.tag.clone()).increment(1);
                    }
                    EventOutcome::Failed { error } => {
                        tracing::warn!(destination = kind, tag = %record.tag, event_id = %record.body.event_id, event_name = %record.body.event_name, error_message = %error, "Destination refused an event; dead-lettered.");
                        done.settled
                            .push((entry.seq, Delivery::Failed(error.clone())));
                        dead_letters.push((
                            entry.seq,
                            entry.bytes,
                            dead(DeadReason::EventFailed, Some(status), error, Some(record)),
                        ));
                    }
                }
            }
            settle(&ctx, delete, dead_letters).await;
        }
        BatchVerdict::Reject { reason } => {
            tracing::error!(destination = kind, url = batch.dest.url(), events = events.len(), status, error = %reason, "Destination refused the batch; dead-lettered, not retried.");
            done.refused_credentials = matches!(status, 401 | 403);
            let mut dead_letters = corrupt;
            for (entry, record) in events {
                done.settled
                    .push((entry.seq, Delivery::Failed(reason.clone())));
                dead_letters.push((
                    entry.seq,
                    entry.bytes,
                    dead(
                        DeadReason::Refused,
                        Some(status),
                        reason.clone(),
                        Some(record),
                    ),
                ));
            }
            settle(&ctx, Vec::new(), dead_letters).await;
        }
        BatchVerdict::Retry { reason } => {
            settle(&ctx, Vec::new(), corrupt).await;
            done.retry = Some(Retry {
                entries: events.into_iter().map(|(e, _)| e).collect(),
                reason,
                after: hint,
            });
            return expire(&ctx, done).await;
        }
    }
    done
}

fn dead(
    reason: DeadReason,
    status: Option<u16>,
    message: String,
    record: Option<QueuedEvent>,
) -> DeadLetter {
    metrics::counter!("tagbridge_events_dead_lettered_total", "reason" => reason.as_str())
        .increment(1);
    DeadLetter {
        reason,
        status,
        message,
        dead_at_ms: now_ms(),
        record,
    }
}

fn retry_all(route: RouteId, entries: Vec<Entry>, reason: String) -> Done {
    Done {
        route,
        settled: Vec::new(),
        retry: Some(Retry {
            entries,
            reason,
            after: None,
        }),
        refused_credentials: false,
    }
}

/// Dead-letters the entries of a retry that are older than `give_up_after_s`.
async fn expire(ctx: &SendContext, mut done: Done) -> Done {
    let Some(retry) = done.retry.as_mut() else {
        return done;
    };
    let now = now_ms();
    let (old, keep): (Vec<Entry>, Vec<Entry>) = retry
        .entries
        .iter()
        .partition(|e| e.received_ms + ctx.give_up_after_ms <= now);
    if old.is_empty() {
        return done;
    }
    retry.entries = keep;
    let reason = retry.reason.clone();
    let seqs: Vec<Seq> = old.iter().map(|e| e.seq).collect();
    let records = ctx.queue.read_blocking(seqs).await.unwrap_or_default();
    let letters = old
        .iter()
        .zip(
            records
                .into_iter()
                .map(Stored::event)
                .chain(std::iter::repeat(None)),
        )
        .map(|(e, record)| {
            (
                e.seq,
                e.bytes,
                dead(
                    DeadReason::GaveUp,
                    None,
                    format!("gave up: {reason}"),
                    record,
                ),
            )
        })
        .collect();
    tracing::error!(events = old.len(), error = %reason, "Giving up on events after retries; dead-lettered.");
    settle(ctx, Vec::new(), letters).await;
    for e in old {
        done.settled
            .push((e.seq, Delivery::Failed(format!("gave up: {reason}"))));
    }
    done
}

/// Commits deletions and dead letters. On a storage error the events stay queued: they will
/// be sent again on the next start (at-least-once), so the outcome is still reported.
async fn settle(ctx: &SendContext, delete: Vec<(Seq, u64)>, dead: Vec<(Seq, u64, DeadLetter)>) {
    if let Err(e) = ctx.queue.settle(delete, dead).await {
        tracing::error!(error = %e, "Could not settle delivered events in the queue; they may be sent again.");
    }
}

type Answer = (BatchVerdict, u16, Option<Duration>);

async fn send_once(
    ctx: &SendContext,
    dest: &dyn Destination,
    request: &OutboundRequest,
    events: &[(Entry, QueuedEvent)],
) -> Result<Answer, String> {
    let mut builder = ctx.client.post(&request.url).body(request.body.clone());
    for (name, value) in &request.headers {
        builder = builder.header(*name, value);
    }
    let response = builder.send().await.map_err(|e| transport_reason(&e))?;
    let status = response.status().as_u16();
    let hint = retry_after(
        response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
    );
    let headers = headers_json(response.headers());
    let body = response.bytes().await.map_err(|e| transport_reason(&e))?;
    let verdict = dest.classify(status, &body, events.len());
    if events.iter().any(|(_, r)| r.body.log) {
        let parsed: Value = serde_json::from_slice(&body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
        for (i, (_, r)) in events.iter().enumerate().filter(|(_, (_, r))| r.body.log) {
            // A 2xx body lists one entry per event: log this event's own entry.
            let own = match (&verdict, parsed.get("events").and_then(|e| e.get(i))) {
                (BatchVerdict::Delivered(_), Some(entry)) => entry.clone(),
                _ => parsed.clone(),
            };
            ctx.log.write(response_record(
                dest.kind(),
                &r.body,
                &r.tag,
                status,
                &headers,
                own,
            ));
        }
    }
    Ok((verdict, status, hint))
}

fn transport_reason(e: &reqwest::Error) -> String {
    // Only the kind: the error's text could carry the URL.
    if e.is_timeout() {
        "timeout".into()
    } else if e.is_connect() {
        "connection failed".into()
    } else if e.is_body() || e.is_decode() {
        "reading the answer failed".into()
    } else if e.is_request() {
        "request failed".into()
    } else {
        "transport error".into()
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
