//! Fuzzes the `/mp/collect` parser (`tagbridge::ingest::mp_parse`). Input: one flag byte
//! (bit 0: the request carried the ingest key, `authenticated`), then the JSON body.
//!
//! Invariants beyond "no panic":
//! - `parse` (owned) and `parse_borrowed` agree exactly;
//! - the result equals an independent model of the Measurement Protocol format built on
//!   `serde_json::Value` (`mp_parse` module docs, `docs/INGEST.md`): the same
//!   error with the same field path, or the same events key for key;
//! - accepted: 1 ≤ events ≤ `MAX_EVENTS` (25); every `event_name` is the event's non-blank
//!   `name`; without the key no `ip_override` / `user_agent` reaches an event and the
//!   request's `ip_override` is not taken;
//! - refused: the message never echoes input (a JSON error names line and column only).
//!
//! Run from `fuzz/`: `cargo +nightly fuzz run mp_parse corpus/mp_parse seeds/mp_parse`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};
use tagbridge::ingest::mp_parse::{self, MpError, MAX_EVENTS};

fn wrong(path: impl Into<String>, expected: &'static str) -> MpError {
    MpError::WrongShape {
        path: path.into(),
        expected,
    }
}

/// An optional object field: absent or null → None; an object → Some; else the error.
fn object_field<'v>(
    parent: &'v Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<&'v Map<String, Value>>, MpError> {
    match parent.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(_) => Err(wrong(path, "an object")),
    }
}

fn json_error(e: &serde_json::Error) -> String {
    let what = match e.classify() {
        serde_json::error::Category::Eof => "unexpected end of input",
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Data => "unexpected value",
        serde_json::error::Category::Io => "read error",
    };
    format!("{what} at line {} column {}", e.line(), e.column())
}

fn non_null<'v>(m: &'v Map<String, Value>, key: &str) -> Option<&'v Value> {
    m.get(key).filter(|v| !v.is_null())
}

/// The model: what the format says the body gives (events as JSON objects, ip_override).
fn model(
    body: &[u8],
    authenticated: bool,
) -> Result<(Vec<Map<String, Value>>, Option<String>), MpError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(MpError::EmptyBody);
    }
    let root = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => m,
        Ok(_) => return Err(wrong("body", "a JSON object")),
        Err(e) => return Err(MpError::InvalidJson(json_error(&e))),
    };
    let Some(Value::Array(events)) = root.get("events") else {
        return Err(wrong("events", "an array of event objects"));
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
    let user_properties =
        object_field(&root, "user_properties", "user_properties")?.and_then(|props| {
            let mut out = Map::new();
            for (name, p) in props {
                if let Some(v) = p.as_object().and_then(|p| non_null(p, "value")) {
                    out.insert(name.clone(), v.clone());
                }
            }
            (!out.is_empty()).then_some(out)
        });
    let user_data = object_field(&root, "user_data", "user_data")?.map(|ud| {
        let mut copy = ud.clone();
        let fill = |a: &mut Value| {
            if let Value::Object(a) = a {
                for (from, to) in [
                    ("sha256_first_name", "first_name"),
                    ("sha256_last_name", "last_name"),
                ] {
                    if let Some(v) = non_null(a, from).cloned() {
                        if !a.contains_key(to) {
                            a.insert(to.into(), v);
                        }
                    }
                }
            }
        };
        match copy.get_mut("address") {
            Some(Value::Array(list)) => list.iter_mut().for_each(fill),
            Some(a) => fill(a),
            None => {}
        }
        (
            copy,
            non_null(ud, "sha256_email_address").cloned(),
            non_null(ud, "sha256_phone_number").cloned(),
        )
    });
    let ad_storage = object_field(&root, "consent", "consent")?
        .and_then(|c| c.get("ad_user_data"))
        .and_then(Value::as_str)
        .and_then(|s| match s.trim().to_ascii_uppercase().as_str() {
            "GRANTED" => Some(true),
            "DENIED" => Some(false),
            _ => None,
        });

    let mut out = Vec::new();
    for (i, event) in events.iter().enumerate() {
        let Value::Object(event) = event else {
            return Err(wrong(format!("events[{i}]"), "an object"));
        };
        let name = match event.get("name") {
            Some(Value::String(n)) if !n.trim().is_empty() => n,
            _ => return Err(wrong(format!("events[{i}].name"), "a non-empty string")),
        };
        let mut data = object_field(event, "params", &format!("events[{i}].params"))?
            .cloned()
            .unwrap_or_default();
        if !authenticated {
            data.remove("ip_override");
            data.remove("user_agent");
        }
        data.insert("event_name".into(), Value::String(name.clone()));
        for key in ["client_id", "user_id"] {
            if let Some(v) = non_null(&root, key) {
                data.insert(key.into(), v.clone());
            }
        }
        if let Some(ts) =
            non_null(event, "timestamp_micros").or_else(|| non_null(&root, "timestamp_micros"))
        {
            data.insert("timestamp_micros".into(), ts.clone());
        }
        if let Some((ud, email, phone)) = &user_data {
            data.insert("user_data".into(), Value::Object(ud.clone()));
            if let Some(e) = email {
                data.insert("email".into(), e.clone());
            }
            if let Some(p) = phone {
                data.insert("phone".into(), p.clone());
            }
        }
        if let Some(granted) = ad_storage {
            match data.get_mut("consent_state") {
                Some(Value::Object(c)) => {
                    c.insert("ad_storage".into(), Value::Bool(granted));
                }
                _ => {
                    let mut c = Map::new();
                    c.insert("ad_storage".into(), Value::Bool(granted));
                    data.insert("consent_state".into(), Value::Object(c));
                }
            }
        }
        if let Some(props) = &user_properties {
            data.insert(
                "x-ga-mp2-user_properties".into(),
                Value::Object(props.clone()),
            );
        }
        out.push(data);
    }
    let ip = match (authenticated, root.get("ip_override")) {
        (true, Some(Value::String(ip))) if !ip.trim().is_empty() => Some(ip.trim().to_owned()),
        _ => None,
    };
    Ok((out, ip))
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, body)) = data.split_first() else {
        return;
    };
    let authenticated = flags & 1 == 1;
    let borrowed = mp_parse::parse_borrowed(body, authenticated);
    let owned = mp_parse::parse(body, authenticated);

    // The two entry points agree.
    match (&borrowed, &owned) {
        (Ok(b), Ok(o)) => {
            assert_eq!(b.events.len(), o.events.len());
            for (x, y) in b.events.iter().zip(&o.events) {
                assert_eq!(x.to_json(), Value::Object(y.clone()));
            }
            assert_eq!(b.ip_override.as_deref(), o.ip_override.as_deref());
        }
        (Err(a), Err(b)) => assert_eq!(a, b),
        _ => panic!("parse and parse_borrowed disagree: {borrowed:?} vs {owned:?}"),
    }

    match &owned {
        Ok(p) => {
            assert!(
                !p.events.is_empty() && p.events.len() <= MAX_EVENTS,
                "{} events accepted (limit {MAX_EVENTS})",
                p.events.len()
            );
            for e in &p.events {
                let name = e.get("event_name").and_then(Value::as_str);
                assert!(
                    name.is_some_and(|n| !n.trim().is_empty()),
                    "event_name {name:?}"
                );
                if !authenticated {
                    assert!(
                        !e.contains_key("ip_override"),
                        "ip_override without the key"
                    );
                    assert!(!e.contains_key("user_agent"), "user_agent without the key");
                }
            }
            if !authenticated {
                assert_eq!(p.ip_override, None);
            }
        }
        Err(MpError::InvalidJson(m)) => {
            assert!(
                tagbridge_fuzz::is_invalid_json_message(&format!("invalid JSON: {m}")),
                "JSON error message {m:?}"
            );
        }
        Err(MpError::TooManyEvents { count, limit }) => {
            assert!(*count > *limit && *limit == MAX_EVENTS);
        }
        Err(_) => {}
    }

    // The model.
    let expected = model(body, authenticated);
    match (&owned, &expected) {
        (Ok(p), Ok((events, ip))) => {
            assert_eq!(p.events.len(), events.len(), "event count");
            for (i, (got, want)) in p.events.iter().zip(events).enumerate() {
                assert_eq!(got, want, "event {i} differs from the model");
            }
            assert_eq!(p.ip_override.as_ref(), ip.as_ref(), "ip_override");
        }
        (Err(got), Err(want)) => assert_eq!(got, want, "a different error than the model's"),
        _ => panic!("parser and model disagree: parser {owned:?}, model {expected:?}"),
    }
});
