//! Fuzzes the Pinterest mapping: a `/data` body → event data → `Tag::evaluate` for each
//! event, the way the server runs a request (`pipeline::Pipeline::evaluate`).
//!
//! Input: one selector byte, then the `/data` body. Selector bits 0-1 choose one of four tag
//! configurations built from config entries (`TagConfig` → `build()`, as
//! `server::build_tags` does): the shipped one (native table, web), stape table with
//! `ad_storage_consent: required` and an `event_map`, a fixed standard event for an app,
//! and one with `user_data` / `custom_data` / `server_event_data` overrides. Bit 2 adds a
//! `Referer` carrying `epik` (the landing-page click id path).
//!
//! The body is parsed and given its canonical keys by mirrors of the private
//! `ingest::data::parse_body` / `canonical_keys` (`tagbridge_fuzz::parse_data_body`,
//! `canonical_keys`: same public building blocks), then redacted with the real
//! `ingest::privacy::Redactor` (as `AppState::run` does) and mapped by the real tag.
//!
//! Invariants beyond "no panic", per mapped event:
//! - the output is one valid JSON object with Pinterest's required fields: `event_name` a
//!   Pinterest standard name equal to the `Outbound` one, `action_source` as configured,
//!   `event_time` an integer not after the receive time, `event_id` non-empty and equal to
//!   the `Outbound` one, `user_data` an object;
//! - every hashed `user_data` key is an array of 1..=10 lowercase hex SHA-256 strings; the
//!   others are non-empty text (`client_ip_address` an IP address; none of them for a
//!   non-web source);
//! - texts are clipped (URL 2,048 bytes, User-Agent 512, others 1,024), `contents` and
//!   `content_ids` hold at most 200 entries, no empty value is written;
//! - no e-mail address that the request carried only in personal-data fields (user data
//!   sources, URLs; raw or percent-encoded) appears in the output;
//! - `_epik` cookies are well-formed, for the request host's registrable domain;
//! - per request: the mapped bytes are ≤ `AMPLIFICATION` (20) × body bytes +
//!   `PER_EVENT_ALLOWANCE` (1,024) × events.
//!
//! Run from `fuzz/`: `cargo +nightly fuzz run map_event corpus/map_event seeds/map_event`.

#![no_main]

use std::{
    sync::{Arc, OnceLock},
    time::{Duration, SystemTime},
};

use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};
use tagbridge::{
    config::Config,
    event::{EventData, RequestContext},
    ingest::privacy::Redactor,
    pipeline::{AMPLIFICATION, PER_EVENT_ALLOWANCE},
    tags::{
        common::{
            hashing::MAX_VALUES_PER_KEY,
            limits::{MAX_ITEMS, MAX_TEXT, MAX_URL, MAX_USER_AGENT},
        },
        pinterest::names::{hash_rule, CUSTOM_DATA_KEYS, STANDARD_EVENTS},
        SkipReason, Tag, TagConfig, TagDecision,
    },
};
use tagbridge_fuzz::{
    assert_epik_cookie, assert_no_email_leak, canonical_keys, parse_data_body, sensitive_emails,
};

const NOW_S: u64 = 1_767_225_600; // 2026-01-01T00:00:00Z
const HOST: &str = "track.shop.example.com";
const CLIENT_IP: &str = "203.0.113.9";
const UA: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36";
const REFERER: &str = "https://www.pinterest.com/pin/123/?epik=dj0yJnU9cmVmZXJlcg";

struct Variant {
    tag: Arc<dyn Tag>,
    web: bool,
    action_source: &'static str,
    /// `ad_storage_consent: required`: the only reason an event may be skipped.
    consent_required: bool,
    /// Top-level keys the configuration's `server_event_data` adds.
    extra_keys: &'static [&'static str],
}

struct Harness {
    variants: Vec<Variant>,
    redactor: Redactor,
}

fn harness() -> &'static Harness {
    static H: OnceLock<Harness> = OnceLock::new();
    H.get_or_init(|| {
        let base = json!({"type": "pinterest", "advertiser_id": "549755885175", "access_token": "pina_FUZZ"});
        let with = |name: &str, extra: Value| -> Arc<dyn Tag> {
            let mut v = base.clone();
            v["name"] = json!(name);
            for (k, x) in extra.as_object().expect("object") {
                v[k] = x.clone();
            }
            let tc: TagConfig = serde_json::from_value(v).expect("tag settings");
            tc.validate("tags[0]").expect("valid tag settings");
            tc.build()
        };
        let variants = vec![
            Variant {
                tag: with("shipped", json!({"inherit_table": "native", "action_source": "web", "ad_storage_consent": "optional", "test_mode": true})),
                web: true,
                action_source: "web",
                consent_required: false,
                extra_keys: &[],
            },
            Variant {
                tag: with("stape", json!({"inherit_table": "stape", "ad_storage_consent": "required", "partner_name": "fuzz-partner", "event_map": {"My_Event": "lead", "gtm.click": "custom"}})),
                web: true,
                action_source: "web",
                consent_required: true,
                extra_keys: &[],
            },
            Variant {
                tag: with("app", json!({"event_name": "standard", "standard_event": "checkout", "action_source": "app_android"})),
                web: false,
                action_source: "app_android",
                consent_required: false,
                extra_keys: &[],
            },
            Variant {
                tag: with("overrides", json!({
                    "user_data": {"em": {"from": "contact.mail"}, "external_id": {"from": "customer.id"}, "ph": {"from": "contact.phone"}},
                    "custom_data": {"content_name": {"from": "page_title"}, "content_brand": "Acme", "np": "fuzz"},
                    "server_event_data": {"language": {"from": "language"}, "opt_out": {"from": "ads_opt_out"}},
                })),
                web: true,
                action_source: "web",
                consent_required: false,
                extra_keys: &["language", "opt_out"],
            },
        ];
        Harness {
            variants,
            redactor: Redactor::new(&Config::default().privacy.redact_query_params),
        }
    })
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Checks one value as written (`write_clean` drops empties) and its texts' clip limit.
fn check_clean(v: &Value, max: usize, path: &str) {
    match v {
        Value::Null => panic!("null written at {path}"),
        Value::String(s) => {
            assert!(!s.trim().is_empty(), "blank text written at {path}");
            assert!(
                s.len() <= max,
                "{path}: {} bytes, over the {max}-byte clip",
                s.len()
            );
        }
        Value::Array(a) => {
            assert!(!a.is_empty(), "empty array written at {path}");
            a.iter().for_each(|x| check_clean(x, max, path));
        }
        Value::Object(m) => {
            assert!(!m.is_empty(), "empty object written at {path}");
            m.iter()
                .for_each(|(k, x)| check_clean(x, max, &format!("{path}.{k}")));
        }
        _ => {}
    }
}

fn check_event(out: &[u8], outbound: &tagbridge::tags::Outbound, v: &Variant, emails: &[String]) {
    let event: Value = serde_json::from_slice(out).unwrap_or_else(|e| {
        panic!(
            "mapped event is not valid JSON ({e}): {:?}",
            String::from_utf8_lossy(out)
        )
    });
    let ev = event
        .as_object()
        .unwrap_or_else(|| panic!("mapped event is not an object: {event}"));

    let name = ev["event_name"].as_str().expect("event_name: text");
    assert!(
        STANDARD_EVENTS.contains(&name),
        "event_name {name:?} is not a Pinterest name"
    );
    assert_eq!(name, outbound.event_name, "Outbound.event_name");
    assert_eq!(ev["action_source"], json!(v.action_source));
    let t = ev["event_time"]
        .as_i64()
        .unwrap_or_else(|| panic!("event_time {}", ev["event_time"]));
    assert!(
        (0..=NOW_S as i64).contains(&t),
        "event_time {t} outside 0..=receive time {NOW_S}"
    );
    let id = ev["event_id"].as_str().expect("event_id: text");
    assert!(!id.trim().is_empty(), "blank event_id");
    assert_eq!(id, outbound.event_id, "Outbound.event_id");

    for (k, x) in ev {
        let max = if k == "event_source_url" {
            MAX_URL
        } else {
            MAX_TEXT
        };
        if k != "user_data" {
            check_clean(x, max, k);
        }
        let known = [
            "event_name",
            "action_source",
            "event_time",
            "event_id",
            "event_source_url",
            "partner_name",
            "user_data",
            "custom_data",
        ];
        assert!(
            known.contains(&k.as_str()) || v.extra_keys.contains(&k.as_str()),
            "unexpected top-level key {k:?}"
        );
    }
    if !v.web {
        assert!(
            !ev.contains_key("event_source_url"),
            "event_source_url for a non-web source"
        );
    }

    let ud = ev["user_data"].as_object().expect("user_data: an object");
    for (k, x) in ud {
        check_clean(x, MAX_TEXT, &format!("user_data.{k}"));
        if hash_rule(k).is_some() {
            let list = x
                .as_array()
                .unwrap_or_else(|| panic!("user_data.{k} is not an array: {x}"));
            assert!(
                list.len() <= MAX_VALUES_PER_KEY,
                "user_data.{k}: {} values",
                list.len()
            );
            for h in list {
                let h = h.as_str().unwrap_or("");
                assert!(
                    is_sha256_hex(h),
                    "user_data.{k}: {h:?} is not a lowercase SHA-256"
                );
            }
            continue;
        }
        let text = x
            .as_str()
            .unwrap_or_else(|| panic!("user_data.{k} is not text: {x}"));
        match k.as_str() {
            "client_ip_address" => {
                assert!(v.web, "client_ip_address for a non-web source");
                assert!(
                    text.parse::<std::net::IpAddr>().is_ok(),
                    "client_ip_address {text:?}"
                );
            }
            "client_user_agent" => {
                assert!(v.web, "client_user_agent for a non-web source");
                assert!(
                    text.len() <= MAX_USER_AGENT,
                    "client_user_agent: {} bytes",
                    text.len()
                );
            }
            "click_id" | "partner_id" => {}
            other => panic!("unexpected user_data key {other:?}"),
        }
    }

    if let Some(cd) = ev.get("custom_data") {
        let cd = cd.as_object().expect("custom_data: an object");
        for (k, x) in cd {
            assert!(
                CUSTOM_DATA_KEYS.contains(&k.as_str()),
                "unexpected custom_data key {k:?}"
            );
            match k.as_str() {
                "contents" | "content_ids" => {
                    let n = x.as_array().map_or(0, Vec::len);
                    assert!(n <= MAX_ITEMS, "custom_data.{k}: {n} entries");
                }
                "value" | "predicted_ltv" => {
                    let s = x
                        .as_str()
                        .unwrap_or_else(|| panic!("custom_data.{k} is not text: {x}"));
                    assert!(
                        s.parse::<f64>().is_ok_and(f64::is_finite),
                        "custom_data.{k} = {s:?}"
                    );
                }
                "num_items" => assert!(x.is_i64() || x.is_u64(), "num_items {x}"),
                _ => {}
            }
        }
    }
    assert_no_email_leak(&event, emails, "mapped event");
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let h = harness();
    let v = &h.variants[usize::from(selector & 3)];
    let Some((objects, shared, _many)) = parse_data_body(body) else {
        return;
    };
    let shared = shared.map(|mut s| {
        s.sort_dedup();
        s
    });
    let mut events: Vec<EventData<'_>> = objects
        .into_iter()
        .map(|o| match &shared {
            Some(s) => EventData::with_shared(o, s),
            None => EventData::new(o),
        })
        .collect();
    for e in &mut events {
        canonical_keys(e, CLIENT_IP, Some(UA), Some("de"));
    }
    // AppState::run: privacy redaction before the pipeline.
    let events: Vec<EventData<'_>> = events
        .iter()
        .map(|e| {
            if h.redactor.needed(e) {
                h.redactor.apply(e)
            } else {
                e.clone()
            }
        })
        .collect();
    let req = RequestContext {
        received_at: SystemTime::UNIX_EPOCH + Duration::from_secs(NOW_S),
        cookies: Vec::new(),
        host: Some(HOST),
        referer: (selector & 4 != 0).then_some(REFERER),
        debug: false,
        debug_allowed: false,
        trace_id: "0af7651916cd43dd8448eb211c80319c".into(),
    };
    let input: Value = serde_json::from_slice(body).expect("parse_json accepted it");
    let emails = sensitive_emails(&input);

    let mut mapped = 0usize;
    let mut out = Vec::new();
    for e in &events {
        out.clear();
        let result = v.tag.evaluate(e, &req, &mut out);
        for c in &result.cookies {
            assert_epik_cookie(&c.header_value(), Some("example.com"));
        }
        match result.decision {
            TagDecision::Skip(reason) => {
                assert!(
                    v.consent_required && reason == SkipReason::ConsentDenied,
                    "skipped ({reason:?}) by a tag that fires for every event"
                );
                assert!(result.cookies.is_empty(), "cookies for a skipped event");
            }
            TagDecision::Send(ob) | TagDecision::DryRun(ob) => {
                mapped += out.len();
                check_event(&out, &ob, v, &emails);
            }
        }
    }
    let bound = AMPLIFICATION * body.len() + PER_EVENT_ALLOWANCE * events.len();
    assert!(
        mapped <= bound,
        "amplification: {} events from a {}-byte body mapped to {mapped} bytes, over the bound {bound} \
         (20 x body + 1024 x events)",
        events.len(),
        body.len()
    );
});
