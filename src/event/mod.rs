//! Event data: the one canonical shape between ingest and tags.
//!
//! An [`EventData`] is the server-side GTM "common event data" object: flat JSON with
//! well-known keys (`event_name`, `page_location`, `ip_override`, `user_agent`, `items`,
//! `user_data`, ...). Ingest builds it; tags only read it. Its strings borrow from the
//! request wherever they can ([`Val`]), and keys a request shares between its events (a
//! `/data` wrapper's) are read through, never copied into each event. [`RequestContext`]
//! carries what a tag may need from the HTTP request besides the event (cookies, host,
//! referer, the receive time, the debug flag).

pub mod value;

use std::{borrow::Cow, time::SystemTime};

use serde_json::Value;

pub use value::{Num, Obj, Val};

/// One event, as ingest produced it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventData<'a> {
    /// The event's own keys, in arrival order (a later duplicate wins), hash-indexed.
    own: Obj<'a>,
    index: KeyIndex,
    /// Whether any top-level key contains a dot (only then can a dotted path be a key).
    dotted_keys: bool,
    /// Keys shared by the request's events; an own key of the same name wins.
    shared: Option<&'a Shared<'a>>,
}

/// Keys a request's events share (a `/data` wrapper's, a gtag URL's): built and indexed
/// once per request, read through by each event ([`EventData::with_shared`]), never
/// copied into it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Shared<'a> {
    obj: Obj<'a>,
    index: KeyIndex,
    dotted_keys: bool,
}

impl<'a> Shared<'a> {
    /// `obj`'s keys, a later duplicate winning (as in an event's own keys).
    pub fn new(obj: Obj<'a>) -> Self {
        let index = KeyIndex::build(&obj);
        let dotted_keys = obj.iter().any(|(k, _)| has_dot(k));
        Self {
            obj,
            index,
            dotted_keys,
        }
    }

    pub fn get(&self, key: &str) -> Option<&Val<'a>> {
        self.get_hashed(key, key_hash(key))
    }

    /// [`Self::get`] with the key's [`key_hash`] known.
    fn get_hashed(&self, key: &str, hash: usize) -> Option<&Val<'a>> {
        self.index
            .find_hashed(&self.obj, key, hash)
            .map(|i| &self.obj.0[i].1)
    }
}

/// A dotted path read from many events (a tag's source paths): split and hashed once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPath {
    full: Box<str>,
    /// Length of the first segment (the top-level key).
    head_len: usize,
    head_hash: usize,
}

impl KeyPath {
    pub fn new(path: &str) -> Self {
        let head_len = split_dot(path).map_or(path.len(), |(head, _)| head.len());
        Self {
            full: path.into(),
            head_len,
            head_hash: key_hash(&path[..head_len]),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.full
    }
}

/// An open-addressing hash index over an object's keys (positions; the last duplicate
/// wins). Mapping reads dozens of keys per event: this keeps each read a hash and a
/// compare instead of a search.
#[derive(Debug, Clone, Default, PartialEq)]
struct KeyIndex {
    slots: Vec<u32>,
}

const EMPTY: u32 = u32::MAX;

fn key_hash(key: &str) -> usize {
    use std::hash::Hasher;
    let mut h = rustc_hash::FxHasher::default();
    h.write(key.as_bytes());
    h.finish() as usize
}

impl KeyIndex {
    fn build(obj: &Obj<'_>) -> Self {
        let cap = (obj.len() * 2).next_power_of_two().max(16);
        let mut idx = KeyIndex {
            slots: vec![EMPTY; cap],
        };
        for (i, (k, _)) in obj.0.iter().enumerate() {
            idx.put(obj, k, i);
        }
        idx
    }

    fn put(&mut self, obj: &Obj<'_>, key: &str, pos: usize) {
        let mask = self.slots.len() - 1;
        let mut at = key_hash(key) & mask;
        loop {
            match self.slots[at] {
                EMPTY => {
                    self.slots[at] = pos as u32;
                    return;
                }
                p if obj.0[p as usize].0 == key => {
                    self.slots[at] = pos as u32;
                    return;
                }
                _ => at = (at + 1) & mask,
            }
        }
    }

    fn find(&self, obj: &Obj<'_>, key: &str) -> Option<usize> {
        self.find_hashed(obj, key, key_hash(key))
    }

    /// [`Self::find`] with the key's [`key_hash`] known (one hash for own and shared keys).
    fn find_hashed(&self, obj: &Obj<'_>, key: &str, hash: usize) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.slots.len() - 1;
        let mut at = hash & mask;
        loop {
            match self.slots[at] {
                EMPTY => return None,
                p if obj.0[p as usize].0 == key => return Some(p as usize),
                _ => at = (at + 1) & mask,
            }
        }
    }
}

impl<'a> EventData<'a> {
    pub fn new(own: Obj<'a>) -> Self {
        // The own keys are indexed as shared ones are.
        let Shared {
            obj: own,
            index,
            dotted_keys,
        } = Shared::new(own);
        Self {
            own,
            index,
            dotted_keys,
            shared: None,
        }
    }

    /// Shared keys as an event of their own (to add keys to them with [`Self::insert`]);
    /// [`Self::into_shared`] turns them back. The index moves, it is not rebuilt.
    pub fn from_shared(shared: Shared<'a>) -> Self {
        Self {
            own: shared.obj,
            index: shared.index,
            dotted_keys: shared.dotted_keys,
            shared: None,
        }
    }

    /// The event's own keys as shared keys (what it reads through is not included).
    pub fn into_shared(self) -> Shared<'a> {
        Shared {
            obj: self.own,
            index: self.index,
            dotted_keys: self.dotted_keys,
        }
    }

    /// An event whose missing keys are read from `shared`.
    pub fn with_shared(own: Obj<'a>, shared: &'a Shared<'a>) -> Self {
        let mut e = Self::new(own);
        e.dotted_keys |= shared.dotted_keys;
        e.shared = Some(shared);
        e
    }

    /// From a JSON object (other values give an empty event), borrowing its strings.
    pub fn from_json(value: &'a Value) -> Self {
        match Val::from_json(value) {
            Val::Obj(o) => Self::new(o),
            _ => Self::default(),
        }
    }

    pub fn get(&self, key: &str) -> Option<&Val<'a>> {
        self.get_hashed(key, key_hash(key))
    }

    /// [`Self::get`] with the key's [`key_hash`] known (one hash for own and shared keys).
    fn get_hashed(&self, key: &str, hash: usize) -> Option<&Val<'a>> {
        match self.index.find_hashed(&self.own, key, hash) {
            Some(i) => Some(&self.own.0[i].1),
            None => self.shared.and_then(|s| s.get_hashed(key, hash)),
        }
    }

    /// An own key only (not read through to the shared keys).
    pub fn get_own(&self, key: &str) -> Option<&Val<'a>> {
        self.index.find(&self.own, key).map(|i| &self.own.0[i].1)
    }

    /// The request's shared keys this event reads through, if any.
    pub fn shared(&self) -> Option<&'a Shared<'a>> {
        self.shared
    }

    pub fn contains(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Sets an own key.
    pub fn insert(&mut self, key: impl Into<Cow<'a, str>>, value: Val<'a>) {
        let key = key.into();
        if let Some(i) = self.index.find(&self.own, &key) {
            self.own.0[i].1 = value;
            return;
        }
        self.dotted_keys |= has_dot(&key);
        let pos = self.own.len();
        self.own.0.push((key, value));
        if self.own.len() * 2 > self.index.slots.len() {
            self.index = KeyIndex::build(&self.own);
        } else {
            let own = &self.own;
            let key = &own.0[pos].0;
            // Split borrows: the index only reads the keys.
            let mut index = std::mem::take(&mut self.index);
            index.put(own, key, pos);
            self.index = index;
        }
    }

    /// Reads a dotted path (`user_data.address.city`, `items.0.item_id`). A number segment
    /// indexes an array; any other segment applied to an array reads its first element
    /// (`user_data.address.city` when `address` is a list of addresses). A key that itself
    /// contains dots (`x-ga-mp2-user_properties.tier`) is found too.
    pub fn get_path(&self, path: &str) -> Option<&Val<'a>> {
        if !self.dotted_keys {
            // No key has a dot: the path's first segment is the key (the common case).
            return match split_dot(path) {
                None => self.get(path),
                Some((head, tail)) => self.get(head).and_then(|v| descend(v, tail)),
            };
        }
        if let Some(v) = self.get(path) {
            return Some(v);
        }
        // Nested objects first (the common case), then keys that themselves contain dots.
        let mut from = 0;
        while let Some(dot) = path[from..].find('.').map(|d| from + d) {
            let (head, tail) = (&path[..dot], &path[dot + 1..]);
            if let Some(found) = self.get(head).and_then(|v| descend(v, tail)) {
                return Some(found);
            }
            from = dot + 1;
        }
        None
    }

    /// [`Self::get_path`] for a path resolved once ([`KeyPath`]): one hashed lookup (its
    /// first segment's hash is known) and a descent, unless a key with a dot could match.
    pub fn get_key_path(&self, path: &KeyPath) -> Option<&Val<'a>> {
        if self.dotted_keys {
            return self.get_path(&path.full);
        }
        let v = self.get_hashed(&path.full[..path.head_len], path.head_hash)?;
        match path.full.get(path.head_len + 1..) {
            Some(tail) => descend(v, tail),
            None => Some(v),
        }
    }

    /// Whether a path could name a key with a dot in it (`get_path("a.b")` finding the key
    /// `a.b`): only then can a path match without its first segment being a key.
    pub fn has_dotted_keys(&self) -> bool {
        self.dotted_keys
    }

    /// The value at `key` as non-blank text (strings trimmed, numbers and bools printed).
    pub fn text(&self, key: &str) -> Option<Cow<'_, str>> {
        self.get(key).and_then(value_text)
    }

    /// Like [`EventData::text`], but borrowing from the request rather than from `self`
    /// (no copy when the value is request text).
    pub fn text_a(&self, key: &str) -> Option<Cow<'a, str>> {
        self.get(key).and_then(value_text_a)
    }

    /// The incoming event name, as sent (not mapped).
    pub fn event_name(&self) -> &str {
        self.get("event_name").and_then(Val::as_str).unwrap_or("")
    }

    /// Whether the event marks itself as debug traffic (GA4 `debug_mode` / `_dbg`).
    pub fn is_debug(&self) -> bool {
        self.get("debug_mode").is_some_and(is_truthy)
            || self
                .get_path("x-ga-system_properties.dbg")
                .is_some_and(is_truthy)
    }

    /// The merged event data as JSON (own keys over shared ones).
    pub fn to_json(&self) -> Value {
        let mut map = serde_json::Map::new();
        if let Some(shared) = self.shared {
            for (k, v) in shared.obj.iter() {
                map.insert(k.to_owned(), v.to_json());
            }
        }
        // In arrival order: a later duplicate overwrites, as lookups see it.
        for (k, v) in self.own.iter() {
            map.insert(k.to_owned(), v.to_json());
        }
        Value::Object(map)
    }

    /// Own keys (shared ones not included).
    pub fn own(&self) -> &Obj<'a> {
        &self.own
    }
}

fn lookup_obj<'v, 'a>(map: &'v Obj<'a>, path: &str) -> Option<&'v Val<'a>> {
    if let Some(v) = map.get(path) {
        return Some(v);
    }
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

/// Whether a key has a dot: a branch-free scan (keys are short; `str::contains` sets up
/// a searcher per call, and this runs for every key of every event).
fn has_dot(key: &str) -> bool {
    key.bytes().fold(false, |found, b| found | (b == b'.'))
}

/// `path` split at its first dot.
fn split_dot(path: &str) -> Option<(&str, &str)> {
    let dot = memchr::memchr(b'.', path.as_bytes())?;
    // A dot is ASCII: both sides are on char boundaries.
    Some((&path[..dot], &path[dot + 1..]))
}

fn descend<'v, 'a>(value: &'v Val<'a>, path: &str) -> Option<&'v Val<'a>> {
    match value {
        Val::Obj(map) => lookup_obj(map, path),
        Val::Arr(items) => {
            let (index, rest) = match split_dot(path) {
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
pub fn value_text<'v>(value: &'v Val<'_>) -> Option<Cow<'v, str>> {
    let text: Cow<'v, str> = match value {
        Val::Str(s) => Cow::Borrowed(s.trim()),
        Val::Num(n) => Cow::Owned(number_text(*n)),
        Val::Bool(b) => Cow::Borrowed(if *b { "true" } else { "false" }),
        _ => return None,
    };
    (!text.is_empty()).then_some(text)
}

/// [`value_text`] with the request's lifetime: borrowed text stays borrowed.
pub fn value_text_a<'a>(value: &Val<'a>) -> Option<Cow<'a, str>> {
    let text: Cow<'a, str> = match value {
        Val::Str(Cow::Borrowed(s)) => Cow::Borrowed(s.trim()),
        Val::Str(Cow::Owned(s)) => Cow::Owned(s.trim().to_owned()),
        Val::Num(n) => Cow::Owned(number_text(*n)),
        Val::Bool(b) => Cow::Borrowed(if *b { "true" } else { "false" }),
        _ => return None,
    };
    (!text.is_empty()).then_some(text)
}

/// A JSON number as decimal text: `12345` and `12345.0` print `12345`, `49.99` prints `49.99`.
pub fn number_text(n: Num) -> String {
    match n {
        Num::I(i) => itoa::Buffer::new().format(i).to_owned(),
        Num::U(u) => itoa::Buffer::new().format(u).to_owned(),
        Num::F(f) => float_text(f),
    }
}

/// Shortest decimal text that round-trips, without exponent or trailing `.0`.
pub fn float_text(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e15 {
        return itoa::Buffer::new().format(f as i64).to_owned();
    }
    format!("{f}")
}

/// Whether a value is "empty" for source precedence: null, blank text, or an array of empties.
pub fn is_blank(value: &Val<'_>) -> bool {
    match value {
        Val::Null => true,
        Val::Str(s) => s.trim().is_empty(),
        Val::Arr(items) => items.iter().all(is_blank),
        Val::Obj(map) => map.is_empty(),
        _ => false,
    }
}

/// Consent-style truthiness: `true`, non-zero numbers, and the strings `true`, `1`, `yes`,
/// `granted` (any case). Everything else, including unknown strings, is false: when in doubt,
/// consent is not assumed.
pub fn is_truthy(value: &Val<'_>) -> bool {
    match value {
        Val::Bool(b) => *b,
        Val::Num(n) => n.as_f64() != 0.0,
        Val::Str(s) => {
            let t = s.trim();
            ["true", "1", "yes", "granted"]
                .iter()
                .any(|w| t.eq_ignore_ascii_case(w))
        }
        _ => false,
    }
}

/// What a tag may read from the HTTP request besides the event itself.
#[derive(Debug, Clone)]
pub struct RequestContext<'a> {
    /// When the gateway received the request: the event time Pinterest gets.
    pub received_at: SystemTime,
    /// Request cookies, in header order.
    pub cookies: Vec<(&'a str, &'a str)>,
    /// The `Host` the client addressed (without port), when it is a valid host name or IP
    /// address: the `_epik` cookie's domain comes from it.
    pub host: Option<&'a str>,
    /// The `Referer` header.
    pub referer: Option<&'a str>,
    /// Debug traffic: the request carried a debug header with the debug token.
    pub debug: bool,
    /// The request carried the debug token (header or cookie): events that mark themselves
    /// as debug traffic (`debug_mode`, `_dbg`) count as such.
    pub debug_allowed: bool,
    /// Correlates the request with the tags' log records (`TraceId`).
    pub trace_id: String,
}

impl RequestContext<'_> {
    /// A context with no request around it (the `map` command, unit tests).
    pub fn detached(received_at: SystemTime) -> RequestContext<'static> {
        RequestContext {
            received_at,
            cookies: Vec::new(),
            host: None,
            referer: None,
            debug: false,
            debug_allowed: false,
            trace_id: new_trace_id(),
        }
    }

    /// Whether `event` is debug traffic: a debug header with the token, or the event's own
    /// flag in a request that carries the token.
    pub fn is_debug(&self, event: &EventData<'_>) -> bool {
        self.debug || (self.debug_allowed && event.is_debug())
    }

    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.cookies
            .iter()
            .find(|(k, v)| *k == name && !v.trim().is_empty())
            .map(|(_, v)| *v)
    }
}

/// 32 hex digits, the W3C trace-id shape.
pub fn new_trace_id() -> String {
    let bytes: [u8; 16] = rand::random();
    let mut s = String::with_capacity(32);
    for b in bytes {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    s
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// A random (version 4) UUID, hyphenated: the `event_id` of events that bring none.
pub fn new_event_id() -> String {
    uuid::Builder::from_random_bytes(rand::random())
        .into_uuid()
        .hyphenated()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_descend_objects_and_arrays() {
        let v = json!({
            "user_data": {"address": [{"city": "Paris"}]},
            "items": [{"item_id": "A"}],
            "x-ga-mp2-user_properties.tier": "gold",
        });
        let e = EventData::from_json(&v);
        assert_eq!(
            e.get_path("user_data.address.0.city"),
            Some(&Val::str("Paris"))
        );
        assert_eq!(
            e.get_path("user_data.address.city"),
            Some(&Val::str("Paris"))
        );
        assert_eq!(e.get_path("items.0.item_id"), Some(&Val::str("A")));
        assert_eq!(
            e.get_path("x-ga-mp2-user_properties.tier"),
            Some(&Val::str("gold"))
        );
        assert_eq!(e.get_path("items.1.item_id"), None);
        assert_eq!(e.get_path("user_data.nope"), None);
    }

    proptest::proptest! {
        /// A path resolved once reads what the path reads, own and shared keys, with and
        /// without dotted keys.
        #[test]
        fn key_paths_read_what_paths_read(
            own in proptest::collection::vec((0usize..7, 0usize..4), 0..6),
            shared in proptest::collection::vec((0usize..7, 0usize..4), 0..6),
            path in proptest::collection::vec(0usize..7, 1..4),
        ) {
            const KEYS: [&str; 7] = ["a", "b", "a.b", "user_data", "0", "address", "a.b.c"];
            let values = [
                json!("x"),
                json!({"b": "y", "c": {"d": 1}, "address": [{"city": "P"}]}),
                json!([{"b": "z"}, {"c": 2}]),
                json!({"b.c": "dotted"}),
            ];
            let obj = |pairs: &[(usize, usize)]| {
                let map: serde_json::Map<String, Value> = pairs
                    .iter()
                    .map(|(k, v)| (KEYS[*k].to_owned(), values[*v].clone()))
                    .collect();
                Value::Object(map)
            };
            let (own_json, shared_json) = (obj(&own), obj(&shared));
            let Val::Obj(shared_obj) = Val::from_json(&shared_json) else { panic!() };
            let Val::Obj(own_obj) = Val::from_json(&own_json) else { panic!() };
            let shared = Shared::new(shared_obj);
            let event = EventData::with_shared(own_obj, &shared);
            let path: Vec<&str> = path.iter().map(|i| ["a", "b", "c", "d", "0", "1", "address"][*i]).collect();
            let path = path.join(".");
            proptest::prop_assert_eq!(event.get_key_path(&KeyPath::new(&path)), event.get_path(&path));
            for key in KEYS {
                proptest::prop_assert_eq!(event.get_key_path(&KeyPath::new(key)), event.get_path(key));
            }
        }
    }

    #[test]
    fn shared_keys_are_read_through_and_own_keys_win() {
        let shared_json = json!({"user_id": "u", "user_data": {"email": "shared@x"}});
        let Val::Obj(shared) = Val::from_json(&shared_json) else {
            panic!()
        };
        let shared = Shared::new(shared);
        let own_json = json!({"user_id": "v", "user_data": {"phone": "1"}});
        let Val::Obj(own) = Val::from_json(&own_json) else {
            panic!()
        };
        let e = EventData::with_shared(own, &shared);
        assert_eq!(e.text("user_id").as_deref(), Some("v"));
        // The event's own user_data replaces the shared one as a whole (as a merge would).
        assert_eq!(e.get_path("user_data.email"), None);
        assert_eq!(e.get_path("user_data.phone"), Some(&Val::str("1")));
        let only_shared = EventData::with_shared(Obj::new(), &shared);
        assert_eq!(
            only_shared.get_path("user_data.email"),
            Some(&Val::str("shared@x"))
        );
    }

    proptest::proptest! {
        #[test]
        fn float_text_is_display_without_a_trailing_zero(f in proptest::num::f64::NORMAL | proptest::num::f64::SUBNORMAL | proptest::num::f64::ZERO) {
            let want = if f.fract() == 0.0 && f.abs() < 1e15 {
                format!("{}", f as i64)
            } else {
                format!("{f}")
            };
            proptest::prop_assert_eq!(float_text(f), want);
        }
    }

    #[test]
    fn numbers_print_like_javascript() {
        assert_eq!(float_text(49.99), "49.99");
        assert_eq!(float_text(5.0), "5");
        assert_eq!(float_text(616.5), "616.5");
        assert_eq!(
            value_text(&Val::Num(Num::I(12345))).as_deref(),
            Some("12345")
        );
        assert_eq!(value_text(&Val::str(" x ")).as_deref(), Some("x"));
        assert_eq!(value_text(&Val::str("  ")), None);
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
            assert!(is_truthy(&Val::from_json(&v)), "{v}");
        }
        for v in [
            json!(false),
            json!(0),
            json!("denied"),
            json!(""),
            json!(null),
            json!("maybe"),
        ] {
            assert!(!is_truthy(&Val::from_json(&v)), "{v}");
        }
    }

    #[test]
    fn ids_have_their_shapes() {
        let t = new_trace_id();
        assert_eq!(t.len(), 32);
        assert!(t.bytes().all(|b| b.is_ascii_hexdigit()));
        let e = new_event_id();
        assert_eq!(e.len(), 36);
        assert_eq!(
            uuid::Uuid::parse_str(&e).map(|u| u.get_version_num()).ok(),
            Some(4)
        );
        assert_ne!(new_event_id(), e);
    }
}
