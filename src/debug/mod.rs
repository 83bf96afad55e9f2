//! The debug page: the last `debug.max_requests` ingest requests (also capped at
//! [`MAX_BYTES`]), each event's data, every tag's decision and mapped event, and, as they
//! happen, the outgoing requests, the destination's answers, retries and dead letters —
//! the counterpart of server-side GTM's preview mode. Match quality per tag over the same
//! window. Served on the admin listener only ([`routes`]).
//!
//! Personal data appears only hashed: event data is shown with the values of personal keys
//! (e-mail, phone, names, address parts, ids) and anything that looks like an e-mail address
//! replaced by `sha256:` and the first 16 hex digits of their SHA-256; client addresses are
//! masked (IPv4 /24, IPv6 /48). Credentials never reach the recorder.
//!
//! Recording happens only with `debug.enabled`; the pipeline then keeps per-event traces.

pub mod routes;

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
};

use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::{
    config::DebugConfig,
    dispatch::{DeliveryEvent, DeliveryObserver},
    pipeline::TagTrace,
    queue::Queue,
    support::{mask_ip, now_ms, Secret},
    tags::common::hashing::sha256_hex,
};

/// Most bytes the recorded requests take (estimated as their JSON size).
pub const MAX_BYTES: usize = 8 << 20;
/// Delivery entries kept per (event, tag): retries of a long outage are summarized.
const MAX_DELIVERY_ITEMS: usize = 20;

/// What the page shows of one request.
#[derive(Debug, Clone, Serialize)]
pub struct RequestEntry {
    pub id: u64,
    pub version: u64,
    pub time_ms: u64,
    pub method: &'static str,
    pub path: String,
    pub client_ip: String,
    pub status: u16,
    pub trace_id: String,
    pub error: Option<String>,
    pub events: Vec<EventEntry>,
    #[serde(skip)]
    bytes: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct EventEntry {
    pub index: usize,
    pub event_name: String,
    pub event_id: Option<String>,
    pub data: Value,
    pub tags: Vec<TagEntry>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TagEntry {
    pub tag: String,
    pub decision: &'static str,
    pub reason: Option<&'static str>,
    /// `queued`, `retrying`, `delivered`, `failed`, `skipped`, `dry_run`, `too_large`.
    pub fate: &'static str,
    pub seq: Option<u64>,
    pub mapped: Option<Value>,
    pub match_keys: Vec<&'static str>,
    pub delivery: Vec<Value>,
}

/// A request as ingest hands it to the recorder.
pub struct Incoming<'a> {
    pub method: &'static str,
    pub path: &'a str,
    pub client_ip: &'a str,
    pub status: u16,
    pub trace_id: &'a str,
    pub error: Option<String>,
    /// Per event: its name, id, data (JSON, before redaction for display) and tag traces.
    pub events: Vec<(String, Option<String>, Value, Vec<TagTrace>)>,
}

#[derive(Default)]
struct Ring {
    requests: VecDeque<RequestEntry>,
    bytes: usize,
    next_id: u64,
    /// Queue sequence number → (request id, event index, tag index).
    by_seq: HashMap<u64, (u64, usize, usize)>,
}

/// Records requests and deliveries for the debug page.
pub struct Recorder {
    enabled: bool,
    /// Each tag's match keys (its destination's), for match quality.
    match_keys: Mutex<Vec<(String, &'static [&'static str])>>,
    max_requests: usize,
    token: Secret,
    ring: Mutex<Ring>,
    version: AtomicU64,
}

impl Recorder {
    pub fn new(config: &DebugConfig) -> Arc<Self> {
        Arc::new(Self {
            enabled: config.enabled,
            match_keys: Mutex::new(Vec::new()),
            max_requests: config.max_requests.max(1),
            token: config.token.clone(),
            ring: Mutex::new(Ring {
                next_id: 1,
                ..Ring::default()
            }),
            version: AtomicU64::new(0),
        })
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The tags whose match quality the page shows, with their destinations' match keys.
    pub fn set_tags(&self, tags: Vec<(String, &'static [&'static str])>) {
        *self.match_keys.lock().unwrap_or_else(|p| p.into_inner()) = tags;
    }

    pub fn token(&self) -> &Secret {
        &self.token
    }

    fn ring(&self) -> std::sync::MutexGuard<'_, Ring> {
        self.ring.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn bump(&self) -> u64 {
        self.version.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// Records a request (a no-op unless `debug.enabled`).
    pub fn record(&self, incoming: Incoming<'_>) {
        if !self.enabled {
            return;
        }
        let events: Vec<EventEntry> = incoming
            .events
            .into_iter()
            .enumerate()
            .map(|(index, (event_name, event_id, data, traces))| EventEntry {
                index,
                event_name,
                event_id,
                data: redact(&data, false),
                tags: traces
                    .into_iter()
                    .map(|t| TagEntry {
                        fate: match t.decision {
                            "queued" => "queued",
                            "skipped" => "skipped",
                            "dry_run" => "dry_run",
                            _ => "too_large",
                        },
                        tag: t.tag,
                        decision: t.decision,
                        reason: t.reason,
                        seq: t.seq,
                        mapped: t.mapped,
                        match_keys: t.match_keys,
                        delivery: Vec::new(),
                    })
                    .collect(),
            })
            .collect();
        let version = self.bump();
        let mut ring = self.ring();
        let id = ring.next_id;
        ring.next_id += 1;
        let mut entry = RequestEntry {
            id,
            version,
            time_ms: now_ms(),
            method: incoming.method,
            path: incoming.path.to_owned(),
            client_ip: mask_ip(incoming.client_ip),
            status: incoming.status,
            trace_id: incoming.trace_id.to_owned(),
            error: incoming.error,
            events,
            bytes: 0,
        };
        entry.bytes = serde_json::to_vec(&entry).map_or(1024, |v| v.len());
        for (e, event) in entry.events.iter().enumerate() {
            for (t, tag) in event.tags.iter().enumerate() {
                if let Some(seq) = tag.seq {
                    ring.by_seq.insert(seq, (id, e, t));
                }
            }
        }
        ring.bytes += entry.bytes;
        ring.requests.push_back(entry);
        while ring.requests.len() > self.max_requests
            || (ring.bytes > MAX_BYTES && ring.requests.len() > 1)
        {
            if let Some(old) = ring.requests.pop_front() {
                ring.bytes = ring.bytes.saturating_sub(old.bytes);
                for event in &old.events {
                    for tag in &event.tags {
                        if let Some(seq) = tag.seq {
                            ring.by_seq.remove(&seq);
                        }
                    }
                }
            }
        }
    }

    /// The page's state: the summary, and the requests changed since `since_version` (all
    /// when `None`), newest first.
    pub fn state(&self, since_version: Option<u64>, queue: &Queue) -> Value {
        let stats = queue.stats();
        let version = self.version.load(Ordering::Acquire);
        let ring = self.ring();
        let requests: Vec<&RequestEntry> = ring
            .requests
            .iter()
            .rev()
            .filter(|r| since_version.is_none_or(|v| r.version > v))
            .collect();
        json!({
            "version": version,
            "generated_at_ms": now_ms(),
            "max_requests": self.max_requests,
            "queue": {
                "depth": stats.depth,
                "bytes": stats.bytes,
                "oldest_age_s": stats.oldest_age_s,
                "state": queue.state().as_str(),
                "dead_letters": stats.dead_letters,
                "dead_by_reason": stats.dead_by_reason,
            },
            "match_quality": match_quality(&ring, &self.match_keys.lock().unwrap_or_else(|p| p.into_inner())),
            "requests": requests,
        })
    }

    /// One request, by id.
    pub fn request(&self, id: u64) -> Option<Value> {
        let ring = self.ring();
        ring.requests
            .iter()
            .find(|r| r.id == id)
            .and_then(|r| serde_json::to_value(r).ok())
    }
}

/// Per tag, the share of its mapped events (in the window) carrying each match key.
fn match_quality(ring: &Ring, tags: &[(String, &'static [&'static str])]) -> Vec<Value> {
    let mut per_tag: BTreeMap<&str, (u64, BTreeMap<&str, u64>)> = BTreeMap::new();
    for r in &ring.requests {
        for e in &r.events {
            for t in &e.tags {
                if t.mapped.is_none() {
                    continue;
                }
                let entry = per_tag.entry(&t.tag).or_default();
                entry.0 += 1;
                for k in &t.match_keys {
                    *entry.1.entry(k).or_default() += 1;
                }
            }
        }
    }
    tags.iter()
        .map(|(tag, names)| {
            let (events, keys) = per_tag.remove(tag.as_str()).unwrap_or_default();
            let shares: Map<String, Value> = names
                .iter()
                .map(|k| {
                    let n = keys.get(k).copied().unwrap_or(0);
                    let share = if events == 0 {
                        0.0
                    } else {
                        n as f64 / events as f64
                    };
                    ((*k).to_owned(), json!((share * 1000.0).round() / 1000.0))
                })
                .collect();
            json!({"tag": tag, "events": events, "keys": shares})
        })
        .collect()
}

impl DeliveryObserver for Recorder {
    fn wants_responses(&self) -> bool {
        self.enabled
    }

    fn observe(&self, seqs: &[u64], event: DeliveryEvent<'_>) {
        if !self.enabled {
            return;
        }
        let item = match event {
            DeliveryEvent::Request {
                url,
                batch_size,
                attempt,
            } => {
                json!({"time_ms": now_ms(), "kind": "request", "url": url, "batch_size": batch_size, "attempt": attempt})
            }
            DeliveryEvent::Response {
                status,
                event_status,
                message,
            } => {
                json!({"time_ms": now_ms(), "kind": "response", "status": status, "event_status": event_status, "message": message.map(|m| crate::queue::format::clip(m, 500))})
            }
            DeliveryEvent::Retry { reason, retry_in } => {
                json!({"time_ms": now_ms(), "kind": "retry", "reason": crate::queue::format::clip(reason, 500), "retry_in_ms": retry_in.as_millis() as u64})
            }
            DeliveryEvent::DeadLetter { reason, message } => {
                json!({"time_ms": now_ms(), "kind": "dead_letter", "reason": reason.as_str(), "message": crate::queue::format::clip(message, 500)})
            }
        };
        let fate = match event {
            DeliveryEvent::Request { .. } => None,
            DeliveryEvent::Response {
                status,
                event_status,
                ..
            } => match (status, event_status) {
                (Some(200..=299), Some("failed")) => Some("failed"),
                (Some(200..=299), _) => Some("delivered"),
                _ => None,
            },
            DeliveryEvent::Retry { .. } => Some("retrying"),
            DeliveryEvent::DeadLetter { .. } => Some("failed"),
        };
        let mut ring = self.ring();
        for seq in seqs {
            let Some(&(id, e, t)) = ring.by_seq.get(seq) else {
                continue;
            };
            let Some(pos) = ring.requests.iter().position(|r| r.id == id) else {
                continue;
            };
            if let Some(tag) = ring.requests[pos]
                .events
                .get_mut(e)
                .and_then(|ev| ev.tags.get_mut(t))
            {
                if tag.delivery.len() < MAX_DELIVERY_ITEMS {
                    tag.delivery.push(item.clone());
                }
                if let Some(f) = fate {
                    tag.fate = f;
                }
            }
            let version = self.version.fetch_add(1, Ordering::AcqRel) + 1;
            ring.requests[pos].version = version;
        }
    }
}

/// Keys whose values are personal data (compared lowercase, without `_` and `-`).
const PERSONAL: &[&str] = &[
    "email",
    "emailaddress",
    "sha256emailaddress",
    "em",
    "phone",
    "phonenumber",
    "sha256phonenumber",
    "ph",
    "mobile",
    "tel",
    "firstname",
    "namefirst",
    "fn",
    "sha256firstname",
    "lastname",
    "namelast",
    "ln",
    "sha256lastname",
    "name",
    "fullname",
    "street",
    "sha256street",
    "address",
    "city",
    "ct",
    "region",
    "state",
    "st",
    "postalcode",
    "zip",
    "zp",
    "country",
    "countrycode",
    "gender",
    "ge",
    "db",
    "dateofbirth",
    "birthday",
    "externalid",
    "userid",
    "uid",
    "hashedmaids",
    "xgaem",
    "userdata",
];

fn personal(key: &str) -> bool {
    let k: String = key
        .chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect();
    PERSONAL.contains(&k.as_str())
}

fn hashed(text: &str) -> Value {
    let h = sha256_hex(text.trim());
    Value::String(format!("sha256:{}", &h[..16]))
}

fn looks_like_email(s: &str) -> bool {
    s.split_once('@')
        .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'))
}

/// Event data with personal values hashed (under personal keys, everything is).
fn redact(value: &Value, under_personal: bool) -> Value {
    match value {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| {
                    let v = match k.as_str() {
                        "ip_override" | "client_ip_address" => v
                            .as_str()
                            .map_or(Value::Null, |ip| Value::String(mask_ip(ip))),
                        _ => redact(v, under_personal || personal(k)),
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(|v| redact(v, under_personal)).collect()),
        Value::String(s) if under_personal || looks_like_email(s) => hashed(s),
        Value::Number(n) if under_personal => hashed(&n.to_string()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn personal_values_are_hashed_and_ips_masked() {
        let data = json!({
            "event_name": "purchase",
            "email": "Jane@Example.com",
            "contact": "jane@example.com",
            "user_data": {"address": {"city": "Berlin", "postal_code": 10115}},
            "ip_override": "203.0.113.7",
            "items": [{"item_id": "SKU-1"}],
            "page_location": "https://shop.example.com/"
        });
        let r = redact(&data, false);
        let text = r.to_string();
        assert!(!text.to_lowercase().contains("jane"), "{text}");
        assert!(
            !text.contains("Berlin") && !text.contains("10115"),
            "{text}"
        );
        assert_eq!(r["ip_override"], "203.0.113.0");
        assert_eq!(r["items"][0]["item_id"], "SKU-1");
        assert_eq!(r["event_name"], "purchase");
        assert_eq!(
            r["email"].as_str().map(|s| s.starts_with("sha256:")),
            Some(true)
        );
        assert_eq!(mask_ip("2001:db8:1:2::1"), "2001:db8:1::");
        assert_eq!(mask_ip("nope"), "(hidden)");
    }
}
