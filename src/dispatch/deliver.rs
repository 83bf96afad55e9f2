//! One delivery attempt of one batch, in named steps: read the records, log the request,
//! wait for the account's rate limit, send, classify the answer, apply the verdict (settle,
//! split, retry, pause). Retry timing is the worker's (it is per route).

use std::{sync::Arc, time::Duration};

use governor::DefaultDirectRateLimiter;
use serde_json::Value;

use super::{
    request_log::{request_record, response_record, RequestLog},
    DeliveryEvent, DeliveryObserver,
};
use crate::{
    destination::{
        parse_retry_after, Answer, BatchVerdict, Destination, EventOutcome, RejectCause,
    },
    queue::{DeadLetter, DeadReason, Entry, Queue, RouteId, StoredEvent},
    support::now_ms,
};

/// Shared by all deliveries.
pub(super) struct Context {
    pub client: reqwest::Client,
    pub queue: Queue,
    pub log: Arc<dyn RequestLog>,
    pub observer: Arc<dyn DeliveryObserver>,
    pub give_up_after_ms: u64,
}

pub(super) struct Batch {
    pub route: RouteId,
    pub dest: Arc<dyn Destination>,
    pub limiter: Arc<DefaultDirectRateLimiter>,
    pub entries: Vec<Entry>,
    /// 1 for a first attempt, more after failures of the route.
    pub attempt: u32,
}

/// What a delivery leaves for the worker. Events not named here were settled.
pub(super) enum Outcome {
    Settled,
    /// Put these back and back off the route.
    Retry {
        entries: Vec<Entry>,
        reason: String,
        after: Option<Duration>,
    },
    /// The batch was refused for its payload: send each half on its own.
    Split(Vec<Entry>, Vec<Entry>),
    /// The credential or account was refused (the batch is dead-lettered): pause the route.
    CredentialsRefused,
}

/// A readable event of the batch.
struct Loaded {
    entry: Entry,
    event: StoredEvent,
}

pub(super) async fn deliver(ctx: Arc<Context>, batch: Batch) -> (RouteId, Outcome) {
    let route = batch.route;
    (route, attempt(&ctx, batch).await)
}

async fn attempt(ctx: &Context, batch: Batch) -> Outcome {
    let events = match read(ctx, &batch).await {
        Ok(events) => events,
        Err(outcome) => return outcome,
    };
    if events.is_empty() {
        return Outcome::Settled;
    }
    let bodies: Vec<&[u8]> = events.iter().map(|l| l.event.body()).collect();
    let request = batch.dest.encode(&bodies);
    log_requests(ctx, &batch, &events);
    batch.limiter.until_ready().await;
    let seqs: Vec<u64> = events.iter().map(|l| l.entry.seq).collect();
    ctx.observer.observe(
        &seqs,
        DeliveryEvent::Request {
            url: batch.dest.endpoint(),
            batch_size: events.len(),
            attempt: batch.attempt,
        },
    );
    let kind = batch.dest.kind();
    metrics::histogram!("tagbridge_batch_size_events", "destination" => kind)
        .record(events.len() as f64);
    let started = std::time::Instant::now();
    let answer = send(ctx, request).await;
    metrics::histogram!("tagbridge_destination_request_seconds", "destination" => kind)
        .record(started.elapsed().as_secs_f64());
    let (status, verdict, headers, body) = match answer {
        Ok((status, retry_after, headers, body)) => {
            let verdict = batch.dest.classify(
                &Answer {
                    status,
                    retry_after,
                    body: &body,
                },
                events.len(),
            );
            (Some(status), verdict, headers, body)
        }
        Err(reason) => (
            None,
            BatchVerdict::Retry {
                reason,
                after: None,
            },
            Value::Null,
            Vec::new(),
        ),
    };
    let status_label = status.map_or_else(|| "transport_error".to_owned(), |s| s.to_string());
    metrics::counter!("tagbridge_destination_responses_total", "destination" => kind, "status" => status_label).increment(1);
    report_responses(ctx, &batch, &events, (status, &headers), &verdict, &body);
    apply(ctx, &batch, events, verdict, status)
}

/// Reads the batch's records. Unreadable ones are dead-lettered as `corrupt`.
async fn read(ctx: &Context, batch: &Batch) -> Result<Vec<Loaded>, Outcome> {
    let queue = ctx.queue.clone();
    let entries = batch.entries.clone();
    let records = match tokio::task::spawn_blocking(move || queue.read(&entries)).await {
        Ok(r) => r,
        Err(_) => {
            return Err(Outcome::Retry {
                entries: batch.entries.clone(),
                reason: "queue read failed".into(),
                after: None,
            })
        }
    };
    let mut events = Vec::with_capacity(records.len());
    let mut corrupt = Vec::new();
    for (entry, record) in batch.entries.iter().copied().zip(records) {
        match record {
            Some(event) => events.push(Loaded { entry, event }),
            None => corrupt.push(entry),
        }
    }
    if !corrupt.is_empty() {
        tracing::error!(
            events = corrupt.len(),
            "Queued records could not be read back; dead-lettered as corrupt."
        );
        let letter = DeadLetter {
            reason: DeadReason::Corrupt,
            status: None,
            message: "record could not be read back".into(),
        };
        let dead: Vec<_> = corrupt.iter().map(|e| (*e, letter.clone(), None)).collect();
        if ctx.queue.settle(batch.route, &[], &dead).is_err() {
            return Err(Outcome::Retry {
                entries: batch.entries.clone(),
                reason: "dead letters cannot be written".into(),
                after: None,
            });
        }
    }
    Ok(events)
}

fn log_requests(ctx: &Context, batch: &Batch, events: &[Loaded]) {
    for l in events.iter().filter(|l| l.event.logs()) {
        ctx.log
            .write(request_record(&*batch.dest, &l.event, events.len(), false));
    }
}

/// Status, `Retry-After`, headers (for response log records), body.
type Sent = (u16, Option<Duration>, Value, Vec<u8>);

/// One HTTP attempt. Errors are the transport failure's kind (never its text: it could carry
/// the URL).
async fn send(ctx: &Context, request: crate::destination::OutboundRequest) -> Result<Sent, String> {
    // The body moves into the request: a batch of up to 4 MiB is not copied.
    let mut builder = ctx.client.post(&request.url).body(request.body);
    for (name, value) in &request.headers {
        builder = builder.header(*name, value);
    }
    let response = builder.send().await.map_err(|e| transport_reason(&e))?;
    let status = response.status().as_u16();
    let retry_after = parse_retry_after(
        response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
    );
    let headers: serde_json::Map<String, Value> = response
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned()),
            )
        })
        .collect();
    // The answer is read up to a bound: a destination gone wrong cannot exhaust memory.
    let mut body = Vec::new();
    let mut response = response;
    while let Some(chunk) = response.chunk().await.map_err(|e| transport_reason(&e))? {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            break;
        }
        body.extend_from_slice(&chunk);
    }
    Ok((status, retry_after, Value::Object(headers), body))
}

/// Most bytes of a destination's answer that are read.
const MAX_ANSWER_BYTES: usize = 4 << 20;

fn transport_reason(e: &reqwest::Error) -> String {
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

/// Response log records and debug-page events, per event.
fn report_responses(
    ctx: &Context,
    batch: &Batch,
    events: &[Loaded],
    (status, headers): (Option<u16>, &Value),
    verdict: &BatchVerdict,
    body: &[u8],
) {
    let logged = events.iter().any(|l| l.event.logs());
    if !logged && !ctx.observer.wants_responses() {
        return;
    }
    let parsed: Option<Value> = (!body.is_empty()).then(|| {
        serde_json::from_slice(body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
    });
    for (i, l) in events.iter().enumerate() {
        let own = match (verdict, parsed.as_ref()) {
            (BatchVerdict::Delivered(_), Some(p)) => batch.dest.event_answer(p, i),
            _ => None,
        };
        let (event_status, message): (Option<&str>, Option<String>) = match verdict {
            BatchVerdict::Delivered(outcomes) => match outcomes.get(i) {
                Some(EventOutcome::Failed { error }) => (Some("failed"), Some(error.clone())),
                Some(EventOutcome::Accepted { warning }) => (Some("processed"), warning.clone()),
                None => (Some("processed"), None),
            },
            BatchVerdict::Retry { reason, .. } | BatchVerdict::Reject { reason, .. } => {
                (None, Some(reason.clone()))
            }
        };
        ctx.observer.observe(
            &[l.entry.seq],
            DeliveryEvent::Response {
                status,
                event_status,
                message: message.as_deref(),
            },
        );
        if logged && l.event.logs() {
            if let Some(status) = status {
                let shown = own.or_else(|| parsed.clone()).unwrap_or(Value::Null);
                ctx.log.write(response_record(
                    &*batch.dest,
                    &l.event,
                    status,
                    headers,
                    shown,
                ));
            }
        }
    }
}

fn dead(reason: DeadReason, status: Option<u16>, message: String) -> DeadLetter {
    DeadLetter {
        reason,
        status,
        message,
    }
}

/// Settles what the verdict decides and says what is left for the worker.
fn apply(
    ctx: &Context,
    batch: &Batch,
    events: Vec<Loaded>,
    verdict: BatchVerdict,
    status: Option<u16>,
) -> Outcome {
    let kind = batch.dest.kind();
    match verdict {
        BatchVerdict::Delivered(outcomes) => {
            let mut delivered = Vec::new();
            let mut refused = Vec::new();
            let mut sent = SentCount::default();
            for (l, outcome) in events.iter().zip(outcomes) {
                match outcome {
                    EventOutcome::Accepted { warning } => {
                        if let Some(w) = warning {
                            tracing::info!(destination = kind, tag = %l.event.view().tag, event_id = %l.event.view().event_id, warning = %w, "Destination accepted the event with a warning.");
                        }
                        sent.add(l.event.tag());
                        delivered.push(l.entry);
                    }
                    EventOutcome::Failed { error } => {
                        tracing::warn!(destination = kind, tag = %l.event.view().tag, event_id = %l.event.view().event_id, event_name = %l.event.view().event_name, error_message = %error, "Destination refused an event; dead-lettered.");
                        refused.push((l, dead(DeadReason::EventFailed, status, error)));
                    }
                }
            }
            sent.record();
            settle_or_retry(ctx, batch, &delivered, refused)
        }
        BatchVerdict::Retry { reason, after } => {
            let now = now_ms();
            let (expired, keep): (Vec<&Loaded>, Vec<&Loaded>) = events
                .iter()
                .partition(|l| l.entry.received_ms.saturating_add(ctx.give_up_after_ms) <= now);
            if !expired.is_empty() {
                tracing::error!(events = expired.len(), error = %reason, "Giving up on events after retries; dead-lettered.");
                let letters = expired
                    .into_iter()
                    .map(|l| {
                        (
                            l,
                            dead(DeadReason::GaveUp, status, format!("gave up: {reason}")),
                        )
                    })
                    .collect();
                if let Outcome::Retry { entries, .. } = settle_or_retry(ctx, batch, &[], letters) {
                    // The dead letters could not be written: retry those too.
                    let mut all: Vec<Entry> = keep.iter().map(|l| l.entry).collect();
                    all.extend(entries);
                    return Outcome::Retry {
                        entries: all,
                        reason,
                        after,
                    };
                }
            }
            Outcome::Retry {
                entries: keep.iter().map(|l| l.entry).collect(),
                reason,
                after,
            }
        }
        BatchVerdict::Reject {
            reason,
            cause: RejectCause::Payload,
        } if events.len() > 1 => {
            let mut entries: Vec<Entry> = events.iter().map(|l| l.entry).collect();
            let second = entries.split_off(entries.len() / 2);
            tracing::debug!(error = %reason, "Batch refused for its payload; splitting.");
            Outcome::Split(entries, second)
        }
        BatchVerdict::Reject { reason, cause } => {
            tracing::error!(destination = kind, url = batch.dest.endpoint(), events = events.len(), status, error = %reason, "Destination refused the batch; dead-lettered, not retried.");
            let letters = events
                .iter()
                .map(|l| (l, dead(DeadReason::Refused, status, reason.clone())))
                .collect();
            let outcome = settle_or_retry(ctx, batch, &[], letters);
            match (cause, outcome) {
                (RejectCause::Credentials, Outcome::Settled) => Outcome::CredentialsRefused,
                (_, outcome) => outcome,
            }
        }
    }
}

/// Events sent, counted per tag: one increment per tag and batch, not per event.
#[derive(Default)]
struct SentCount<'e>(Vec<(&'e str, u64)>);

impl<'e> SentCount<'e> {
    fn add(&mut self, tag: &'e str) {
        match self.0.iter_mut().find(|(t, _)| *t == tag) {
            Some((_, n)) => *n += 1,
            None => self.0.push((tag, 1)),
        }
    }

    fn record(self) {
        for (tag, n) in self.0 {
            metrics::counter!("tagbridge_events_sent_total", "tag" => tag.to_owned()).increment(n);
        }
    }
}

/// Settles delivered events and dead letters; if the dead letters cannot be written, their
/// events are handed back for a retry (delivered ones are settled regardless).
fn settle_or_retry(
    ctx: &Context,
    batch: &Batch,
    delivered: &[Entry],
    refused: Vec<(&Loaded, DeadLetter)>,
) -> Outcome {
    let dead: Vec<(Entry, DeadLetter, Option<&[u8]>)> = refused
        .iter()
        .map(|(l, letter)| (l.entry, letter.clone(), Some(l.event.payload())))
        .collect();
    let result = ctx.queue.settle(batch.route, delivered, &dead);
    for (l, letter) in &refused {
        if result.is_ok() {
            ctx.observer.observe(
                &[l.entry.seq],
                DeliveryEvent::DeadLetter {
                    reason: letter.reason,
                    message: &letter.message,
                },
            );
        }
    }
    match result {
        Ok(()) => Outcome::Settled,
        Err(e) => Outcome::Retry {
            entries: refused.iter().map(|(l, _)| l.entry).collect(),
            reason: e.to_string(),
            after: None,
        },
    }
}
