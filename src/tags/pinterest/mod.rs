//! The Pinterest Conversions API tag (`docs/MAPPING.md`).
//!
//! - `settings`: the YAML settings, their validation, and the tag they build.
//! - `names`: event names, the GA4 → Pinterest tables, user-data keys and their rules.
//! - `mapping`: event data → Pinterest event JSON (pure).
//! - `destination`: the request for a batch, what an answer means, Pinterest's limits.

mod destination;
mod mapping;
pub mod names;
mod settings;

use std::{collections::HashMap, sync::Arc};

pub use destination::{PinterestDestination, MAX_EVENTS_PER_REQUEST};
pub use settings::{
    ActionSource, ConsentMode, EventNameMode, FromPath, InheritTable, OverrideValue,
    PinterestSettings, Trigger, DEFAULT_API_BASE,
};

use super::{
    common::{
        gate::{norm_name, TriggerMatcher},
        sources::{prepare, Override, SourcePath},
    },
    Gate, MapReport, Mapper, Outbound, SetCookie, StandardTag, TagSettings,
};
use crate::{
    event::{EventData, RequestContext},
    web::registrable_domain,
};

/// How long the `_epik` cookie lives: one year.
const EPIK_MAX_AGE_S: u64 = 31_536_000;

/// A configured Pinterest tag.
pub type PinterestTag = StandardTag<PinterestMapper>;

/// Everything the mapping needs, resolved once at config load.
#[derive(Debug)]
pub struct Plan {
    web: bool,
    action_source: &'static str,
    partner_name: Option<String>,
    standard_event: Option<String>,
    stape_table: bool,
    /// `event_map` merged over the table, keys lowercased.
    event_map: HashMap<String, String>,
    server_event_data: Vec<(String, Override)>,
    user_data: Vec<(String, Override)>,
    custom_data: Vec<(String, Override)>,
    /// [`names::USER_SOURCES`], resolved once.
    user_sources: Vec<(&'static str, Vec<SourcePath>)>,
}

/// Pinterest's mapping.
#[derive(Debug)]
pub struct PinterestMapper {
    plan: Plan,
}

impl PinterestTag {
    pub fn new(settings: PinterestSettings) -> Self {
        let plan = Plan {
            web: settings.action_source == ActionSource::Web,
            action_source: settings.action_source.as_str(),
            partner_name: settings.partner_name().map(str::to_owned),
            standard_event: (settings.event_name == EventNameMode::Standard)
                .then(|| settings.standard_event.clone())
                .flatten(),
            stape_table: settings.inherit_table == InheritTable::Stape,
            event_map: settings
                .event_map
                .iter()
                .map(|(k, v)| (norm_name(k), v.trim().to_owned()))
                .collect(),
            server_event_data: prepare(&settings.server_event_data),
            user_data: prepare(&settings.user_data),
            custom_data: prepare(&settings.custom_data),
            user_sources: names::USER_SOURCES
                .iter()
                .map(|(key, paths)| (*key, paths.iter().map(|p| SourcePath::new(p)).collect()))
                .collect(),
        };
        StandardTag {
            gate: Gate {
                name: settings.name.clone(),
                log: settings.log,
                wait_for_response: settings.wait_for_response,
                dry_run: settings.is_dry_run(),
                consent: settings.ad_storage_consent,
                trigger: TriggerMatcher::new(&settings.trigger),
            },
            destination: Arc::new(PinterestDestination::new(&settings)),
            mapper: PinterestMapper { plan },
        }
    }

    /// The Pinterest event name for an incoming event (§2).
    pub fn event_name(&self, incoming: &str) -> String {
        self.mapper.event_name(incoming)
    }
}

impl PinterestMapper {
    fn event_name(&self, incoming: &str) -> String {
        let plan = &self.plan;
        if let Some(name) = &plan.standard_event {
            return name.clone();
        }
        let key = norm_name(incoming);
        if let Some(mapped) = plan.event_map.get(&key) {
            return mapped.clone();
        }
        names::table_lookup(&key, plan.stape_table)
            .unwrap_or("custom")
            .to_owned()
    }
}

impl Mapper for PinterestMapper {
    fn map(
        &self,
        event: &EventData<'_>,
        req: &RequestContext<'_>,
        out: &mut Vec<u8>,
        report: &mut MapReport,
    ) -> Outbound {
        let name = self.event_name(event.event_name());
        let epik = mapping::epik_from_url(event, req);
        let (event_id, event_name) =
            mapping::map_event(&self.plan, &name, event, req, epik.as_deref(), out, report);
        // §9: the `_epik` cookie for a landing page that carries `epik`.
        if let Some(value) = epik {
            report.cookies.push(SetCookie {
                name: "_epik".into(),
                value: crate::web::cookie_safe(crate::tags::common::limits::clip(&value, 512)),
                domain: req.host.and_then(registrable_domain),
                path: "/".into(),
                max_age_s: EPIK_MAX_AGE_S,
                secure: true,
                http_only: false,
                same_site: "Lax",
            });
        }
        Outbound {
            event_id,
            event_name,
        }
    }

    fn match_keys(&self) -> &'static [&'static str] {
        names::MATCH_KEYS
    }
}

impl TagSettings for PinterestSettings {
    const TYPE: &'static str = "pinterest";

    fn template() -> Self {
        serde_json::from_value(serde_json::json!({"name": "", "advertiser_id": ""}))
            .unwrap_or_else(|_| unreachable!("the template has every required key"))
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn validate(&self, path: &str) -> Result<Vec<String>, crate::support::ConfigError> {
        PinterestSettings::validate(self, path)
    }

    fn is_dry_run(&self) -> bool {
        PinterestSettings::is_dry_run(self)
    }

    fn max_batch_events(&self) -> usize {
        MAX_EVENTS_PER_REQUEST
    }

    fn build(&self) -> Arc<dyn super::Tag> {
        Arc::new(PinterestTag::new(self.clone()))
    }
}

#[cfg(test)]
mod config_tests;
#[cfg(test)]
mod tests;
