//! Whether a tag fires for an event: its trigger (event names) and the consent it needs.

use serde::{Deserialize, Serialize};

use crate::event::{is_blank, is_truthy, EventData, Val};

/// `trigger: {events: [...], exclude_events: [...]}`; names compared trimmed and lowercased.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Trigger {
    pub events: Vec<String>,
    pub exclude_events: Vec<String>,
}

/// Event names are compared trimmed and lowercased.
pub fn norm_name(name: &str) -> String {
    name.trim().to_lowercase()
}

/// A [`Trigger`] with its names normalized once, at config load.
#[derive(Debug, Clone, Default)]
pub struct TriggerMatcher {
    events: Vec<String>,
    exclude: Vec<String>,
}

impl TriggerMatcher {
    pub fn new(t: &Trigger) -> Self {
        Self {
            events: t.events.iter().map(|n| norm_name(n)).collect(),
            exclude: t.exclude_events.iter().map(|n| norm_name(n)).collect(),
        }
    }

    pub fn fires_for(&self, incoming: &str) -> bool {
        if self.events.is_empty() && self.exclude.is_empty() {
            return true;
        }
        let name = norm_name(incoming);
        (self.events.is_empty() || self.events.contains(&name)) && !self.exclude.contains(&name)
    }
}

/// `ad_storage_consent:` of a tag.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentMode {
    #[default]
    Optional,
    Required,
}

/// Whether ad storage is granted: `consent_state.ad_storage` decides when present (not null
/// or blank); else the third character of GA4's `x-ga-gcs` must be `1` (`G110`, `G111`).
pub fn ad_storage_granted(event: &EventData<'_>) -> bool {
    match event.get_path("consent_state.ad_storage") {
        Some(v) if !is_blank(v) => is_truthy(v),
        _ => {
            event
                .get("x-ga-gcs")
                .and_then(Val::as_str)
                .and_then(|gcs| gcs.trim().chars().nth(2))
                == Some('1')
        }
    }
}
