//! Dispatch: reads the durable queue per destination route, batches, delivers, settles.
//!
//! Input: [`Enqueued`] notices from ingest (events already durable in the queue) and, at
//! start-up, whatever the queue still holds. Output: HTTP requests to destinations, queue
//! deletions and dead letters, per-event outcomes for `wait_for_response` callers, and
//! request/response log records in stape's format.
//!
//! Guarantees:
//! - Events of one route (same endpoint and credential) share requests, at most
//!   `batch_max_events` (≤ 1000) each; a batch leaves when full or `batch_max_wait_ms` after
//!   its oldest event became pending. Events of different routes never share a request.
//! - At most `concurrency` requests in flight per route, and at most
//!   [`CALLS_PER_MINUTE`] calls per ad account (Pinterest's limit), retries included.
//! - An event is deleted only after the destination's 2xx (or moved to the dead letters in
//!   the same commit when refused for good). 429 (not spam), 5xx, timeouts and connection
//!   errors put the batch back and back off the whole route (full jitter, `Retry-After`
//!   honoured); events older than `give_up_after_s` are dead-lettered. A failing route never
//!   delays another route.
//! - Drain: intake stops, everything pending is sent at once, and sending stops at the
//!   deadline; what is left stays in the queue for the next start.

mod backoff;
pub(crate) mod request_log;
mod send;
mod worker;

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::sync::{mpsc, oneshot, watch};

pub use backoff::Backoff;
pub use request_log::{MemoryLog, RequestLog, StdoutLog};

use crate::{
    config::DispatchConfig,
    queue::{Pending, Queue, Seq},
    tags::Destination,
};

/// Index of a route in the dispatcher's route table.
pub type RouteId = usize;

/// Pinterest's documented rate limit per ad account.
pub const CALLS_PER_MINUTE: u32 = 5_000;

/// An event that is durable in the queue and ready for its route.
#[derive(Debug)]
pub struct Enqueued {
    pub route: RouteId,
    pub seq: Seq,
    /// Record size in the queue (for the size cap).
    pub bytes: u64,
    pub received_ms: u64,
    /// Set for `wait_for_response` tags: receives the event's outcome.
    pub reply: Option<oneshot::Sender<Delivery>>,
}

/// The outcome of one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// The destination accepted it.
    Sent,
    /// The destination refused it for good (dead-lettered); the text says why.
    Failed(String),
}

/// The ingest side of the dispatcher. Cheap to clone.
#[derive(Clone)]
pub struct DispatchHandle {
    tx: mpsc::UnboundedSender<Vec<Enqueued>>,
}

impl DispatchHandle {
    /// Tells the dispatcher about events just committed to the queue. If the dispatcher is
    /// draining they stay in the queue and go out on the next start.
    pub fn notify(&self, events: Vec<Enqueued>) {
        if !events.is_empty() {
            let _ = self.tx.send(events);
        }
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
    /// Events still in the queue when the dispatcher stopped (sent on the next start).
    pub left_in_queue: usize,
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
    /// Tag name → route, to place events found in the queue at start-up.
    pub tag_routes: HashMap<String, RouteId>,
    pub queue: Queue,
    /// What the queue held at start-up.
    pub recovered: Vec<Pending>,
    pub config: DispatchConfig,
    pub log: Arc<dyn RequestLog>,
    pub client: reqwest::Client,
}

/// Starts the dispatcher task.
pub fn spawn(setup: DispatchSetup) -> (DispatchHandle, DispatchControl) {
    let (tx, rx) = mpsc::unbounded_channel();
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
        .timeout(Duration::from_millis(config.timeout_ms))
        .connect_timeout(Duration::from_millis(config.timeout_ms.min(5_000)))
        .no_proxy()
        .user_agent(concat!("tagbridge/", env!("CARGO_PKG_VERSION")))
        .pool_idle_timeout(Duration::from_secs(60))
        .build()
}
