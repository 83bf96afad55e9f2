//! The dispatcher loop: keeps an index of pending events per route (sequence, size, age;
//! the events themselves stay in the queue), decides when each route sends, and applies
//! the outcome of each delivery (replies, shared backoff, credential pause).

use std::{
    collections::{HashMap, VecDeque},
    num::NonZeroU32,
    sync::Arc,
    time::{Duration, Instant},
};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::{
    sync::{mpsc, oneshot, watch},
    task::JoinSet,
};

use super::{
    backoff::Backoff,
    send::{deliver, Batch, Done, Entry, SendContext},
    Delivery, DispatchSetup, DrainReport, Enqueued, CALLS_PER_MINUTE,
};
use crate::{
    queue::{now_ms, DeadLetter, DeadReason, Seq},
    tags::Destination,
};

struct Route {
    dest: Arc<dyn Destination>,
    limiter: Arc<DefaultDirectRateLimiter>,
    max: usize,
    pending: VecDeque<Entry>,
    /// Since when the oldest pending event has been waiting for a batch.
    since: Option<Instant>,
    inflight: usize,
    /// Shared backoff: no request for this route before this instant.
    paused_until: Option<Instant>,
    /// Consecutive failed attempts (backoff exponent).
    failures: u32,
}

struct Worker {
    routes: Vec<Route>,
    ctx: Arc<SendContext>,
    wait: Duration,
    concurrency: usize,
    backoff: Backoff,
    pause_on_refusal: Duration,
    replies: HashMap<Seq, oneshot::Sender<Delivery>>,
    tasks: JoinSet<Done>,
}

pub(super) async fn run(
    setup: DispatchSetup,
    mut rx: mpsc::UnboundedReceiver<Vec<Enqueued>>,
    mut drain: watch::Receiver<Option<Instant>>,
) -> DrainReport {
    let cfg = setup.config;
    // One limiter per ad account (the URL without its query), shared by its routes.
    let mut limiters: HashMap<String, Arc<DefaultDirectRateLimiter>> = HashMap::new();
    let routes = setup
        .routes
        .into_iter()
        .map(|dest| {
            let limiter = limiters
                .entry(account_key(dest.url()).to_owned())
                .or_insert_with(|| Arc::new(account_limiter()))
                .clone();
            Route {
                max: dest.max_batch().min(cfg.batch_max_events).max(1),
                dest,
                limiter,
                pending: VecDeque::new(),
                since: None,
                inflight: 0,
                paused_until: None,
                failures: 0,
            }
        })
        .collect();
    let mut w = Worker {
        routes,
        ctx: Arc::new(SendContext {
            client: setup.client,
            queue: setup.queue.clone(),
            log: setup.log,
            give_up_after_ms: cfg.retry.give_up_after_s.saturating_mul(1000),
        }),
        wait: Duration::from_millis(cfg.batch_max_wait_ms),
        concurrency: cfg.concurrency.max(1),
        backoff: Backoff::new(&cfg.retry),
        pause_on_refusal: Duration::from_millis(cfg.retry.max_ms),
        replies: HashMap::new(),
        tasks: JoinSet::new(),
    };
    w.recover(setup.recovered, &setup.tag_routes).await;

    let mut intake_open = true;
    let mut deadline: Option<Instant> = None;
    loop {
        let now = Instant::now();
        w.start_ready(now, deadline.is_some());
        w.publish_gauges();
        if deadline.is_some() && !intake_open && w.tasks.is_empty() && w.is_idle() {
            break;
        }
        let wake = w.next_wake(deadline.is_some());
        tokio::select! {
            msg = rx.recv(), if intake_open => match msg {
                Some(batch) => w.accept(batch),
                None => intake_open = false,
            },
            Some(done) = w.tasks.join_next(), if !w.tasks.is_empty() => {
                if let Ok(done) = done {
                    w.finish(done);
                }
            }
            _ = sleep_until_opt(wake) => {}
            changed = drain.changed(), if deadline.is_none() => {
                let at = if changed.is_ok() { *drain.borrow() } else { Some(Instant::now()) };
                if let Some(at) = at {
                    deadline = Some(at);
                    // Take in every notice already sent before cutting the last batches, so
                    // a route's pending events leave in as few requests as possible.
                    rx.close();
                    while let Ok(batch) = rx.try_recv() {
                        w.accept(batch);
                    }
                    intake_open = false;
                }
            }
            _ = sleep_until_opt(deadline) => break,
        }
    }
    // At the deadline: deliveries still running are abandoned; their events stay queued.
    w.tasks.abort_all();
    while w.tasks.join_next().await.is_some() {}
    let indexed: usize = w.routes.iter().map(|r| r.pending.len()).sum();
    let left = w.ctx.queue.stats().map_or(indexed, |s| s.depth as usize);
    if left > 0 {
        tracing::warn!(
            events = left,
            "Drain ended with events still queued; they will be sent on the next start."
        );
    }
    DrainReport {
        left_in_queue: left,
    }
}

/// Calls one ad account may make: a bucket of [`BURST`] refilled at
/// `CALLS_PER_MINUTE - BURST` per minute, so no 60-second window ever holds more than
/// [`CALLS_PER_MINUTE`] calls (a plain per-minute quota would allow twice that in the first
/// minute: a full burst plus a minute of refill).
pub(super) fn account_limiter() -> DefaultDirectRateLimiter {
    let refill_per_minute = CALLS_PER_MINUTE - BURST;
    let period = Duration::from_secs(60) / refill_per_minute;
    let burst = NonZeroU32::new(BURST).unwrap_or(NonZeroU32::MIN);
    let quota = Quota::with_period(period)
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
        .allow_burst(burst);
    RateLimiter::direct(quota)
}

/// Burst allowance of [`account_limiter`].
pub(super) const BURST: u32 = 100;

/// The ad account a route belongs to: its URL without the query (`?test=true`).
pub(super) fn account_key(url: &str) -> &str {
    url.split('?').next().unwrap_or_default()
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}

impl Worker {
    /// Places what the queue held at start-up; events of tags no longer configured are
    /// dead-lettered.
    async fn recover(
        &mut self,
        recovered: Vec<crate::queue::Pending>,
        tag_routes: &HashMap<String, usize>,
    ) {
        let mut orphans = Vec::new();
        let n = recovered.len();
        for p in recovered {
            let entry = Entry {
                seq: p.seq,
                bytes: p.bytes,
                received_ms: p.received_ms,
            };
            match tag_routes.get(&p.tag).and_then(|r| self.routes.get_mut(*r)) {
                Some(route) => {
                    route.pending.push_back(entry);
                    route.since.get_or_insert_with(Instant::now);
                }
                None => orphans.push((p.seq, p.bytes, p.tag)),
            }
        }
        if n > 0 {
            tracing::info!(events = n, "Recovered queued events from a previous run.");
        }
        if !orphans.is_empty() {
            let seqs: Vec<Seq> = orphans.iter().map(|(s, _, _)| *s).collect();
            let records = self.ctx.queue.read_blocking(seqs).await.unwrap_or_default();
            let letters = orphans
                .iter()
                .zip(records.into_iter().map(crate::queue::Stored::event).chain(std::iter::repeat(None)))
                .map(|((seq, bytes, tag), record)| {
                    metrics::counter!("tagbridge_events_dead_lettered_total", "reason" => DeadReason::UnknownTag.as_str()).increment(1);
                    (*seq, *bytes, DeadLetter {
                        reason: DeadReason::UnknownTag,
                        status: None,
                        message: format!("tag {tag:?} is not in the config"),
                        dead_at_ms: now_ms(),
                        record,
                    })
                })
                .collect();
            tracing::warn!(
                events = orphans.len(),
                "Queued events of tags no longer configured; dead-lettered."
            );
            if let Err(e) = self.ctx.queue.settle(Vec::new(), letters).await {
                tracing::error!(error = %e, "Could not dead-letter events of removed tags.");
            }
        }
    }

    fn accept(&mut self, batch: Vec<Enqueued>) {
        let now = Instant::now();
        for e in batch {
            let Some(route) = self.routes.get_mut(e.route) else {
                continue;
            };
            if let Some(reply) = e.reply {
                self.replies.insert(e.seq, reply);
            }
            route.pending.push_back(Entry {
                seq: e.seq,
                bytes: e.bytes,
                received_ms: e.received_ms,
            });
            route.since.get_or_insert(now);
        }
    }

    fn is_idle(&self) -> bool {
        self.routes
            .iter()
            .all(|r| r.pending.is_empty() && r.inflight == 0)
    }

    /// Starts every batch that may leave now.
    fn start_ready(&mut self, now: Instant, draining: bool) {
        for (id, route) in self.routes.iter_mut().enumerate() {
            loop {
                let due = route.pending.len() >= route.max
                    || draining
                    || route.since.is_some_and(|s| s + self.wait <= now);
                let open = route.paused_until.is_none_or(|t| t <= now);
                if route.pending.is_empty() || !due || !open || route.inflight >= self.concurrency {
                    break;
                }
                let take = route.pending.len().min(route.max);
                let entries: Vec<Entry> = route.pending.drain(..take).collect();
                route.since = if route.pending.is_empty() {
                    None
                } else {
                    Some(now)
                };
                route.inflight += 1;
                self.tasks.spawn(deliver(
                    self.ctx.clone(),
                    Batch {
                        route: id,
                        dest: route.dest.clone(),
                        limiter: route.limiter.clone(),
                        entries,
                    },
                ));
            }
        }
    }

    /// When the loop must look again: a batch wait or a backoff ending.
    fn next_wake(&self, draining: bool) -> Option<Instant> {
        self.routes
            .iter()
            .filter(|r| !r.pending.is_empty())
            .filter_map(|r| {
                let due = if draining || r.pending.len() >= r.max {
                    None
                } else {
                    r.since.map(|s| s + self.wait)
                };
                match (due, r.paused_until) {
                    (Some(d), Some(p)) => Some(d.max(p)),
                    (d, p) => d.or(p),
                }
            })
            .min()
    }

    fn finish(&mut self, done: Done) {
        for (seq, delivery) in done.settled {
            if let Some(reply) = self.replies.remove(&seq) {
                let _ = reply.send(delivery);
            }
        }
        let Some(route) = self.routes.get_mut(done.route) else {
            return;
        };
        route.inflight = route.inflight.saturating_sub(1);
        let kind = route.dest.kind();
        match done.retry {
            Some(retry) if !retry.entries.is_empty() || retry.after.is_some() => {
                let delay = self
                    .backoff
                    .delay(route.failures, retry.after, &mut rand::rng());
                route.failures = route.failures.saturating_add(1);
                let until = Instant::now() + delay;
                route.paused_until = Some(route.paused_until.map_or(until, |t| t.max(until)));
                metrics::counter!("tagbridge_retries_total", "destination" => kind).increment(1);
                tracing::warn!(destination = kind, url = route.dest.url(), events = retry.entries.len(), attempt = route.failures, retry_in_ms = delay.as_millis() as u64, error = %retry.reason, "Batch not delivered; the route backs off and retries.");
                // Back to the front, in order: these are the oldest events of the route.
                for e in retry.entries.into_iter().rev() {
                    route.pending.push_front(e);
                }
                route.since.get_or_insert_with(Instant::now);
            }
            _ => {
                if done.refused_credentials {
                    route.paused_until = Some(Instant::now() + self.pause_on_refusal);
                    tracing::error!(destination = kind, url = route.dest.url(), pause_ms = self.pause_on_refusal.as_millis() as u64, "Credentials or ad account refused: pausing this route; check the token and advertiser_id.");
                } else {
                    route.failures = 0;
                    route.paused_until = None;
                }
            }
        }
    }

    fn publish_gauges(&self) {
        let depth: usize = self.routes.iter().map(|r| r.pending.len()).sum();
        metrics::gauge!("tagbridge_queue_pending_events").set(depth as f64);
        metrics::gauge!("tagbridge_queue_bytes").set(self.ctx.queue.bytes() as f64);
        let oldest = self
            .routes
            .iter()
            .filter_map(|r| r.pending.front().map(|e| e.received_ms))
            .min();
        let age = oldest.map_or(0.0, |ms| now_ms().saturating_sub(ms) as f64 / 1000.0);
        metrics::gauge!("tagbridge_queue_oldest_age_seconds").set(age);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minute_never_holds_more_than_the_limit() {
        let limiter = account_limiter();
        // The burst passes at once, the next call waits.
        let passed = (0..BURST * 2).filter(|_| limiter.check().is_ok()).count();
        assert_eq!(passed, BURST as usize);
        // Over 60 s: burst + refill = exactly the documented limit.
        let refill = (CALLS_PER_MINUTE - BURST) as u64;
        let period = Duration::from_secs(60) / (CALLS_PER_MINUTE - BURST);
        assert_eq!(
            period.as_nanos() as u64 * refill,
            60_000_000_000 - 60_000_000_000 % refill
        );
        assert!(BURST as u64 + refill <= CALLS_PER_MINUTE as u64);
    }

    #[test]
    fn test_mode_shares_the_accounts_limit() {
        assert_eq!(
            account_key("https://api.pinterest.com/v5/ad_accounts/1/events?test=true"),
            account_key("https://api.pinterest.com/v5/ad_accounts/1/events")
        );
        assert_ne!(
            account_key("https://api.pinterest.com/v5/ad_accounts/1/events"),
            account_key("https://api.pinterest.com/v5/ad_accounts/2/events")
        );
    }
}
