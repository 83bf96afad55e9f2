//! The amplification bound, as a property over arbitrary requests (issue 11, point 2): what
//! one request puts into the queue is at most 20 × its own bytes (URL + headers + body) plus
//! 1 KiB per event it carries, on all three endpoints — whatever mix of long strings, value
//! arrays, items, shared `/data` keys and User-Agent it holds. A refused request queues
//! nothing. Pinterest is unreachable, so everything queued stays and the queue's byte count
//! (`/debug/api/state`, admin listener) measures exactly what each request added; what is
//! sent downstream is the same records in a `{"data": [...]}` envelope (see `hostile.rs` for
//! measured downstream bytes).

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};

use common::TestServer;
use proptest::{prelude::*, test_runner::TestRunner};
use serde_json::{json, Map, Value};

const AMPLIFICATION: usize = 20;
const PER_EVENT: usize = 1024;

/// One generated request.
#[derive(Debug, Clone)]
struct Req {
    path_and_query: String,
    user_agent: String,
    body: String,
    events: usize,
}

impl Req {
    fn size(&self) -> usize {
        // A lower bound of what goes over the wire: the bound is checked against less than
        // the gateway itself counts.
        self.path_and_query.len() + self.user_agent.len() + self.body.len()
    }
}

fn short() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9 ._@+-]{0,16}",
        Just("Jane.Doe+tag@Example.COM".to_owned()),
        Just("+1 (555) 123-4567".to_owned()),
        Just("zz".to_owned()),
    ]
}

/// Short strings mostly; now and then a long one (`long` requests only).
fn text(long: bool) -> BoxedStrategy<String> {
    if long {
        prop_oneof![
            4 => short(),
            1 => (1usize..6000).prop_map(|n| "x".repeat(n)),
            1 => (1usize..400).prop_map(|n| "é".repeat(n)),
        ]
        .boxed()
    } else {
        short().boxed()
    }
}

fn values(long: bool) -> impl Strategy<Value = Value> {
    let n = if long { 1200 } else { 12 };
    prop_oneof![
        text(long).prop_map(Value::from),
        (0usize..n, short()).prop_map(|(n, t)| json!(vec![t; n])),
        (1usize..n).prop_map(|n| json!((0..n).map(|i| format!("u{i}@x.io")).collect::<Vec<_>>())),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
    ]
}

const KEYS: &[&str] = &[
    "email",
    "phone",
    "first_name",
    "last_name",
    "city",
    "state",
    "zip",
    "country",
    "gender",
    "external_id",
    "user_id",
    "page_location",
    "page_referrer",
    "transaction_id",
    "value",
    "currency",
    "click_id",
    "event_id",
    "content_name",
    "order_id",
    "custom_x",
];

fn event_object(max_keys: usize, long: bool) -> impl Strategy<Value = Map<String, Value>> {
    (
        prop::sample::select(vec![
            "purchase",
            "page_view",
            "add_to_cart",
            "generate_lead",
            "sign_up",
            "view_item",
            "custom_thing",
        ]),
        prop::collection::vec((prop::sample::select(KEYS), values(long)), 0..max_keys),
        prop::option::of(items(if long { 60 } else { 3 })),
        prop::option::of(user_data(long)),
    )
        .prop_map(|(name, pairs, items, user_data)| {
            let mut o = Map::new();
            o.insert("event_name".into(), json!(name));
            for (k, v) in pairs {
                o.insert(k.to_owned(), v);
            }
            if let Some(items) = items {
                o.insert("items".into(), items);
            }
            if let Some(u) = user_data {
                o.insert("user_data".into(), u);
            }
            o
        })
}

fn items(max: usize) -> impl Strategy<Value = Value> {
    prop::collection::vec(
        (short(), any::<i64>(), prop::option::of(-1e12f64..1e12)),
        0..max,
    )
    .prop_map(|v| {
        json!(v
            .into_iter()
            .map(|(id, q, p)| json!({"item_id": id, "item_name": "n", "quantity": q, "price": p}))
            .collect::<Vec<_>>())
    })
}

fn user_data(long: bool) -> impl Strategy<Value = Value> {
    (values(long), values(long), values(long)).prop_map(|(e, p, a)| {
        json!({"email_address": e, "phone_number": p,
               "address": [{"first_name": a.clone(), "city": a, "postal_code": "12345"}]})
    })
}

fn data_request() -> impl Strategy<Value = Req> {
    prop_oneof![
        // One event.
        event_object(8, true).prop_map(|o| (vec![Value::Object(o)], Map::new())),
        // The wrapper: many small events reading shared keys.
        (
            prop::collection::vec(event_object(2, false).prop_map(Value::Object), 1..100),
            prop::collection::vec((prop::sample::select(KEYS), values(true)), 0..4)
        )
            .prop_map(|(events, shared)| {
                let mut m = Map::new();
                for (k, v) in shared {
                    m.insert(k.to_owned(), v);
                }
                (events, m)
            }),
    ]
    .prop_flat_map(|(events, shared)| (Just(events), Just(shared), ua()))
    .prop_map(|(events, shared, ua)| {
        let n = events.len();
        let body = if shared.is_empty() && n == 1 {
            Value::Array(events)
        } else {
            let mut m = shared;
            m.insert("events".into(), Value::Array(events));
            Value::Object(m)
        };
        Req {
            path_and_query: "/data".into(),
            user_agent: ua,
            body: body.to_string(),
            events: n,
        }
    })
}

fn ua() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0".to_owned()),
        (1usize..8000).prop_map(|n| format!("Mozilla/5.0 {}", "u".repeat(n))),
    ]
}

fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn gtag_request() -> impl Strategy<Value = Req> {
    let line = (
        prop::sample::select(vec!["purchase", "page_view", "add_to_cart", "sign_up"]),
        prop::collection::vec((prop::sample::select(KEYS), short()), 0..5),
        prop::collection::vec((short(), any::<i32>()), 0..8),
    )
        .prop_map(|(en, params, items)| {
            let mut l = format!("en={en}");
            for (k, v) in params {
                l.push_str(&format!("&ep.{k}={}", enc(&v)));
            }
            for (i, (id, q)) in items.iter().enumerate() {
                l.push_str(&format!("&pr{}=id{}~nmX~qt{q}~pr1.5", i + 1, enc(id)));
            }
            l
        });
    (
        text(true),
        prop::collection::vec((prop::sample::select(KEYS), text(true)), 0..6),
        prop::collection::vec(line, 1..100),
        ua(),
    )
        .prop_map(|(dl, shared, lines, ua)| {
            let mut q = format!(
                "/g/collect?v=2&tid=G-ABC123&cid=1.2&dl={}",
                enc(&format!("https://shop.example.com/{dl}"))
            );
            for (k, v) in shared {
                q.push_str(&format!("&ep.{k}={}", enc(&v)));
            }
            Req {
                path_and_query: q,
                user_agent: ua,
                events: lines.len(),
                body: lines.join("\r\n"),
            }
        })
}

fn mp_request() -> impl Strategy<Value = Req> {
    (
        prop::collection::vec(event_object(4, false), 1..25),
        prop::option::of(values(true)),
    )
        .prop_map(|(events, hashed)| {
            let n = events.len();
            let events: Vec<Value> = events
                .into_iter()
                .map(|mut o| {
                    let name = o.remove("event_name").unwrap_or(json!("x"));
                    json!({"name": name, "params": Value::Object(o)})
                })
                .collect();
            let mut body = json!({"client_id": "1.2", "events": events});
            if let Some(h) = hashed {
                body["user_data"] = json!({"sha256_email_address": h});
            }
            Req {
                path_and_query: "/mp/collect?measurement_id=G-ABC123&api_secret=s".into(),
                user_agent: "curl/8".into(),
                body: body.to_string(),
                events: n,
            }
        })
}

async fn queue_bytes(client: &reqwest::Client, server: &TestServer) -> usize {
    let state: Value = client
        .get(server.admin_url("/debug/api/state?since_version=999999999"))
        .send()
        .await
        .expect("state")
        .json()
        .await
        .expect("json");
    state["queue"]["bytes"].as_u64().expect("queue bytes") as usize
}

#[test]
fn no_request_queues_more_than_its_budget() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut cfg = common::config_with(vec![common::tag(
        json!({"name": "pin", "advertiser_id": "549755885175", "access_token": "tok"}),
        // Nothing listens there: every event stays queued.
        "http://127.0.0.1:9",
    )]);
    cfg.debug.enabled = true;
    cfg.debug.max_requests = 1;
    cfg.dispatch.retry.initial_ms = 60_000;
    cfg.dispatch.retry.max_ms = 60_000;
    cfg.dispatch.retry.give_up_after_s = 86_400;
    cfg.dispatch.drain_s = 1;
    let server = rt.block_on(TestServer::start(cfg));
    let client = reqwest::Client::new();
    let accepted = AtomicUsize::new(0);
    let refused = AtomicUsize::new(0);
    let max_ratio = std::sync::Mutex::new(0f64);

    let cases: u32 = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(96);
    let mut runner = TestRunner::new(ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let strategy = prop_oneof![data_request(), gtag_request(), mp_request()];
    let result = runner.run(&strategy, |req| {
        rt.block_on(async {
            let before = queue_bytes(&client, &server).await;
            let resp = client
                .post(server.url(&req.path_and_query))
                .header("user-agent", &req.user_agent)
                .header("content-type", "text/plain")
                .body(req.body.clone())
                .send()
                .await;
            let status = match resp {
                Ok(r) => {
                    let status = r.status().as_u16();
                    if std::env::var_os("AMPLIFICATION_VERBOSE").is_some() && status >= 400 {
                        let body = r.text().await.unwrap_or_default();
                        eprintln!("{status} {} bytes: {body}", req.size());
                    }
                    status
                }
                // A body over the limit may be cut off mid-upload.
                Err(_) => 413,
            };
            let after = queue_bytes(&client, &server).await;
            let grew = after.saturating_sub(before);
            if (200..300).contains(&status) {
                accepted.fetch_add(1, Ordering::Relaxed);
                let bound = AMPLIFICATION * req.size() + PER_EVENT * req.events;
                let ratio = grew as f64 / req.size() as f64;
                let mut m = max_ratio.lock().expect("lock");
                *m = m.max(ratio);
                prop_assert!(
                    grew <= bound,
                    "{} ({} events, {} bytes) queued {grew} bytes, bound {bound}",
                    req.path_and_query.split('?').next().unwrap_or_default(),
                    req.events,
                    req.size()
                );
            } else {
                refused.fetch_add(1, Ordering::Relaxed);
                prop_assert!(
                    (400..500).contains(&status) || status == 503,
                    "status {status}"
                );
                prop_assert_eq!(grew, 0, "a refused request queued nothing");
            }
            Ok(())
        })
    });
    let accepted = accepted.into_inner();
    let refused = refused.into_inner();
    eprintln!(
        "amplification: {accepted} accepted, {refused} refused, largest queued/request ratio {:.2}",
        max_ratio.into_inner().unwrap_or(0.0)
    );
    rt.block_on(server.shutdown());
    if let Err(e) = result {
        panic!("{e}");
    }
    // The generator must exercise the accepting path, not only refusals.
    assert!(
        accepted * 3 >= cases as usize,
        "{accepted} of {cases} accepted"
    );
}
