//! The pipeline: event data → tags → durable queue, and the caller's answer.
//!
//! Ingest hands over the [`EventData`]s of one request with its [`RequestContext`]; the
//! pipeline runs in four named steps:
//!
//! 1. [`evaluate`](Pipeline::evaluate): every tag on every event. A tag's mapped event
//!    (destination JSON) is framed straight into one [`AppendBatch`]; skips, dry runs and
//!    cookies are collected. Pure apart from dry-run log lines and counters.
//! 2. [`enqueue`](Pipeline::enqueue): one append of the whole batch. Nothing of the
//!    request is queued when it fails (503 to the caller).
//! 3. Durability: with per-commit sync, the answer waits for the group commit's sync.
//! 4. [`await_replies`](Pipeline::await_replies): for tags in `wait_for_response` mode, the
//!    destinations' answers, all under **one** deadline for the whole request.
//!
//! The dispatcher learns about the events from the queue itself, inside the append (or the
//! sync), so a client that disconnects cannot strand them.

use std::{sync::Arc, time::Duration};

use serde::Serialize;
use tokio::sync::oneshot;

use crate::{
    dispatch::{request_log::request_record, RequestLog},
    event::{EventData, RequestContext},
    ingest::IngestError,
    queue::{format::EventHead, AppendBatch, Delivery, Queue, QueueError, RouteId},
    support::unix_ms,
    tags::{SetCookie, Tag, TagDecision},
};

/// A configured tag and the dispatch route of its destination.
#[derive(Clone)]
pub struct TagSlot {
    pub tag: Arc<dyn Tag>,
    pub route: RouteId,
}

/// Tags plus the way to the queue.
pub struct Pipeline {
    pub tags: Vec<TagSlot>,
    pub queue: Queue,
    pub log: Arc<dyn RequestLog>,
    /// Longest a `wait_for_response` request waits for its destinations' answers.
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
}

/// The pipeline's result for one request.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub events: Vec<Processed>,
    pub cookies: Vec<SetCookie>,
    /// Whether a tag is in `wait_for_response` mode (then per-tag reports go into the answer).
    pub waited: bool,
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
}

impl Pipeline {
    /// Runs the four steps for one request's events.
    ///
    /// # Errors
    /// [`IngestError::QueueFull`] / [`IngestError::Storage`] when the queue refuses or the
    /// sync fails: then nothing of this request was queued.
    pub async fn run(
        &self,
        events: &[EventData],
        req: &RequestContext,
    ) -> Result<Outcome, IngestError> {
        let evaluated = self.evaluate(events, req);
        let Evaluated {
            batch,
            slots,
            outcome,
        } = evaluated;
        self.enqueue(batch)?.durable().await.map_err(queue_error)?;
        Ok(self.await_replies(slots, outcome).await)
    }

    /// Step 1: every tag on every event.
    fn evaluate(&self, events: &[EventData], req: &RequestContext) -> Evaluated {
        let received_ms = unix_ms(req.received_at);
        let mut batch = AppendBatch::default();
        let mut outcome = Outcome {
            events: Vec::with_capacity(events.len()),
            cookies: Vec::new(),
            waited: self.tags.iter().any(|s| s.tag.wait_for_response()),
        };
        let mut slots = Vec::with_capacity(events.len());
        let mut body = Vec::new();
        for event in events {
            let debug = req.debug || event.is_debug();
            let mut per_tag = Vec::with_capacity(self.tags.len());
            for slot in &self.tags {
                let out = slot.tag.evaluate(event, req);
                for c in out.cookies {
                    outcome.cookies.retain(|old| old.name != c.name);
                    outcome.cookies.push(c);
                }
                let name = slot.tag.name();
                match out.decision {
                    TagDecision::Send(ob) => {
                        body.clear();
                        if serde_json::to_writer(&mut body, &ob.event).is_err() {
                            body.clear();
                            body.extend_from_slice(b"null");
                        }
                        metrics::counter!("tagbridge_events_mapped_total", "tag" => name.to_owned()).increment(1);
                        let (reply, rx) = if slot.tag.wait_for_response() {
                            let (tx, rx) = oneshot::channel();
                            (Some(tx), Some(rx))
                        } else {
                            (None, None)
                        };
                        batch.push(
                            &self.queue,
                            slot.route,
                            EventHead {
                                seq: 0,
                                received_ms,
                                log: slot.tag.log_mode().logs(debug),
                                tag: name,
                                event_id: &ob.event_id,
                                event_name: &ob.event_name,
                                trace_id: &req.trace_id,
                            },
                            &body,
                            reply,
                        );
                        per_tag.push(Slot::Queued(name.to_owned(), rx));
                    }
                    TagDecision::DryRun(ob) => {
                        body.clear();
                        if serde_json::to_writer(&mut body, &ob.event).is_err() {
                            body.clear();
                            body.extend_from_slice(b"null");
                        }
                        metrics::counter!("tagbridge_events_skipped_total", "tag" => name.to_owned(), "reason" => "dry_run").increment(1);
                        let dest = slot.tag.destination();
                        self.log.write(request_record(
                            &*dest,
                            crate::dispatch::request_log::RecordEvent {
                                tag: name,
                                trace_id: &req.trace_id,
                                event_name: &ob.event_name,
                                event_id: &ob.event_id,
                                body: &body,
                            },
                            1,
                            true,
                        ));
                        per_tag.push(Slot::Done(skipped(name, "dry_run")));
                    }
                    TagDecision::Skip(reason) => {
                        metrics::counter!("tagbridge_events_skipped_total", "tag" => name.to_owned(), "reason" => reason.as_str()).increment(1);
                        tracing::debug!(tag = %name, reason = reason.as_str(), trace_id = %req.trace_id, "Tag skipped the event.");
                        per_tag.push(Slot::Done(skipped(name, reason.as_str())));
                    }
                }
            }
            slots.push(per_tag);
            outcome.events.push(Processed {
                event_id: event
                    .text("event_id")
                    .or_else(|| event.text("transaction_id")),
                client_id: event.text("client_id"),
                tags: Vec::new(),
            });
        }
        Evaluated {
            batch,
            slots,
            outcome,
        }
    }

    /// Step 2: one append for the whole request.
    ///
    /// # Errors
    /// When the queue refuses the batch.
    fn enqueue(&self, batch: AppendBatch) -> Result<crate::queue::Commit, IngestError> {
        let n = batch.len();
        let commit = self.queue.append(batch).map_err(queue_error)?;
        if n > 0 {
            metrics::counter!("tagbridge_events_queued_total").increment(n as u64);
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
