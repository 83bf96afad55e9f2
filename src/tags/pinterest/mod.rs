//! The Pinterest Conversions API tag (`pinterest-tag.md`).
//!
//! - `settings`: the YAML settings and their validation.
//! - `names`: Pinterest event names and the GA4 → Pinterest tables.
//! - `mapping`: event data → Pinterest event (pure).
//! - `hashing`: normalization and SHA-256 of user data (pure).
//! - `destination`: request encoding and answer classification for the dispatcher.

mod destination;
pub mod hashing;
mod mapping;
pub mod names;
mod settings;

use std::{collections::HashMap, sync::Arc};

use serde_json::Value;

pub use destination::{PinterestDestination, MAX_EVENTS_PER_REQUEST};
pub use settings::{
    ActionSource, ConsentMode, EventNameMode, InheritTable, OverrideValue, PinterestSettings,
    Trigger, DEFAULT_API_BASE,
};

use super::{LogMode, Outbound, SetCookie, SkipReason, Tag, TagDecision, TagOutput};
use crate::destination::Destination;
use crate::event::{is_truthy, EventData, RequestContext};

/// How long the `_epik` cookie lives: one year.
const EPIK_MAX_AGE_S: u64 = 31_536_000;

/// A configured Pinterest tag.
#[derive(Debug)]
pub struct PinterestTag {
    settings: PinterestSettings,
    /// `event_map` merged over the chosen table, keys lowercased.
    event_map: HashMap<String, String>,
    trigger_events: Vec<String>,
    trigger_exclude: Vec<String>,
    destination: Arc<PinterestDestination>,
}

fn norm_name(name: &str) -> String {
    name.trim().to_lowercase()
}

impl PinterestTag {
    pub fn new(settings: PinterestSettings) -> Self {
        let event_map = settings
            .event_map
            .iter()
            .map(|(k, v)| (norm_name(k), v.trim().to_owned()))
            .collect();
        let trigger_events = settings
            .trigger
            .events
            .iter()
            .map(|n| norm_name(n))
            .collect();
        let trigger_exclude = settings
            .trigger
            .exclude_events
            .iter()
            .map(|n| norm_name(n))
            .collect();
        let destination = Arc::new(PinterestDestination::new(&settings));
        Self {
            settings,
            event_map,
            trigger_events,
            trigger_exclude,
            destination,
        }
    }

    pub fn settings(&self) -> &PinterestSettings {
        &self.settings
    }

    /// The Pinterest event name for an incoming event (§2).
    pub fn event_name(&self, incoming: &str) -> String {
        if self.settings.event_name == EventNameMode::Standard {
            if let Some(name) = &self.settings.standard_event {
                return name.clone();
            }
        }
        let key = norm_name(incoming);
        if let Some(mapped) = self.event_map.get(&key) {
            return mapped.clone();
        }
        let stape = self.settings.inherit_table == InheritTable::Stape;
        names::table_lookup(&key, stape)
            .unwrap_or("custom")
            .to_owned()
    }

    fn fires_for(&self, incoming: &str) -> bool {
        let name = norm_name(incoming);
        (self.trigger_events.is_empty() || self.trigger_events.contains(&name))
            && !self.trigger_exclude.contains(&name)
    }

    /// §6: `consent_state.ad_storage` decides when present (not null or blank); else the
    /// third character of `x-ga-gcs` must be `1`.
    fn ad_storage_granted(event: &EventData) -> bool {
        match event.get_path("consent_state.ad_storage") {
            Some(v) if !crate::event::is_blank(v) => is_truthy(v),
            _ => {
                event
                    .get("x-ga-gcs")
                    .and_then(Value::as_str)
                    .and_then(|gcs| gcs.trim().chars().nth(2))
                    == Some('1')
            }
        }
    }

    /// §9: the `_epik` cookie for a landing page that carries `epik`.
    fn epik_cookie(event: &EventData, req: &RequestContext) -> Option<SetCookie> {
        let value = mapping::epik_from_url(event, req)?;
        Some(SetCookie {
            name: "_epik".into(),
            value: cookie_safe(&value),
            domain: req.host.as_deref().and_then(registrable_domain),
            path: "/".into(),
            max_age_s: EPIK_MAX_AGE_S,
            secure: true,
            http_only: false,
            same_site: "Lax",
        })
    }
}

/// Keeps a cookie value within RFC 6265 `cookie-octet`s (percent-encodes the rest).
fn cookie_safe(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            0x21 | 0x23..=0x2B | 0x2D..=0x3A | 0x3C..=0x5B | 0x5D..=0x7E => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// eTLD+1 of a host (`track.shop.example.com` → `example.com`), from the public suffix list.
/// IP addresses and bare public suffixes have none: the cookie is then host-only.
pub fn registrable_domain(host: &str) -> Option<String> {
    let host = host.trim().trim_end_matches('.').to_ascii_lowercase();
    if host.is_empty() || host.parse::<std::net::IpAddr>().is_ok() || host.starts_with('[') {
        return None;
    }
    psl::domain_str(&host)
        .filter(|d| d.contains('.'))
        .map(str::to_owned)
}

impl Tag for PinterestTag {
    fn name(&self) -> &str {
        &self.settings.name
    }

    fn log_mode(&self) -> LogMode {
        self.settings.log
    }

    fn wait_for_response(&self) -> bool {
        self.settings.wait_for_response
    }

    fn destination(&self) -> Arc<dyn Destination> {
        self.destination.clone()
    }

    fn evaluate(&self, event: &EventData, req: &RequestContext) -> TagOutput {
        let skip = |reason| TagOutput {
            decision: TagDecision::Skip(reason),
            cookies: Vec::new(),
        };
        if !self.fires_for(event.event_name()) {
            return skip(SkipReason::Trigger);
        }
        if self.settings.ad_storage_consent == ConsentMode::Required
            && !Self::ad_storage_granted(event)
        {
            return skip(SkipReason::ConsentDenied);
        }
        let name = self.event_name(event.event_name());
        let mapped = mapping::build_event(&self.settings, &name, event, req);
        let event_id = mapped
            .get("event_id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let event_name = mapped
            .get("event_name")
            .and_then(Value::as_str)
            .unwrap_or(&name)
            .to_owned();
        let outbound = Outbound {
            event: Value::Object(mapped),
            event_id,
            event_name,
        };
        TagOutput {
            decision: if self.settings.is_dry_run() {
                TagDecision::DryRun(outbound)
            } else {
                TagDecision::Send(outbound)
            },
            cookies: Self::epik_cookie(event, req).into_iter().collect(),
        }
    }
}

#[cfg(test)]
mod tests;
