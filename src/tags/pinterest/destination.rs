//! Pinterest as a dispatch destination: the request for a batch, and what the answer means
//! (`pinterest-tag.md` §8, `pinterest-capi.md` §2).

use serde::Deserialize;
use serde_json::Value;

use super::settings::PinterestSettings;
use crate::{
    support::Secret,
    tags::{BatchVerdict, Destination, EventOutcome, OutboundRequest, RouteKey},
};

/// Pinterest's per-request limit.
pub const MAX_EVENTS_PER_REQUEST: usize = 1000;

/// `POST {api_base}/v5/ad_accounts/{advertiser_id}/events[?test=true]` with a Bearer token.
#[derive(Debug)]
pub struct PinterestDestination {
    url: String,
    token: Secret,
}

impl PinterestDestination {
    pub fn new(settings: &PinterestSettings) -> Self {
        let mut url = format!(
            "{}/v5/ad_accounts/{}/events",
            settings.api_base.trim().trim_end_matches('/'),
            settings.advertiser_id.trim()
        );
        if settings.test_mode {
            url.push_str("?test=true");
        }
        Self {
            url,
            token: settings.access_token.clone(),
        }
    }
}

#[derive(Deserialize)]
struct SuccessBody {
    #[serde(default)]
    events: Vec<EventStatus>,
}

#[derive(Deserialize)]
struct EventStatus {
    #[serde(default)]
    status: String,
    #[serde(default)]
    error_message: Option<String>,
    #[serde(default)]
    warning_message: Option<String>,
}

/// Pinterest's error body: `{code, message}` (plus `message_detail` on some 429s).
fn error_message(body: &[u8]) -> String {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let text = parsed.as_ref().and_then(|v| {
        let msg = v.get("message").and_then(Value::as_str);
        let detail = v.get("message_detail").and_then(Value::as_str);
        let code = v.get("code").and_then(Value::as_i64);
        match (msg, detail, code) {
            (Some(m), Some(d), _) => Some(format!("{m} ({d})")),
            (Some(m), None, Some(c)) => Some(format!("{m} (code {c})")),
            (Some(m), None, None) => Some(m.to_owned()),
            _ => None,
        }
    });
    text.unwrap_or_else(|| {
        let raw = String::from_utf8_lossy(body);
        raw.chars().take(300).collect()
    })
}

impl Destination for PinterestDestination {
    fn kind(&self) -> &'static str {
        "Pinterest"
    }

    fn route_key(&self) -> RouteKey {
        RouteKey {
            kind: "Pinterest",
            url: self.url.clone(),
            credential: self.token.clone(),
        }
    }

    fn url(&self) -> &str {
        &self.url
    }

    fn max_batch(&self) -> usize {
        MAX_EVENTS_PER_REQUEST
    }

    fn encode(&self, events: &[&serde_json::value::RawValue]) -> OutboundRequest {
        // `{"data":[e1,e2,...]}` from the stored JSON texts, without parsing them again.
        let len: usize = events.iter().map(|e| e.get().len() + 1).sum();
        let mut body = Vec::with_capacity(len + 11);
        body.extend_from_slice(b"{\"data\":[");
        for (i, e) in events.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(e.get().as_bytes());
        }
        body.extend_from_slice(b"]}");
        OutboundRequest {
            url: self.url.clone(),
            headers: vec![
                ("authorization", format!("Bearer {}", self.token.expose())),
                ("content-type", "application/json".into()),
            ],
            body,
        }
    }

    fn classify(&self, status: u16, body: &[u8], n: usize) -> BatchVerdict {
        match status {
            200..=299 => {
                let parsed: Option<SuccessBody> = serde_json::from_slice(body).ok();
                let statuses = parsed.map(|b| b.events).unwrap_or_default();
                let outcomes = (0..n)
                    .map(|i| match statuses.get(i) {
                        Some(s) if s.status == "failed" => EventOutcome::Failed {
                            error: s
                                .error_message
                                .clone()
                                .filter(|m| !m.is_empty())
                                .unwrap_or_else(|| "failed".into()),
                        },
                        Some(s) => EventOutcome::Accepted {
                            warning: s.warning_message.clone().filter(|m| !m.is_empty()),
                        },
                        // A 2xx without per-event entries: Pinterest accepted the batch.
                        None => EventOutcome::Accepted { warning: None },
                    })
                    .collect();
                BatchVerdict::Delivered(outcomes)
            }
            429 => {
                let message = error_message(body);
                // Pinterest's own client treats a 429 about spam as final, not a rate limit.
                if message.to_ascii_lowercase().contains("spam") {
                    BatchVerdict::Reject {
                        reason: format!("HTTP 429: {message}"),
                    }
                } else {
                    BatchVerdict::Retry {
                        reason: format!("HTTP 429: {message}"),
                    }
                }
            }
            408 | 500..=599 => BatchVerdict::Retry {
                reason: format!("HTTP {status}: {}", error_message(body)),
            },
            _ => BatchVerdict::Reject {
                reason: format!("HTTP {status}: {}", error_message(body)),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dest() -> PinterestDestination {
        PinterestDestination {
            url: "http://x/v5/ad_accounts/1/events".into(),
            token: Secret::new("t"),
        }
    }

    #[test]
    fn per_event_failures_map_by_index() {
        let body = br#"{"num_events_received":2,"num_events_processed":1,"events":[
            {"status":"processed","error_message":"","warning_message":""},
            {"status":"failed","error_message":"Invalid em","warning_message":""}]}"#;
        assert_eq!(
            dest().classify(200, body, 2),
            BatchVerdict::Delivered(vec![
                EventOutcome::Accepted { warning: None },
                EventOutcome::Failed {
                    error: "Invalid em".into()
                }
            ])
        );
    }

    #[test]
    fn status_table() {
        let d = dest();
        assert!(matches!(
            d.classify(503, b"{}", 1),
            BatchVerdict::Retry { .. }
        ));
        assert!(matches!(
            d.classify(429, br#"{"code":8,"message":"rate limit"}"#, 1),
            BatchVerdict::Retry { .. }
        ));
        assert!(matches!(
            d.classify(429, br#"{"code":8,"message":"Blocked as spam"}"#, 1),
            BatchVerdict::Reject { .. }
        ));
        for s in [400, 401, 403, 422] {
            assert!(
                matches!(d.classify(s, b"{}", 1), BatchVerdict::Reject { .. }),
                "{s}"
            );
        }
        assert_eq!(
            d.classify(401, br#"{"code":2,"message":"Authentication failed."}"#, 1),
            BatchVerdict::Reject {
                reason: "HTTP 401: Authentication failed. (code 2)".into()
            }
        );
    }
}
