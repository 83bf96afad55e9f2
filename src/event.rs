//! Event data: the one canonical shape between ingest and tags.
//!
//! An [`EventData`] is the server-side GTM "common event data" object: flat JSON with
//! well-known keys (`event_name`, `page_location`, `ip_override`, `user_agent`, `items`,
//! `user_data`, ...). Ingest builds it; tags only read it. [`RequestContext`] carries what a
//! tag may need from the HTTP request besides the event (cookies, host, referer, the receive
//! time, the debug flag).

use std::time::SystemTime;

use serde_json::{Map, Value};

/// One event, as ingest produced it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventData(pub Map<String, Value>);

impl EventData {
    pub fn new(map: Map<String, Value>) -> Self {
        Self(map)
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key)
    }

    /// Reads a dotted path (`user_data.address.city`, `items.0.item_id`). A number segment
    /// indexes an array; any other segment applied to an array reads its first element
    /// (`user_data.address.city` when `address` is a list of addresses). A key that itself
    /// contains dots (`x-ga-mp2-user_properties.tier`) is found too.
    pub fn get_path(&self, path: &str) -> Option<&Value> {
        lookup_path(&self.0, path)
    }

    /// The value at `key` as non-blank text (strings trimmed, numbers and bools printed).
    pub fn text(&self, key: &str) -> Option<String> {
        self.get(key).and_then(value_text)
    }

    /// The incoming event name, as sent (not mapped).
    pub fn event_name(&self) -> &str {
        self.get("event_name").and_then(Value::as_str).unwrap_or("")
    }

    /// Whether the event marks itself as debug traffic (GA4 `debug_mode` / `_dbg`).
    pub fn is_debug(&self) -> bool {
        self.get("debug_mode").is_some_and(is_truthy)
            || self
                .get_path("x-ga-system_properties.dbg")
                .is_some_and(is_truthy)
    }

    pub fn into_value(self) -> Value {
        Value::Object(self.0)
    }
}

fn lookup_path<'a>(map: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    if let Some(v) = map.get(path) {
        return Some(v);
    }
    // Nested objects first (the common case), then keys that themselves contain dots.
    let mut from = 0;
    while let Some(dot) = path[from..].find('.').map(|d| from + d) {
        let (head, tail) = (&path[..dot], &path[dot + 1..]);
        if let Some(found) = map.get(head).and_then(|v| descend(v, tail)) {
            return Some(found);
        }
        from = dot + 1;
    }
    None
}

fn descend<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    match value {
        Value::Object(map) => lookup_path(map, path),
        Value::Array(items) => {
            let (index, rest) = match path.split_once('.') {
                Some((i, r)) => (i, Some(r)),
                None => (path, None),
            };
            let Ok(index) = index.parse::<usize>() else {
                return descend(items.first()?, path);
            };
            let item = items.get(index)?;
            match rest {
                Some(r) => descend(item, r),
                None => Some(item),
            }
        }
        _ => None,
    }
}

/// Non-blank text of a scalar: trimmed strings, numbers printed without a trailing `.0`.
pub fn value_text(value: &Value) -> Option<String> {
    let text = match value {
        Value::String(s) => s.trim().to_owned(),
        Value::Number(n) => number_text(n),
        Value::Bool(b) => b.to_string(),
        _ => return None,
    };
    (!text.is_empty()).then_some(text)
}

/// A JSON number as decimal text: `12345` and `12345.0` print `12345`, `49.99` prints `49.99`.
pub fn number_text(n: &serde_json::Number) -> String {
    if n.is_f64() {
        n.as_f64().map(float_text).unwrap_or_else(|| n.to_string())
    } else {
        n.to_string()
    }
}

/// Shortest decimal text that round-trips, without exponent or trailing `.0`.
pub fn float_text(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e15 {
        format!("{}", f as i64)
    } else {
        format!("{f}")
    }
}

/// Whether a value is "empty" for source precedence: null, blank text, or an array of empties.
pub fn is_blank(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => s.trim().is_empty(),
        Value::Array(items) => items.iter().all(is_blank),
        Value::Object(map) => map.is_empty(),
        _ => false,
    }
}

/// Consent-style truthiness: `true`, non-zero numbers, and the strings `true`, `1`, `yes`,
/// `granted` (any case). Everything else, including unknown strings, is false: when in doubt,
/// consent is not assumed.
pub fn is_truthy(value: &Value) -> bool {
    match value {
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => matches!(
            s.trim().to_ascii_lowercase().as_str(),
            "true" | "1" | "yes" | "granted"
        ),
        _ => false,
    }
}

/// What a tag may read from the HTTP request besides the event itself.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// When the gateway received the request: the event time Pinterest gets.
    pub received_at: SystemTime,
    /// Request cookies, in header order.
    pub cookies: Vec<(String, String)>,
    /// The `Host` the client addressed (without port): the `_epik` cookie's domain comes from it.
    pub host: Option<String>,
    /// The `Referer` header.
    pub referer: Option<String>,
    /// Debug traffic: the request carried the debug header.
    pub debug: bool,
    /// Correlates the request with the tags' log records (`TraceId`).
    pub trace_id: String,
}

impl RequestContext {
    /// A context with no request around it (the `map` command, unit tests).
    pub fn detached(received_at: SystemTime) -> Self {
        Self {
            received_at,
            cookies: Vec::new(),
            host: None,
            referer: None,
            debug: false,
            trace_id: new_trace_id(),
        }
    }

    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.cookies
            .iter()
            .find(|(k, v)| k == name && !v.trim().is_empty())
            .map(|(_, v)| v.as_str())
    }
}

/// 32 hex digits, the W3C trace-id shape.
pub fn new_trace_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ev(v: Value) -> EventData {
        match v {
            Value::Object(m) => EventData(m),
            _ => EventData::default(),
        }
    }

    #[test]
    fn paths_descend_objects_and_arrays() {
        let e = ev(json!({
            "user_data": {"address": [{"city": "Paris"}]},
            "items": [{"item_id": "A"}],
            "x-ga-mp2-user_properties.tier": "gold",
        }));
        assert_eq!(
            e.get_path("user_data.address.0.city"),
            Some(&json!("Paris"))
        );
        assert_eq!(e.get_path("items.0.item_id"), Some(&json!("A")));
        assert_eq!(
            e.get_path("x-ga-mp2-user_properties.tier"),
            Some(&json!("gold"))
        );
        assert_eq!(e.get_path("items.1.item_id"), None);
        assert_eq!(e.get_path("user_data.nope"), None);
    }

    #[test]
    fn numbers_print_like_javascript() {
        assert_eq!(float_text(49.99), "49.99");
        assert_eq!(float_text(5.0), "5");
        assert_eq!(float_text(616.5), "616.5");
        assert_eq!(value_text(&json!(12345)), Some("12345".into()));
        assert_eq!(value_text(&json!(" x ")), Some("x".into()));
        assert_eq!(value_text(&json!("  ")), None);
    }

    #[test]
    fn truthiness_is_conservative() {
        for v in [
            json!(true),
            json!(1),
            json!("granted"),
            json!("TRUE"),
            json!("yes"),
        ] {
            assert!(is_truthy(&v), "{v}");
        }
        for v in [
            json!(false),
            json!(0),
            json!("denied"),
            json!(""),
            json!(null),
            json!("maybe"),
        ] {
            assert!(!is_truthy(&v), "{v}");
        }
    }
}
