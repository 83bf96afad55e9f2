//! Event data → one Pinterest event (`docs/MAPPING.md`, Pinterest §3–§5, §7). Pure.
//!
//! Order of work for each part: sources (first non-empty wins), then the tag's overrides,
//! then type fixes (Pinterest wants `value` as a string, `num_items` as an integer, ...),
//! then empty-value clean-up (at write time), then (user_data) normalization and hashing.
//! The event is built as a small tree borrowing from the event data, then written as JSON
//! once.

use std::{
    borrow::Cow,
    time::{SystemTime, UNIX_EPOCH},
};

use super::{names, Plan};
use crate::{
    event::{
        new_event_id, number_text, value_text, value_text_a, EventData, Num, Obj, RequestContext,
        Val,
    },
    tags::{
        common::{
            commerce::{integer, items_total, money, total_quantity},
            hashing::{hash_value, Dropped},
            json::{is_empty_clean, write_nonempty, write_str},
            limits::{clip_cow, MAX_ITEMS, MAX_TEXT, MAX_URL, MAX_USER_AGENT},
            sources::{apply_overrides, click_id, first_source},
        },
        MapReport,
    },
};

/// Builds the Pinterest event for `event` (its name already resolved, §2) and writes it as
/// JSON into `out`. Returns the event's id and name as sent.
///
/// The tree lives only while the event is mapped: its texts borrow (`'e`) from the event
/// data, the request and the plan rather than being copied.
pub(super) fn map_event<'e>(
    plan: &'e Plan,
    event_name: &'e str,
    event: &'e EventData<'_>,
    req: &'e RequestContext<'_>,
    epik: Option<&'e str>,
    out: &mut Vec<u8>,
    report: &mut MapReport,
) -> (String, String) {
    let web = plan.web;
    let event_id = event_id(event);
    let mut ev = Obj::with_capacity(8);
    ev.push("event_name", Val::str(event_name));
    ev.push("action_source", Val::str(plan.action_source));
    ev.push(
        "event_time",
        Val::Num(Num::I(event_time(event, req.received_at))),
    );
    ev.push("event_id", Val::str(&event_id));
    if web {
        if let Some(url) = event.text("page_location") {
            ev.push("event_source_url", Val::Str(url));
        }
    }
    if let Some(p) = &plan.partner_name {
        ev.push("partner_name", Val::str(p));
    }
    let user_data = build_user_data(plan, event, req, web, epik, &mut report.dropped);
    ev.push("user_data", Val::Obj(user_data));

    let mut custom = ecommerce(event);
    apply_overrides(&mut custom, &plan.custom_data, event);
    fix_custom_types(&mut custom);
    if !custom.iter().all(|(_, v)| is_empty_clean(v)) {
        ev.push("custom_data", Val::Obj(custom));
    }

    apply_overrides(&mut ev, &plan.server_event_data, event);
    fix_event_types(&mut ev);
    clip_texts(&mut ev);
    report.match_keys = match_keys(&ev);
    write_event(out, &ev);
    // The id and name sent, after overrides and type fixes.
    let id = ev.get("event_id").and_then(value_text).map(Cow::into_owned);
    let name = ev
        .get("event_name")
        .and_then(Val::as_str)
        .unwrap_or(event_name)
        .to_owned();
    (id.unwrap_or(event_id), name)
}

/// Writes the event without its empty members, except `user_data`, which Pinterest
/// requires even when nothing is known about the user.
fn write_event(out: &mut Vec<u8>, ev: &Obj<'_>) {
    out.push(b'{');
    let mut first = true;
    for (k, v) in ev.iter() {
        let at = out.len();
        if !first {
            out.push(b',');
        }
        write_str(out, k);
        out.push(b':');
        if write_nonempty(out, v) {
            first = false;
        } else if k == "user_data" {
            out.extend_from_slice(b"{}");
            first = false;
        } else {
            out.truncate(at);
        }
    }
    out.push(b'}');
}

/// Unix seconds of receipt; an event's own `timestamp_micros` wins when present and not in
/// the future (a client clock ahead of ours must not produce future events).
pub(super) fn event_time(event: &EventData<'_>, received_at: SystemTime) -> i64 {
    let received = received_at
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    let own = event.get("timestamp_micros").and_then(|v| match v {
        Val::Num(n) => Some(n.as_f64()),
        Val::Str(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    });
    match own {
        Some(micros) if micros.is_finite() && micros > 0.0 => {
            // `as` saturates: no timestamp wraps.
            let secs = (micros / 1_000_000.0).floor() as i64;
            secs.min(received)
        }
        _ => received,
    }
}

/// `event_id`, else `transaction_id`, else a fresh id (Pinterest requires one).
pub(super) fn event_id(event: &EventData<'_>) -> String {
    event
        .text("event_id")
        .or_else(|| event.text("transaction_id"))
        .map(|t| clip_cow(t, MAX_TEXT).into_owned())
        .unwrap_or_else(new_event_id)
}

fn build_user_data<'e>(
    plan: &'e Plan,
    event: &'e EventData<'_>,
    req: &'e RequestContext<'_>,
    web: bool,
    epik: Option<&'e str>,
    dropped: &mut Dropped,
) -> Obj<'e> {
    let mut raw: Obj<'e> = Obj::with_capacity(16);
    if web {
        if let Some(ip) = event.text("ip_override") {
            raw.push("client_ip_address", Val::Str(ip));
        }
        if let Some(ua) = event.text("user_agent") {
            raw.push("client_user_agent", Val::Str(clip_cow(ua, MAX_USER_AGENT)));
        }
    }
    for (key, paths) in &plan.user_sources {
        if let Some(v) = first_source(event, paths) {
            raw.insert(*key, v.reborrow());
        }
    }
    if let Some(click) = click_id(event, req, "_epik", "click_id", epik) {
        raw.insert("click_id", Val::Str(clip_cow(click, MAX_TEXT)));
    }
    apply_overrides(&mut raw, &plan.user_data, event);

    // Pinterest ignores key order; the output follows the raw order, sorted for stability.
    raw.0.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = Obj::with_capacity(raw.len());
    for (key, value) in raw.0 {
        match names::hash_rule(&key) {
            Some(rule) => {
                let hashed = hash_value(rule, &value, dropped);
                if !hashed.is_empty() {
                    out.push(key, Val::Arr(hashed.into_iter().map(Val::string).collect()));
                }
            }
            None => {
                if let Some(text) = value_text_a(&value) {
                    out.push(key, Val::Str(text));
                }
            }
        }
    }
    out
}

/// `custom_data` from the event's ecommerce fields (§7).
fn ecommerce<'e>(event: &'e EventData<'_>) -> Obj<'e> {
    let mut cd: Obj<'e> = Obj::with_capacity(8);
    let items = event.get("items").and_then(Val::as_arr).unwrap_or(&[]);
    if !items.is_empty() {
        let mut contents = Vec::new();
        let mut ids = Vec::new();
        for item in items.iter().filter_map(Val::as_obj).take(MAX_ITEMS) {
            let mut c: Obj<'e> = Obj::with_capacity(6);
            if let Some(id) = item.get("item_id").and_then(value_text) {
                let id = Val::Str(id);
                c.push("id", id.clone());
                ids.push(id);
            }
            if let Some(p) = item.get("price").and_then(value_text) {
                c.push("item_price", Val::Str(p));
            }
            if let Some(q) = item.get("quantity").and_then(integer) {
                c.push("quantity", Val::Num(Num::I(q)));
            }
            for key in ["item_name", "item_category", "item_brand"] {
                if let Some(t) = item.get(key).and_then(value_text) {
                    c.push(key, Val::Str(t));
                }
            }
            if !c.is_empty() {
                contents.push(Val::Obj(c));
            }
        }
        if !contents.is_empty() {
            cd.push("contents", Val::Arr(contents));
        }
        if !ids.is_empty() {
            cd.push("content_ids", Val::Arr(ids));
        }
        if let Some(n) = total_quantity(items).filter(|n| *n != 0) {
            cd.push("num_items", Val::Num(Num::I(n)));
        }
    }
    let value = ["x-ga-mp1-ev", "x-ga-mp1-tr", "value"]
        .iter()
        .find_map(|k| event.get(k).and_then(money))
        .or_else(|| items_total(items));
    if let Some(v) = value {
        cd.push("value", Val::string(v));
    }
    let currency = event.text("currency").or_else(|| {
        items
            .first()
            .and_then(|i| i.get("currency"))
            .and_then(value_text)
    });
    if let Some(c) = currency {
        cd.push("currency", Val::Str(c));
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
            cd.push(to, Val::Str(t));
        }
    }
    cd
}

fn text_of_num(n: Num) -> Val<'static> {
    Val::string(number_text(n))
}

/// Pinterest's types for `custom_data` after overrides: amounts and text as strings,
/// counts as integers, ids as an array of strings.
fn fix_custom_types(cd: &mut Obj<'_>) {
    for (key, value) in cd.0.iter_mut() {
        match key.as_ref() {
            "value" | "predicted_ltv" => *value = money(value).map_or(Val::Null, Val::string),
            "num_items" | "external_measurement_vendor_id" => {
                *value = integer(value).map_or(Val::Null, |i| Val::Num(Num::I(i)));
            }
            "content_ids" => {
                let ids: Vec<Val<'_>> = match &*value {
                    Val::Arr(items) => items
                        .iter()
                        .take(MAX_ITEMS)
                        .filter_map(value_text_a)
                        .map(Val::Str)
                        .collect(),
                    other => value_text_a(other).map(Val::Str).into_iter().collect(),
                };
                *value = Val::Arr(ids);
            }
            "contents" => {
                if let Val::Arr(items) = value {
                    items.truncate(MAX_ITEMS);
                    for item in items.iter_mut() {
                        if let Val::Obj(o) = item {
                            fix_content_types(o);
                        }
                    }
                }
            }
            _ => {
                if let Val::Num(n) = value {
                    *value = text_of_num(*n);
                }
            }
        }
    }
}

fn fix_content_types(item: &mut Obj<'_>) {
    for (key, value) in item.0.iter_mut() {
        match key.as_ref() {
            "quantity" => *value = integer(value).map_or(Val::Null, |i| Val::Num(Num::I(i))),
            _ => {
                if let Val::Num(n) = value {
                    *value = text_of_num(*n);
                }
            }
        }
    }
}

/// Event-level types after overrides.
fn fix_event_types(ev: &mut Obj<'_>) {
    for (key, value) in ev.0.iter_mut() {
        match key.as_ref() {
            "event_time" => {
                if let Some(i) = integer(value) {
                    *value = Val::Num(Num::I(i));
                }
            }
            "opt_out" | "wifi" => {
                if let Val::Str(s) = value {
                    match s.trim().to_ascii_lowercase().as_str() {
                        "true" | "1" | "yes" => *value = Val::Bool(true),
                        "false" | "0" | "no" => *value = Val::Bool(false),
                        _ => {}
                    }
                }
            }
            "event_id" | "event_source_url" | "partner_name" | "language" | "event_name"
            | "action_source" => {
                if let Val::Num(n) = value {
                    *value = text_of_num(*n);
                }
            }
            _ => {}
        }
    }
    // Pinterest requires user_data, even when nothing is known about the user.
    if ev.get("user_data").is_none() {
        ev.insert("user_data", Val::Obj(Obj::new()));
    }
}

/// Clips every text of the event: URLs to [`MAX_URL`], everything else to [`MAX_TEXT`]
/// (hashes and the clipped User-Agent are shorter already).
fn clip_texts(ev: &mut Obj<'_>) {
    fn walk(v: &mut Val<'_>, max: usize) {
        match v {
            Val::Str(s) if s.len() > max => {
                *s = Cow::Owned(crate::tags::common::limits::clip(s, max).to_owned());
            }
            Val::Arr(a) => a.iter_mut().for_each(|i| walk(i, max)),
            Val::Obj(o) => o.0.iter_mut().for_each(|(_, i)| walk(i, max)),
            _ => {}
        }
    }
    for (key, value) in ev.0.iter_mut() {
        let max = if key == "event_source_url" {
            MAX_URL
        } else {
            MAX_TEXT
        };
        walk(value, max);
    }
}

/// Which of [`names::MATCH_KEYS`] the event carries.
fn match_keys(ev: &Obj<'_>) -> u32 {
    let Some(Val::Obj(ud)) = ev.get("user_data") else {
        return 0;
    };
    let has = |k: &str| ud.get(k).is_some_and(|v| !is_empty_clean(v));
    let mut bits = 0;
    for (i, key) in names::MATCH_KEYS.iter().enumerate() {
        // A byte scan: `split_once` sets up a searcher per key.
        let present = match key.bytes().position(|b| b == b'+') {
            Some(plus) => has(&key[..plus]) && has(&key[plus + 1..]),
            None => has(key),
        };
        if present {
            bits |= 1 << i;
        }
    }
    bits
}

/// The `epik` parameter of the page URL (else the `Referer`), if any (§9).
pub(super) fn epik_from_url(event: &EventData<'_>, req: &RequestContext<'_>) -> Option<String> {
    crate::tags::common::sources::url_click_id(event, req, "epik")
}
