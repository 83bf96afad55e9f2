//! Dispatch: leases events from the durable queue per destination route, batches them,
//! delivers them, and settles the outcome back into the queue.
//!
//! Input: the [`Queue`] (events already durable) and the routes' [`Destination`]s. Output:
//! HTTP requests, queue acks and dead letters, outcomes for `wait_for_response` callers
//! (through the queue), request/response log records in stape's format, and
//! [`DeliveryEvent`]s for the debug page.
//!
//! Guarantees:
//! - Events of one route (same endpoint and credential) share requests, at most
//!   `min(batch_max_events, destination limit)` events and the destination's byte cap; a
//!   batch leaves when full or `batch_max_wait_ms` after its oldest event became pending.
//!   Routes never share a request.
//! - At most `concurrency` requests in flight per route, and at most the destination's
//!   calls per minute per account (retries and splits included).
//! - An event is acked only after the destination's 2xx, or dead-lettered (written first,
//!   then acked) when refused for good. A batch refused for its payload is split in halves
//!   until the refused events are isolated: only those are dead-lettered. 429 (not spam),
//!   5xx, timeouts and connection errors release the batch and back off the whole route
//!   (full jitter, `Retry-After` honoured up to `retry.max_ms`); a refused credential pauses
//!   the route for `retry.max_ms`. Events older than `give_up_after_s` are dead-lettered.
//! - Supervision: a delivery task that panics has its batch released and the route backs
//!   off; the dispatcher loop itself is restarted with backoff after a panic (leases
//!   released), and declared fatal after repeated failures (the process exits non-zero).
//! - Drain: everything pending is due at once; sending stops at the deadline; what is left
//!   stays in the queue for the next start.

mod backoff;
mod deliver;
pub(crate) mod request_log;
mod worker;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::sync::{oneshot, watch};

pub use backoff::Backoff;
pub use request_log::{MemoryLog, RequestLog, StdoutLog};

use crate::{
    config::DispatchConfig,
    destination::Destination,
    health::{Health, TaskState},
    queue::{DeadReason, Queue},
};

/// Something that happened to events on their way out (the debug page records them).
#[derive(Debug, Clone, Copy)]
pub enum DeliveryEvent<'a> {
    /// A request carrying the events left.
    Request {
        url: &'a str,
        batch_size: usize,
        attempt: u32,
    },
    /// The destination's answer for an event (`status` `None`: no answer, transport error).
    Response {
        status: Option<u16>,
        event_status: Option<&'a str>,
        message: Option<&'a str>,
    },
    /// The events go back to the queue and are retried after `retry_in`.
    Retry { reason: &'a str, retry_in: Duration },
    DeadLetter {
        reason: DeadReason,
        message: &'a str,
    },
}

/// Receives [`DeliveryEvent`]s by event sequence number.
pub trait DeliveryObserver: Send + Sync {
    fn observe(&self, seqs: &[u64], event: DeliveryEvent<'_>);
    /// Whether per-event [`DeliveryEvent::Response`]s are wanted (reading them parses the
    /// destination's answer).
    fn wants_responses(&self) -> bool {
        true
    }
}

/// Observes nothing.
#[derive(Debug, Default)]
pub struct NoObserver;

impl DeliveryObserver for NoObserver {
    fn observe(&self, _: &[u64], _: DeliveryEvent<'_>) {}
    fn wants_responses(&self) -> bool {
        false
    }
}

/// Everything the dispatcher is built from.
pub struct DispatchSetup {
    /// Route id → its destination (the queue's route ids).
    pub routes: Vec<Arc<dyn Destination>>,
    pub queue: Queue,
    pub config: DispatchConfig,
    pub log: Arc<dyn RequestLog>,
    pub client: reqwest::Client,
    pub observer: Arc<dyn DeliveryObserver>,
    pub health: Arc<Health>,
}

/// What the drain achieved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DrainReport {
    /// Events still in the queue when the dispatcher stopped (sent on the next start).
    pub left_in_queue: usize,
}

/// Controls a running dispatcher: start the drain, wait for it to finish.
pub struct DispatchControl {
    drain: watch::Sender<Option<Instant>>,
    task: oneshot::Receiver<DrainReport>,
    queue: Queue,
}

impl DispatchControl {
    /// Sends everything pending at once and returns once all is settled or `deadline`
    /// passed.
    pub async fn drain(self, deadline: Instant) -> DrainReport {
        let _ = self.drain.send(Some(deadline));
        let grace = tokio::time::Instant::from_std(deadline) + Duration::from_millis(500);
        match tokio::time::timeout_at(grace, self.task).await {
            Ok(Ok(report)) => report,
            _ => DrainReport {
                left_in_queue: self.queue.depth(),
            },
        }
    }
}

/// Restarts within this window count towards giving up.
const RESTART_WINDOW: Duration = Duration::from_secs(300);
/// Restarts within the window after which the dispatcher is declared fatal.
const MAX_RESTARTS: usize = 5;

/// Starts the dispatcher under its supervisor, on a runtime of its own (one thread,
/// `tagbridge-dispatch`): encoding and settling a 1,000-event batch takes a worker for a
/// millisecond or more, and requests on that worker would wait behind it. On its own thread
/// the OS shares the cores between the two instead. Falls back to the caller's runtime when
/// no thread can be started.
pub fn spawn(setup: DispatchSetup) -> DispatchControl {
    let (drain_tx, drain_rx) = watch::channel(None);
    let queue = setup.queue.clone();
    let (done_tx, done_rx) = oneshot::channel();
    let run = async move {
        let report = supervise(Arc::new(setup), drain_rx).await;
        let _ = done_tx.send(report);
    };
    let run: Run = Box::pin(run);
    let unstarted = match own_thread() {
        Some(start) => start(run).err(),
        None => Some(run),
    };
    if let Some(run) = unstarted {
        tokio::spawn(run);
    }
    DispatchControl {
        drain: drain_tx,
        task: done_rx,
        queue,
    }
}

type Run = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// A thread with a single-threaded runtime, waiting for the future to run on it (handed
/// back when the thread is gone).
fn own_thread() -> Option<impl FnOnce(Run) -> Result<(), Run>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| tracing::warn!(error = %e, "No runtime of its own for the dispatcher; it shares the server's."))
        .ok()?;
    let (tx, rx) = std::sync::mpsc::channel::<Run>();
    std::thread::Builder::new()
        .name("tagbridge-dispatch".into())
        .spawn(move || {
            if let Ok(run) = rx.recv() {
                runtime.block_on(run);
            }
        })
        .map_err(|e| tracing::warn!(error = %e, "No thread of its own for the dispatcher; it shares the server's runtime."))
        .ok()?;
    Some(move |run: Run| tx.send(run).map_err(|e| e.0))
}

async fn supervise(
    setup: Arc<DispatchSetup>,
    drain: watch::Receiver<Option<Instant>>,
) -> DrainReport {
    let mut restarts: Vec<Instant> = Vec::new();
    let backoff = Backoff::new(100, 10_000);
    loop {
        setup.health.set_dispatcher(TaskState::Running);
        let run = tokio::spawn(worker::run(setup.clone(), drain.clone()));
        match run.await {
            Ok(report) => return report,
            Err(e) => {
                let now = Instant::now();
                restarts.retain(|t| now.duration_since(*t) < RESTART_WINDOW);
                restarts.push(now);
                metrics::counter!("tagbridge_task_restarts_total", "task" => "dispatcher")
                    .increment(1);
                let what = if e.is_panic() {
                    "panicked"
                } else {
                    "was cancelled"
                };
                if restarts.len() > MAX_RESTARTS {
                    setup.health.set_dispatcher(TaskState::Failed);
                    setup.health.set_fatal(format!(
                        "the dispatcher {what} {} times within {} s",
                        restarts.len(),
                        RESTART_WINDOW.as_secs()
                    ));
                    return DrainReport {
                        left_in_queue: setup.queue.depth(),
                    };
                }
                setup.health.set_dispatcher(TaskState::Restarting);
                let delay = backoff.ceiling(restarts.len() as u32 - 1);
                tracing::error!(
                    restart_in_ms = delay.as_millis() as u64,
                    "The dispatcher {what}; restarting it (its batches go back to the queue)."
                );
                // Deliveries of the dead loop were aborted with it: their events are pending again.
                setup.queue.release_all();
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// The HTTP client every destination shares: built once, rustls, no proxies from the
/// environment, no redirects followed (the only outbound host is the configured
/// `api_base`: a redirect would send events elsewhere, and a 302 turned into a body-less
/// `GET` that answers 200 would count them as delivered).
///
/// # Errors
/// When the TLS backend cannot be initialised.
pub fn http_client(config: &DispatchConfig) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .timeout(Duration::from_millis(config.timeout_ms))
        .connect_timeout(Duration::from_millis(config.timeout_ms.min(5_000)))
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("tagbridge/", env!("CARGO_PKG_VERSION")))
        .pool_idle_timeout(Duration::from_secs(60))
        .build()
}
