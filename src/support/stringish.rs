//! Serde helpers for values that YAML or an environment override may type loosely:
//! `advertiser_id: 549755885175` (a number) means the same as `"549755885175"`.

use serde::de::{self, Deserializer, Visitor};
use std::fmt;

struct StringishVisitor;

impl<'de> Visitor<'de> for StringishVisitor {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Some(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Some(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Some(v.to_string()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Some(v.to_string()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        // Only whole numbers that a float holds exactly; anything else would silently change.
        if v.fract() == 0.0 && v.abs() < 9_007_199_254_740_992.0 {
            Ok(Some(format!("{}", v as i64)))
        } else {
            Err(E::custom(format!(
                "the number {v} cannot be kept exactly; write it in quotes"
            )))
        }
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Some(v.to_string()))
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(StringishVisitor)
    }
}

/// A string, number or bool as text; null as `None`.
pub fn deserialize_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    d.deserialize_any(StringishVisitor)
}

/// A string, number or bool as text; null is an error.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    deserialize_opt(d)?.ok_or_else(|| de::Error::custom("expected a string, got null"))
}
