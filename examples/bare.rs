//! The yardstick for ingest benchmarks: a bare axum handler that reads the request body and
//! answers 204, on the same runtime settings as the gateway.
//! `cargo run --release --example bare -- 127.0.0.1:9998`

use axum::{body::Bytes, http::StatusCode, routing::any, Router};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9998".into());
    let app = Router::new().route(
        "/{*path}",
        any(|body: Bytes| async move {
            // Read, as the gateway reads it (the yardstick: "read the body").
            std::hint::black_box(body);
            StatusCode::NO_CONTENT
        }),
    );
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("bare handler on {addr}");
    axum::serve(listener, app).await
}
