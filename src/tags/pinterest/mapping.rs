//! Event data → one Pinterest event (`pinterest-tag.md` §3–§5, §7). Pure functions.
//!
//! Order of work for each part: sources (first non-empty wins), then the tag's overrides,
//! then type fixes (Pinterest wants `value` as a string, `num_items` as an integer, ...),
//! then empty-value clean-up, then (user_data) normalization and hashing.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

use super::{
    hashing::{self, HashedKey},
    settings::{ActionSource, FromPath, OverrideValue, PinterestSettings},
};
use crate::event::{float_text, is_blank, number_text, value_text, EventData, RequestContext};

/// `user_data` sources, in precedence order (§4). `@address.` = `user_data.address` (object,
/// or the first element of an array).
const USER_SOURCES: &[(&str, &[&str])] = &[
    ("external_id", &["external_id", "user_id", "userId"]),
    (
        "ln",
        &[
            "lastName",
            "LastName",
            "nameLast",
            "last_name",
            "user_data.last_name",
            "@address.last_name",
        ],
    ),
    (
        "fn",
        &[
            "firstName",
            "FirstName",
            "nameFirst",
            "first_name",
            "user_data.first_name",
            "@address.first_name",
        ],
    ),
    (
        "em",
        &["email", "user_data.email_address", "user_data.email"],
    ),
    ("ph", &["phone", "user_data.phone_number"]),
    ("ct", &["city", "@address.city"]),
    (
        "st",
        &["state", "region", "user_data.region", "@address.region"],
    ),
    (
        "zp",
        &[
            "zip",
            "postal_code",
            "user_data.postal_code",
            "@address.postal_code",
        ],
    ),
    (
        "country",
        &[
            "countryCode",
            "country",
            "user_data.country",
            "@address.country",
        ],
    ),
    ("ge", &["gender"]),
    ("db", &["db"]),
    ("hashed_maids", &["hashed_maids"]),
];

/// Builds the Pinterest event. `event_name` is already resolved (§2).
pub(super) fn build_event(
    settings: &PinterestSettings,
    event_name: &str,
    event: &EventData,
    req: &RequestContext,
) -> Map<String, Value> {
    let web = settings.action_source == ActionSource::Web;
    let mut out = Map::new();
    out.insert("event_name".into(), Value::String(event_name.to_owned()));
    out.insert(
        "action_source".into(),
        Value::String(settings.action_source.as_str().to_owned()),
    );
    out.insert(
        "event_time".into(),
        Value::from(event_time(event, req.received_at)),
    );
    out.insert("event_id".into(), Value::String(event_id(event)));
    if web {
        if let Some(url) = event.text("page_location") {
            out.insert("event_source_url".into(), Value::String(url));
        }
    }
    if let Some(p) = settings.partner_name() {
        out.insert("partner_name".into(), Value::String(p.to_owned()));
    }

    let user_data = build_user_data(settings, event, req, web);
    out.insert("user_data".into(), Value::Object(user_data));

    let mut custom = ecommerce(event);
    apply_overrides(&mut custom, &settings.custom_data, event);
    fix_custom_types(&mut custom);
    clean(&mut custom);
    if !custom.is_empty() {
        out.insert("custom_data".into(), Value::Object(custom));
    }

    apply_overrides(&mut out, &settings.server_event_data, event);
    fix_event_types(&mut out);
    out
}

/// Unix seconds of receipt; an event's own `timestamp_micros` wins when present and not in
/// the future (a client clock ahead of ours must not produce future events).
pub(super) fn event_time(event: &EventData, received_at: SystemTime) -> i64 {
    let received = received_at
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let own = event.get("timestamp_micros").and_then(|v| match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    });
    match own {
        Some(micros) if micros.is_finite() && micros > 0.0 => {
            let secs = (micros / 1_000_000.0).floor() as i64;
            if secs <= received {
                secs
            } else {
                received
            }
        }
        _ => received,
    }
}

/// `event_id`, else `transaction_id`, else a fresh id (Pinterest requires one).
pub(super) fn event_id(event: &EventData) -> String {
    event
        .text("event_id")
        .or_else(|| event.text("transaction_id"))
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

fn source<'a>(event: &'a EventData, path: &str) -> Option<&'a Value> {
    match path.strip_prefix("@address.") {
        Some(field) => {
            let address = event.get_path("user_data.address")?;
            let address = match address {
                Value::Array(items) => items.first()?,
                other => other,
            };
            address.as_object()?.get(field)
        }
        None => event.get_path(path),
    }
}

fn first_source<'a>(event: &'a EventData, paths: &[&str]) -> Option<&'a Value> {
    paths
        .iter()
        .filter_map(|p| source(event, p))
        .find(|v| !is_blank(v))
}

fn build_user_data(
    settings: &PinterestSettings,
    event: &EventData,
    req: &RequestContext,
    web: bool,
) -> Map<String, Value> {
    let mut raw = Map::new();
    if web {
        if let Some(ip) = event.text("ip_override") {
            raw.insert("client_ip_address".into(), Value::String(ip));
        }
        if let Some(ua) = event.text("user_agent") {
            raw.insert("client_user_agent".into(), Value::String(ua));
        }
    }
    for (key, paths) in USER_SOURCES {
        if let Some(v) = first_source(event, paths) {
            raw.insert((*key).to_owned(), v.clone());
        }
    }
    if let Some(click) = click_id(event, req) {
        raw.insert("click_id".into(), Value::String(click));
    }
    apply_overrides(&mut raw, &settings.user_data, event);

    // Hash in the order of the raw map (Pinterest ignores key order).
    let mut out = Map::new();
    for (key, value) in raw {
        match HashedKey::from_key(&key) {
            Some(hk) => {
                let hashed = hashing::hash_value(hk, &value);
                if !hashed.is_empty() {
                    out.insert(key, Value::from(hashed));
                }
            }
            None => {
                if let Some(text) = value_text(&value) {
                    out.insert(key, Value::String(text));
                }
            }
        }
    }
    out
}

/// The `_epik` cookie, else `common_cookie._epik`, else `click_id`, else the `epik` query
/// parameter of `page_location` (or of the `Referer` when there is no `page_location`).
pub(super) fn click_id(event: &EventData, req: &RequestContext) -> Option<String> {
    req.cookie("_epik")
        .map(str::to_owned)
        .or_else(|| event.get_path("common_cookie._epik").and_then(value_text))
        .or_else(|| event.text("click_id"))
        .or_else(|| epik_from_url(event, req))
}

/// The `epik` parameter of the page URL (else the `Referer`), if any.
pub(super) fn epik_from_url(event: &EventData, req: &RequestContext) -> Option<String> {
    let page = event
        .text("page_location")
        .or_else(|| req.referer.clone())?;
    let url = url::Url::parse(&page).ok()?;
    url.query_pairs()
        .find(|(k, v)| k == "epik" && !v.trim().is_empty())
        .map(|(_, v)| v.into_owned())
}

/// Resolves an override: a literal, or the value at `{from: path}`. `None` when empty.
fn resolve(value: &OverrideValue, event: &EventData) -> Option<Value> {
    let v = match value {
        OverrideValue::Literal(v) => v.clone(),
        OverrideValue::From(FromPath { from }) => event.get_path(from.trim())?.clone(),
    };
    (!is_blank(&v)).then_some(v)
}

/// Sets each non-empty override; an empty one removes nothing and adds nothing.
fn apply_overrides(
    target: &mut Map<String, Value>,
    overrides: &std::collections::BTreeMap<String, OverrideValue>,
    event: &EventData,
) {
    for (key, value) in overrides {
        if let Some(v) = resolve(value, event) {
            target.insert(key.clone(), v);
        }
    }
}

/// A money amount as Pinterest wants it: a decimal string. Numbers are printed; numeric
/// strings are kept as written (`"19.90"` stays `"19.90"`); zero and non-numbers give `None`.
fn money(value: &Value) -> Option<String> {
    match value {
        Value::Number(n) => n
            .as_f64()
            .filter(|f| f.is_finite() && *f != 0.0)
            .map(|_| number_text(n)),
        Value::String(s) => {
            let t = s.trim();
            t.parse::<f64>()
                .ok()
                .filter(|f| f.is_finite() && *f != 0.0)
                .map(|_| t.to_owned())
        }
        _ => None,
    }
}

fn as_f64(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    }
    .filter(|f| f.is_finite())
}

/// An integer count (`quantity`, `num_items`): numbers and numeric strings, truncated.
fn integer(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f.trunc() as i64)),
        Value::String(s) => {
            let t = s.trim();
            t.parse::<i64>().ok().or_else(|| {
                t.parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite())
                    .map(|f| f.trunc() as i64)
            })
        }
        _ => None,
    }
}

/// Rounds away binary noise from sums (`99.98 + 10.5` = `110.48000000000002`).
fn round_sum(f: f64) -> f64 {
    (f * 1e6).round() / 1e6
}

/// `custom_data` from the event's ecommerce fields (§7).
fn ecommerce(event: &EventData) -> Map<String, Value> {
    let mut cd = Map::new();
    let items: &[Value] = match event.get("items") {
        Some(Value::Array(items)) => items,
        _ => &[],
    };
    let mut items_total = 0.0;
    if !items.is_empty() {
        let mut contents = Vec::new();
        let mut ids = Vec::new();
        let mut num_items: Option<i64> = None;
        for item in items.iter().filter_map(Value::as_object) {
            let mut c = Map::new();
            let id = item.get("item_id").and_then(value_text);
            if let Some(id) = &id {
                c.insert("id".into(), Value::String(id.clone()));
                ids.push(Value::String(id.clone()));
            }
            let price = item.get("price");
            if let Some(p) = price.and_then(value_text) {
                c.insert("item_price".into(), Value::String(p));
            }
            let quantity = item.get("quantity").and_then(integer);
            if let Some(q) = quantity {
                c.insert("quantity".into(), Value::from(q));
                num_items = Some(num_items.unwrap_or(0) + q);
            }
            for (from, to) in [
                ("item_name", "item_name"),
                ("item_category", "item_category"),
                ("item_brand", "item_brand"),
            ] {
                if let Some(t) = item.get(from).and_then(value_text) {
                    c.insert(to.into(), Value::String(t));
                }
            }
            if let Some(p) = price.and_then(as_f64) {
                let q = item.get("quantity").and_then(as_f64).unwrap_or(1.0);
                items_total += p * q;
            }
            if !c.is_empty() {
                contents.push(Value::Object(c));
            }
        }
        if !contents.is_empty() {
            cd.insert("contents".into(), Value::Array(contents));
        }
        if !ids.is_empty() {
            cd.insert("content_ids".into(), Value::Array(ids));
        }
        if let Some(n) = num_items.filter(|n| *n != 0) {
            cd.insert("num_items".into(), Value::from(n));
        }
    }
    let value = ["x-ga-mp1-ev", "x-ga-mp1-tr", "value"]
        .iter()
        .find_map(|k| event.get(k).and_then(money))
        .or_else(|| {
            let total = round_sum(items_total);
            (total != 0.0).then(|| float_text(total))
        });
    if let Some(v) = value {
        cd.insert("value".into(), Value::String(v));
    }
    let currency = event.text("currency").or_else(|| {
        items
            .first()
            .and_then(|i| i.get("currency"))
            .and_then(value_text)
    });
    if let Some(c) = currency {
        cd.insert("currency".into(), Value::String(c));
    }
    for (from, to) in [
        ("search_term", "search_string"),
        ("transaction_id", "order_id"),
        ("opt_out_type", "opt_out_type"),
        ("content_name", "content_name"),
        ("content_category", "content_category"),
        ("content_brand", "content_brand"),
    ] {
        if let Some(t) = event.text(from) {
            cd.insert(to.into(), Value::String(t));
        }
    }
    cd
}

/// Pinterest's types for `custom_data` after overrides: amounts and text as strings,
/// counts as integers, ids as an array of strings.
fn fix_custom_types(cd: &mut Map<String, Value>) {
    for (key, value) in cd.iter_mut() {
        match key.as_str() {
            "value" | "predicted_ltv" => {
                *value = money(value).map(Value::String).unwrap_or(Value::Null)
            }
            "num_items" | "external_measurement_vendor_id" => {
                *value = integer(value).map(Value::from).unwrap_or(Value::Null)
            }
            "content_ids" => {
                let ids: Vec<Value> = match &*value {
                    Value::Array(items) => items
                        .iter()
                        .filter_map(value_text)
                        .map(Value::String)
                        .collect(),
                    other => value_text(other).map(Value::String).into_iter().collect(),
                };
                *value = Value::Array(ids);
            }
            "contents" => {
                if let Value::Array(items) = value {
                    for item in items.iter_mut().filter_map(Value::as_object_mut) {
                        fix_content_types(item);
                    }
                }
            }
            _ => {
                if let Value::Number(n) = value {
                    *value = Value::String(number_text(n));
                }
            }
        }
    }
}

fn fix_content_types(item: &mut Map<String, Value>) {
    for (key, value) in item.iter_mut() {
        match key.as_str() {
            "quantity" => *value = integer(value).map(Value::from).unwrap_or(Value::Null),
            _ => {
                if let Value::Number(n) = value {
                    *value = Value::String(number_text(n));
                }
            }
        }
    }
}

/// Event-level types after overrides.
fn fix_event_types(ev: &mut Map<String, Value>) {
    for (key, value) in ev.iter_mut() {
        match key.as_str() {
            "event_time" => {
                if let Some(i) = integer(value) {
                    *value = Value::from(i);
                }
            }
            "opt_out" | "wifi" => {
                if let Value::String(s) = value {
                    match s.trim().to_ascii_lowercase().as_str() {
                        "true" | "1" | "yes" => *value = Value::Bool(true),
                        "false" | "0" | "no" => *value = Value::Bool(false),
                        _ => {}
                    }
                }
            }
            "event_id" | "event_source_url" | "partner_name" | "language" | "event_name"
            | "action_source" => {
                if let Value::Number(n) = value {
                    *value = Value::String(number_text(n));
                }
            }
            _ => {}
        }
    }
    clean(ev);
    // Pinterest requires user_data, even when nothing is known about the user.
    ev.entry("user_data")
        .or_insert_with(|| Value::Object(Map::new()));
}

/// Removes null, blank strings, empty arrays and empty objects, recursively.
fn clean(map: &mut Map<String, Value>) {
    map.retain(|_, v| {
        clean_value(v);
        !is_empty_value(v)
    });
}

fn clean_value(v: &mut Value) {
    match v {
        Value::Object(m) => clean(m),
        Value::Array(items) => {
            items.iter_mut().for_each(clean_value);
            items.retain(|i| !is_empty_value(i));
        }
        _ => {}
    }
}

fn is_empty_value(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.trim().is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.is_empty(),
        _ => false,
    }
}
