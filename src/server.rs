//! Wiring: config → tags, routes, dispatcher, router; serve until shutdown; drain.

use std::{
    collections::HashMap,
    future::Future,
    net::SocketAddr,
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant},
};

use tokio::{net::TcpListener, sync::watch};

use crate::{
    config::Config,
    dispatch::{self, DispatchSetup, DrainReport, RequestLog, StdoutLog},
    ingest::{self, AppState, ClientIpResolver, Pipeline, TagSlot},
    queue::Queue,
    tags::{Destination, RouteKey},
};

/// Injected dependencies (tests swap them).
pub struct Services {
    /// Where outgoing request/response records go (stdout by default).
    pub request_log: Arc<dyn RequestLog>,
}

impl Default for Services {
    fn default() -> Self {
        Self {
            request_log: Arc::new(StdoutLog),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot build the HTTP client: {0}")]
    HttpClient(String),
    #[error("cannot open the queue: {0}")]
    Queue(#[from] crate::queue::QueueError),
    #[error("server error: {0}")]
    Serve(#[from] std::io::Error),
}

/// Builds the tags and their dispatch routes: tags whose destinations have the same
/// endpoint and credential share one route (and so their batches).
pub fn build_tags(config: &Config) -> (Vec<TagSlot>, Vec<Arc<dyn Destination>>) {
    let mut keys: HashMap<RouteKey, usize> = HashMap::new();
    let mut routes: Vec<Arc<dyn Destination>> = Vec::new();
    let mut slots = Vec::new();
    for tc in &config.tags {
        let tag = tc.build();
        let dest = tag.destination();
        let route = *keys.entry(dest.route_key()).or_insert_with(|| {
            routes.push(dest.clone());
            routes.len() - 1
        });
        slots.push(TagSlot { tag, route });
    }
    (slots, routes)
}

/// Runs the gateway on `listener` until `shutdown` resolves, then drains: stop accepting
/// (readyz 503), finish in-flight requests, send everything pending, all within
/// `dispatch.drain_s` of the signal.
///
/// # Errors
/// When the HTTP client cannot be built or the server fails.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    services: Services,
) -> Result<DrainReport, RunError> {
    let config = Arc::new(config);
    let client =
        dispatch::http_client(&config.dispatch).map_err(|e| RunError::HttpClient(e.to_string()))?;
    let (queue, recovered) = {
        let path = config.queue.path.clone();
        let max = config.queue.max_bytes;
        tokio::task::spawn_blocking(move || Queue::open(&path, max))
            .await
            .map_err(|e| RunError::Queue(crate::queue::QueueError::Storage(e.to_string())))??
    };
    let (tags, routes) = build_tags(&config);
    let tag_routes = tags
        .iter()
        .map(|s| (s.tag.name().to_owned(), s.route))
        .collect();
    let (handle, control) = dispatch::spawn(DispatchSetup {
        routes,
        tag_routes,
        queue: queue.clone(),
        recovered,
        config: config.dispatch.clone(),
        log: services.request_log.clone(),
        client,
    });
    let reply_timeout = Duration::from_millis(
        config.dispatch.timeout_ms + config.dispatch.batch_max_wait_ms + 1_000,
    );
    let state = Arc::new(AppState {
        client_ip: ClientIpResolver::new(
            config.server.trusted_proxies.clone(),
            config.server.client_ip_header.as_deref(),
        ),
        pipeline: Pipeline {
            tags,
            queue,
            dispatch: handle,
            log: services.request_log,
            reply_timeout,
        },
        draining: Default::default(),
        config: config.clone(),
    });

    let (signal_tx, mut signal_rx) = watch::channel(None::<Instant>);
    tokio::spawn(async move {
        shutdown.await;
        let _ = signal_tx.send(Some(Instant::now()));
    });
    let mut graceful = signal_rx.clone();
    let flag = state.clone();
    let app = ingest::router(state).into_make_service_with_connect_info::<SocketAddr>();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        let _ = graceful.wait_for(Option::is_some).await;
        flag.draining.store(true, Ordering::Release);
        tracing::info!("Shutdown signal: no longer accepting requests; draining.");
    });
    let server = tokio::spawn(async move { server.await });

    let signalled_at = match signal_rx.wait_for(Option::is_some).await {
        Ok(at) => at.unwrap_or_else(Instant::now),
        // The signal task ended without a signal: treat as an immediate shutdown.
        Err(_) => Instant::now(),
    };
    let deadline = signalled_at + Duration::from_secs(config.dispatch.drain_s);
    match tokio::time::timeout_at(tokio::time::Instant::from_std(deadline), server).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => tracing::error!(error = %e, "Server stopped with an error."),
        Ok(Err(e)) => tracing::error!(error = %e, "Server task failed."),
        Err(_) => tracing::warn!("In-flight requests did not finish before the drain deadline."),
    }
    let report = control.drain(deadline).await;
    tracing::info!(left_in_queue = report.left_in_queue, "Drain finished.");
    Ok(report)
}
