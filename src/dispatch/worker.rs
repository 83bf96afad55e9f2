//! The dispatcher loop: decides when each route sends (batch full, batch wait over, drain),
//! leases batches from the queue, runs deliveries, and applies their outcomes per route
//! (shared backoff, splits of refused batches, credential pause).

use std::{
    collections::{HashMap, VecDeque},
    num::NonZeroU32,
    sync::Arc,
    time::{Duration, Instant},
};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::{sync::watch, task::JoinSet};

use super::{
    backoff::Backoff,
    deliver::{deliver, Batch, Context, Outcome},
    DeliveryEvent, DispatchSetup, DrainReport,
};
use crate::{
    destination::Destination,
    queue::{Entry, RouteId},
};

struct Route {
    dest: Arc<dyn Destination>,
    limiter: Arc<DefaultDirectRateLimiter>,
    max_events: usize,
    max_bytes: u64,
    inflight: usize,
    /// Shared backoff: no request for this route before this instant.
    paused_until: Option<Instant>,
    /// Consecutive failed attempts (backoff exponent).
    failures: u32,
    /// Halves of batches refused for their payload: sent as they are, before anything else.
    splits: VecDeque<Vec<Entry>>,
}

struct Worker {
    routes: Vec<Route>,
    ctx: Arc<Context>,
    wait: Duration,
    concurrency: usize,
    backoff: Backoff,
    pause_on_refusal: Duration,
    tasks: JoinSet<(RouteId, Outcome)>,
    /// What each running delivery holds, to release it if the task panics.
    inflight: HashMap<tokio::task::Id, (RouteId, Vec<Entry>)>,
}

pub(super) async fn run(
    setup: Arc<DispatchSetup>,
    mut drain: watch::Receiver<Option<Instant>>,
) -> DrainReport {
    let cfg = &setup.config;
    // One limiter per account, shared by the account's routes (test mode, other tokens).
    let mut limiters: HashMap<String, Arc<DefaultDirectRateLimiter>> = HashMap::new();
    let routes: Vec<Route> = setup
        .routes
        .iter()
        .enumerate()
        .map(|(id, dest)| {
            let limits = dest.limits();
            let limiter = limiters
                .entry(limits.account.clone())
                .or_insert_with(|| Arc::new(account_limiter(limits.calls_per_minute)))
                .clone();
            let max_events = limits.max_events.min(cfg.batch_max_events).max(1);
            setup.queue.set_wake_threshold(id, max_events);
            Route {
                dest: dest.clone(),
                limiter,
                max_events,
                max_bytes: limits.max_bytes as u64,
                inflight: 0,
                paused_until: None,
                failures: 0,
                splits: VecDeque::new(),
            }
        })
        .collect();
    let mut w = Worker {
        ctx: Arc::new(Context {
            client: setup.client.clone(),
            queue: setup.queue.clone(),
            log: setup.log.clone(),
            observer: setup.observer.clone(),
            give_up_after_ms: cfg.retry.give_up_after_s.saturating_mul(1000),
        }),
        wait: Duration::from_millis(cfg.batch_max_wait_ms),
        concurrency: cfg.concurrency.max(1),
        backoff: Backoff::from_config(&cfg.retry),
        pause_on_refusal: Duration::from_millis(cfg.retry.max_ms),
        routes,
        tasks: JoinSet::new(),
        inflight: HashMap::new(),
    };

    let mut deadline: Option<Instant> = *drain.borrow();
    loop {
        let now = Instant::now();
        let draining = deadline.is_some();
        w.start_ready(now, draining);
        if draining && w.tasks.is_empty() && w.is_idle() {
            break;
        }
        let wake = w.next_wake(draining);
        tokio::select! {
            () = w.ctx.queue.notified() => {}
            Some(done) = w.tasks.join_next_with_id(), if !w.tasks.is_empty() => w.finish(done),
            () = sleep_until_opt(wake) => {}
            changed = drain.changed(), if deadline.is_none() => {
                deadline = match changed {
                    Ok(()) => *drain.borrow(),
                    Err(_) => Some(Instant::now()),
                };
            }
            () = sleep_until_opt(deadline) => break,
        }
    }
    // At the deadline: deliveries still running are abandoned; their events stay queued.
    w.tasks.abort_all();
    while w.tasks.join_next().await.is_some() {}
    let left = w.ctx.queue.depth();
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

/// Calls one account may make: a bucket of [`BURST`] refilled at `calls_per_minute - BURST`
/// per minute, so no 60-second window ever holds more than `calls_per_minute` calls (a
/// plain per-minute quota would allow twice that in the first minute: a full burst plus a
/// minute of refill).
pub(super) fn account_limiter(calls_per_minute: u32) -> DefaultDirectRateLimiter {
    let burst = BURST.min(calls_per_minute / 2).max(1);
    let refill_per_minute = calls_per_minute.saturating_sub(burst).max(1);
    let period = Duration::from_secs(60) / refill_per_minute;
    let quota = Quota::with_period(period)
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
        .allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN));
    RateLimiter::direct(quota)
}

/// Burst allowance of [`account_limiter`].
pub(super) const BURST: u32 = 100;

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}

impl Worker {
    fn is_idle(&self) -> bool {
        self.routes.iter().enumerate().all(|(id, r)| {
            r.inflight == 0 && r.splits.is_empty() && self.ctx.queue.route_status(id).pending == 0
        })
    }

    /// Starts every batch that may leave now.
    fn start_ready(&mut self, now: Instant, draining: bool) {
        for id in 0..self.routes.len() {
            loop {
                let route = &mut self.routes[id];
                let open = route.paused_until.is_none_or(|t| t <= now);
                if !open || route.inflight >= self.concurrency {
                    break;
                }
                let entries = match route.splits.pop_front() {
                    Some(split) => split,
                    None => {
                        let status = self.ctx.queue.route_status(id);
                        let due = status.pending >= route.max_events
                            || status.pending_bytes >= route.max_bytes
                            || draining
                            || status.since.is_some_and(|s| s + self.wait <= now);
                        if status.pending == 0 || !due {
                            break;
                        }
                        self.ctx.queue.lease(id, route.max_events, route.max_bytes)
                    }
                };
                if entries.is_empty() {
                    break;
                }
                route.inflight += 1;
                let batch = Batch {
                    route: id,
                    dest: route.dest.clone(),
                    limiter: route.limiter.clone(),
                    entries: entries.clone(),
                    attempt: route.failures + 1,
                };
                let handle = self.tasks.spawn(deliver(self.ctx.clone(), batch));
                self.inflight.insert(handle.id(), (id, entries));
            }
        }
    }

    /// When the loop must look again: a batch wait or a backoff ending.
    fn next_wake(&self, draining: bool) -> Option<Instant> {
        self.routes
            .iter()
            .enumerate()
            .filter_map(|(id, r)| {
                let status = self.ctx.queue.route_status(id);
                if status.pending == 0 && r.splits.is_empty() {
                    return None;
                }
                let due = if draining || !r.splits.is_empty() {
                    None
                } else {
                    status.since.map(|s| s + self.wait)
                };
                match (due, r.paused_until) {
                    (Some(d), Some(p)) => Some(d.max(p)),
                    (d, p) => d.or(p),
                }
            })
            .min()
    }

    fn finish(
        &mut self,
        done: Result<(tokio::task::Id, (RouteId, Outcome)), tokio::task::JoinError>,
    ) {
        let (task, outcome) = match done {
            Ok((task, (_, outcome))) => (task, outcome),
            Err(e) => {
                let Some((route, entries)) = self.inflight.remove(&e.id()) else {
                    return;
                };
                metrics::counter!("tagbridge_task_restarts_total", "task" => "delivery")
                    .increment(1);
                tracing::error!(
                    events = entries.len(),
                    "A delivery task failed; its batch goes back to the queue."
                );
                if let Some(r) = self.routes.get_mut(route) {
                    r.inflight = r.inflight.saturating_sub(1);
                }
                self.retry(route, entries, "delivery task failed", None);
                return;
            }
        };
        let Some((route, _)) = self.inflight.remove(&task) else {
            return;
        };
        let Some(r) = self.routes.get_mut(route) else {
            return;
        };
        r.inflight = r.inflight.saturating_sub(1);
        match outcome {
            Outcome::Settled => {
                r.failures = 0;
                if r.paused_until.is_some_and(|t| t <= Instant::now()) {
                    r.paused_until = None;
                }
            }
            Outcome::Retry {
                entries,
                reason,
                after,
            } => self.retry(route, entries, &reason, after),
            Outcome::Split(first, second) => {
                tracing::info!(destination = r.dest.kind(), events = first.len() + second.len(), "Destination refused a batch; sending its halves to isolate the refused events.");
                r.splits.push_front(second);
                r.splits.push_front(first);
            }
            Outcome::CredentialsRefused => {
                r.paused_until = Instant::now().checked_add(self.pause_on_refusal);
                tracing::error!(destination = r.dest.kind(), url = r.dest.endpoint(), pause_ms = self.pause_on_refusal.as_millis() as u64, "Credentials or account refused: pausing this route; check the token and the account id.");
            }
        }
    }

    fn retry(
        &mut self,
        route: RouteId,
        entries: Vec<Entry>,
        reason: &str,
        after: Option<Duration>,
    ) {
        let Some(r) = self.routes.get_mut(route) else {
            return;
        };
        let delay = self.backoff.delay(r.failures, after, &mut rand::rng());
        r.failures = r.failures.saturating_add(1);
        let until = Instant::now()
            .checked_add(delay)
            .unwrap_or_else(|| Instant::now() + self.backoff.max());
        r.paused_until = Some(r.paused_until.map_or(until, |t| t.max(until)));
        let kind = r.dest.kind();
        metrics::counter!("tagbridge_retries_total", "destination" => kind).increment(1);
        tracing::warn!(destination = kind, url = r.dest.endpoint(), events = entries.len(), attempt = r.failures, retry_in_ms = delay.as_millis() as u64, error = %reason, "Batch not delivered; the route backs off and retries.");
        if !entries.is_empty() {
            let seqs: Vec<u64> = entries.iter().map(|e| e.seq).collect();
            self.ctx.observer.observe(
                &seqs,
                DeliveryEvent::Retry {
                    reason,
                    retry_in: delay,
                },
            );
        }
        self.ctx.queue.release(route, &entries);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minute_never_holds_more_than_the_limit() {
        let limiter = account_limiter(5_000);
        // The burst passes at once, the next call waits.
        let passed = (0..BURST * 2).filter(|_| limiter.check().is_ok()).count();
        assert_eq!(passed, BURST as usize);
        // Over 60 s: burst + refill ≤ the documented limit.
        let refill = 5_000 - BURST;
        let period = Duration::from_secs(60) / refill;
        assert!(u128::from(BURST) + 60_000_000_000 / period.as_nanos() <= 5_000);
    }

    #[test]
    fn small_limits_still_work() {
        let limiter = account_limiter(10);
        let passed = (0..20).filter(|_| limiter.check().is_ok()).count();
        assert_eq!(passed, 5);
    }
}
