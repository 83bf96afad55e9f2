//! A string that must never reach a log line, an error message or a page.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A secret value (access token, ingest key, debug token).
///
/// `Debug`, `Display` and `Serialize` print `***` (or `""` when empty), so a secret
/// cannot leak through `tagbridge check`, a `tracing` field or a config error.
/// The only way to the text is [`Secret::expose`], which is greppable.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret text. Call sites are the HTTP `Authorization` header and key comparisons.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.trim().is_empty()
    }

    fn masked(&self) -> &'static str {
        if self.is_empty() {
            ""
        } else {
            "***"
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({:?})", self.masked())
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.masked())
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.masked())
    }
}

impl<'de> Deserialize<'de> for Secret {
    /// Accepts a string, or a number (an env override such as `TAGBRIDGE__SERVER__INGEST_KEY=1234`
    /// arrives as a number), or null (= empty).
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = super::stringish::deserialize_opt(deserializer)?;
        Ok(Secret(text.unwrap_or_default()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_the_value() {
        let s = Secret::new("pina_SECRET");
        assert_eq!(format!("{s}"), "***");
        assert_eq!(format!("{s:?}"), "Secret(\"***\")");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"***\"");
        assert_eq!(s.expose(), "pina_SECRET");
        assert_eq!(format!("{}", Secret::default()), "");
    }
}
