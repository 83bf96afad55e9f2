//! `/data`: JSON beacons (`fetch`, `sendBeacon`, server calls), the equivalent of stape's
//! Data Client.
//!
//! `POST` takes a JSON object (one event), an array of objects, or `{"events": [...]}`
//! (other top-level keys of that wrapper are shared by its events: read through, never
//! copied into each); any `Content-Type`, since `sendBeacon` sends `text/plain`. `GET` takes
//! the event's keys in the query string (at most [`MAX_GET_KEYS`]). A top-level array is
//! counted while it is parsed; a wrapper's `events` after the parse (the body limit bounds
//! that parse), before any event is built.

use std::{borrow::Cow, net::SocketAddr, sync::Arc};

use axum::{
    extract::{ConnectInfo, RawQuery, Request, State},
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde_json::{json, Value};

use super::{body, with_cookies, AppState, Endpoint, IngestError, RequestInfo};
use crate::{
    event::{
        new_event_id,
        value::{parse_json, too_many},
        value_text, EventData, Obj, Shared, Val,
    },
    pipeline::Processed,
};

/// Most events one `/data` request may carry.
pub const MAX_EVENTS: usize = 100;
/// Most keys a `GET /data` query gives an event (like a gtag line; more are ignored).
pub const MAX_GET_KEYS: usize = crate::ingest::gtag_parse::MAX_PARAMS;

pub async fn post(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    // Headers and query borrowed from the request (axum's extractors would copy them).
    let (parts, body) = request.into_parts();
    let (headers, query) = (&parts.headers, parts.uri.query().unwrap_or_default());
    let mut info = RequestInfo::new(&state, ("POST", Endpoint::Data), peer, headers, query);
    let bytes = match body::read_for(&state.config.server, body, headers).await {
        Ok(b) => b,
        Err(e) => return state.reject(&info, e),
    };
    info.request_bytes += bytes.len();
    let parsed = match parse_body(&bytes) {
        Ok(v) => v,
        Err(e) => return state.reject(&info, e),
    };
    let (objects, shared, many) = parsed;
    let shared = shared.map(Shared::new);
    let events: Vec<EventData<'_>> = objects
        .into_iter()
        .map(|o| match &shared {
            Some(s) => EventData::with_shared(o, s),
            None => EventData::new(o),
        })
        .collect();
    respond(&state, &info, headers, events, many).await
}

pub async fn get(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let query = query.unwrap_or_default();
    let info = RequestInfo::new(&state, ("GET", Endpoint::Data), peer, &headers, &query);
    let pairs: Vec<(Cow<'_, str>, Cow<'_, str>)> =
        form_urlencoded::parse(query.as_bytes()).collect();
    if pairs.is_empty() {
        return state.reject(&info, IngestError::NoEvents(super::error::NO_EVENTS));
    }
    // As many keys as a gtag line (more are ignored), the last value of a repeated key
    // winning, in linear time; the ingest key is never event data.
    let mut seen: rustc_hash::FxHashMap<&str, usize> = Default::default();
    let mut obj = Obj::with_capacity(pairs.len().min(MAX_GET_KEYS));
    for (k, v) in &pairs {
        if k == "api_secret" {
            continue;
        }
        match seen.get(k.as_ref()) {
            Some(&i) => obj.set_at(i, Val::str(v.as_ref())),
            None if seen.len() < MAX_GET_KEYS => {
                seen.insert(k.as_ref(), seen.len());
                obj.push(k.as_ref(), Val::str(v.as_ref()));
            }
            None => {}
        }
    }
    respond(&state, &info, &headers, vec![EventData::new(obj)], false).await
}

async fn respond(
    state: &AppState,
    info: &RequestInfo<'_>,
    headers: &HeaderMap,
    mut events: Vec<EventData<'_>>,
    many: bool,
) -> Response {
    for e in &mut events {
        canonical_keys(e, info, headers);
    }
    let outcome = match state.run(info, &events).await {
        Ok(r) => r,
        Err(e) => return state.reject(info, e),
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

/// The body's events, the wrapper's shared keys, and whether the caller sent several (then
/// the answer is an array).
type Parsed<'b> = (Vec<Obj<'b>>, Option<Obj<'b>>, bool);

fn parse_body(bytes: &[u8]) -> Result<Parsed<'_>, IngestError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(IngestError::EmptyBody(super::error::EMPTY_DATA_BODY));
    }
    let value = parse_json(bytes, MAX_EVENTS).map_err(|e| match too_many(&e) {
        Some(count) => IngestError::TooManyEvents {
            count,
            limit: MAX_EVENTS,
        },
        None => IngestError::InvalidJson(super::json_error(&e)),
    })?;
    let (items, shared, many) = match value {
        Val::Arr(items) => (items, None, true),
        Val::Obj(mut obj) if matches!(obj.get("events"), Some(Val::Arr(_))) => {
            let Some(Val::Arr(items)) = obj.remove("events") else {
                return Err(IngestError::WrongShape("an object"));
            };
            if items.len() > MAX_EVENTS {
                return Err(IngestError::TooManyEvents {
                    count: items.len(),
                    limit: MAX_EVENTS,
                });
            }
            (items, Some(obj), true)
        }
        Val::Obj(obj) => (vec![Val::Obj(obj)], None, false),
        other => return Err(IngestError::WrongShape(kind(&other))),
    };
    if items.is_empty() {
        return Err(IngestError::NoEvents(super::error::NO_EVENTS));
    }
    let objects = items
        .into_iter()
        .map(|i| match i {
            Val::Obj(m) => Ok(m),
            _ => Err(IngestError::WrongShape(
                "an array element that is not an object",
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((objects, shared, many))
}

fn kind(v: &Val<'_>) -> &'static str {
    match v {
        Val::Null => "null",
        Val::Bool(_) => "a boolean",
        Val::Num(_) => "a number",
        Val::Str(_) => "a string",
        Val::Arr(_) => "an array",
        Val::Obj(_) => "an object",
    }
}

/// The value of the first of `keys` (aliases of one field, preferred first) with a
/// non-blank value: the event's own keys first, then the keys a wrapper shares with its
/// events. An event's own `url` beats the wrapper's `page_location`: own keys win, whatever
/// alias they use.
fn first_value<'e, 'a>(e: &'e EventData<'a>, keys: &[&str]) -> Option<&'e Val<'a>> {
    let non_blank = |v: &&Val<'a>| value_text(v).is_some();
    keys.iter()
        .filter_map(|k| e.get_own(k))
        .find(non_blank)
        .or_else(|| {
            let shared = e.shared()?;
            keys.iter().filter_map(|k| shared.get(k)).find(non_blank)
        })
}

/// [`first_value`] as text.
fn first_text<'e>(e: &'e EventData<'_>, keys: &[&str]) -> Option<Cow<'e, str>> {
    first_value(e, keys).and_then(value_text)
}

/// Fills the canonical event-data keys from their aliases (`docs/INGEST.md` §3). The object's
/// own keys are kept as they are.
fn canonical_keys(e: &mut EventData<'_>, info: &RequestInfo<'_>, headers: &HeaderMap) {
    let name = first_text(e, &["event_name", "eventName", "event", "name"])
        .map_or_else(|| "Data".to_owned(), Cow::into_owned);
    e.insert("event_name", Val::string(name));

    if first_text(e, &["event_id"]).is_none() && first_text(e, &["transaction_id"]).is_none() {
        e.insert("event_id", Val::string(new_event_id()));
    }
    // The Data Client's documented IP keys stay, but only a real address counts.
    let ip = match first_text(e, &["ip_override", "ip", "ipOverride"]) {
        Some(ip) if ip.parse::<std::net::IpAddr>().is_ok() => ip.into_owned(),
        Some(_) => {
            metrics::counter!("tagbridge_ingest_invalid_ip_total").increment(1);
            info.client_ip.clone()
        }
        None => info.client_ip.clone(),
    };
    e.insert("ip_override", Val::string(ip));

    let ua = first_text(e, &["user_agent", "userAgent"])
        .map(Cow::into_owned)
        .or_else(|| info.user_agent.map(str::to_owned));
    if let Some(ua) = ua {
        e.insert("user_agent", Val::string(ua));
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
        let value = match first_value(e, aliases) {
            // A numeric `user_id` keeps its type (it is hashed from its text either way);
            // its aliases become text, as any other.
            Some(v @ Val::Num(n))
                if canonical == "user_id"
                    && e.get("user_id").is_some_and(|u| std::ptr::eq(u, v)) =>
            {
                Val::Num(*n)
            }
            Some(v) => match value_text(v) {
                Some(text) => Val::string(text.into_owned()),
                None => continue,
            },
            None => continue,
        };
        e.insert(canonical, value);
    }
    if first_text(e, &["language"]).is_none() {
        let lang = headers
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().chars().take(2).collect::<String>().to_lowercase())
            .filter(|l| l.len() == 2 && l.chars().all(|c| c.is_ascii_alphabetic()));
        if let Some(l) = lang {
            e.insert("language", Val::string(l));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_shapes() {
        assert!(matches!(parse_body(b"  "), Err(IngestError::EmptyBody(_))));
        assert!(matches!(parse_body(b"{"), Err(IngestError::InvalidJson(_))));
        assert!(matches!(
            parse_body(b"\"x\""),
            Err(IngestError::WrongShape("a string"))
        ));
        assert!(matches!(parse_body(b"[]"), Err(IngestError::NoEvents(_))));
        assert!(matches!(
            parse_body(b"[1]"),
            Err(IngestError::WrongShape(_))
        ));
        let (one, _, many) = parse_body(br#"{"event":"x"}"#).unwrap();
        assert_eq!((one.len(), many), (1, false));
        let (two, shared, many) =
            parse_body(br#"{"user_id":"u","events":[{"event":"a"},{"event":"b","user_id":"v"}]}"#)
                .unwrap();
        assert_eq!((two.len(), many), (2, true));
        let shared = Shared::new(shared.unwrap());
        let a = EventData::with_shared(two[0].clone(), &shared);
        let b = EventData::with_shared(two[1].clone(), &shared);
        assert_eq!(a.text("user_id").as_deref(), Some("u"));
        assert_eq!(b.text("user_id").as_deref(), Some("v"));
        let big = format!("[{}]", vec!["{}"; 101].join(","));
        assert!(matches!(
            parse_body(big.as_bytes()),
            Err(IngestError::TooManyEvents {
                count: 101,
                limit: 100
            })
        ));
        let big = format!(r#"{{"events":[{}],"x":1}}"#, vec!["{}"; 5000].join(","));
        assert!(matches!(
            parse_body(big.as_bytes()),
            Err(IngestError::TooManyEvents {
                count: 5000,
                limit: 100
            })
        ));
    }
}
