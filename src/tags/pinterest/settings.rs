//! The Pinterest tag's settings: one entry under `tags:` with `type: pinterest`
//! (`docs/MAPPING.md` §1).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::names;
pub use crate::tags::common::{
    gate::{ConsentMode, Trigger},
    sources::{FromPath, OverrideValue},
};
use crate::{
    support::{stringish, ConfigError, Secret},
    tags::LogMode,
};

pub const DEFAULT_API_BASE: &str = "https://api.pinterest.com";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinterestSettings {
    /// Unique tag name (logs, metrics, responses).
    pub name: String,
    /// Ad account id, digits.
    #[serde(deserialize_with = "stringish::deserialize")]
    pub advertiser_id: String,
    /// Conversion access token; empty = dry run.
    #[serde(default)]
    pub access_token: Secret,
    /// API base URL (default `https://api.pinterest.com`); tests point it at a mock.
    #[serde(default = "default_api_base")]
    pub api_base: String,
    /// How the Pinterest event name is chosen (default `inherit`).
    #[serde(default)]
    pub event_name: EventNameMode,
    /// The name used with `event_name: standard`.
    #[serde(default)]
    pub standard_event: Option<String>,
    /// Which built-in GA4 → Pinterest table `inherit` uses (default `native`).
    #[serde(default)]
    pub inherit_table: InheritTable,
    /// GA4 name → Pinterest name, merged over the table (keys compared lowercased).
    #[serde(default)]
    pub event_map: BTreeMap<String, String>,
    #[serde(default)]
    pub action_source: ActionSource,
    /// Append `?test=true`: Pinterest validates but does not record.
    #[serde(default)]
    pub test_mode: bool,
    /// Answer the caller only after Pinterest answered, with the outcome.
    #[serde(default)]
    pub wait_for_response: bool,
    #[serde(default)]
    pub ad_storage_consent: ConsentMode,
    #[serde(default)]
    pub log: LogMode,
    /// Sent as `partner_name` only when set.
    #[serde(default)]
    pub partner_name: Option<String>,
    /// Event-level overrides.
    #[serde(default)]
    pub server_event_data: BTreeMap<String, OverrideValue>,
    /// `user_data` overrides (normalized and hashed like any other value).
    #[serde(default)]
    pub user_data: BTreeMap<String, OverrideValue>,
    /// `custom_data` overrides.
    #[serde(default)]
    pub custom_data: BTreeMap<String, OverrideValue>,
    /// Which incoming `event_name`s fire the tag (default: all).
    #[serde(default)]
    pub trigger: Trigger,
    /// Map, validate and log, but send nothing (default: true when `access_token` is empty).
    #[serde(default)]
    pub dry_run: Option<bool>,
}

fn default_api_base() -> String {
    DEFAULT_API_BASE.to_owned()
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventNameMode {
    #[default]
    Inherit,
    Standard,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InheritTable {
    #[default]
    Native,
    Stape,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionSource {
    #[default]
    Web,
    Offline,
    AppIos,
    AppAndroid,
}

impl ActionSource {
    pub fn as_str(self) -> &'static str {
        match self {
            ActionSource::Web => "web",
            ActionSource::Offline => "offline",
            ActionSource::AppIos => "app_ios",
            ActionSource::AppAndroid => "app_android",
        }
    }
}

impl PinterestSettings {
    /// True when events are mapped and logged but not sent.
    pub fn is_dry_run(&self) -> bool {
        self.dry_run.unwrap_or(self.access_token.is_empty())
    }

    pub fn partner_name(&self) -> Option<&str> {
        self.partner_name
            .as_deref()
            .map(str::trim)
            .filter(|p| !p.is_empty())
    }

    /// # Errors
    /// The first invalid setting, as `tags[i].key: problem`.
    pub fn validate(&self, path: &str) -> Result<Vec<String>, ConfigError> {
        let err = |key: &str, msg: String| Err(ConfigError::new(format!("{path}.{key}"), msg));
        let mut warnings = Vec::new();
        if self.name.trim().is_empty() {
            return err("name", "must not be empty".into());
        }
        let id = self.advertiser_id.trim();
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
            return err(
                "advertiser_id",
                format!("must be digits, got {:?}", self.advertiser_id),
            );
        }
        if id.len() != 12 {
            warnings.push(format!(
                "{path}.advertiser_id: Pinterest ad account ids have 12 digits, got {}",
                id.len()
            ));
        }
        match url::Url::parse(&self.api_base) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
            _ => {
                return err(
                    "api_base",
                    format!("must be an http(s) URL, got {:?}", self.api_base),
                )
            }
        }
        match (self.event_name, self.standard_event.as_deref()) {
            (EventNameMode::Standard, None) => {
                return err(
                    "standard_event",
                    "is required with event_name: standard".into(),
                )
            }
            (_, Some(name)) if !names::is_standard(name) => {
                return err(
                    "standard_event",
                    format!(
                        "must be one of {}, got {name:?}",
                        names::STANDARD_EVENTS.join(", ")
                    ),
                )
            }
            _ => {}
        }
        for (from, to) in &self.event_map {
            if !names::is_standard(to) {
                warnings.push(format!(
                    "{path}.event_map.{from}: {to:?} is not one of Pinterest's event names ({})",
                    names::STANDARD_EVENTS.join(", ")
                ));
            }
        }
        // The token goes into an HTTP header: one that cannot would fail every batch for a
        // day (a transport error, retried) instead of failing here. The value is never echoed.
        if !self
            .access_token
            .expose()
            .trim()
            .bytes()
            .all(|b| b.is_ascii_graphic())
        {
            return err(
                "access_token",
                "must be printable ASCII without spaces or line breaks inside (as Pinterest issues it)"
                    .into(),
            );
        }
        if self.dry_run == Some(false) && self.access_token.is_empty() {
            return err(
                "access_token",
                "is empty but dry_run is false: set the token or remove dry_run".into(),
            );
        }
        for key in self.server_event_data.keys() {
            if key == "user_data" || key == "custom_data" {
                return err(
                    &format!("server_event_data.{key}"),
                    format!("set {key} fields with the tag's own {key}: setting"),
                );
            }
        }
        for key in self.user_data.keys() {
            if !names::USER_DATA_KEYS.contains(&key.as_str()) {
                return err(
                    &format!("user_data.{key}"),
                    format!(
                        "unknown user_data key; expected one of {}",
                        names::USER_DATA_KEYS.join(", ")
                    ),
                );
            }
        }
        for key in self.custom_data.keys() {
            if !names::CUSTOM_DATA_KEYS.contains(&key.as_str()) {
                warnings.push(format!(
                    "{path}.custom_data.{key}: not a Pinterest custom_data field; Pinterest may reject the event"
                ));
            }
        }
        for (section, map) in [
            ("server_event_data", &self.server_event_data),
            ("user_data", &self.user_data),
            ("custom_data", &self.custom_data),
        ] {
            for (key, value) in map {
                if let OverrideValue::From(FromPath { from }) = value {
                    if from.trim().is_empty() {
                        return err(
                            &format!("{section}.{key}.from"),
                            "must be a dotted event-data path".into(),
                        );
                    }
                }
            }
        }
        Ok(warnings)
    }
}
