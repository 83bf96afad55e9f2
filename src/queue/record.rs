//! On-disk record formats.
//!
//! A queued event is `[1u8 version][u16 tag length][tag][u64 received_ms][JSON body]`: the
//! header lets start-up rebuild the index (route, age, size) without parsing JSON.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

const VERSION: u8 = 1;

/// A mapped, hashed, ready-to-send event, as queued.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueuedEvent {
    /// The tag that produced it (its route is looked up by name at dispatch time, so no
    /// credential is ever stored).
    pub tag: String,
    /// Unix milliseconds when the gateway received the event.
    pub received_ms: u64,
    pub body: EventBody,
}

/// Everything else about the event.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventBody {
    /// The destination event, ready to send, as JSON text: it goes into the request body
    /// as it is, never parsed again.
    pub event: Box<RawValue>,
    pub event_id: String,
    pub event_name: String,
    pub trace_id: String,
    /// Whether the request/response records of this event are logged.
    pub log: bool,
}

/// Why an event was dead-lettered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadReason {
    /// Pinterest accepted the batch but marked this event `failed`.
    EventFailed,
    /// Pinterest refused the whole batch with a permanent status (400, 401, 403, 422, ...).
    Refused,
    /// Still failing after `dispatch.retry.give_up_after_s`.
    GaveUp,
    /// The tag is no longer in the config.
    UnknownTag,
    /// The stored record could not be read back.
    Corrupt,
}

impl DeadReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DeadReason::EventFailed => "event_failed",
            DeadReason::Refused => "refused",
            DeadReason::GaveUp => "gave_up",
            DeadReason::UnknownTag => "unknown_tag",
            DeadReason::Corrupt => "corrupt",
        }
    }
}

/// A dead letter: the event plus Pinterest's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeadLetter {
    pub reason: DeadReason,
    /// HTTP status of the answer, when there was one.
    pub status: Option<u16>,
    /// Pinterest's message (never a credential).
    pub message: String,
    pub dead_at_ms: u64,
    /// The stored event (raw bytes when it could not be decoded).
    pub record: Option<QueuedEvent>,
}

impl QueuedEvent {
    pub fn encode(&self) -> Vec<u8> {
        let tag = self.tag.as_bytes();
        let tag_len = u16::try_from(tag.len()).unwrap_or(u16::MAX);
        let json = serde_json::to_vec(&self.body).unwrap_or_default();
        let mut out = Vec::with_capacity(1 + 2 + tag.len() + 8 + json.len());
        out.push(VERSION);
        out.extend_from_slice(&tag_len.to_le_bytes());
        out.extend_from_slice(&tag[..usize::from(tag_len)]);
        out.extend_from_slice(&self.received_ms.to_le_bytes());
        out.extend_from_slice(&json);
        out
    }

    /// Reads the header only: (tag, received_ms).
    pub fn peek(bytes: &[u8]) -> Option<(&str, u64)> {
        let (&version, rest) = bytes.split_first()?;
        if version != VERSION || rest.len() < 2 {
            return None;
        }
        let tag_len = usize::from(u16::from_le_bytes([rest[0], rest[1]]));
        let rest = &rest[2..];
        let tag = std::str::from_utf8(rest.get(..tag_len)?).ok()?;
        let ms = rest.get(tag_len..tag_len + 8)?;
        let received_ms = u64::from_le_bytes(ms.try_into().ok()?);
        Some((tag, received_ms))
    }

    pub fn decode(bytes: &[u8]) -> Option<QueuedEvent> {
        let (tag, received_ms) = Self::peek(bytes)?;
        let json = bytes.get(1 + 2 + tag.len() + 8..)?;
        let body = serde_json::from_slice(json).ok()?;
        Some(QueuedEvent {
            tag: tag.to_owned(),
            received_ms,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_peek() {
        let e = QueuedEvent {
            tag: "pinterest".into(),
            received_ms: 1_700_000_000_123,
            body: EventBody {
                event: RawValue::from_string(r#"{"event_name":"checkout","event_id":"T1"}"#.into())
                    .unwrap(),
                event_id: "T1".into(),
                event_name: "checkout".into(),
                trace_id: "abc".into(),
                log: true,
            },
        };
        let bytes = e.encode();
        assert_eq!(
            QueuedEvent::peek(&bytes),
            Some(("pinterest", 1_700_000_000_123))
        );
        let back = QueuedEvent::decode(&bytes).unwrap();
        assert_eq!(
            (back.tag.as_str(), back.received_ms),
            ("pinterest", 1_700_000_000_123)
        );
        assert_eq!(
            back.body.event.get(),
            r#"{"event_name":"checkout","event_id":"T1"}"#
        );
        assert_eq!(back.body.event_id, "T1");
        assert!(QueuedEvent::decode(&bytes[..5]).is_none());
        assert!(QueuedEvent::decode(b"\x02garbage").is_none());
    }
}
