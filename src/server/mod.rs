//! Wiring: config → tags, routes, queue, dispatcher, routers; serve until shutdown; drain.
//!
//! Two listeners: the public one (`server.listen`: the ingest paths, `/healthz`, `/readyz`)
//! and the admin one (`server.admin_listen`: `/metrics`, `/debug`, and the probes again).
//!
//! Shutdown order (each step bounded by `dispatch.drain_s` from the signal): stop
//! accepting (`/readyz` 503), finish in-flight requests, send everything pending, close the
//! queue (a last sync). A component that cannot go on (see [`crate::health`]) triggers the
//! same shutdown and makes [`run`] return [`RunError::Fatal`].

mod listener;
mod routes;

use std::{
    collections::HashMap,
    future::Future,
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::{net::TcpListener, sync::watch};

pub use listener::Limits;

use crate::{
    config::Config,
    debug::Recorder,
    destination::{Destination, RouteKey},
    dispatch::{self, DeliveryObserver, DispatchSetup, DrainReport, RequestLog, StdoutLog},
    health::Health,
    ingest::{limit::RateLimit, privacy::Redactor, AppState, ClientIpResolver},
    pipeline::{Pipeline, TagMetrics, TagSlot},
    queue::{storage::Storage, Queue, QueueError},
    tags::Tag,
};

/// The two listeners the gateway serves on.
pub struct Listeners {
    /// `server.listen`: ingest, `/healthz`, `/readyz`.
    pub public: TcpListener,
    /// `server.admin_listen`: `/metrics`, `/debug`, the probes.
    pub admin: TcpListener,
}

impl Listeners {
    /// Binds both addresses of `config`.
    ///
    /// # Errors
    /// When an address cannot be bound (it names which).
    pub async fn bind(config: &Config) -> Result<Self, String> {
        let bind = |addr: SocketAddr, what: &'static str| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|e| format!("cannot listen on {addr} ({what}): {e}"))
        };
        Ok(Self {
            public: bind(config.server.listen, "server.listen").await?,
            admin: bind(config.server.admin_listen, "server.admin_listen").await?,
        })
    }
}

/// Injected dependencies (tests swap them).
pub struct Services {
    /// Where outgoing request/response records go (stdout by default).
    pub request_log: Arc<dyn RequestLog>,
    /// The queue's storage instead of `queue.path` (tests inject faults this way).
    pub storage: Option<Arc<dyn Storage>>,
    /// Tags built outside the config, run after the configured ones (a destination under
    /// development, or a test's fake, goes through exactly the same seam).
    pub extra_tags: Vec<Arc<dyn Tag>>,
    /// Called once when the shutdown starts (a signal or a fatal component): the binary
    /// arms its exit watchdog here.
    pub on_shutdown: Option<Box<dyn FnOnce() + Send>>,
    /// Called once the queue is open (its recovery done), before requests are served: the
    /// binary turns its allocator from start-up settings to serving settings here.
    pub on_queue_open: Option<Box<dyn FnOnce() + Send>>,
}

impl Default for Services {
    fn default() -> Self {
        Self {
            request_log: Arc::new(StdoutLog),
            storage: None,
            extra_tags: Vec::new(),
            on_shutdown: None,
            on_queue_open: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot build the HTTP client: {0}")]
    HttpClient(String),
    #[error("cannot open the queue: {0}")]
    Queue(#[from] QueueError),
    #[error("server error: {0}")]
    Serve(#[from] std::io::Error),
    /// A component failed for good; the gateway drained and stopped.
    #[error("{0}")]
    Fatal(String),
}

/// Builds the tags and their dispatch routes: tags whose destinations have the same
/// endpoint and credential share one route (and so their batches).
pub fn build_tags(config: &Config) -> (Vec<TagSlot>, Vec<Arc<dyn Destination>>) {
    route_tags(config.tags.iter().map(|tc| tc.build()))
}

/// Places tags on routes (see [`build_tags`]).
pub fn route_tags(
    tags: impl Iterator<Item = Arc<dyn Tag>>,
) -> (Vec<TagSlot>, Vec<Arc<dyn Destination>>) {
    let mut keys: HashMap<RouteKey, usize> = HashMap::new();
    let mut routes: Vec<Arc<dyn Destination>> = Vec::new();
    let mut slots = Vec::new();
    for tag in tags {
        let dest = tag.destination();
        let route = *keys.entry(dest.route_key()).or_insert_with(|| {
            routes.push(dest.clone());
            routes.len() - 1
        });
        let metrics = TagMetrics::new(&*tag);
        slots.push(TagSlot {
            tag,
            route,
            metrics,
        });
    }
    (slots, routes)
}

/// Opens the queue of `config` (or on `storage`), off the async threads.
async fn open_queue(
    config: &Config,
    storage: Option<Arc<dyn Storage>>,
    tag_routes: HashMap<String, usize>,
    routes: usize,
) -> Result<Queue, QueueError> {
    let path = config.queue.path.clone();
    let opts = config.queue.options();
    tokio::task::spawn_blocking(move || {
        let route_of = |tag: &str| tag_routes.get(tag).copied();
        let (queue, report) = match storage {
            Some(s) => Queue::open(s, None, opts, routes, &route_of)?,
            None => Queue::open_path(&path, opts, routes, &route_of)?,
        };
        for file in &report.corrupt_files {
            tracing::error!(file = %file, "A damaged queue file was moved aside; its intact events were re-queued.");
        }
        Ok(queue)
    })
    .await
    .map_err(|e| QueueError::Storage(e.to_string()))?
}

/// Runs the gateway until `shutdown` resolves (or a component fails for good), then
/// drains: stop accepting (readyz 503), finish in-flight requests, send everything pending,
/// all within `dispatch.drain_s` of the signal.
///
/// # Errors
/// When the HTTP client or the queue cannot be set up, or a component failed for good
/// ([`RunError::Fatal`], after the drain).
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
    mut services: Services,
) -> Result<DrainReport, RunError> {
    // The recorder first: counters registered while setting up (per-tag handles, queue
    // recovery) must land in it.
    let _ = crate::telemetry::prometheus();
    let config = Arc::new(config);
    let client =
        dispatch::http_client(&config.dispatch).map_err(|e| RunError::HttpClient(e.to_string()))?;
    let extra = std::mem::take(&mut services.extra_tags);
    let (tags, routes) = route_tags(config.tags.iter().map(|tc| tc.build()).chain(extra));
    let tag_routes: HashMap<String, usize> = tags
        .iter()
        .map(|s| (s.tag.name().to_owned(), s.route))
        .collect();
    let queue = open_queue(&config, services.storage, tag_routes, routes.len()).await?;
    if let Some(hook) = services.on_queue_open.take() {
        hook();
    }
    let health = Arc::new(Health::default());
    let recorder = Recorder::new(&config.debug);
    recorder.set_tags(
        tags.iter()
            .map(|s| (s.tag.name().to_owned(), s.tag.match_keys()))
            .collect(),
    );
    let observer: Arc<dyn DeliveryObserver> = recorder.clone();
    let control = dispatch::spawn(DispatchSetup {
        routes,
        queue: queue.clone(),
        config: config.dispatch.clone(),
        log: services.request_log.clone(),
        client,
        observer,
        health: health.clone(),
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
            queue: queue.clone(),
            log: services.request_log,
            reply_timeout,
            trace: recorder.enabled(),
            queued: metrics::counter!("tagbridge_events_queued_total"),
        },
        health: health.clone(),
        redactor: Redactor::new(&config.privacy.redact_query_params),
        rate_limit: config.server.rate_limit.map(RateLimit::new),
        recorder: recorder.clone(),
        config: config.clone(),
    });

    // The signal, or a fatal component, starts the shutdown.
    let (signal_tx, mut signal_rx) = watch::channel(None::<Instant>);
    {
        let health = health.clone();
        let on_shutdown = services.on_shutdown.take();
        tokio::spawn(async move {
            tokio::select! {
                () = shutdown => {}
                () = health.fatal_signalled() => {}
            }
            if let Some(hook) = on_shutdown {
                hook();
            }
            let _ = signal_tx.send(Some(Instant::now()));
        });
    }
    let stopped = |rx: &watch::Receiver<Option<Instant>>| {
        let mut rx = rx.clone();
        async move {
            let _ = rx.wait_for(Option::is_some).await;
        }
    };
    let limits = Limits {
        max_connections: config.server.max_connections,
        header_timeout: Duration::from_millis(config.server.request_timeout_ms),
    };
    let public = {
        let stop = stopped(&signal_rx);
        let flag = health.clone();
        let app = routes::public(state.clone());
        tokio::spawn(listener::serve(listeners.public, app, limits, async move {
            stop.await;
            flag.set_draining();
            tracing::info!("Shutdown signal: no longer accepting requests; draining.");
        }))
    };
    let admin = tokio::spawn(listener::serve(
        listeners.admin,
        routes::admin(state.clone()),
        Limits {
            max_connections: 64,
            ..limits
        },
        stopped(&signal_rx),
    ));

    let signalled_at = match signal_rx.wait_for(Option::is_some).await {
        Ok(at) => at.unwrap_or_else(Instant::now),
        // The signal task ended without a signal: treat as an immediate shutdown.
        Err(_) => Instant::now(),
    };
    let deadline = signalled_at + Duration::from_secs(config.dispatch.drain_s);
    let tokio_deadline = tokio::time::Instant::from_std(deadline);
    if tokio::time::timeout_at(tokio_deadline, public)
        .await
        .is_err()
    {
        tracing::warn!("In-flight requests did not finish before the drain deadline.");
    }
    let report = control.drain(deadline).await;
    let closing = queue.clone();
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        tokio::task::spawn_blocking(move || closing.close()),
    )
    .await;
    admin.abort();
    tracing::info!(left_in_queue = report.left_in_queue, "Drain finished.");
    match health.fatal() {
        Some(reason) => Err(RunError::Fatal(reason)),
        None => Ok(report),
    }
}
