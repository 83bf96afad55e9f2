//! The pipeline: event data → tags → durable queue, and the caller's answer.
//!
//! Ingest hands over the [`EventData`]s of one request with its [`RequestContext`]; the
//! pipeline runs in four named steps:
//!
//! 1. [`evaluate`](Pipeline::evaluate): every tag on every event. A tag's mapped event
//!    (destination JSON) is framed straight into one [`AppendBatch`]; skips, dry runs,
//!    oversized events and cookies are collected. Pure apart from counters and (dry run,
//!    debug traffic) log lines.
//! 2. [`enqueue`](Pipeline::enqueue): the request's budget is checked (what it queues is at
//!    most [`AMPLIFICATION`] × its own bytes + [`PER_EVENT_ALLOWANCE`] per event), then one
//!    append of the whole batch. Nothing of the request is queued when either fails.
//! 3. Durability: with per-commit sync, the answer waits for the group commit's sync.
//! 4. [`await_replies`](Pipeline::await_replies): for tags in `wait_for_response` mode, the
//!    destinations' answers, all under **one** deadline for the whole request.
//!
//! The dispatcher learns about the events from the queue itself, inside the append (or the
//! sync), so a client that disconnects cannot strand them.

use std::{sync::Arc, time::Duration};

use metrics::Counter;
use serde::Serialize;
use tokio::sync::oneshot;

use crate::{
    dispatch::{
        request_log::{request_record, RecordEvent},
        RequestLog,
    },
    event::{EventData, RequestContext},
    ingest::IngestError,
    queue::{format::EventHead, AppendBatch, Commit, Delivery, Queue, QueueError, RouteId},
    support::unix_ms,
    tags::{
        common::{hashing::Dropped, limits::MAX_EVENT_BYTES},
        SetCookie, SkipReason, Tag, TagDecision,
    },
};

/// A request may queue at most this many times its own bytes...
pub const AMPLIFICATION: usize = 20;
/// ...plus this much per event it carries (a minimal gtag line legitimately becomes a few
/// hundred bytes of destination event).
pub const PER_EVENT_ALLOWANCE: usize = 1024;

/// A configured tag, the dispatch route of its destination, and its counters (registered
/// once, not looked up per event).
#[derive(Clone)]
pub struct TagSlot {
    pub tag: Arc<dyn Tag>,
    pub route: RouteId,
    pub metrics: TagMetrics,
}

/// Counter handles of one tag.
#[derive(Clone)]
pub struct TagMetrics {
    mapped: Counter,
    skipped_trigger: Counter,
    skipped_consent: Counter,
    skipped_dry_run: Counter,
    too_large: Counter,
    /// One per match key, in the tag's order.
    match_keys: Vec<Counter>,
}

impl TagMetrics {
    pub fn new(tag: &dyn Tag) -> Self {
        let name = tag.name().to_owned();
        let skipped = |reason: &'static str| metrics::counter!("tagbridge_events_skipped_total", "tag" => name.clone(), "reason" => reason);
        Self {
            mapped: metrics::counter!("tagbridge_events_mapped_total", "tag" => name.clone()),
            skipped_trigger: skipped("trigger"),
            skipped_consent: skipped("consent_denied"),
            skipped_dry_run: skipped("dry_run"),
            too_large: metrics::counter!("tagbridge_events_refused_total", "tag" => name.clone(), "reason" => "too_large"),
            match_keys: tag
                .match_keys()
                .iter()
                .map(|k| metrics::counter!("tagbridge_match_key_events_total", "tag" => name.clone(), "key" => *k))
                .collect(),
        }
    }

    fn skipped(&self, reason: SkipReason) -> &Counter {
        match reason {
            SkipReason::Trigger => &self.skipped_trigger,
            SkipReason::ConsentDenied => &self.skipped_consent,
        }
    }
}

/// One tag's counts over one request's events, added to its counters once per request
/// (an atomic add per counter, not per event).
#[derive(Default)]
struct Tally {
    mapped: u64,
    /// Events per match key (bit `i` of the tag's match keys).
    keys: [u64; 32],
}

impl Tally {
    fn add_match_keys(&mut self, bits: u32) {
        let mut rest = bits;
        while rest != 0 {
            let i = rest.trailing_zeros() as usize;
            self.keys[i] += 1;
            rest &= rest - 1;
        }
    }

    fn flush(&self, m: &TagMetrics) {
        if self.mapped > 0 {
            m.mapped.increment(self.mapped);
        }
        for (counter, n) in m.match_keys.iter().zip(self.keys) {
            if n > 0 {
                counter.increment(n);
            }
        }
    }
}

/// Tags plus the way to the queue.
pub struct Pipeline {
    pub tags: Vec<TagSlot>,
    pub queue: Queue,
    pub log: Arc<dyn RequestLog>,
    /// Longest a `wait_for_response` request waits for its destinations' answers.
    pub reply_timeout: Duration,
    /// Keep per-event traces for the debug page.
    pub trace: bool,
    /// `tagbridge_events_queued_total` (registered once, not per request).
    pub queued: metrics::Counter,
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

/// The pipeline's result for one event (ids only when the caller asked for them; tag
/// reports only when a tag waits for its destination).
#[derive(Debug, Clone, Default)]
pub struct Processed {
    /// The id tags use for this event (`event_id`, else `transaction_id`).
    pub event_id: Option<String>,
    pub client_id: Option<String>,
    pub tags: Vec<TagReport>,
}

/// What one tag did with one event, for the debug page.
#[derive(Debug, Clone, Serialize)]
pub struct TagTrace {
    pub tag: String,
    /// `queued`, `skipped`, `dry_run`, `too_large`.
    pub decision: &'static str,
    pub reason: Option<&'static str>,
    /// The queue sequence number (queued events).
    pub seq: Option<u64>,
    /// The destination event (queued and dry-run events).
    pub mapped: Option<serde_json::Value>,
    pub match_keys: Vec<&'static str>,
}

/// The pipeline's result for one request.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub events: Vec<Processed>,
    pub cookies: Vec<SetCookie>,
    /// Whether a tag is in `wait_for_response` mode (then per-tag reports go into the answer).
    pub waited: bool,
    /// Per event, per tag (only when the pipeline traces).
    pub traces: Vec<Vec<TagTrace>>,
}

enum Slot {
    Done(TagReport),
    /// Queued; the receiver when the tag waits for the destination.
    Queued(String, Option<oneshot::Receiver<Delivery>>),
}

/// What step 1 produced.
struct Evaluated {
    batch: AppendBatch,
    slots: Vec<Vec<Slot>>,
    outcome: Outcome,
    /// Where each queued event's trace is (event, tag), to fill in its sequence number.
    traced_seqs: Vec<(usize, usize, u64)>,
}

impl Pipeline {
    /// Runs the four steps for one request's events. `request_bytes` is the request's own
    /// size (URL, headers, body): the budget of what it may queue. `ids`: whether the
    /// answer reports each event's ids ([`Processed`]; `/data` does, GA4 endpoints answer
    /// 204).
    ///
    /// # Errors
    /// [`IngestError::Expands`] past the budget; [`IngestError::QueueFull`],
    /// [`IngestError::QueueLowDisk`], [`IngestError::Storage`] when the queue refuses or the
    /// sync fails. Nothing of this request was queued then.
    pub async fn run(
        &self,
        events: &[EventData<'_>],
        req: &RequestContext<'_>,
        request_bytes: usize,
        ids: bool,
    ) -> Result<Outcome, IngestError> {
        let Evaluated {
            batch,
            slots,
            mut outcome,
            traced_seqs,
        } = self.evaluate(events, req, ids);
        let budget = request_bytes
            .saturating_mul(AMPLIFICATION)
            .saturating_add(events.len().saturating_mul(PER_EVENT_ALLOWANCE));
        self.enqueue(batch, budget)?
            .durable()
            .await
            .map_err(queue_error)?;
        for (e, t, seq) in traced_seqs {
            if let Some(tr) = outcome.traces.get_mut(e).and_then(|v| v.get_mut(t)) {
                tr.seq = Some(seq);
            }
        }
        Ok(self.await_replies(slots, outcome).await)
    }

    /// Step 1: every tag on every event.
    fn evaluate(&self, events: &[EventData<'_>], req: &RequestContext<'_>, ids: bool) -> Evaluated {
        let received_ms = unix_ms(req.received_at);
        // Room for a typical event per event (the batch would otherwise grow by copying).
        let mut batch = AppendBatch::with_capacity(events.len().saturating_mul(1024));
        let waited = self.tags.iter().any(|s| s.tag.wait_for_response());
        let mut outcome = Outcome {
            events: Vec::with_capacity(events.len()),
            cookies: Vec::new(),
            waited,
            traces: Vec::new(),
        };
        let mut slots = Vec::with_capacity(events.len());
        let mut traced_seqs = Vec::new();
        let mut body = Vec::with_capacity(1024);
        let mut dropped = Dropped::default();
        let mut too_large = 0usize;
        let mut tallies: Vec<Tally> = self.tags.iter().map(|_| Tally::default()).collect();
        for (ei, event) in events.iter().enumerate() {
            // Per-tag reports go into an answer only when a tag waits for its destination.
            let mut per_tag = Vec::with_capacity(if waited { self.tags.len() } else { 0 });
            let mut traces = Vec::new();
            for (ti, slot) in self.tags.iter().enumerate() {
                let out = slot.tag.evaluate(event, req, &mut body);
                for c in out.cookies {
                    outcome.cookies.retain(|old| old.name != c.name);
                    outcome.cookies.push(c);
                }
                dropped.add(out.dropped);
                let name = slot.tag.name();
                let trace = |decision, reason, mapped: bool, body: &[u8]| TagTrace {
                    tag: name.to_owned(),
                    decision,
                    reason,
                    seq: None,
                    mapped: mapped
                        .then(|| serde_json::from_slice::<serde_json::Value>(body).ok())
                        .flatten()
                        .map(|mut v| {
                            slot.tag.destination().mask_event(&mut v);
                            v
                        }),
                    match_keys: keys(slot.tag.match_keys(), out.match_keys),
                };
                match out.decision {
                    TagDecision::Send(_) | TagDecision::DryRun(_)
                        if body.len() > MAX_EVENT_BYTES =>
                    {
                        too_large += 1;
                        slot.metrics.too_large.increment(1);
                        if waited {
                            per_tag.push(Slot::Done(TagReport {
                                name: name.to_owned(),
                                status: "failed",
                                detail: Some("too_large".into()),
                            }));
                        }
                        if self.trace {
                            traces.push(trace("too_large", Some("too_large"), false, &body));
                        }
                    }
                    TagDecision::Send(ob) => {
                        tallies[ti].mapped += 1;
                        tallies[ti].add_match_keys(out.match_keys);
                        let (reply, rx) = if slot.tag.wait_for_response() {
                            let (tx, rx) = oneshot::channel();
                            (Some(tx), Some(rx))
                        } else {
                            (None, None)
                        };
                        let seq = batch.push(
                            &self.queue,
                            slot.route,
                            EventHead {
                                seq: 0,
                                received_ms,
                                log: slot.tag.log_mode().logs(req.is_debug(event)),
                                tag: name,
                                event_id: &ob.event_id,
                                event_name: &ob.event_name,
                                trace_id: &req.trace_id,
                            },
                            &body,
                            reply,
                        );
                        if waited {
                            per_tag.push(Slot::Queued(name.to_owned(), rx));
                        }
                        if self.trace {
                            traced_seqs.push((ei, ti, seq));
                            traces.push(trace("queued", None, true, &body));
                        }
                    }
                    TagDecision::DryRun(ob) => {
                        slot.metrics.skipped_dry_run.increment(1);
                        let dest = slot.tag.destination();
                        self.log.write(request_record(
                            &*dest,
                            RecordEvent {
                                tag: name,
                                trace_id: &req.trace_id,
                                event_name: &ob.event_name,
                                event_id: &ob.event_id,
                                body: &body,
                            },
                            1,
                            true,
                        ));
                        if waited {
                            per_tag.push(Slot::Done(skipped(name, "dry_run")));
                        }
                        if self.trace {
                            traces.push(trace("dry_run", Some("dry_run"), true, &body));
                        }
                    }
                    TagDecision::Skip(reason) => {
                        slot.metrics.skipped(reason).increment(1);
                        if waited {
                            per_tag.push(Slot::Done(skipped(name, reason.as_str())));
                        }
                        if self.trace {
                            traces.push(trace("skipped", Some(reason.as_str()), false, &body));
                        }
                    }
                }
            }
            slots.push(per_tag);
            if self.trace {
                outcome.traces.push(traces);
            }
            outcome.events.push(match ids {
                true => Processed {
                    event_id: event
                        .text("event_id")
                        .or_else(|| event.text("transaction_id"))
                        .map(|t| t.into_owned()),
                    client_id: event.text("client_id").map(|t| t.into_owned()),
                    tags: Vec::new(),
                },
                false => Processed::default(),
            });
        }
        for (tally, slot) in tallies.iter().zip(&self.tags) {
            tally.flush(&slot.metrics);
        }
        // One aggregated line per request, never one per value (and never the values).
        if dropped.any() || too_large > 0 {
            if dropped.excess_values > 0 {
                metrics::counter!("tagbridge_user_data_values_dropped_total", "reason" => "excess")
                    .increment(u64::from(dropped.excess_values));
            }
            if dropped.unknown_gender > 0 {
                metrics::counter!("tagbridge_user_data_values_dropped_total", "reason" => "unknown_gender").increment(u64::from(dropped.unknown_gender));
            }
            tracing::info!(
                trace_id = %req.trace_id,
                excess_values = dropped.excess_values,
                unknown_gender = dropped.unknown_gender,
                too_large_events = too_large,
                "Dropped parts of the request's events (values past the caps, unknown gender values, events over the size cap)."
            );
        }
        Evaluated {
            batch,
            slots,
            outcome,
            traced_seqs,
        }
    }

    /// Step 2: the budget, then one append for the whole request.
    fn enqueue(&self, batch: AppendBatch, budget: usize) -> Result<Commit, IngestError> {
        if batch.bytes() > budget {
            return Err(IngestError::Expands {
                bytes: batch.bytes(),
                budget,
            });
        }
        let n = batch.len();
        let commit = self.queue.append(batch).map_err(queue_error)?;
        if n > 0 {
            self.queued.increment(n as u64);
        }
        Ok(commit)
    }

    /// Step 4: the per-tag reports, waiting (up to one deadline) where a tag asks for it.
    async fn await_replies(&self, slots: Vec<Vec<Slot>>, mut outcome: Outcome) -> Outcome {
        let deadline = tokio::time::Instant::now() + self.reply_timeout;
        for (processed, per_tag) in outcome.events.iter_mut().zip(slots) {
            for slot in per_tag {
                processed.tags.push(match slot {
                    Slot::Done(r) => r,
                    Slot::Queued(name, None) => TagReport {
                        name,
                        status: "sent",
                        detail: Some("queued".into()),
                    },
                    Slot::Queued(name, Some(rx)) => {
                        match tokio::time::timeout_at(deadline, rx).await {
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
        }
        outcome
    }
}

fn keys(names: &'static [&'static str], bits: u32) -> Vec<&'static str> {
    names
        .iter()
        .enumerate()
        .filter(|(i, _)| bits & (1 << i) != 0)
        .map(|(_, n)| *n)
        .collect()
}

fn skipped(name: &str, reason: &str) -> TagReport {
    TagReport {
        name: name.to_owned(),
        status: "skipped",
        detail: Some(reason.to_owned()),
    }
}

fn queue_error(e: QueueError) -> IngestError {
    match e {
        QueueError::Full { .. } => IngestError::QueueFull,
        QueueError::LowDisk { .. } => IngestError::QueueLowDisk,
        other => {
            tracing::debug!(error = %other, "Queue append failed.");
            IngestError::Storage
        }
    }
}
