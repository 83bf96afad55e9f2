//! Tags: pure functions from event data to destination events.
//!
//! A [`Tag`] reads one [`EventData`] plus its [`RequestContext`] and decides: send this
//! mapped event (written as JSON into the caller's buffer), or skip it (trigger, consent),
//! and which cookies the response should set. Tags do no I/O and read no clock (the receive
//! time is in the context), so they are tested as plain functions.
//!
//! Every tag type is a [`StandardTag`]: the same gate (trigger → consent → map → dry-run
//! decision) around a destination's [`Mapper`]. The pieces every destination needs —
//! triggers, consent, user-data sources, click ids, commerce, normalization and hashing,
//! JSON writing — are in [`common`]. Delivery belongs to the dispatcher, which talks to a
//! destination through [`crate::destination::Destination`].
//!
//! # Adding a destination
//!
//! A folder beside `pinterest/` (settings implementing [`TagSettings`], a [`Mapper`], a
//! `Destination`), and one line in the `tag_types!` registry below. See
//! `docs/ARCHITECTURE.md`.

pub mod common;
pub mod pinterest;

use std::{fmt, sync::Arc};

use serde::{de::DeserializeOwned, Deserialize, Deserializer, Serialize};
use serde_json::Value;

pub use crate::web::SetCookie;
use crate::{
    destination::Destination,
    event::{EventData, RequestContext},
    support::ConfigError,
};
use common::{
    gate::{ad_storage_granted, ConsentMode, TriggerMatcher},
    hashing::Dropped,
};

/// Settings of one tag type: the entry under `tags:` with `type: TYPE`.
pub trait TagSettings:
    Serialize + DeserializeOwned + Clone + fmt::Debug + Send + Sync + 'static
{
    /// The `type:` value.
    const TYPE: &'static str;
    /// A minimal valid entry: gives the types of settings a file does not mention, for
    /// environment overrides (`TAGBRIDGE__TAGS__0__TEST_MODE=true` is a bool).
    fn template() -> Self;
    fn name(&self) -> &str;
    /// Checks what types alone cannot; returns warnings for odd-but-valid settings.
    ///
    /// # Errors
    /// The first invalid setting, as `tags[i].key: problem` (`path` is `tags[i]`).
    fn validate(&self, path: &str) -> Result<Vec<String>, ConfigError>;
    /// Whether events are mapped and logged but not sent.
    fn is_dry_run(&self) -> bool;
    /// Most events the destination takes in one request.
    fn max_batch_events(&self) -> usize;
    /// The runnable tag.
    fn build(&self) -> Arc<dyn Tag>;
}

/// The registry: one line per tag type (`Variant => settings type`). It generates
/// [`TagConfig`], its parsing by `type`, and its dispatch to [`TagSettings`].
macro_rules! tag_types {
    ($($variant:ident => $settings:ty),+ $(,)?) => {
        /// One entry under `tags:` in the config file, by `type`.
        #[derive(Debug, Clone, Serialize, Deserialize)]
        #[serde(tag = "type", rename_all = "snake_case")]
        pub enum TagConfig {
            $($variant($settings)),+
        }

        impl TagConfig {
            /// The `type` values a tag entry may have.
            pub const TYPES: &'static [&'static str] = &[$(<$settings as TagSettings>::TYPE),+];

            /// Parses one tag's settings (without `type`). On error: the key path inside
            /// the tag and the problem.
            pub fn parse(kind: &str, settings: Value) -> Result<TagConfig, (String, String)> {
                $(if kind == <$settings as TagSettings>::TYPE {
                    return typed::<$settings>(settings).map(TagConfig::$variant);
                })+
                Err((
                    "type".into(),
                    format!("unknown tag type {kind:?}; expected one of: {}", Self::TYPES.join(", ")),
                ))
            }

            /// A tag of `kind` with every default filled, as JSON (without `type`).
            pub fn defaults(kind: &str) -> Option<Value> {
                $(if kind == <$settings as TagSettings>::TYPE {
                    return serde_json::to_value(<$settings as TagSettings>::template()).ok();
                })+
                None
            }

            fn settings(&self) -> &dyn DynSettings {
                match self {
                    $(TagConfig::$variant(s) => s),+
                }
            }
        }
    };
}

tag_types! {
    Pinterest => pinterest::PinterestSettings,
}

fn typed<T: DeserializeOwned>(v: Value) -> Result<T, (String, String)> {
    serde_path_to_error::deserialize(v)
        .map_err(|e| (e.path().to_string(), e.into_inner().to_string()))
}

/// [`TagSettings`] without its associated items, so [`TagConfig`] can hand it out.
trait DynSettings {
    fn kind(&self) -> &'static str;
    fn name(&self) -> &str;
    fn validate(&self, path: &str) -> Result<Vec<String>, ConfigError>;
    fn is_dry_run(&self) -> bool;
    fn max_batch_events(&self) -> usize;
    fn build(&self) -> Arc<dyn Tag>;
}

impl<T: TagSettings> DynSettings for T {
    fn kind(&self) -> &'static str {
        T::TYPE
    }
    fn name(&self) -> &str {
        TagSettings::name(self)
    }
    fn validate(&self, path: &str) -> Result<Vec<String>, ConfigError> {
        TagSettings::validate(self, path)
    }
    fn is_dry_run(&self) -> bool {
        TagSettings::is_dry_run(self)
    }
    fn max_batch_events(&self) -> usize {
        TagSettings::max_batch_events(self)
    }
    fn build(&self) -> Arc<dyn Tag> {
        TagSettings::build(self)
    }
}

impl TagConfig {
    /// The tag's `type`.
    pub fn kind(&self) -> &'static str {
        self.settings().kind()
    }
    pub fn name(&self) -> &str {
        self.settings().name()
    }
    /// # Errors
    /// The first invalid setting, with its full key path.
    pub fn validate(&self, path: &str) -> Result<Vec<String>, ConfigError> {
        self.settings().validate(path)
    }
    pub fn is_dry_run(&self) -> bool {
        self.settings().is_dry_run()
    }
    pub fn max_batch_events(&self) -> usize {
        self.settings().max_batch_events()
    }
    pub fn build(&self) -> Arc<dyn Tag> {
        self.settings().build()
    }
}

/// The contract every tag implements.
pub trait Tag: Send + Sync + fmt::Debug {
    /// The tag's unique name from the config (logs, metrics, responses).
    fn name(&self) -> &str;
    /// When the tag's outgoing requests and responses are logged.
    fn log_mode(&self) -> LogMode;
    /// Whether the ingest response waits for the destination's answer.
    fn wait_for_response(&self) -> bool;
    /// Where mapped events go. Tags with equal route keys share batches.
    fn destination(&self) -> Arc<dyn Destination>;
    /// Names of the match keys [`TagOutput::match_keys`] reports (bit `i` = name `i`).
    fn match_keys(&self) -> &'static [&'static str];
    /// Maps one event; the destination event's JSON goes into `out` when it is sent or
    /// dry-run. Pure: no I/O, no clock, no globals.
    fn evaluate(
        &self,
        event: &EventData<'_>,
        req: &RequestContext<'_>,
        out: &mut Vec<u8>,
    ) -> TagOutput;
}

/// What a tag decided for one event.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TagOutput {
    pub decision: TagDecision,
    /// Cookies the ingest response sets (`_epik`).
    pub cookies: Vec<SetCookie>,
    /// Which of the tag's match keys the mapped event carries (bit set).
    pub match_keys: u32,
    /// What normalization dropped (one aggregated log line per request).
    pub dropped: Dropped,
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

impl Default for TagDecision {
    fn default() -> Self {
        TagDecision::Skip(SkipReason::Trigger)
    }
}

/// The header fields of a mapped event (its JSON is in the caller's buffer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outbound {
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

/// The log switch of a tag (stape's "Logs settings").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LogMode {
    /// Never log outgoing requests.
    No,
    /// Log only debug traffic (a GA4 `_dbg`/`debug_mode` event, or the debug header with
    /// the debug token).
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

/// What a mapper reports besides the JSON it wrote.
#[derive(Debug, Clone, Default)]
pub struct MapReport {
    pub match_keys: u32,
    pub dropped: Dropped,
    /// Cookies the response sets for the mapped event (click ids).
    pub cookies: Vec<SetCookie>,
}

/// A destination's mapping: event data → its event JSON. Pure.
pub trait Mapper: Send + Sync + fmt::Debug + 'static {
    /// Writes the destination event for `event` into `out` (empty on entry).
    fn map(
        &self,
        event: &EventData<'_>,
        req: &RequestContext<'_>,
        out: &mut Vec<u8>,
        report: &mut MapReport,
    ) -> Outbound;
    /// Names of the match keys reported in [`MapReport::match_keys`].
    fn match_keys(&self) -> &'static [&'static str];
}

/// The settings every tag has, resolved once at config load.
#[derive(Debug, Clone)]
pub struct Gate {
    pub name: String,
    pub log: LogMode,
    pub wait_for_response: bool,
    pub dry_run: bool,
    pub consent: ConsentMode,
    pub trigger: TriggerMatcher,
}

/// A tag: the common gate around a destination's mapper.
#[derive(Debug)]
pub struct StandardTag<M> {
    pub gate: Gate,
    pub mapper: M,
    pub destination: Arc<dyn Destination>,
}

impl<M: Mapper> Tag for StandardTag<M> {
    fn name(&self) -> &str {
        &self.gate.name
    }

    fn log_mode(&self) -> LogMode {
        self.gate.log
    }

    fn wait_for_response(&self) -> bool {
        self.gate.wait_for_response
    }

    fn destination(&self) -> Arc<dyn Destination> {
        self.destination.clone()
    }

    fn match_keys(&self) -> &'static [&'static str] {
        self.mapper.match_keys()
    }

    fn evaluate(
        &self,
        event: &EventData<'_>,
        req: &RequestContext<'_>,
        out: &mut Vec<u8>,
    ) -> TagOutput {
        let skip = |reason| TagOutput {
            decision: TagDecision::Skip(reason),
            ..TagOutput::default()
        };
        if !self.gate.trigger.fires_for(event.event_name()) {
            return skip(SkipReason::Trigger);
        }
        if self.gate.consent == ConsentMode::Required && !ad_storage_granted(event) {
            return skip(SkipReason::ConsentDenied);
        }
        let mut report = MapReport::default();
        out.clear();
        let outbound = self.mapper.map(event, req, out, &mut report);
        TagOutput {
            decision: if self.gate.dry_run {
                TagDecision::DryRun(outbound)
            } else {
                TagDecision::Send(outbound)
            },
            cookies: report.cookies,
            match_keys: report.match_keys,
            dropped: report.dropped,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_parses_from_its_template() {
        for kind in TagConfig::TYPES {
            let defaults = TagConfig::defaults(kind).expect("template");
            let parsed = TagConfig::parse(kind, defaults).expect("parses");
            assert_eq!(parsed.kind(), *kind);
            // serde's `type` tag agrees with the registry.
            let json = serde_json::to_value(&parsed).expect("json");
            assert_eq!(json["type"], *kind);
        }
        assert!(TagConfig::parse("nope", Value::Null).is_err());
    }
}
