//! A fast stand-in for the Pinterest Conversions API, for load tests and benchmarks.
//!
//! `cargo run --release --example mock_pinterest -- 127.0.0.1:9999`
//! - `POST /v5/ad_accounts/{id}/events`: 200 with one `processed` entry per event.
//! - `GET /count`: events received so far (plain text); `GET /requests`: requests so far.

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc,
};

use axum::{
    body::Bytes,
    extract::State,
    http::{header, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
    Router,
};
use serde::{de::IgnoredAny, Deserialize};

#[derive(Default)]
struct Counts {
    events: AtomicU64,
    requests: AtomicU64,
}

/// Only the length of `data` is needed: its elements are checked to be JSON and skipped
/// (`IgnoredAny`), so the mock stays cheap beside the gateway it measures.
#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    data: Vec<IgnoredAny>,
}

const PROCESSED: &str = r#"{"status":"processed","error_message":"","warning_message":""}"#;

async fn events(State(c): State<Arc<Counts>>, body: Bytes) -> Response {
    let Ok(envelope) = serde_json::from_slice::<Envelope>(&body) else {
        return (
            StatusCode::BAD_REQUEST,
            r#"{"code":1,"message":"Invalid JSON"}"#,
        )
            .into_response();
    };
    let n = envelope.data.len();
    c.events.fetch_add(n as u64, Ordering::Relaxed);
    c.requests.fetch_add(1, Ordering::Relaxed);
    let mut out = String::with_capacity(80 + n * (PROCESSED.len() + 1));
    out.push_str(&format!(
        r#"{{"num_events_received":{n},"num_events_processed":{n},"events":["#
    ));
    for i in 0..n {
        if i > 0 {
            out.push(',');
        }
        out.push_str(PROCESSED);
    }
    out.push_str("]}");
    ([(header::CONTENT_TYPE, "application/json")], out).into_response()
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
