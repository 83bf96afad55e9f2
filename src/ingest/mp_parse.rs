//! `/mp/collect` request parsing: a GA4 Measurement Protocol JSON body → GA4 event data
//! (`docs/INGEST.md` §2; the body is the format of Google's Measurement Protocol reference).
//!
//! Pure functions: no HTTP, no I/O. The handler adds `ip_override` (from [`MpParse`] when the
//! request was authenticated, else from the connection) and `user_agent`.
//!
//! Each event: its `params` are copied first; then the request-level keys are written over
//! them: `event_name`, `client_id`, `user_id`, `timestamp_micros` (the event's, else the
//! request's), `user_data`, `email` / `phone` (already-hashed `user_data.sha256_*`),
//! `consent_state.ad_storage`, `x-ga-mp2-user_properties`.
//! Errors name the offending field by its path and never echo input values.

use std::borrow::Cow;

use serde_json::{Map, Value};

use crate::event::{value::parse_json, Obj, Val};

/// Most events one Measurement Protocol request may carry.
pub const MAX_EVENTS: usize = 25;

/// Why a Measurement Protocol body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MpError {
    #[error("empty request body: send a Measurement Protocol JSON object")]
    EmptyBody,
    /// serde_json's position only (line and column), never the input.
    #[error("invalid JSON: {0}")]
    InvalidJson(String),
    /// `path` names the field (`events[2].name`); it is built from indexes and fixed names.
    #[error("`{path}` must be {expected}")]
    WrongShape {
        path: String,
        expected: &'static str,
    },
    #[error("no event in the request")]
    NoEvents,
    #[error("too many events in one request: {count} (limit {limit})")]
    TooManyEvents { count: usize, limit: usize },
}

/// The events of one request (owned, as JSON objects: tools and tests).
#[derive(Debug, Clone, PartialEq)]
pub struct MpParse {
    pub events: Vec<Map<String, Value>>,
    /// The body's `ip_override`, only when the request was `authenticated`.
    pub ip_override: Option<String>,
}

/// The events of one request, borrowing from its body.
#[derive(Debug, Clone, PartialEq)]
pub struct MpEvents<'b> {
    pub events: Vec<Obj<'b>>,
    /// The body's `ip_override`, only when the request was `authenticated`.
    pub ip_override: Option<Cow<'b, str>>,
}

fn wrong(path: impl Into<String>, expected: &'static str) -> MpError {
    MpError::WrongShape {
        path: path.into(),
        expected,
    }
}

/// An optional object field: absent or `null` → `None`; an object → `Some`; else an error.
fn object_field<'v, 'b>(
    parent: &'v Obj<'b>,
    key: &str,
    path: impl FnOnce() -> String,
) -> Result<Option<&'v Obj<'b>>, MpError> {
    match parent.get(key) {
        None | Some(Val::Null) => Ok(None),
        Some(Val::Obj(m)) => Ok(Some(m)),
        Some(_) => Err(wrong(path(), "an object")),
    }
}

/// Parses a Measurement Protocol body into owned JSON objects (tools and tests; the
/// handler uses [`parse_borrowed`]).
///
/// # Errors
/// As [`parse_borrowed`].
pub fn parse(body: &[u8], authenticated: bool) -> Result<MpParse, MpError> {
    let p = parse_borrowed(body, authenticated)?;
    Ok(MpParse {
        events: p
            .events
            .iter()
            .map(|o| match o.to_json() {
                Value::Object(m) => m,
                _ => Map::new(),
            })
            .collect(),
        ip_override: p.ip_override.map(Cow::into_owned),
    })
}

/// Parses a Measurement Protocol body. `authenticated`: the request carried the configured
/// ingest key, so the body's `ip_override` and event parameters `ip_override` and
/// `user_agent` are trusted (without it they are dropped).
///
/// # Errors
/// [`MpError`] when the body is empty, not JSON, not the MP shape, has no event, or more
/// than [`MAX_EVENTS`]. The counts are checked before any event is built.
pub fn parse_borrowed(body: &[u8], authenticated: bool) -> Result<MpEvents<'_>, MpError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(MpError::EmptyBody);
    }
    let value = parse_json(body, usize::MAX).map_err(|e| MpError::InvalidJson(json_error(&e)))?;
    let Val::Obj(root) = value else {
        return Err(wrong("body", "a JSON object"));
    };
    let events = match root.get("events") {
        Some(Val::Arr(events)) => events,
        _ => return Err(wrong("events", "an array of event objects")),
    };
    if events.len() > MAX_EVENTS {
        return Err(MpError::TooManyEvents {
            count: events.len(),
            limit: MAX_EVENTS,
        });
    }
    if events.is_empty() {
        return Err(MpError::NoEvents);
    }

    let user_properties = object_field(&root, "user_properties", || "user_properties".into())?
        .map(|props| {
            let mut out = Obj::new();
            for (name, p) in props.iter() {
                match p.get("value") {
                    None | Some(Val::Null) => {}
                    Some(v) => out.insert(name.to_owned(), v.clone()),
                }
            }
            out
        })
        .filter(|m| !m.is_empty());
    let user_data = object_field(&root, "user_data", || "user_data".into())?.map(user_data_copy);
    let ad_storage = object_field(&root, "consent", || "consent".into())?
        .and_then(|c| c.get("ad_user_data"))
        .and_then(Val::as_str)
        .and_then(|s| match s.trim().to_ascii_uppercase().as_str() {
            "GRANTED" => Some(true),
            "DENIED" => Some(false),
            _ => None,
        });
    let present = |key: &str| root.get(key).filter(|v| !v.is_null());

    let mut out = Vec::with_capacity(events.len());
    for (i, event) in events.iter().enumerate() {
        let Val::Obj(event) = event else {
            return Err(wrong(format!("events[{i}]"), "an object"));
        };
        let name = match event.get("name") {
            Some(Val::Str(n)) if !n.trim().is_empty() => n,
            _ => return Err(wrong(format!("events[{i}].name"), "a non-empty string")),
        };
        let mut data = object_field(event, "params", || format!("events[{i}].params"))?
            .cloned()
            .unwrap_or_default();
        if !authenticated {
            // A server without the key cannot set the visitor's address or browser.
            data.retain(|(k, _)| k != "ip_override" && k != "user_agent");
        }
        data.insert("event_name", Val::Str(name.clone()));
        for key in ["client_id", "user_id"] {
            if let Some(v) = present(key) {
                data.insert(key, v.clone());
            }
        }
        if let Some(ts) = event
            .get("timestamp_micros")
            .filter(|v| !v.is_null())
            .or_else(|| present("timestamp_micros"))
        {
            data.insert("timestamp_micros", ts.clone());
        }
        if let Some((user_data, email, phone)) = &user_data {
            data.insert("user_data", Val::Obj(user_data.clone()));
            if let Some(email) = email {
                data.insert("email", email.clone());
            }
            if let Some(phone) = phone {
                data.insert("phone", phone.clone());
            }
        }
        if let Some(granted) = ad_storage {
            match data.get_mut("consent_state") {
                Some(Val::Obj(c)) => c.insert("ad_storage", Val::Bool(granted)),
                _ => {
                    let mut c = Obj::new();
                    c.push("ad_storage", Val::Bool(granted));
                    data.insert("consent_state", Val::Obj(c));
                }
            }
        }
        if let Some(props) = &user_properties {
            data.insert("x-ga-mp2-user_properties", Val::Obj(props.clone()));
        }
        out.push(data);
    }

    let ip_override = authenticated
        .then(|| match root.get("ip_override") {
            Some(Val::Str(ip)) if !ip.trim().is_empty() => Some(match ip {
                Cow::Borrowed(b) => Cow::Borrowed(b.trim()),
                Cow::Owned(o) => Cow::Owned(o.trim().to_owned()),
            }),
            _ => None,
        })
        .flatten();
    Ok(MpEvents {
        events: out,
        ip_override,
    })
}

/// The copied `user_data`, and the `email` and `phone` values taken from it.
type UserData<'b> = (Obj<'b>, Option<Val<'b>>, Option<Val<'b>>);

/// The request's `user_data` as event data keeps it, plus the already-hashed email and
/// phone (`sha256_email_address` → `email`, `sha256_phone_number` → `phone`, as given: a
/// string or an array). Address entries (an object or an array of objects) get `first_name`
/// / `last_name` from `sha256_first_name` / `sha256_last_name` unless they have them.
fn user_data_copy<'b>(user_data: &Obj<'b>) -> UserData<'b> {
    let mut copy = user_data.clone();
    let hashed = |key: &str| user_data.get(key).filter(|v| !v.is_null()).cloned();
    let (email, phone) = (
        hashed("sha256_email_address"),
        hashed("sha256_phone_number"),
    );
    let fill_names = |address: &mut Val<'b>| {
        if let Val::Obj(a) = address {
            for (from, to) in [
                ("sha256_first_name", "first_name"),
                ("sha256_last_name", "last_name"),
            ] {
                if let Some(v) = a.get(from).filter(|v| !v.is_null()).cloned() {
                    if !a.contains_key(to) {
                        a.push(to, v);
                    }
                }
            }
        }
    };
    match copy.get_mut("address") {
        Some(Val::Arr(list)) => list.iter_mut().for_each(fill_names),
        Some(address) => fill_names(address),
        None => {}
    }
    (copy, email, phone)
}

/// serde_json's error without the input (it names line and column only).
fn json_error(e: &serde_json::Error) -> String {
    let what = match e.classify() {
        serde_json::error::Category::Eof => "unexpected end of input",
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Data => "unexpected value",
        serde_json::error::Category::Io => "read error",
    };
    format!("{what} at line {} column {}", e.line(), e.column())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const EMAIL: &str = "86e0b9e56c17cc4d12387e1949b85053fbe73bc3ce5a1188713a9d300cc6133d";
    const PHONE: &str = "d6736136ea896c1bfdc553e0e86e702c70d060d805696ca3e4e9e0961353860a";
    const FIRST: &str = "81f8f6dde88365f3928796ec7aa53f72820b06db8664f5fe76a7eb13e24546a2";
    const LAST: &str = "799ef92a11af918e3fb741df42934f3b568ed2d93ac1df74f1b8d41a27932a6f";
    const STREET: &str = "c56a092e33fef672c4d8658e31ad4b17e8ceac569d5a88ca481846966d364fe5";

    /// The reference's full web-stream body (§3.2), with real digests.
    fn full_body() -> Value {
        json!({
            "client_id": "123456.7654321",
            "user_id": "u-42",
            "timestamp_micros": 1_712_502_581_000_000_u64,
            "non_personalized_ads": false,
            "consent": {"ad_user_data": "GRANTED", "ad_personalization": "DENIED"},
            "user_properties": {
                "customer_tier": {"value": "PREMIUM", "timestamp_micros": 1_712_502_581_000_000_u64},
                "ltv": {"value": 1234.5}
            },
            "user_data": {
                "sha256_email_address": [EMAIL],
                "sha256_phone_number": [PHONE],
                "address": [{"sha256_first_name": FIRST, "sha256_last_name": LAST,
                             "sha256_street": STREET, "city": "new york", "region": "ny",
                             "postal_code": "10011", "country": "us"}]
            },
            "user_location": {"city": "Mountain View", "region_id": "US-CA", "country_id": "US"},
            "ip_override": "1.2.3.4",
            "device": {"category": "mobile", "language": "en", "screen_resolution": "1280x2856"},
            "validation_behavior": "RELAXED",
            "events": [
                {"name": "purchase", "timestamp_micros": 1_712_502_581_939_103_u64,
                 "params": {"session_id": "1712500000", "engagement_time_msec": 100,
                            "currency": "USD", "value": 30.03, "transaction_id": "T_1",
                            "items": [{"item_id": "SKU_1", "item_name": "Tee", "price": 10.01,
                                       "quantity": 3}]}},
                {"name": "sign_up"}
            ]
        })
    }

    fn run(body: &Value, authenticated: bool) -> Result<MpParse, MpError> {
        parse(body.to_string().as_bytes(), authenticated)
    }

    #[test]
    fn full_example() {
        let got = run(&full_body(), false).unwrap();
        let user_data = json!({
            "sha256_email_address": [EMAIL],
            "sha256_phone_number": [PHONE],
            "address": [{"sha256_first_name": FIRST, "sha256_last_name": LAST,
                         "sha256_street": STREET, "city": "new york", "region": "ny",
                         "postal_code": "10011", "country": "us",
                         "first_name": FIRST, "last_name": LAST}]
        });
        assert_eq!(
            got,
            MpParse {
                events: vec![
                    obj(json!({
                        "event_name": "purchase",
                        "session_id": "1712500000",
                        "engagement_time_msec": 100,
                        "currency": "USD",
                        "value": 30.03,
                        "transaction_id": "T_1",
                        "items": [{"item_id": "SKU_1", "item_name": "Tee", "price": 10.01,
                                   "quantity": 3}],
                        "client_id": "123456.7654321",
                        "user_id": "u-42",
                        "timestamp_micros": 1_712_502_581_939_103_u64,
                        "user_data": user_data,
                        "email": [EMAIL],
                        "phone": [PHONE],
                        "consent_state": {"ad_storage": true},
                        "x-ga-mp2-user_properties": {"customer_tier": "PREMIUM", "ltv": 1234.5}
                    })),
                    obj(json!({
                        "event_name": "sign_up",
                        "client_id": "123456.7654321",
                        "user_id": "u-42",
                        "timestamp_micros": 1_712_502_581_000_000_u64,
                        "user_data": user_data,
                        "email": [EMAIL],
                        "phone": [PHONE],
                        "consent_state": {"ad_storage": true},
                        "x-ga-mp2-user_properties": {"customer_tier": "PREMIUM", "ltv": 1234.5}
                    })),
                ],
                ip_override: None,
            }
        );
    }

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            other => panic!("not an object: {other}"),
        }
    }

    fn single(body: Value) -> Value {
        let mut got = run(&body, false).unwrap();
        assert_eq!(got.events.len(), 1);
        Value::Object(got.events.remove(0))
    }

    #[test]
    fn minimal_event_and_request_keys_win_over_params() {
        assert_eq!(
            single(json!({"client_id": "1.2", "events": [
                {"name": "tutorial_begin",
                 "params": {"event_name": "spoof", "client_id": "9.9", "debug_mode": true}}
            ]})),
            json!({"event_name": "tutorial_begin", "client_id": "1.2", "debug_mode": true})
        );
        // null params, null request keys: nothing copied.
        assert_eq!(
            single(json!({"client_id": null, "user_id": null, "consent": null,
                          "user_data": null, "user_properties": null,
                          "events": [{"name": "x", "params": null, "timestamp_micros": null}]})),
            json!({"event_name": "x"})
        );
    }

    #[test]
    fn consent_mapping() {
        let with = |consent: Value| {
            single(json!({"client_id": "1.2", "consent": consent,
                          "events": [{"name": "x", "params": {"consent_state": {"analytics_storage": false}}}]}))
        };
        assert_eq!(
            with(json!({"ad_user_data": "granted"})),
            json!({"event_name": "x", "client_id": "1.2",
                   "consent_state": {"analytics_storage": false, "ad_storage": true}})
        );
        assert_eq!(
            with(json!({"ad_user_data": " DENIED "})),
            json!({"event_name": "x", "client_id": "1.2",
                   "consent_state": {"analytics_storage": false, "ad_storage": false}})
        );
        // Absent or unknown: no ad_storage at all (not assumed either way).
        for consent in [
            json!({}),
            json!({"ad_user_data": "maybe"}),
            json!({"ad_user_data": true}),
            json!({"ad_personalization": "GRANTED"}),
        ] {
            assert_eq!(
                with(consent),
                json!({"event_name": "x", "client_id": "1.2",
                       "consent_state": {"analytics_storage": false}})
            );
        }
        assert_eq!(
            single(json!({"consent": {"ad_user_data": "GRANTED"},
                          "events": [{"name": "x", "params": {"consent_state": "odd"}}]})),
            json!({"event_name": "x", "consent_state": {"ad_storage": true}})
        );
    }

    #[test]
    fn ip_override_only_when_authenticated() {
        let body = full_body();
        assert_eq!(
            run(&body, true).unwrap().ip_override.as_deref(),
            Some("1.2.3.4")
        );
        assert_eq!(run(&body, false).unwrap().ip_override, None);
        let blank = json!({"ip_override": " ", "events": [{"name": "x"}]});
        assert_eq!(run(&blank, true).unwrap().ip_override, None);
        let number = json!({"ip_override": 1234, "events": [{"name": "x"}]});
        assert_eq!(run(&number, true).unwrap().ip_override, None);
        // Never copied into the events: the handler decides.
        assert!(run(&body, true)
            .unwrap()
            .events
            .iter()
            .all(|e| !e.contains_key("ip_override")));
    }

    #[test]
    fn event_count_limits() {
        let events =
            |n: usize| json!({"client_id": "1.2", "events": vec![json!({"name": "e"}); n]});
        assert_eq!(run(&events(25), false).unwrap().events.len(), 25);
        assert_eq!(
            run(&events(26), false),
            Err(MpError::TooManyEvents {
                count: 26,
                limit: 25
            })
        );
        assert_eq!(
            MpError::TooManyEvents {
                count: 26,
                limit: 25
            }
            .to_string(),
            "too many events in one request: 26 (limit 25)"
        );
        assert_eq!(run(&events(0), false), Err(MpError::NoEvents));
    }

    #[test]
    fn bad_json_names_the_position_only() {
        let err = parse(
            br#"{"client_id": "1.2", "user_data": {"email": "jane@example.com" x}}"#,
            false,
        )
        .unwrap_err();
        assert_eq!(
            err,
            MpError::InvalidJson("syntax error at line 1 column 64".into())
        );
        assert_eq!(
            err.to_string(),
            "invalid JSON: syntax error at line 1 column 64"
        );
        assert_eq!(
            parse(b"{\"events\": [\n", false),
            Err(MpError::InvalidJson(
                "unexpected end of input at line 2 column 0".into()
            ))
        );
        assert_eq!(parse(b" \r\n ", false), Err(MpError::EmptyBody));
        assert_eq!(parse(b"", false), Err(MpError::EmptyBody));
    }

    #[test]
    fn wrong_shapes_name_the_field() {
        let shape = |body: &[u8]| parse(body, false).unwrap_err().to_string();
        assert_eq!(shape(b"[]"), "`body` must be a JSON object");
        assert_eq!(
            shape(br#"{"client_id": "1.2"}"#),
            "`events` must be an array of event objects"
        );
        assert_eq!(
            shape(br#"{"events": {"name": "x"}}"#),
            "`events` must be an array of event objects"
        );
        assert_eq!(
            shape(br#"{"events": [{"name": "a"}, 7]}"#),
            "`events[1]` must be an object"
        );
        assert_eq!(
            shape(br#"{"events": [{"name": "a"}, {"params": {}}]}"#),
            "`events[1].name` must be a non-empty string"
        );
        assert_eq!(
            shape(br#"{"events": [{"name": 5}]}"#),
            "`events[0].name` must be a non-empty string"
        );
        assert_eq!(
            shape(br#"{"events": [{"name": "  "}]}"#),
            "`events[0].name` must be a non-empty string"
        );
        assert_eq!(
            shape(br#"{"events": [{"name": "a", "params": ["x"]}]}"#),
            "`events[0].params` must be an object"
        );
        assert_eq!(
            shape(br#"{"user_data": "jane@example.com", "events": [{"name": "a"}]}"#),
            "`user_data` must be an object"
        );
        assert_eq!(
            shape(br#"{"consent": "GRANTED", "events": [{"name": "a"}]}"#),
            "`consent` must be an object"
        );
        assert_eq!(
            shape(br#"{"user_properties": [], "events": [{"name": "a"}]}"#),
            "`user_properties` must be an object"
        );
        assert_eq!(
            parse(br#"{"events": [{"name": 5}]}"#, false),
            Err(MpError::WrongShape {
                path: "events[0].name".into(),
                expected: "a non-empty string"
            })
        );
    }

    #[test]
    fn sha256_fields_as_strings_and_single_address() {
        assert_eq!(
            single(json!({
                "client_id": "1.2",
                "timestamp_micros": 1,
                "user_data": {
                    "sha256_email_address": EMAIL,
                    "sha256_phone_number": PHONE,
                    "address": {"sha256_first_name": FIRST, "first_name": "kept",
                                "sha256_last_name": LAST, "city": "Paris", "country": "FR"}
                },
                "user_properties": {"no_value": {"timestamp_micros": 1}, "nul": {"value": null},
                                     "flag": {"value": true}},
                "events": [{"name": "generate_lead", "timestamp_micros": 2,
                            "params": {"email": "from-params", "value": 5}}]
            })),
            json!({
                "event_name": "generate_lead",
                "client_id": "1.2",
                "timestamp_micros": 2,
                "value": 5,
                "user_data": {
                    "sha256_email_address": EMAIL,
                    "sha256_phone_number": PHONE,
                    "address": {"sha256_first_name": FIRST, "first_name": "kept",
                                "sha256_last_name": LAST, "last_name": LAST,
                                "city": "Paris", "country": "FR"}
                },
                "email": EMAIL,
                "phone": PHONE,
                "x-ga-mp2-user_properties": {"flag": true}
            })
        );
        // user_data without hashed email/phone: no email/phone keys; params' own stay.
        assert_eq!(
            single(json!({"user_data": {"address": [{"city": "Lyon"}, "junk"]},
                          "events": [{"name": "x", "params": {"phone": "p"}}]})),
            json!({"event_name": "x", "phone": "p",
                   "user_data": {"address": [{"city": "Lyon"}, "junk"]}})
        );
    }
}
