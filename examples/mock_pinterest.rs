//! A fast stand-in for the Pinterest Conversions API, for load tests and benchmarks.
//!
//! `cargo run --release --example mock_pinterest -- 127.0.0.1:9999`
//! - `POST /v5/ad_accounts/{id}/events`: 200 with one `processed` entry per event.
//! - `GET /count`: events received so far (plain text); `GET /requests`: requests so far.

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc,
};

use axum::{extract::State, routing::get, routing::post, Json, Router};
use serde_json::{json, Value};

#[derive(Default)]
struct Counts {
    events: AtomicU64,
    requests: AtomicU64,
}

async fn events(State(c): State<Arc<Counts>>, Json(body): Json<Value>) -> Json<Value> {
    let n = body["data"].as_array().map_or(0, Vec::len);
    c.events.fetch_add(n as u64, Ordering::Relaxed);
    c.requests.fetch_add(1, Ordering::Relaxed);
    let statuses: Vec<Value> = (0..n)
        .map(|_| json!({"status": "processed", "error_message": "", "warning_message": ""}))
        .collect();
    Json(json!({"num_events_received": n, "num_events_processed": n, "events": statuses}))
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9999".into());
    let counts = Arc::new(Counts::default());
    let app = Router::new()
        .route("/v5/ad_accounts/{id}/events", post(events))
        .route(
            "/count",
            get(|State(c): State<Arc<Counts>>| async move {
                c.events.load(Ordering::Relaxed).to_string()
            }),
        )
        .route(
            "/requests",
            get(|State(c): State<Arc<Counts>>| async move {
                c.requests.load(Ordering::Relaxed).to_string()
            }),
        )
        .with_state(counts);
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("mock Pinterest on {addr}");
    axum::serve(listener, app).await
}
