//! The destination contract: everything the dispatcher, the request log, the CLI and the
//! debug page need to know about a destination, so that none of them names one.
//!
//! A destination (Pinterest's Conversions API today; Meta's or TikTok's tomorrow) says how
//! its events are batched ([`Limits`], [`RouteKey`]), how a batch becomes a request
//! ([`Destination::encode`]), what an answer means ([`Destination::classify`]), which part
//! of an answer concerns one event ([`Destination::event_answer`]), and how a request is
//! shown without its credential ([`Destination::preview`]). It is pure: no I/O, no clock.
//! The HTTP call itself, retries, rate limiting and the queue belong to `dispatch`.

use std::{fmt, time::Duration};

use serde_json::{value::RawValue, Value};

use crate::support::Secret;

/// The wire contract of one destination endpoint.
pub trait Destination: Send + Sync + fmt::Debug {
    /// The destination type, lowercase (`pinterest`): the `destination` metric label.
    fn kind(&self) -> &'static str;
    /// The name request/response log records carry in `Name` (`Pinterest`, as stape's).
    fn display_name(&self) -> &'static str;
    /// Batching identity: events with equal keys share requests. Holds the credential, so
    /// it is compared, never printed.
    fn route_key(&self) -> RouteKey;
    /// Where requests go, without credentials (logs, the debug page).
    fn endpoint(&self) -> &str;
    /// Batch caps, the call-rate limit and the account it is counted against.
    fn limits(&self) -> Limits;
    /// The request for a batch of mapped events (each one JSON text, spliced as it is).
    fn encode(&self, events: &[&[u8]]) -> OutboundRequest;
    /// What the answer to a batch of `n` events means.
    fn classify(&self, answer: &Answer<'_>, n: usize) -> BatchVerdict;
    /// The part of a successful answer's body about event `i` of the batch, for logs and the
    /// debug page (Pinterest: `events[i]`). `None` when the answer has no per-event part.
    fn event_answer(&self, _body: &Value, _i: usize) -> Option<Value> {
        None
    }
    /// The request for `events` as JSON, credentials masked: `{method, url, headers, body}`.
    fn preview(&self, events: &[&RawValue]) -> Value;
    /// Masks, in one mapped event shown in a log record or on the debug page, what identifies
    /// a person and is sent in clear (the client address: see [`crate::support::mask_ip`]).
    /// Hashed fields stay as they are. Default: nothing to mask.
    fn mask_event(&self, _event: &mut Value) {}
}

/// How a destination's traffic is limited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Most events one request may carry.
    pub max_events: usize,
    /// Most body bytes one request may carry.
    pub max_bytes: usize,
    /// Calls per minute allowed for one account (splits and retries included).
    pub calls_per_minute: u32,
    /// What the rate limit is counted against (Pinterest: the ad account, whatever the
    /// token or test switch). Routes with the same account share one limiter.
    pub account: String,
}

/// Identity of a destination endpoint for batching.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RouteKey {
    pub kind: &'static str,
    pub endpoint: String,
    pub credential: Secret,
}

/// An HTTP request built by a destination. Headers may hold credentials: never log them
/// (log [`Destination::preview`] instead).
pub struct OutboundRequest {
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

/// A destination's answer, as the dispatcher received it.
pub struct Answer<'a> {
    pub status: u16,
    /// `Retry-After`, already parsed (seconds or an HTTP date).
    pub retry_after: Option<Duration>,
    pub body: &'a [u8],
}

/// A destination's reading of its answer.
#[derive(Debug, Clone, PartialEq)]
pub enum BatchVerdict {
    /// Accepted; one outcome per event, in request order.
    Delivered(Vec<EventOutcome>),
    /// Transient: send the whole batch again later, no sooner than `after` when given.
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    /// Permanent: never resend unchanged.
    Reject { reason: String, cause: RejectCause },
}

/// Why a batch was refused, which decides what the dispatcher does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectCause {
    /// Something in the payload: split the batch until the refused events are isolated;
    /// only those are dead-lettered.
    Payload,
    /// The credential or account: dead-letter the batch and pause the route.
    Credentials,
    /// Refused for good as a whole (e.g. flagged as spam): dead-letter the batch.
    Final,
}

#[derive(Debug, Clone, PartialEq)]
pub enum EventOutcome {
    Accepted { warning: Option<String> },
    Failed { error: String },
}

/// `Retry-After` as a duration: delta seconds, or an HTTP date (then relative to now). An
/// unparsable value is ignored. Callers cap it (`dispatch.retry.max_ms`).
pub fn parse_retry_after(value: Option<&str>) -> Option<Duration> {
    let v = value?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// Splices `{"<key>":[e1,e2,...]}` from stored JSON texts, without parsing them again.
pub fn json_envelope(key: &str, events: &[&[u8]]) -> Vec<u8> {
    let len: usize = events.iter().map(|e| e.len() + 1).sum();
    let mut body = Vec::with_capacity(len + key.len() + 8);
    body.extend_from_slice(b"{\"");
    body.extend_from_slice(key.as_bytes());
    body.extend_from_slice(b"\":[");
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(e);
    }
    body.extend_from_slice(b"]}");
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after(Some(" 7 ")), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after(Some("18446744073709551615")),
            Some(Duration::from_secs(u64::MAX))
        );
        assert_eq!(
            parse_retry_after(Some("Wed, 21 Oct 2015 07:28:00 GMT")),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after(Some("soon")), None);
        assert_eq!(parse_retry_after(None), None);
    }

    #[test]
    fn envelope_splices() {
        assert_eq!(
            json_envelope("data", &[br#"{"a":1}"#, b"{}"]),
            br#"{"data":[{"a":1},{}]}"#
        );
        assert_eq!(json_envelope("data", &[]), br#"{"data":[]}"#);
    }
}
