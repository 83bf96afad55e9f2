//! Helpers shared by the fuzz targets: independent models of the request formats (built on
//! `serde_json::Value`, so a target can compare the crate's answer with what the format
//! says), a mirror of the private `/data` parsing steps, and the invariant checks
//! (e-mail leaks, JSON walking).
//!
//! Only the crate's public API is used. Where the real code is private, the mirror says so
//! and names the item it copies.

use std::borrow::Cow;

use serde_json::{Map, Value};
use tagbridge::{
    event::{
        value::{parse_json, too_many},
        value_text, EventData, Obj, Val,
    },
    ingest::{
        error::{EMPTY_DATA_BODY, NO_EVENTS},
        IngestError,
    },
};

// ---------------------------------------------------------------------------------------
// JSON walking
// ---------------------------------------------------------------------------------------

/// Every string value of `v` (not keys), with its path (`user_data.em[0]`).
pub fn strings<'v>(v: &'v Value, path: &mut String, out: &mut Vec<(String, &'v str)>) {
    match v {
        Value::String(s) => out.push((path.clone(), s)),
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                strings(x, path, out);
                path.truncate(len);
            }
        }
        Value::Object(m) => {
            for (k, x) in m {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
                strings(x, path, out);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

/// All string values of `v`.
pub fn all_strings(v: &Value) -> Vec<(String, &str)> {
    let mut out = Vec::new();
    strings(v, &mut String::new(), &mut out);
    out
}

// ---------------------------------------------------------------------------------------
// E-mail addresses
// ---------------------------------------------------------------------------------------

fn local_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-')
}

fn domain_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-')
}

/// The valid-looking e-mail addresses in `s`: `local@domain.tld` with an ASCII local part
/// (`[A-Za-z0-9._%+-]+`), a domain of letters, digits, dots and dashes with a name before
/// its last dot and an alphabetic TLD of two letters or more. Conservative on purpose (a
/// superset would flag text no one would call an address).
pub fn emails_in(s: &str) -> Vec<String> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    for (i, _) in s.match_indices('@') {
        let mut start = i;
        while start > 0 && local_char(b[start - 1]) {
            start -= 1;
        }
        if start == i {
            continue;
        }
        let mut end = i + 1;
        while end < b.len() && domain_char(b[end]) {
            end += 1;
        }
        let domain = s[i + 1..end].trim_end_matches(['.', '-']);
        let ok = domain.rsplit_once('.').is_some_and(|(name, tld)| {
            !name.is_empty()
                && !name.starts_with('.')
                && tld.len() >= 2
                && tld.bytes().all(|c| c.is_ascii_alphabetic())
        });
        if ok {
            out.push(s[start..i + 1 + domain.len()].to_owned());
        }
    }
    out
}

/// `s` with `%XX` escapes decoded once (invalid ones kept; invalid UTF-8 replaced).
pub fn percent_decode_once(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `s` lowercased, raw and percent-decoded once: the forms a leak is looked for in.
pub fn leak_forms(s: &str) -> [String; 2] {
    [
        s.to_ascii_lowercase(),
        percent_decode_once(s).to_ascii_lowercase(),
    ]
}

/// Top-level event-data keys whose values are personal data the gateway promises never to
/// send raw: every `user_data` source of the Pinterest tag (`names::USER_SOURCES`; sent only
/// as SHA-256), and the URL keys and their `/data` aliases (e-mail addresses in URLs are
/// redacted before mapping, `ingest::privacy`).
pub fn sensitive_keys() -> Vec<&'static str> {
    let mut keys: Vec<&'static str> = vec![
        "page_location",
        "page_referrer",
        "event_source_url",
        "pageLocation",
        "url",
        "href",
        "pageReferrer",
        "referrer",
        "user_data",
    ];
    for (_, paths) in tagbridge::tags::pinterest::names::USER_SOURCES {
        for p in *paths {
            let head = p.split('.').next().unwrap_or(p);
            let head = if head.starts_with('@') {
                "user_data"
            } else {
                head
            };
            if !keys.contains(&head) {
                keys.push(head);
            }
        }
    }
    keys
}

/// The event-level objects of a `/data` body (the body itself, the elements of a top-level
/// array, or a wrapper's `events` plus the wrapper's shared keys), each with whether it is
/// the wrapper (whose `events` key holds the events themselves).
fn event_objects(body: &Value) -> Vec<(&Map<String, Value>, bool)> {
    match body {
        Value::Array(a) => a
            .iter()
            .filter_map(Value::as_object)
            .map(|m| (m, false))
            .collect(),
        Value::Object(m) => match m.get("events") {
            Some(Value::Array(a)) => {
                let mut v: Vec<_> = a
                    .iter()
                    .filter_map(Value::as_object)
                    .map(|m| (m, false))
                    .collect();
                v.push((m, true));
                v
            }
            _ => vec![(m, false)],
        },
        _ => Vec::new(),
    }
}

/// E-mail addresses (lowercase) that the request carries only in personal-data positions
/// (see [`sensitive_keys`]), raw or percent-encoded: none of them may reach a destination
/// raw. An address that also appears in any other input string (an `item_name`, a
/// `transaction_id`, ...) is left out: those fields are documented free-text passthroughs.
pub fn sensitive_emails(body: &Value) -> Vec<String> {
    let keys = sensitive_keys();
    let mut sensitive: Vec<&str> = Vec::new();
    let mut other: Vec<&str> = Vec::new();
    for (obj, wrapper) in event_objects(body) {
        for (k, v) in obj {
            if wrapper && k == "events" {
                continue;
            }
            let target = if keys.contains(&k.as_str()) {
                &mut sensitive
            } else {
                &mut other
            };
            for (_, s) in all_strings(v) {
                target.push(s);
            }
        }
    }
    let other: Vec<String> = other.iter().flat_map(|s| leak_forms(s)).collect();
    let mut emails: Vec<String> = sensitive
        .iter()
        .flat_map(|s| leak_forms(s))
        .flat_map(|s| emails_in(&s))
        .collect();
    emails.sort();
    emails.dedup();
    emails.retain(|e| !other.iter().any(|o| o.contains(e.as_str())));
    emails
}

/// Panics when one of `emails` appears in a string of `output` (raw or percent-decoded,
/// case-insensitively).
pub fn assert_no_email_leak(output: &Value, emails: &[String], what: &str) {
    if emails.is_empty() {
        return;
    }
    for (path, s) in all_strings(output) {
        for form in leak_forms(s) {
            for e in emails {
                assert!(
                    !form.contains(e.as_str()),
                    "{what}: raw e-mail address {e:?} from a personal-data field of the request \
                     reached the output at `{path}` = {s:?}"
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// `/data` bodies
// ---------------------------------------------------------------------------------------

/// Most events one `/data` request may carry. `tagbridge::ingest::data::MAX_EVENTS` is
/// `pub` but its module is private, so the value is repeated here (README: "At most 100
/// events").
pub const DATA_MAX_EVENTS: usize = 100;

/// What a `/data` POST body must give, by the format alone (`README.md`, "HTTP endpoints";
/// `src/ingest/data.rs` module docs).
#[derive(Debug)]
pub enum DataModel {
    /// Accepted: the events, the wrapper's shared keys, whether the answer is an array.
    Accept {
        events: Vec<Map<String, Value>>,
        shared: Option<Map<String, Value>>,
        many: bool,
    },
    /// Refused with exactly this error.
    Refuse(IngestError),
    /// Not JSON: `invalid JSON: ...`, or (a top-level array of more than the limit whose
    /// tail is not valid: the tail is only counted, not validated) too many events.
    Invalid { array_len: Option<usize> },
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

fn objects(items: Vec<Value>) -> Result<Vec<Map<String, Value>>, IngestError> {
    if items.len() > DATA_MAX_EVENTS {
        return Err(IngestError::TooManyEvents {
            count: items.len(),
            limit: DATA_MAX_EVENTS,
        });
    }
    if items.is_empty() {
        return Err(IngestError::NoEvents(NO_EVENTS));
    }
    items
        .into_iter()
        .map(|i| match i {
            Value::Object(m) => Ok(m),
            _ => Err(IngestError::WrongShape(
                "an array element that is not an object",
            )),
        })
        .collect()
}

/// The model of a `/data` body.
pub fn model_data_body(bytes: &[u8]) -> DataModel {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return DataModel::Refuse(IngestError::EmptyBody(EMPTY_DATA_BODY));
    }
    let value = match serde_json::from_slice::<Value>(bytes) {
        Ok(v) => v,
        Err(_) => {
            let lossy = String::from_utf8_lossy(bytes);
            let first = serde_json::Deserializer::from_str(&lossy)
                .into_iter::<Value>()
                .next();
            let array_len = match first {
                Some(Ok(Value::Array(a))) if a.len() > DATA_MAX_EVENTS => Some(a.len()),
                _ => None,
            };
            return DataModel::Invalid { array_len };
        }
    };
    let result = match value {
        Value::Array(items) => objects(items).map(|e| (e, None, true)),
        Value::Object(mut m) if matches!(m.get("events"), Some(Value::Array(_))) => {
            let Some(Value::Array(items)) = m.remove("events") else {
                unreachable!()
            };
            objects(items).map(|e| (e, Some(m), true))
        }
        Value::Object(m) => Ok((vec![m], None, false)),
        other => Err(IngestError::WrongShape(kind(&other))),
    };
    match result {
        Ok((events, shared, many)) => DataModel::Accept {
            events,
            shared,
            many,
        },
        Err(e) => DataModel::Refuse(e),
    }
}

/// `key` of an event: its own value when it has the key (even a blank one), else the
/// wrapper's (as `EventData::get` reads).
pub fn lookup<'v>(
    own: &'v Map<String, Value>,
    shared: Option<&'v Map<String, Value>>,
    key: &str,
) -> Option<&'v Value> {
    own.get(key).or_else(|| shared.and_then(|s| s.get(key)))
}

/// Non-blank text of a JSON scalar, as the crate prints it (`event::value_text`).
pub fn text_of(v: Option<&Value>) -> Option<String> {
    let v = v?;
    let val = Val::from_json(v);
    value_text(&val).map(Cow::into_owned)
}

/// Whether `message` is the shape of `invalid JSON: ...` (position only, never input).
pub fn is_invalid_json_message(message: &str) -> bool {
    let Some(rest) = message.strip_prefix("invalid JSON: ") else {
        return false;
    };
    let Some(rest) = [
        "unexpected end of input",
        "syntax error",
        "unexpected value",
        "read error",
    ]
    .iter()
    .find_map(|p| rest.strip_prefix(p)) else {
        return false;
    };
    let Some(rest) = rest.strip_prefix(" at line ") else {
        return false;
    };
    let Some((line, col)) = rest.split_once(" column ") else {
        return false;
    };
    !line.is_empty()
        && !col.is_empty()
        && line.bytes().all(|b| b.is_ascii_digit())
        && col.bytes().all(|b| b.is_ascii_digit())
}

/// The `/data` body parser, mirrored from the private `ingest::data::parse_body` with the
/// crate's public `event::value::parse_json` (same limit, same shape rules). `None` when the
/// body is refused.
pub fn parse_data_body(bytes: &[u8]) -> Option<(Vec<Obj<'_>>, Option<Obj<'_>>, bool)> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    let value = match parse_json(bytes, DATA_MAX_EVENTS) {
        Ok(v) => v,
        Err(e) => {
            if let Some(count) = too_many(&e) {
                assert!(count > DATA_MAX_EVENTS, "too_many({count}) under the limit");
            }
            return None;
        }
    };
    let (items, shared, many) = match value {
        Val::Arr(items) => (items, None, true),
        Val::Obj(mut obj) if matches!(obj.get("events"), Some(Val::Arr(_))) => {
            let Some(Val::Arr(items)) = obj.remove("events") else {
                return None;
            };
            if items.len() > DATA_MAX_EVENTS {
                return None;
            }
            (items, Some(obj), true)
        }
        Val::Obj(obj) => (vec![Val::Obj(obj)], None, false),
        _ => return None,
    };
    assert!(
        items.len() <= DATA_MAX_EVENTS,
        "parse_json kept {} top-level elements",
        items.len()
    );
    if items.is_empty() {
        return None;
    }
    let objects = items
        .into_iter()
        .map(|i| match i {
            Val::Obj(m) => Some(m),
            _ => None,
        })
        .collect::<Option<Vec<_>>>()?;
    Some((objects, shared, many))
}

fn first_text<'e>(e: &'e EventData<'_>, keys: &[&str]) -> Option<Cow<'e, str>> {
    keys.iter().find_map(|k| e.get(k).and_then(value_text))
}

/// The canonical event-data keys, mirrored from the private `ingest::data::canonical_keys`
/// (`client_ip`, `user_agent`, `language` stand for what the request's connection and
/// headers give).
pub fn canonical_keys(
    e: &mut EventData<'_>,
    client_ip: &str,
    user_agent: Option<&str>,
    language: Option<&str>,
) {
    let name = first_text(e, &["event_name", "eventName", "event", "name"])
        .map_or_else(|| "Data".to_owned(), Cow::into_owned);
    e.insert("event_name", Val::string(name));
    if first_text(e, &["event_id"]).is_none() && first_text(e, &["transaction_id"]).is_none() {
        e.insert("event_id", Val::string(tagbridge::event::new_event_id()));
    }
    let ip = match first_text(e, &["ip_override", "ip", "ipOverride"]) {
        Some(ip) if ip.parse::<std::net::IpAddr>().is_ok() => ip.into_owned(),
        _ => client_ip.to_owned(),
    };
    e.insert("ip_override", Val::string(ip));
    let ua = first_text(e, &["user_agent", "userAgent"])
        .map(Cow::into_owned)
        .or_else(|| user_agent.map(str::to_owned));
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
        if let Some(v) = first_text(e, aliases).map(Cow::into_owned) {
            if !(canonical == "user_id" && matches!(e.get("user_id"), Some(Val::Num(_)))) {
                e.insert(canonical, Val::string(v));
            }
        }
    }
    if first_text(e, &["language"]).is_none() {
        if let Some(l) = language {
            e.insert("language", Val::string(l.to_owned()));
        }
    }
}

// ---------------------------------------------------------------------------------------
// Cookies
// ---------------------------------------------------------------------------------------

/// RFC 6265 `cookie-octet`.
pub fn cookie_octet(b: u8) -> bool {
    matches!(b, 0x21 | 0x23..=0x2B | 0x2D..=0x3A | 0x3C..=0x5B | 0x5D..=0x7E)
}

/// Checks a `Set-Cookie` value the gateway sends: `_epik=<cookie-octets>; Path=/; ...` with
/// no attribute but the fixed ones (nothing injected through the value), and the domain the
/// request's host gives.
pub fn assert_epik_cookie(header: &str, expected_domain: Option<&str>) {
    assert!(
        header.bytes().all(|b| b == b' ' || b.is_ascii_graphic()),
        "Set-Cookie with bytes outside visible ASCII: {header:?}"
    );
    let mut parts = header.split("; ");
    let first = parts.next().unwrap_or("");
    let (name, value) = first.split_once('=').expect("cookie without =");
    assert_eq!(name, "_epik", "cookie name in {header:?}");
    assert!(!value.is_empty(), "empty _epik value: {header:?}");
    assert!(
        value.bytes().all(cookie_octet),
        "_epik value outside cookie-octets: {header:?}"
    );
    let attrs: Vec<&str> = parts.collect();
    let mut expected = vec!["Path=/".to_owned(), "Max-Age=31536000".to_owned()];
    if let Some(d) = expected_domain {
        expected.push(format!("Domain={d}"));
    }
    expected.push("Secure".into());
    expected.push("SameSite=Lax".into());
    assert_eq!(attrs, expected, "cookie attributes of {header:?}");
}
