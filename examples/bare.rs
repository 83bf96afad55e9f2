//! The yardstick for ingest benchmarks: a bare axum handler that answers 204, on the same
//! runtime settings as the gateway. `cargo run --release --example bare -- 127.0.0.1:9998`

use axum::{http::StatusCode, routing::any, Router};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9998".into());
    let app = Router::new().route("/{*path}", any(|| async { StatusCode::NO_CONTENT }));
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("bare handler on {addr}");
    axum::serve(listener, app).await
}
