//! Ingest errors and the status each one gets. One exhaustive `match`: a new variant must
//! choose its status. Messages name the problem and never echo request data.

use axum::{
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("request body larger than {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("request body not received within {ms} ms")]
    BodyTimeout { ms: u64 },
    #[error("could not read the request body")]
    BodyRead,
    #[error(
        "empty request body: send a JSON object, an array of objects, or {{\"events\": [...]}}"
    )]
    EmptyBody,
    #[error("invalid JSON: {0}")]
    InvalidJson(String),
    #[error("expected a JSON object, an array of objects, or {{\"events\": [...]}}; got {0}")]
    WrongShape(&'static str),
    #[error("too many events in one request: {count} (limit {limit})")]
    TooManyEvents { count: usize, limit: usize },
    #[error("no event in the request")]
    NoEvents,
    #[error("the event queue is full; retry later")]
    QueueFull,
    #[error("the event queue's volume is low on free space; retry later")]
    QueueLowDisk,
    #[error("the event queue cannot store events right now; retry later")]
    Storage,
}

impl IngestError {
    pub fn status(&self) -> StatusCode {
        match self {
            IngestError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            IngestError::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            IngestError::BodyRead
            | IngestError::EmptyBody
            | IngestError::InvalidJson(_)
            | IngestError::WrongShape(_)
            | IngestError::TooManyEvents { .. }
            | IngestError::NoEvents => StatusCode::BAD_REQUEST,
            IngestError::QueueFull | IngestError::QueueLowDisk | IngestError::Storage => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }

    /// A short label for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            IngestError::BodyTooLarge { .. } => "body_too_large",
            IngestError::BodyTimeout { .. } => "body_timeout",
            IngestError::BodyRead => "body_read",
            IngestError::EmptyBody => "empty_body",
            IngestError::InvalidJson(_) => "invalid_json",
            IngestError::WrongShape(_) => "wrong_shape",
            IngestError::TooManyEvents { .. } => "too_many_events",
            IngestError::NoEvents => "no_events",
            IngestError::QueueFull => "queue_full",
            IngestError::QueueLowDisk => "queue_low_disk",
            IngestError::Storage => "storage",
        }
    }
}

impl IntoResponse for IngestError {
    fn into_response(self) -> Response {
        let status = self.status();
        tracing::info!(status = status.as_u16(), reason = self.reason(), error = %self, "Request rejected.");
        metrics::counter!("tagbridge_ingest_rejected_total", "reason" => self.reason())
            .increment(1);
        let mut response = (
            status,
            Json(serde_json::json!({ "error": self.to_string() })),
        )
            .into_response();
        // Answered before the body was read to its end: the connection cannot be reused, and
        // saying so keeps clients from sending their next request into a closing socket.
        if matches!(
            self,
            IngestError::BodyTooLarge { .. }
                | IngestError::BodyTimeout { .. }
                | IngestError::BodyRead
        ) {
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        response
    }
}
