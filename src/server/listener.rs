//! The accept loop of a listener: a cap on open connections, header and idle timeouts, and
//! a graceful shutdown that a deadline bounds.
//!
//! - `server.max_connections`: a connection past the cap is closed at once (counted).
//! - `server.request_timeout_ms` bounds the time to receive a request's headers (hyper's
//!   header read timeout), which also closes keep-alive connections idle that long; the
//!   body has its own bound of the same length (`ingest::body`).
//! - On shutdown the listener stops accepting, idle connections (and ones that have not
//!   sent a byte yet) close at once, and requests in flight finish; the caller bounds the
//!   wait.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use axum::{extract::ConnectInfo, Router};
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto, graceful::GracefulShutdown},
    service::TowerToHyperService,
};
use tokio::{
    net::TcpListener,
    sync::{watch, Semaphore},
};
use tower::ServiceExt;

/// Connection limits of a listener.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    /// Headers must arrive within this; idle keep-alive connections close after it.
    pub header_timeout: Duration,
}

/// Serves `app` on `listener` until `stop` resolves, then waits for open connections to
/// finish (graceful shutdown; the caller bounds the wait).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    stop: impl Future<Output = ()>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(limits.header_timeout))
        .keep_alive_timeout(limits.header_timeout)
        .max_concurrent_streams(100);
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    // Raised at shutdown: connections that have not sent a byte yet close at once (hyper's
    // graceful shutdown only reaches connections it serves).
    let (closing_tx, closing_rx) = watch::channel(false);
    tokio::pin!(stop);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off a little, keep serving.
                    tracing::warn!(error = %e, "Cannot accept a connection.");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            metrics::counter!("tagbridge_connections_refused_total").increment(1);
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let svc =
            app.clone()
                .map_request(move |mut r: axum::http::Request<hyper::body::Incoming>| {
                    r.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
                    r
                });
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let header_timeout = limits.header_timeout;
        let mut closing = closing_rx.clone();
        tokio::spawn(async move {
            // hyper's header timeout starts once it knows the protocol, which takes a first
            // byte: a client that sends nothing is closed after the same timeout, or at
            // shutdown.
            let mut first = [0u8; 1];
            tokio::select! {
                peeked = tokio::time::timeout(header_timeout, stream.peek(&mut first)) => {
                    match peeked {
                        Ok(Ok(n)) if n > 0 => {}
                        _ => return,
                    }
                }
                _ = closing.wait_for(|c| *c) => return,
            }
            let conn = builder
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(svc))
                .into_owned();
            let _ = watcher.watch(conn).await;
            drop(permit);
        });
    }
    drop(listener);
    let _ = closing_tx.send(true);
    graceful.shutdown().await;
}
