//! The dispatcher loop: collects envelopes into per-route batches and starts deliveries.

use std::{
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant},
};

use tokio::{
    sync::{mpsc, watch, Semaphore},
    task::JoinSet,
};

use super::{
    backoff::Backoff,
    send::{deliver, SendContext},
    DispatchSetup, DrainReport, Envelope,
};
use crate::tags::Destination;

struct Route {
    dest: Arc<dyn Destination>,
    permits: Arc<Semaphore>,
    max: usize,
    pending: Vec<Envelope>,
    /// When the oldest pending event arrived.
    since: Option<Instant>,
}

pub(super) async fn run(
    setup: DispatchSetup,
    mut rx: mpsc::Receiver<Envelope>,
    mut drain: watch::Receiver<Option<Instant>>,
) -> DrainReport {
    let cfg = setup.config;
    let wait = Duration::from_millis(cfg.batch_max_wait_ms);
    let mut routes: Vec<Route> = setup
        .routes
        .into_iter()
        .map(|dest| Route {
            max: dest.max_batch().min(cfg.batch_max_events).max(1),
            permits: Arc::new(Semaphore::new(cfg.concurrency.max(1))),
            dest,
            pending: Vec::new(),
            since: None,
        })
        .collect();
    let ctx = Arc::new(SendContext {
        client: setup.client,
        backoff: Backoff::new(&cfg.retry),
        give_up_after: Duration::from_secs(cfg.retry.give_up_after_s),
        log: setup.log,
        unsettled: Default::default(),
    });
    let mut inflight = JoinSet::new();
    let mut settled_at_drain = 0usize;

    // Intake: until the drain starts.
    loop {
        let next_due = routes
            .iter()
            .filter_map(|r| r.since.map(|s| s + wait))
            .min();
        tokio::select! {
            msg = rx.recv() => match msg {
                Some(env) => accept(&mut routes, env, &ctx, &mut inflight, &drain),
                None => break,
            },
            _ = sleep_until_opt(next_due) => {
                let now = Instant::now();
                for route in routes.iter_mut() {
                    if route.since.is_some_and(|s| s + wait <= now) {
                        flush(route, &ctx, &mut inflight, &drain);
                    }
                }
            }
            Some(_) = inflight.join_next(), if !inflight.is_empty() => {}
            changed = drain.changed() => {
                if changed.is_err() || drain.borrow().is_some() {
                    break;
                }
            }
        }
    }

    // Drain: refuse new envelopes, take what is buffered, send everything now.
    rx.close();
    while let Some(env) = rx.recv().await {
        accept(&mut routes, env, &ctx, &mut inflight, &drain);
    }
    for route in routes.iter_mut() {
        while !route.pending.is_empty() {
            flush(route, &ctx, &mut inflight, &drain);
        }
    }
    let before = ctx.unsettled.load(Ordering::Acquire);
    let deadline = (*drain.borrow()).unwrap_or_else(Instant::now);
    let all_done = async { while inflight.join_next().await.is_some() {} };
    if tokio::time::timeout_at(tokio::time::Instant::from_std(deadline), all_done)
        .await
        .is_err()
    {
        // Deliveries notice the deadline themselves; give them a moment to settle.
        let grace = async { while inflight.join_next().await.is_some() {} };
        let _ = tokio::time::timeout(Duration::from_millis(500), grace).await;
        inflight.abort_all();
    }
    let abandoned = ctx.unsettled.load(Ordering::Acquire);
    settled_at_drain += before.saturating_sub(abandoned);
    if abandoned > 0 {
        tracing::error!(
            events = abandoned,
            "Events not delivered before the drain deadline."
        );
    }
    DrainReport {
        settled: settled_at_drain,
        abandoned,
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}

fn accept(
    routes: &mut [Route],
    env: Envelope,
    ctx: &Arc<SendContext>,
    inflight: &mut JoinSet<()>,
    drain: &watch::Receiver<Option<Instant>>,
) {
    let Some(route) = routes.get_mut(env.route) else {
        tracing::error!(route = env.route, "Envelope for an unknown route; dropped.");
        return;
    };
    route.since.get_or_insert_with(Instant::now);
    route.pending.push(env);
    if route.pending.len() >= route.max {
        flush(route, ctx, inflight, drain);
    }
}

/// Starts delivery of up to `max` pending events of `route`.
fn flush(
    route: &mut Route,
    ctx: &Arc<SendContext>,
    inflight: &mut JoinSet<()>,
    drain: &watch::Receiver<Option<Instant>>,
) {
    if route.pending.is_empty() {
        route.since = None;
        return;
    }
    let take = route.pending.len().min(route.max);
    let batch: Vec<Envelope> = route.pending.drain(..take).collect();
    route.since = if route.pending.is_empty() {
        None
    } else {
        Some(Instant::now())
    };
    ctx.unsettled.fetch_add(batch.len(), Ordering::AcqRel);
    inflight.spawn(deliver(
        ctx.clone(),
        route.dest.clone(),
        route.permits.clone(),
        batch,
        drain.clone(),
    ));
}
