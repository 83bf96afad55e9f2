//! [`Val`]: a JSON value whose strings borrow from the request wherever they can, and whose
//! objects are small vectors: the request's bytes are parsed once and never copied into
//! every event that reads them.

use std::{borrow::Cow, fmt};

use serde::de::{self, Deserialize, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// A JSON number, as serde_json keeps it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Num {
    I(i64),
    U(u64),
    F(f64),
}

impl Num {
    pub fn as_f64(self) -> f64 {
        match self {
            Num::I(i) => i as f64,
            Num::U(u) => u as f64,
            Num::F(f) => f,
        }
    }

    /// An integer value, if it is one (floats are not).
    pub fn as_i64(self) -> Option<i64> {
        match self {
            Num::I(i) => Some(i),
            Num::U(u) => i64::try_from(u).ok(),
            Num::F(_) => None,
        }
    }

    pub fn is_f64(self) -> bool {
        matches!(self, Num::F(_))
    }

    /// As serde_json would write it.
    pub fn to_json(self) -> Value {
        match self {
            Num::I(i) => Value::from(i),
            Num::U(u) => Value::from(u),
            Num::F(f) => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
        }
    }

    /// A finite number from text: integers stay integers (`"42"` → 42), others are floats
    /// (`"19.99"` → 19.99). `None` for anything else (`"abc"`, `"NaN"`, `"inf"`, `""`).
    pub fn parse(text: &str) -> Option<Num> {
        let t = text.trim();
        if let Ok(i) = t.parse::<i64>() {
            return Some(Num::I(i));
        }
        if let Ok(u) = t.parse::<u64>() {
            return Some(Num::U(u));
        }
        // Rust's float grammar also takes `inf`/`NaN`: only finite values pass.
        t.parse::<f64>().ok().filter(|f| f.is_finite()).map(Num::F)
    }
}

/// A JSON value borrowing from the request.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Val<'a> {
    #[default]
    Null,
    Bool(bool),
    Num(Num),
    Str(Cow<'a, str>),
    Arr(Vec<Val<'a>>),
    Obj(Obj<'a>),
}

/// A JSON object: entries in order; a later duplicate key wins (as in serde_json).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Obj<'a>(pub Vec<(Cow<'a, str>, Val<'a>)>);

impl<'a> Obj<'a> {
    pub fn new() -> Self {
        Self(Vec::new())
    }

    pub fn with_capacity(n: usize) -> Self {
        Self(Vec::with_capacity(n))
    }

    pub fn get(&self, key: &str) -> Option<&Val<'a>> {
        self.0.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut Val<'a>> {
        self.0
            .iter_mut()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.0.iter().any(|(k, _)| k == key)
    }

    /// Sets `key`, replacing an existing value in place.
    pub fn insert(&mut self, key: impl Into<Cow<'a, str>>, value: Val<'a>) {
        let key = key.into();
        match self.0.iter_mut().rev().find(|(k, _)| *k == key) {
            Some((_, v)) => *v = value,
            None => self.0.push((key, value)),
        }
    }

    /// Replaces the value of the `i`-th member (an index from the caller's own bookkeeping).
    pub fn set_at(&mut self, i: usize, value: Val<'a>) {
        if let Some((_, v)) = self.0.get_mut(i) {
            *v = value;
        }
    }

    /// Appends without looking for an existing key (the caller knows it is new).
    pub fn push(&mut self, key: impl Into<Cow<'a, str>>, value: Val<'a>) {
        self.0.push((key.into(), value));
    }

    pub fn remove(&mut self, key: &str) -> Option<Val<'a>> {
        let pos = self.0.iter().rposition(|(k, _)| k == key)?;
        Some(self.0.remove(pos).1)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Val<'a>)> {
        self.0.iter().map(|(k, v)| (k.as_ref(), v))
    }

    pub fn retain(&mut self, f: impl FnMut(&mut (Cow<'a, str>, Val<'a>)) -> bool) {
        self.0.retain_mut(f);
    }

    pub fn to_json(&self) -> Value {
        Value::Object(
            self.0
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_json()))
                .collect(),
        )
    }

    /// A copy that owns its strings.
    pub fn into_owned(self) -> Obj<'static> {
        Obj(self
            .0
            .into_iter()
            .map(|(k, v)| (Cow::Owned(k.into_owned()), v.into_owned()))
            .collect())
    }
}

impl<'a> Val<'a> {
    /// A copy whose strings borrow from `self`: no text is copied (what a tag builds from
    /// event data lives only while it maps the event).
    pub fn reborrow(&self) -> Val<'_> {
        match self {
            Val::Null => Val::Null,
            Val::Bool(b) => Val::Bool(*b),
            Val::Num(n) => Val::Num(*n),
            Val::Str(s) => Val::Str(Cow::Borrowed(s.as_ref())),
            Val::Arr(a) => Val::Arr(a.iter().map(Val::reborrow).collect()),
            Val::Obj(o) => Val::Obj(Obj(o
                .0
                .iter()
                .map(|(k, v)| (Cow::Borrowed(k.as_ref()), v.reborrow()))
                .collect())),
        }
    }

    pub fn str(s: &'a str) -> Self {
        Val::Str(Cow::Borrowed(s))
    }

    pub fn string(s: String) -> Self {
        Val::Str(Cow::Owned(s))
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Val::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_obj(&self) -> Option<&Obj<'a>> {
        match self {
            Val::Obj(o) => Some(o),
            _ => None,
        }
    }

    pub fn as_arr(&self) -> Option<&[Val<'a>]> {
        match self {
            Val::Arr(a) => Some(a),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Val::Null)
    }

    pub fn get(&self, key: &str) -> Option<&Val<'a>> {
        self.as_obj()?.get(key)
    }

    pub fn to_json(&self) -> Value {
        match self {
            Val::Null => Value::Null,
            Val::Bool(b) => Value::Bool(*b),
            Val::Num(n) => n.to_json(),
            Val::Str(s) => Value::String(s.to_string()),
            Val::Arr(a) => Value::Array(a.iter().map(Val::to_json).collect()),
            Val::Obj(o) => o.to_json(),
        }
    }

    /// From a serde_json value, borrowing its strings.
    pub fn from_json(v: &'a Value) -> Val<'a> {
        match v {
            Value::Null => Val::Null,
            Value::Bool(b) => Val::Bool(*b),
            Value::Number(n) => Val::Num(num_of(n)),
            Value::String(s) => Val::str(s),
            Value::Array(a) => Val::Arr(a.iter().map(Val::from_json).collect()),
            Value::Object(m) => Val::Obj(Obj(m
                .iter()
                .map(|(k, v)| (Cow::Borrowed(k.as_str()), Val::from_json(v)))
                .collect())),
        }
    }

    pub fn into_owned(self) -> Val<'static> {
        match self {
            Val::Null => Val::Null,
            Val::Bool(b) => Val::Bool(b),
            Val::Num(n) => Val::Num(n),
            Val::Str(s) => Val::Str(Cow::Owned(s.into_owned())),
            Val::Arr(a) => Val::Arr(a.into_iter().map(Val::into_owned).collect()),
            Val::Obj(o) => Val::Obj(o.into_owned()),
        }
    }
}

fn num_of(n: &serde_json::Number) -> Num {
    if let Some(i) = n.as_i64() {
        Num::I(i)
    } else if let Some(u) = n.as_u64() {
        Num::U(u)
    } else {
        Num::F(n.as_f64().unwrap_or(0.0))
    }
}

/// Deserializes a [`Val`] borrowing strings from the input where no unescaping is needed.
/// Arrays longer than `max_array` (the top-level one, or any when `nested` is set) fail.
pub struct ValSeed {
    /// Most elements of an array at this level.
    pub max_array: usize,
}

impl<'de> DeserializeSeed<'de> for ValSeed {
    type Value = Val<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Val<'de>, D::Error> {
        d.deserialize_any(ValVisitor {
            max_array: self.max_array,
        })
    }
}

impl<'de> Deserialize<'de> for Val<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValVisitor {
            max_array: usize::MAX,
        })
    }
}

/// The error an array over its limit produces (recognised by [`too_many`]).
pub const TOO_MANY: &str = "tagbridge: too many elements";

/// The element count when a serde_json error is the array limit of [`ValSeed`].
pub fn too_many(e: &serde_json::Error) -> Option<usize> {
    let text = e.to_string();
    let rest = text.strip_prefix(TOO_MANY)?.strip_prefix(": ")?;
    rest.split_whitespace().next()?.parse().ok()
}

struct ValVisitor {
    max_array: usize,
}

impl<'de> Visitor<'de> for ValVisitor {
    type Value = Val<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Val<'de>, E> {
        Ok(Val::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Val<'de>, E> {
        Ok(Val::Num(Num::I(v)))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Val<'de>, E> {
        Ok(match i64::try_from(v) {
            Ok(i) => Val::Num(Num::I(i)),
            Err(_) => Val::Num(Num::U(v)),
        })
    }
    fn visit_f64<E>(self, v: f64) -> Result<Val<'de>, E> {
        Ok(Val::Num(Num::F(v)))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Val<'de>, E> {
        Ok(Val::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Val<'de>, E> {
        Ok(Val::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Val<'de>, E> {
        Ok(Val::Str(Cow::Owned(v)))
    }
    fn visit_unit<E>(self) -> Result<Val<'de>, E> {
        Ok(Val::Null)
    }
    fn visit_none<E>(self) -> Result<Val<'de>, E> {
        Ok(Val::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Val<'de>, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Val<'de>, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while out.len() < self.max_array {
            match seq.next_element_seed(ValSeed {
                max_array: usize::MAX,
            })? {
                Some(v) => out.push(v),
                None => return Ok(Val::Arr(out)),
            }
        }
        // At the limit: count the rest without keeping it.
        let mut count = out.len();
        while seq.next_element::<de::IgnoredAny>()?.is_some() {
            count += 1;
        }
        if count > out.len() {
            return Err(de::Error::custom(format!("{TOO_MANY}: {count}")));
        }
        Ok(Val::Arr(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Val<'de>, A::Error> {
        let mut out = Vec::with_capacity(map.size_hint().unwrap_or(0).min(64));
        while let Some(k) = map.next_key_seed(KeySeed)? {
            let v = map.next_value_seed(ValSeed {
                max_array: usize::MAX,
            })?;
            out.push((k, v));
        }
        Ok(Val::Obj(Obj(out)))
    }
}

struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Cow<'de, str>, D::Error> {
        d.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Cow<'de, str>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string key")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v))
    }
}

/// Parses JSON into a [`Val`]; arrays at the top level longer than `max_array` fail with an
/// error [`too_many`] recognises.
///
/// # Errors
/// serde_json's error.
pub fn parse_json(bytes: &[u8], max_array: usize) -> Result<Val<'_>, serde_json::Error> {
    let mut d = serde_json::Deserializer::from_slice(bytes);
    let v = ValSeed { max_array }.deserialize(&mut d)?;
    d.end()?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_and_borrows() {
        let text = br#"{"a":"plain","b":"esc\"aped","n":[1,-2,1.5,18446744073709551615],"o":{"x":null,"t":true}}"#;
        let v = parse_json(text, 10).unwrap();
        let Val::Obj(o) = &v else { panic!("object") };
        assert!(matches!(o.get("a"), Some(Val::Str(Cow::Borrowed("plain")))));
        assert!(matches!(o.get("b"), Some(Val::Str(Cow::Owned(s))) if s == "esc\"aped"));
        assert_eq!(
            v.to_json(),
            json!({"a":"plain","b":"esc\"aped","n":[1,-2,1.5,18446744073709551615_u64],"o":{"x":null,"t":true}})
        );
    }

    #[test]
    fn top_level_arrays_are_limited_while_parsing() {
        assert_eq!(
            parse_json(b"[{},{},{}]", 3)
                .unwrap()
                .as_arr()
                .map(<[_]>::len),
            Some(3)
        );
        let e = parse_json(b"[{},{},{},{}]", 3).unwrap_err();
        assert_eq!(too_many(&e), Some(4));
        // Nested arrays are not limited by it.
        assert!(parse_json(b"[[1,2,3,4,5]]", 1).is_ok());
    }

    #[test]
    fn duplicate_keys_last_wins() {
        let v = parse_json(br#"{"k":1,"k":2}"#, 10).unwrap();
        assert_eq!(v.get("k"), Some(&Val::Num(Num::I(2))));
        let Val::Obj(o) = v else { panic!() };
        assert_eq!(o.get("k"), Some(&Val::Num(Num::I(2))));
    }
}
