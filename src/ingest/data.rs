//! `/data`: JSON beacons (`fetch`, `sendBeacon`, server calls), `ga4-ingest.md` §3.
//!
//! `POST` takes a JSON object (one event), an array of objects, or `{"events": [...]}`
//! (other top-level keys of that wrapper are shared by its events); any `Content-Type`,
//! since `sendBeacon` sends `text/plain`. `GET` takes the event's keys in the query string.

use std::{net::SocketAddr, sync::Arc};

use axum::{
    body::Body,
    extract::{ConnectInfo, RawQuery, State},
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde_json::{json, Map, Value};

use super::{body, request_context, with_cookies, AppState, IngestError};
use crate::event::{value_text, EventData};
use crate::pipeline::Processed;

/// Most events one `/data` request may carry.
pub const MAX_EVENTS: usize = 100;

pub async fn post(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let bytes = match body::read_for(&state.config.server, body, &headers).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let (objects, many) = match parse_body(&bytes) {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    respond(&state, peer, &headers, objects, many).await
}

pub async fn get(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let mut map = Map::new();
    for (k, v) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        map.insert(k.into_owned(), Value::String(v.into_owned()));
    }
    if map.is_empty() {
        return IngestError::NoEvents.into_response();
    }
    respond(&state, peer, &headers, vec![map], false).await
}

async fn respond(
    state: &AppState,
    peer: SocketAddr,
    headers: &HeaderMap,
    objects: Vec<Map<String, Value>>,
    many: bool,
) -> Response {
    let req = request_context(headers, None);
    let client_ip = state.client_ip.resolve(peer.ip(), headers).to_string();
    let events: Vec<EventData> = objects
        .into_iter()
        .map(|o| to_event_data(o, &client_ip, headers))
        .collect();
    let outcome = match state.pipeline.run(&events, &req).await {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let mut answers: Vec<Value> = outcome
        .events
        .iter()
        .map(|p| answer(p, outcome.waited))
        .collect();
    let body = if many {
        Value::Array(answers)
    } else {
        answers.pop().unwrap_or(Value::Null)
    };
    with_cookies(
        (StatusCode::OK, Json(body)).into_response(),
        &outcome.cookies,
    )
}

fn answer(p: &Processed, waited: bool) -> Value {
    let mut a = json!({ "client_id": p.client_id, "event_id": p.event_id });
    if waited {
        a["tags"] = json!(p.tags);
    }
    a
}

/// The body's events, and whether the caller sent several (then the answer is an array).
fn parse_body(bytes: &[u8]) -> Result<(Vec<Map<String, Value>>, bool), IngestError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(IngestError::EmptyBody);
    }
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| IngestError::InvalidJson(json_error(&e)))?;
    let (items, many) = match value {
        Value::Array(items) => (items, true),
        Value::Object(mut obj) if matches!(obj.get("events"), Some(Value::Array(_))) => {
            let Some(Value::Array(items)) = obj.remove("events") else {
                return Err(IngestError::WrongShape("an object"));
            };
            // The wrapper's other keys are shared by its events (an event's own key wins).
            let shared = obj;
            let items = items
                .into_iter()
                .map(|mut item| {
                    if let Value::Object(m) = &mut item {
                        for (k, v) in &shared {
                            m.entry(k.clone()).or_insert_with(|| v.clone());
                        }
                    }
                    item
                })
                .collect();
            (items, true)
        }
        Value::Object(obj) => (vec![Value::Object(obj)], false),
        other => return Err(IngestError::WrongShape(kind(&other))),
    };
    if items.len() > MAX_EVENTS {
        return Err(IngestError::TooManyEvents {
            count: items.len(),
            limit: MAX_EVENTS,
        });
    }
    if items.is_empty() {
        return Err(IngestError::NoEvents);
    }
    let objects = items
        .into_iter()
        .map(|i| match i {
            Value::Object(m) => Ok(m),
            other => Err(IngestError::WrongShape(match kind(&other) {
                "an object" => "an object",
                _ => "an array element that is not an object",
            })),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((objects, many))
}

/// serde_json's message without the input (it names line and column only).
fn json_error(e: &serde_json::Error) -> String {
    let what = match e.classify() {
        serde_json::error::Category::Eof => "unexpected end of input",
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Data => "unexpected value",
        serde_json::error::Category::Io => "read error",
    };
    format!("{what} at line {} column {}", e.line(), e.column())
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// First key of `keys` with a non-blank value.
fn first_text(map: &Map<String, Value>, keys: &[&str]) -> Option<String> {
    keys.iter().find_map(|k| map.get(*k).and_then(value_text))
}

/// Fills the canonical event-data keys from their aliases (§3). The object's own keys are
/// kept as they are.
fn to_event_data(mut map: Map<String, Value>, client_ip: &str, headers: &HeaderMap) -> EventData {
    let name = first_text(&map, &["event_name", "eventName", "event", "name"])
        .unwrap_or_else(|| "Data".to_owned());
    map.insert("event_name".into(), Value::String(name));

    if first_text(&map, &["event_id"]).is_none() && first_text(&map, &["transaction_id"]).is_none()
    {
        map.insert(
            "event_id".into(),
            Value::String(uuid::Uuid::new_v4().to_string()),
        );
    }
    let ip = first_text(&map, &["ip_override", "ip", "ipOverride"])
        .unwrap_or_else(|| client_ip.to_owned());
    map.insert("ip_override".into(), Value::String(ip));

    let ua = first_text(&map, &["user_agent", "userAgent"]).or_else(|| {
        headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    });
    if let Some(ua) = ua {
        map.insert("user_agent".into(), Value::String(ua));
    }
    for (canonical, aliases) in [
        (
            "page_location",
            &["page_location", "pageLocation", "url", "href"][..],
        ),
        (
            "page_referrer",
            &["page_referrer", "pageReferrer", "referrer"][..],
        ),
        ("user_id", &["user_id", "userId"][..]),
    ] {
        if let Some(v) = first_text(&map, aliases) {
            // A numeric user_id keeps its type (it is hashed from its text either way).
            if !(canonical == "user_id" && map.get("user_id").is_some_and(|v| v.is_number())) {
                map.insert(canonical.into(), Value::String(v));
            }
        }
    }
    if first_text(&map, &["language"]).is_none() {
        let lang = headers
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().chars().take(2).collect::<String>().to_lowercase())
            .filter(|l| l.len() == 2 && l.chars().all(|c| c.is_ascii_alphabetic()));
        if let Some(l) = lang {
            map.insert("language".into(), Value::String(l));
        }
    }
    EventData::new(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_shapes() {
        assert!(matches!(parse_body(b"  "), Err(IngestError::EmptyBody)));
        assert!(matches!(parse_body(b"{"), Err(IngestError::InvalidJson(_))));
        assert!(matches!(
            parse_body(b"\"x\""),
            Err(IngestError::WrongShape("a string"))
        ));
        assert!(matches!(parse_body(b"[]"), Err(IngestError::NoEvents)));
        assert!(matches!(
            parse_body(b"[1]"),
            Err(IngestError::WrongShape(_))
        ));
        let (one, many) = parse_body(br#"{"event":"x"}"#).unwrap();
        assert_eq!((one.len(), many), (1, false));
        let (two, many) =
            parse_body(br#"{"user_id":"u","events":[{"event":"a"},{"event":"b","user_id":"v"}]}"#)
                .unwrap();
        assert_eq!((two.len(), many), (2, true));
        assert_eq!(two[0]["user_id"], "u");
        assert_eq!(two[1]["user_id"], "v");
        let big = format!("[{}]", vec!["{}"; 101].join(","));
        assert!(matches!(
            parse_body(big.as_bytes()),
            Err(IngestError::TooManyEvents {
                count: 101,
                limit: 100
            })
        ));
    }

    #[test]
    fn aliases_fill_canonical_keys() {
        let mut h = HeaderMap::new();
        h.insert(header::USER_AGENT, "UA/1".parse().unwrap());
        h.insert(header::ACCEPT_LANGUAGE, "de-DE,de;q=0.9".parse().unwrap());
        let obj = json!({"eventName": "purchase", "pageLocation": "https://x/", "userId": "u1",
                         "referrer": "https://r/", "transaction_id": "T1"});
        let Value::Object(m) = obj else {
            unreachable!()
        };
        let e = to_event_data(m, "198.51.100.1", &h);
        assert_eq!(e.text("event_name").as_deref(), Some("purchase"));
        assert_eq!(e.text("page_location").as_deref(), Some("https://x/"));
        assert_eq!(e.text("page_referrer").as_deref(), Some("https://r/"));
        assert_eq!(e.text("user_id").as_deref(), Some("u1"));
        assert_eq!(e.text("ip_override").as_deref(), Some("198.51.100.1"));
        assert_eq!(e.text("user_agent").as_deref(), Some("UA/1"));
        assert_eq!(e.text("language").as_deref(), Some("de"));
        // transaction_id present: no generated event_id.
        assert_eq!(e.get("event_id"), None);
        let e = to_event_data(Map::new(), "::1", &HeaderMap::new());
        assert_eq!(e.text("event_name").as_deref(), Some("Data"));
        assert!(e.text("event_id").is_some());
    }
}
