//! Tags: pure functions from event data to destination events.
//!
//! A [`Tag`] reads one [`EventData`] plus its [`RequestContext`] and decides: send this
//! mapped event, or skip it (trigger, consent), and which cookies the response should set.
//! Tags do no I/O and read no clock (the receive time is in the context), so they are
//! tested as plain functions. Delivery belongs to the dispatcher, which talks to a
//! destination through the [`Destination`] trait (request encoding and response
//! classification; the HTTP call itself is the dispatcher's).
//!
//! Adding a destination (Meta CAPI, TikTok) = a sibling module of `pinterest` with its
//! settings, its `Tag` and its `Destination`, plus one variant of [`TagConfig`].

pub mod pinterest;

use std::{fmt, sync::Arc};

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::{
    destination::Destination,
    event::{EventData, RequestContext},
    support::ConfigError,
};

/// One entry under `tags:` in the config file, by `type`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TagConfig {
    Pinterest(pinterest::PinterestSettings),
}

impl TagConfig {
    /// The `type` values a tag entry may have.
    pub const TYPES: &'static [&'static str] = &["pinterest"];

    /// Parses one tag's settings (without `type`). On error: the key path inside the tag and
    /// the problem.
    pub fn parse(kind: &str, settings: Value) -> Result<TagConfig, (String, String)> {
        fn typed<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, (String, String)> {
            serde_path_to_error::deserialize(v)
                .map_err(|e| (e.path().to_string(), e.into_inner().to_string()))
        }
        match kind {
            "pinterest" => typed(settings).map(TagConfig::Pinterest),
            other => Err((
                "type".into(),
                format!(
                    "unknown tag type {other:?}; expected one of: {}",
                    Self::TYPES.join(", ")
                ),
            )),
        }
    }

    /// A tag of `kind` with every default filled, as JSON: the types of its settings
    /// (for environment overrides of keys the file does not set).
    pub fn defaults(kind: &str) -> Option<Value> {
        let minimal = serde_json::json!({"name": "", "advertiser_id": ""});
        let config = Self::parse(kind, minimal).ok()?;
        let mut tree = serde_json::to_value(config).ok()?;
        if let Some(m) = tree.as_object_mut() {
            m.remove("type");
        }
        Some(tree)
    }

    pub fn name(&self) -> &str {
        match self {
            TagConfig::Pinterest(s) => &s.name,
        }
    }

    /// The tag's `type`.
    pub fn kind(&self) -> &'static str {
        match self {
            TagConfig::Pinterest(_) => "pinterest",
        }
    }

    /// Most events its destination takes in one request.
    pub fn max_batch_events(&self) -> usize {
        match self {
            TagConfig::Pinterest(_) => pinterest::MAX_EVENTS_PER_REQUEST,
        }
    }

    /// Whether the tag maps and logs events without sending them.
    pub fn is_dry_run(&self) -> bool {
        match self {
            TagConfig::Pinterest(s) => s.is_dry_run(),
        }
    }

    /// Validates the settings; `path` is this entry's key path (`tags[0]`).
    ///
    /// # Errors
    /// The first invalid setting, with its full key path.
    pub fn validate(&self, path: &str) -> Result<Vec<String>, ConfigError> {
        match self {
            TagConfig::Pinterest(s) => s.validate(path),
        }
    }

    /// Builds the runnable tag.
    pub fn build(&self) -> Arc<dyn Tag> {
        match self {
            TagConfig::Pinterest(s) => Arc::new(pinterest::PinterestTag::new(s.clone())),
        }
    }
}

/// The contract every destination's tag implements.
pub trait Tag: Send + Sync + fmt::Debug {
    /// The tag's unique name from the config (logs, metrics, responses).
    fn name(&self) -> &str;
    /// When the tag's outgoing requests and responses are logged.
    fn log_mode(&self) -> LogMode;
    /// Whether the ingest response waits for the destination's answer.
    fn wait_for_response(&self) -> bool;
    /// Where mapped events go. Tags with equal [`Destination::route_key`]s share batches.
    fn destination(&self) -> Arc<dyn Destination>;
    /// Maps one event. Pure: no I/O, no clock, no globals.
    fn evaluate(&self, event: &EventData, request: &RequestContext) -> TagOutput;
}

/// What a tag decided for one event.
#[derive(Debug, Clone, PartialEq)]
pub struct TagOutput {
    pub decision: TagDecision,
    /// Cookies the ingest response sets (`_epik`).
    pub cookies: Vec<SetCookie>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TagDecision {
    /// Queue this event for its destination.
    Send(Outbound),
    /// Mapped and validated, logged, but not sent (`dry_run`).
    DryRun(Outbound),
    /// The tag does not fire for this event; a success for the caller, counted.
    Skip(SkipReason),
}

/// A mapped, hashed, ready-to-send destination event.
#[derive(Debug, Clone, PartialEq)]
pub struct Outbound {
    pub event: Value,
    pub event_id: String,
    /// The destination's event name (`checkout`), for logs.
    pub event_name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// Excluded by the tag's `trigger`.
    Trigger,
    /// `ad_storage_consent: required` and ad storage was not granted.
    ConsentDenied,
}

impl SkipReason {
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::Trigger => "trigger",
            SkipReason::ConsentDenied => "consent_denied",
        }
    }
}

/// A cookie a tag asks the ingest response to set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetCookie {
    pub name: String,
    pub value: String,
    pub domain: Option<String>,
    pub path: String,
    pub max_age_s: u64,
    pub secure: bool,
    pub http_only: bool,
    pub same_site: &'static str,
}

impl SetCookie {
    /// The `Set-Cookie` header value.
    pub fn header_value(&self) -> String {
        let mut out = format!(
            "{}={}; Path={}; Max-Age={}",
            self.name, self.value, self.path, self.max_age_s
        );
        if let Some(d) = &self.domain {
            out.push_str("; Domain=");
            out.push_str(d);
        }
        if self.secure {
            out.push_str("; Secure");
        }
        if self.http_only {
            out.push_str("; HttpOnly");
        }
        out.push_str("; SameSite=");
        out.push_str(self.same_site);
        out
    }
}

/// The log switch of a tag (stape's "Logs settings").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LogMode {
    /// Never log outgoing requests.
    No,
    /// Log only debug traffic (a GA4 `_dbg`/`debug_mode` event or the debug header).
    #[default]
    Debug,
    /// Log every outgoing request and response.
    Always,
}

impl LogMode {
    pub fn logs(self, debug_traffic: bool) -> bool {
        match self {
            LogMode::No => false,
            LogMode::Debug => debug_traffic,
            LogMode::Always => true,
        }
    }
}

impl<'de> Deserialize<'de> for LogMode {
    /// `no` | `debug` | `always`; also YAML 1.1 booleans (`no` may arrive as `false`).
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = crate::support::stringish::deserialize(d)?;
        match text.trim().to_ascii_lowercase().as_str() {
            "no" | "false" | "off" | "never" => Ok(LogMode::No),
            "debug" => Ok(LogMode::Debug),
            "always" | "true" | "on" => Ok(LogMode::Always),
            other => Err(serde::de::Error::custom(format!(
                "expected one of \"no\", \"debug\", \"always\", got {other:?}"
            ))),
        }
    }
}
