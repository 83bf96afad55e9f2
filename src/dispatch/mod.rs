//! Dispatch: batches mapped events per destination route and delivers them.
//!
//! Input: [`Envelope`]s from the ingest handlers (through [`DispatchHandle::submit`]).
//! Output: HTTP requests to destinations, per-event outcomes (logged, and sent back to
//! `wait_for_response` callers), request/response log records in stape's format.
//!
//! Guarantees (this stage keeps pending events in memory; the durable queue replaces the
//! channel without changing this contract):
//! - Events of one route (same endpoint and credential) share requests, at most
//!   `batch_max_events` (≤ 1000) each; a batch leaves when full or `batch_max_wait_ms` after
//!   its first event arrived. Events of different routes never share a request.
//! - At most `concurrency` requests are in flight per route.
//! - 429 (not spam), 5xx, timeouts and connection errors are retried with capped,
//!   full-jitter exponential backoff honouring `Retry-After`; other 4xx are final.
//! - On drain, no new event is accepted, everything pending is sent at once, and sending
//!   (retries included) stops at the drain deadline.

mod backoff;
pub(crate) mod request_log;
mod send;
mod worker;

use std::{sync::Arc, time::Instant};

use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch};

pub use backoff::Backoff;
pub use request_log::{MemoryLog, RequestLog, StdoutLog};

use crate::{config::DispatchConfig, tags::Destination};

/// Index of a route in the dispatcher's route table.
pub type RouteId = usize;

/// How many envelopes may wait between ingest and the dispatcher before ingest answers 503.
pub const CHANNEL_CAPACITY: usize = 65_536;

/// One mapped event on its way to a destination.
#[derive(Debug)]
pub struct Envelope {
    pub route: RouteId,
    pub event: Value,
    pub meta: EventMeta,
    /// Set for `wait_for_response` tags: receives the event's outcome.
    pub reply: Option<oneshot::Sender<Delivery>>,
}

/// What the dispatcher needs to know about an event besides its body.
#[derive(Debug, Clone)]
pub struct EventMeta {
    pub tag: Arc<str>,
    pub event_id: String,
    /// Destination event name (for log records).
    pub event_name: String,
    pub trace_id: String,
    /// Whether this event's request and response are logged (the tag's `log` switch applied
    /// to this event's debug flag).
    pub log: bool,
}

/// The outcome of one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// The destination accepted it.
    Sent,
    /// The destination refused it, or it could not be delivered; the text says why.
    Failed(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    #[error("the dispatch queue is full")]
    Full,
    #[error("the gateway is shutting down")]
    Closed,
}

/// The ingest side of the dispatcher. Cheap to clone.
#[derive(Clone)]
pub struct DispatchHandle {
    tx: mpsc::Sender<Envelope>,
}

impl DispatchHandle {
    /// Hands an event to the dispatcher without waiting.
    ///
    /// # Errors
    /// [`SubmitError::Full`] when the dispatcher is behind, [`SubmitError::Closed`] while draining.
    pub fn submit(&self, envelope: Envelope) -> Result<(), SubmitError> {
        self.tx.try_send(envelope).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => SubmitError::Full,
            mpsc::error::TrySendError::Closed(_) => SubmitError::Closed,
        })
    }
}

/// Controls a running dispatcher: start the drain, wait for it to finish.
pub struct DispatchControl {
    drain: watch::Sender<Option<Instant>>,
    task: tokio::task::JoinHandle<DrainReport>,
}

/// What the drain achieved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DrainReport {
    /// Events delivered or finally refused while draining.
    pub settled: usize,
    /// Events still undelivered at the deadline (lost in this in-memory stage).
    pub abandoned: usize,
}

impl DispatchControl {
    /// Stops intake, sends everything pending, and returns once all is settled or `deadline`
    /// passed.
    pub async fn drain(self, deadline: Instant) -> DrainReport {
        let _ = self.drain.send(Some(deadline));
        self.task.await.unwrap_or_default()
    }
}

/// Everything the dispatcher is built from.
pub struct DispatchSetup {
    pub routes: Vec<Arc<dyn Destination>>,
    pub config: DispatchConfig,
    pub log: Arc<dyn RequestLog>,
    pub client: reqwest::Client,
}

/// Starts the dispatcher task.
pub fn spawn(setup: DispatchSetup) -> (DispatchHandle, DispatchControl) {
    let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
    let (drain_tx, drain_rx) = watch::channel(None);
    let task = tokio::spawn(worker::run(setup, rx, drain_rx));
    (
        DispatchHandle { tx },
        DispatchControl {
            drain: drain_tx,
            task,
        },
    )
}

/// The HTTP client every destination shares: built once, rustls, no proxies from the
/// environment (the only outbound host is the configured `api_base`).
///
/// # Errors
/// When the TLS backend cannot be initialised.
pub fn http_client(config: &DispatchConfig) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_millis(config.timeout_ms))
        .connect_timeout(std::time::Duration::from_millis(
            config.timeout_ms.min(5_000),
        ))
        .no_proxy()
        .user_agent(concat!("tagbridge/", env!("CARGO_PKG_VERSION")))
        .pool_idle_timeout(std::time::Duration::from_secs(60))
        .build()
}
