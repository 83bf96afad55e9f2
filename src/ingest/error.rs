//! Ingest errors and the status each one gets. One exhaustive `match`: a new variant must
//! choose its status. Messages name the problem and never echo request data. Every refused
//! request is counted (`tagbridge_ingest_rejected_total{reason}`) and logged here, once.

use axum::{
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};

use super::{gtag_parse::GtagError, mp_parse::MpError};

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("request body larger than {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("request body not received within {ms} ms")]
    BodyTimeout { ms: u64 },
    #[error("could not read the request body")]
    BodyRead,
    /// The message says what the endpoint expects.
    #[error("{0}")]
    EmptyBody(&'static str),
    #[error("invalid JSON: {0}")]
    InvalidJson(String),
    #[error("expected a JSON object, an array of objects, or {{\"events\": [...]}}; got {0}")]
    WrongShape(&'static str),
    /// A Measurement Protocol body of the wrong shape (the message names the field).
    #[error("{0}")]
    WrongMpShape(String),
    #[error("too many events in one request: {count} (limit {limit})")]
    TooManyEvents { count: usize, limit: usize },
    #[error("{0}")]
    TooManyParameters(String),
    /// The message may add why (a gtag line without `en`).
    #[error("{0}")]
    NoEvents(&'static str),
    #[error("the request's events would take {bytes} bytes in the queue, more than its own size allows ({budget})")]
    Expands { bytes: usize, budget: usize },
    #[error("origin not allowed")]
    OriginNotAllowed,
    #[error("no such endpoint")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("too many requests; retry after {retry_after_s} s")]
    RateLimited { retry_after_s: u64 },
    #[error("the event queue is full; retry later")]
    QueueFull,
    #[error("the event queue's volume is low on free space; retry later")]
    QueueLowDisk,
    #[error("the event queue cannot store events right now; retry later")]
    Storage,
}

/// The plain "no event" message.
pub const NO_EVENTS: &str = "no event in the request";
/// `/data`'s empty body message.
pub const EMPTY_DATA_BODY: &str =
    "empty request body: send a JSON object, an array of objects, or {\"events\": [...]}";

impl From<GtagError> for IngestError {
    fn from(e: GtagError) -> Self {
        match e {
            GtagError::NoEvents => IngestError::NoEvents(
                "no event in the request (a line without `en` is not an event)",
            ),
            GtagError::TooManyEvents { count, limit } => {
                IngestError::TooManyEvents { count, limit }
            }
            e @ GtagError::TooManyShared { .. } => IngestError::TooManyParameters(e.to_string()),
        }
    }
}

impl From<MpError> for IngestError {
    fn from(e: MpError) -> Self {
        match e {
            MpError::EmptyBody => IngestError::EmptyBody(
                "empty request body: send a Measurement Protocol JSON object",
            ),
            MpError::InvalidJson(m) => IngestError::InvalidJson(m),
            e @ MpError::WrongShape { .. } => IngestError::WrongMpShape(e.to_string()),
            MpError::NoEvents => IngestError::NoEvents(NO_EVENTS),
            MpError::TooManyEvents { count, limit } => IngestError::TooManyEvents { count, limit },
        }
    }
}

impl IngestError {
    pub fn status(&self) -> StatusCode {
        match self {
            IngestError::BodyTooLarge { .. } | IngestError::Expands { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            IngestError::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            IngestError::BodyRead
            | IngestError::EmptyBody(_)
            | IngestError::InvalidJson(_)
            | IngestError::WrongShape(_)
            | IngestError::WrongMpShape(_)
            | IngestError::TooManyEvents { .. }
            | IngestError::TooManyParameters(_)
            | IngestError::NoEvents(_) => StatusCode::BAD_REQUEST,
            IngestError::OriginNotAllowed => StatusCode::FORBIDDEN,
            IngestError::NotFound => StatusCode::NOT_FOUND,
            IngestError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            IngestError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
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
            IngestError::EmptyBody(_) => "empty_body",
            IngestError::InvalidJson(_) => "invalid_json",
            IngestError::WrongShape(_) | IngestError::WrongMpShape(_) => "wrong_shape",
            IngestError::TooManyEvents { .. } => "too_many_events",
            IngestError::TooManyParameters(_) => "too_many_parameters",
            IngestError::NoEvents(_) => "no_events",
            IngestError::Expands { .. } => "expands",
            IngestError::OriginNotAllowed => "origin_not_allowed",
            IngestError::NotFound => "not_found",
            IngestError::MethodNotAllowed => "method_not_allowed",
            IngestError::RateLimited { .. } => "rate_limited",
            IngestError::QueueFull => "queue_full",
            IngestError::QueueLowDisk => "queue_low_disk",
            IngestError::Storage => "storage",
        }
    }
}

impl IntoResponse for IngestError {
    fn into_response(self) -> Response {
        let status = self.status();
        tracing::debug!(status = status.as_u16(), reason = self.reason(), error = %self, "Request rejected.");
        metrics::counter!("tagbridge_ingest_rejected_total", "reason" => self.reason())
            .increment(1);
        let mut response = (
            status,
            Json(serde_json::json!({ "error": self.to_string() })),
        )
            .into_response();
        let h = response.headers_mut();
        // Answered before the body was read to its end: the connection cannot be reused, and
        // saying so keeps clients from sending their next request into a closing socket.
        if matches!(
            self,
            IngestError::BodyTooLarge { .. }
                | IngestError::BodyTimeout { .. }
                | IngestError::BodyRead
        ) {
            h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        match self {
            IngestError::RateLimited { retry_after_s } => {
                if let Ok(v) = HeaderValue::from_str(&retry_after_s.max(1).to_string()) {
                    h.insert(header::RETRY_AFTER, v);
                }
            }
            _ if status == StatusCode::SERVICE_UNAVAILABLE => {
                h.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            _ => {}
        }
        response
    }
}
