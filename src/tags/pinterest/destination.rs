//! Pinterest as a dispatch destination (`docs/MAPPING.md` §8; the answer and error formats
//! of Pinterest's Conversions API reference): the request for a batch, what an answer means,
//! and Pinterest's limits.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::{json, value::RawValue, Value};

use super::settings::PinterestSettings;
use crate::{
    destination::{
        json_envelope, Answer, BatchVerdict, Destination, EventOutcome, Limits, OutboundRequest,
        RejectCause, RouteKey,
    },
    support::Secret,
};

/// Pinterest's per-request limit (`ConversionEvents.data`, `maxItems: 1000`).
pub const MAX_EVENTS_PER_REQUEST: usize = 1000;
/// Pinterest documents no byte limit; requests stay below this.
pub const MAX_REQUEST_BYTES: usize = 4 << 20;
/// Pinterest's documented rate limit per ad account.
pub const CALLS_PER_MINUTE: u32 = 5_000;

/// `POST {api_base}/v5/ad_accounts/{advertiser_id}/events[?test=true]` with a Bearer token.
#[derive(Debug)]
pub struct PinterestDestination {
    url: String,
    account: String,
    token: Secret,
}

impl PinterestDestination {
    pub fn new(settings: &PinterestSettings) -> Self {
        let account = format!(
            "{}/v5/ad_accounts/{}",
            settings.api_base.trim().trim_end_matches('/'),
            settings.advertiser_id.trim()
        );
        let mut url = format!("{account}/events");
        if settings.test_mode {
            url.push_str("?test=true");
        }
        Self {
            url,
            account,
            // Surrounding whitespace (a token read from a file with its line break) is not
            // part of the token; the config check refuses anything else a header cannot carry.
            token: Secret::new(settings.access_token.expose().trim()),
        }
    }
}

/// A success answer, borrowing from the body (an answer to 1,000 events allocates nothing
/// per event unless a message is escaped).
#[derive(Deserialize)]
struct SuccessBody<'a> {
    #[serde(default, borrow)]
    events: Vec<EventStatus<'a>>,
}

#[derive(Deserialize)]
struct EventStatus<'a> {
    #[serde(default, borrow)]
    status: Cow<'a, str>,
    #[serde(default, borrow)]
    error_message: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    warning_message: Option<Cow<'a, str>>,
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
    let text = text.unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    text.chars().take(300).collect()
}

impl Destination for PinterestDestination {
    fn kind(&self) -> &'static str {
        "pinterest"
    }

    fn display_name(&self) -> &'static str {
        "Pinterest"
    }

    fn route_key(&self) -> RouteKey {
        RouteKey {
            kind: "pinterest",
            endpoint: self.url.clone(),
            credential: self.token.clone(),
        }
    }

    fn endpoint(&self) -> &str {
        &self.url
    }

    fn limits(&self) -> Limits {
        Limits {
            max_events: MAX_EVENTS_PER_REQUEST,
            max_bytes: MAX_REQUEST_BYTES,
            calls_per_minute: CALLS_PER_MINUTE,
            // The ad account, whatever the token or the test switch.
            account: self.account.clone(),
        }
    }

    fn encode(&self, events: &[&[u8]]) -> OutboundRequest {
        OutboundRequest {
            url: self.url.clone(),
            headers: vec![
                ("authorization", format!("Bearer {}", self.token.expose())),
                ("content-type", "application/json".into()),
            ],
            body: json_envelope("data", events),
        }
    }

    fn classify(&self, answer: &Answer<'_>, n: usize) -> BatchVerdict {
        let status = answer.status;
        let body = answer.body;
        match status {
            200..=299 => {
                let parsed: Option<SuccessBody> = serde_json::from_slice(body).ok();
                let statuses = parsed.map(|b| b.events).unwrap_or_default();
                let outcomes = (0..n)
                    .map(|i| match statuses.get(i) {
                        Some(s) if s.status == "failed" => EventOutcome::Failed {
                            error: s
                                .error_message
                                .as_deref()
                                .filter(|m| !m.is_empty())
                                .unwrap_or("failed")
                                .to_owned(),
                        },
                        Some(s) => EventOutcome::Accepted {
                            warning: s
                                .warning_message
                                .as_deref()
                                .filter(|m| !m.is_empty())
                                .map(str::to_owned),
                        },
                        // A 2xx without per-event entries: Pinterest accepted the batch.
                        None => EventOutcome::Accepted { warning: None },
                    })
                    .collect();
                BatchVerdict::Delivered(outcomes)
            }
            429 => {
                let message = error_message(body);
                let reason = format!("HTTP 429: {message}");
                // Pinterest's own client treats a 429 about spam as final, not a rate limit.
                if message.to_ascii_lowercase().contains("spam") {
                    BatchVerdict::Reject {
                        reason,
                        cause: RejectCause::Final,
                    }
                } else {
                    BatchVerdict::Retry {
                        reason,
                        after: answer.retry_after,
                    }
                }
            }
            // Redirects are not followed (`dispatch::http_client`): `api_base` points
            // somewhere else than the API. The events wait and are retried, never dropped.
            300..=399 => BatchVerdict::Retry {
                reason: format!(
                    "HTTP {status}: a redirect, not followed (api_base must be the API's own URL)"
                ),
                after: answer.retry_after,
            },
            408 | 500..=599 => BatchVerdict::Retry {
                reason: format!("HTTP {status}: {}", error_message(body)),
                after: answer.retry_after,
            },
            // A bad token, or an ad account the token cannot use or that does not exist:
            // every batch of the route would fail the same way, so the route pauses.
            401 | 403 | 404 => BatchVerdict::Reject {
                reason: format!("HTTP {status}: {}", error_message(body)),
                cause: RejectCause::Credentials,
            },
            // 400, 413, 422 and anything else: something in the batch; isolate it.
            _ => BatchVerdict::Reject {
                reason: format!("HTTP {status}: {}", error_message(body)),
                cause: RejectCause::Payload,
            },
        }
    }

    fn event_answer(&self, body: &Value, i: usize) -> Option<Value> {
        body.get("events").and_then(|e| e.get(i)).cloned()
    }

    fn preview(&self, events: &[&RawValue]) -> Value {
        json!({
            "method": "POST",
            "url": self.url,
            "headers": {"authorization": "Bearer ***", "content-type": "application/json"},
            "body": {"data": events},
        })
    }

    fn mask_event(&self, event: &mut Value) {
        if let Some(ip) = event
            .get_mut("user_data")
            .and_then(|u| u.get_mut("client_ip_address"))
        {
            if let Some(s) = ip.as_str() {
                *ip = Value::String(crate::support::mask_ip(s));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dest() -> PinterestDestination {
        PinterestDestination {
            url: "http://x/v5/ad_accounts/1/events".into(),
            account: "http://x/v5/ad_accounts/1".into(),
            token: Secret::new("t"),
        }
    }

    fn answer(status: u16, body: &[u8]) -> Answer<'_> {
        Answer {
            status,
            retry_after: None,
            body,
        }
    }

    #[test]
    fn per_event_failures_map_by_index() {
        let body = br#"{"num_events_received":2,"num_events_processed":1,"events":[
            {"status":"processed","error_message":"","warning_message":""},
            {"status":"failed","error_message":"Invalid em","warning_message":""}]}"#;
        assert_eq!(
            dest().classify(&answer(200, body), 2),
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
            d.classify(&answer(503, b"{}"), 1),
            BatchVerdict::Retry { .. }
        ));
        assert!(matches!(
            d.classify(&answer(429, br#"{"code":8,"message":"rate limit"}"#), 1),
            BatchVerdict::Retry { .. }
        ));
        assert!(matches!(
            d.classify(
                &answer(429, br#"{"code":8,"message":"Blocked as spam"}"#),
                1
            ),
            BatchVerdict::Reject {
                cause: RejectCause::Final,
                ..
            }
        ));
        for s in [400, 413, 422] {
            assert!(
                matches!(
                    d.classify(&answer(s, b"{}"), 1),
                    BatchVerdict::Reject {
                        cause: RejectCause::Payload,
                        ..
                    }
                ),
                "{s}"
            );
        }
        assert_eq!(
            d.classify(
                &answer(401, br#"{"code":2,"message":"Authentication failed."}"#),
                1
            ),
            BatchVerdict::Reject {
                reason: "HTTP 401: Authentication failed. (code 2)".into(),
                cause: RejectCause::Credentials,
            }
        );
        for s in [403, 404] {
            assert!(
                matches!(
                    d.classify(&answer(s, b"{}"), 1),
                    BatchVerdict::Reject {
                        cause: RejectCause::Credentials,
                        ..
                    }
                ),
                "{s}"
            );
        }
    }

    #[test]
    fn test_mode_shares_the_accounts_limit() {
        let mut s: PinterestSettings = serde_json::from_value(serde_json::json!({
            "name": "p", "advertiser_id": "1"
        }))
        .unwrap();
        let live = PinterestDestination::new(&s);
        s.test_mode = true;
        let test = PinterestDestination::new(&s);
        assert_ne!(live.endpoint(), test.endpoint());
        assert_eq!(live.limits().account, test.limits().account);
        s.advertiser_id = "2".into();
        assert_ne!(
            PinterestDestination::new(&s).limits().account,
            live.limits().account
        );
    }
}
