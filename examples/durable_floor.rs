//! The durable-floor yardstick for ingest benchmarks: a bare axum handler that hands each
//! request body to a writer thread and answers 204 once the body is written. The writer takes
//! every body waiting for it, appends them with one `write`, then (default) one `fdatasync`,
//! and answers them all: the least any gateway that acknowledges only durable events can do.
//!
//! `cargo run --release --example durable_floor -- ADDR DIR [SYNC_INTERVAL_MS]`
//! - `SYNC_INTERVAL_MS` absent or `0`: answer after `fdatasync` (the durable floor).
//! - `N > 0`: answer after the `write` (survives `kill -9`), `fdatasync` every N ms
//!   (the write floor).

use std::{
    fs::OpenOptions,
    io::Write,
    sync::mpsc,
    time::{Duration, Instant},
};

use axum::{body::Bytes, extract::State, http::StatusCode, routing::any, Router};
use tokio::sync::oneshot;

type Job = (Bytes, oneshot::Sender<()>);

async fn handle(State(tx): State<mpsc::Sender<Job>>, body: Bytes) -> StatusCode {
    let (done, wait) = oneshot::channel();
    if tx.send((body, done)).is_err() {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    match wait.await {
        Ok(()) => StatusCode::NO_CONTENT,
        Err(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

fn writer(rx: mpsc::Receiver<Job>, dir: std::path::PathBuf, interval: Option<Duration>) {
    let _ = std::fs::create_dir_all(&dir);
    let Ok(mut file) = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("floor.log"))
    else {
        eprintln!("cannot open {}", dir.display());
        return;
    };
    let mut buf = Vec::with_capacity(1 << 20);
    let mut last_sync = Instant::now();
    let mut dirty = false;
    loop {
        let first = match interval {
            // Wake up for the periodic fdatasync even when idle.
            Some(iv) => match rx.recv_timeout(iv) {
                Ok(job) => Some(job),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            },
            None => match rx.recv() {
                Ok(job) => Some(job),
                Err(_) => return,
            },
        };
        let mut group = Vec::new();
        if let Some(job) = first {
            group.push(job);
            while let Ok(job) = rx.try_recv() {
                group.push(job);
            }
        }
        buf.clear();
        for (body, _) in &group {
            buf.extend_from_slice(&(body.len() as u32).to_le_bytes());
            buf.extend_from_slice(body);
        }
        if !buf.is_empty() && file.write_all(&buf).is_err() {
            return;
        }
        match interval {
            None => {
                if file.sync_data().is_err() {
                    return;
                }
            }
            Some(iv) => {
                dirty |= !group.is_empty();
                if dirty && last_sync.elapsed() >= iv {
                    if file.sync_data().is_err() {
                        return;
                    }
                    last_sync = Instant::now();
                    dirty = false;
                }
            }
        }
        for (_, done) in group {
            let _ = done.send(());
        }
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:9996".into());
    let dir = std::path::PathBuf::from(args.next().unwrap_or_else(|| "./data/floor".into()));
    let interval = args
        .next()
        .and_then(|a| a.parse::<u64>().ok())
        .filter(|ms| *ms > 0)
        .map(Duration::from_millis);
    let (tx, rx) = mpsc::channel::<Job>();
    std::thread::spawn(move || writer(rx, dir, interval));
    let app = Router::new().route("/{*path}", any(handle)).with_state(tx);
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("durable floor on {addr} (sync interval: {interval:?})");
    axum::serve(listener, app).await
}
