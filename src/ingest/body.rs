//! Reading a request body within the size limit and the read timeout.

use std::time::Duration;

use axum::{
    body::{Body, Bytes},
    http::{header, HeaderMap},
};
use http_body_util::{BodyExt, LengthLimitError, Limited};

use super::IngestError;
use crate::config::ServerConfig;

/// [`read`] with the server's `max_body_bytes` and `request_timeout_ms`.
pub async fn read_for(
    server: &ServerConfig,
    body: Body,
    headers: &HeaderMap,
) -> Result<Bytes, IngestError> {
    read(
        body,
        headers,
        server.max_body_bytes,
        Duration::from_millis(server.request_timeout_ms),
    )
    .await
}

/// Reads the whole body: 413 past `limit` bytes (checked on `Content-Length` first, then
/// while reading), 408 when it does not arrive within `timeout`.
pub async fn read(
    body: Body,
    headers: &HeaderMap,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, IngestError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(IngestError::BodyTooLarge { limit });
    }
    let collect = Limited::new(body, limit).collect();
    match tokio::time::timeout(timeout, collect).await {
        Err(_) => Err(IngestError::BodyTimeout {
            ms: timeout.as_millis() as u64,
        }),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
            Err(IngestError::BodyTooLarge { limit })
        }
        Ok(Err(_)) => Err(IngestError::BodyRead),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
    }
}
