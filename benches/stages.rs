//! The request path, stage by stage, in nanoseconds per event: parsing (`/g/collect`,
//! `/mp/collect`, `/data`), mapping + hashing (one Pinterest purchase), framing into a
//! queue batch, and appending to the queue (in memory). The workload is a realistic gtag
//! batch (≈600 bytes of shared URL parameters + 3 body lines, one a purchase with 3 items)
//! and the equivalent MP and `/data` bodies.
//!
//! Run: `cargo bench --bench stages`. Throughput is in events, so criterion's `thrpt` line
//! is events/s. `baseline_copy` (copying the request bytes) is the yardstick to compare
//! between machines.

use std::{hint::black_box, sync::Arc, time::SystemTime};

/// The binary's allocator, so allocation costs are the gateway's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use serde_json::json;
use tagbridge::{
    event::{value::parse_json, EventData, RequestContext, Val},
    ingest::{gtag_parse, mp_parse},
    queue::{format::EventHead, storage::MemStorage, AppendBatch, Queue, QueueOptions},
    tags::{pinterest::PinterestSettings, TagConfig},
};

/// Shared parameters as gtag.js sends them to a server container (≈600 bytes).
const QUERY: &str = "v=2&tid=G-XXXXXXX&gtm=45je55e1za200&_p=1747422523211&gcs=G111\
    &gcd=13r3r3r3r5l1&npa=0&dma=0&cid=1141082648.1693483972&ul=en-us&sr=1512x982\
    &uaa=arm&uab=64&uafvl=Chromium%3B136.0.7103.93%7CGoogle%2520Chrome%3B136.0.7103.93\
    %7CNot.A%252FBrand%3B99.0.0.0&uamb=0&uam=&uap=macOS&uapv=15.2.0&uaw=0&are=1&frm=0\
    &pscdl=noapi&sst.etld=google.com&sst.tft=1747422523211&sst.lpc=174512345\
    &sst.navt=n&sst.ude=0&_s=4&sid=1747422523&sct=3&seg=1&_uip=%3A%3A\
    &dl=https%3A%2F%2Fshop.example.com%2Fcheckout%2Fthank-you%3Forder%3DT-100234%26utm_source%3Dnewsletter\
    &dr=https%3A%2F%2Fshop.example.com%2Fcheckout%2Fpayment&dt=Thank%20you%20for%20your%20order\
    &tfd=15784&richsstsse";

/// Three events, `\r\n`-separated as some senders do; the purchase carries three items.
const BODY: &str = "en=purchase&_et=3120&cu=EUR&ep.transaction_id=T-100234&epn.value=129.97\
    &epn.tax=20.75&epn.shipping=4.99&ep.coupon=SPRING10&ep.affiliation=Online%20Store\
    &up.customer_tier=gold&upn.lifetime_orders=7\
    &pr1=idSKU-1~nmRunning%20Shoe~brAcme~caShoes~c2Running~vaBlue%20%2F%2042~pr49.99~qt2~k0color~v0blue\
    &pr2=idSKU-2~nmSport%20Socks~brAcme~caApparel~c2Socks~pr9.99~qt1~ds1\
    &pr3=idSKU-3~nmLaces~caAccessories~pr20~qt1~lp3\r\n\
    en=scroll&_et=1200&epn.percent_scrolled=90\r\n\
    en=user_engagement&_et=8012&_dbg=1\r\n";

const MP_BODY: &str = r#"{"client_id":"1141082648.1693483972","user_id":"u-42",
  "timestamp_micros":1712502581939103,"consent":{"ad_user_data":"GRANTED"},
  "user_properties":{"customer_tier":{"value":"gold"}},
  "user_data":{"sha256_email_address":["86e0b9e56c17cc4d12387e1949b85053fbe73bc3ce5a1188713a9d300cc6133d"],
    "address":[{"sha256_first_name":"81f8f6dde88365f3928796ec7aa53f72820b06db8664f5fe76a7eb13e24546a2","city":"berlin","country":"de"}]},
  "events":[
    {"name":"purchase","params":{"currency":"EUR","value":129.97,"transaction_id":"T-100234",
      "items":[{"item_id":"SKU-1","item_name":"Running Shoe","price":49.99,"quantity":2},
               {"item_id":"SKU-2","item_name":"Sport Socks","price":9.99,"quantity":1},
               {"item_id":"SKU-3","item_name":"Laces","price":20,"quantity":1}]}},
    {"name":"scroll","params":{"percent_scrolled":90,"engagement_time_msec":1200}},
    {"name":"user_engagement","params":{"engagement_time_msec":8012}}]}"#;

const DATA_BODY: &str = r#"{"event_name":"purchase","transaction_id":"T-100234","client_id":"1234567890.1700000000",
"page_location":"https://shop.example.com/checkout/thanks?epik=dj0yJnU9abc","currency":"EUR","value":129.97,
"email":" Jane.Doe@Example.com ","phone":"+49 (0)30 1234-5678",
"user_data":{"address":{"first_name":"Jane","last_name":"Doe","city":"Berlin","region":"BE","postal_code":"10115","country":"DE"}},
"items":[{"item_id":"SKU-1","item_name":"Shoe","price":49.99,"quantity":2,"item_brand":"Acme"},
 {"item_id":"SKU-2","item_name":"Sock","price":9.99,"quantity":1},{"item_id":"SKU-3","item_name":"Lace","price":20.0,"quantity":1}]}"#;

fn parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse");
    group.throughput(Throughput::Elements(3));
    let n = gtag_parse::decode(QUERY, BODY)
        .and_then(|d| d.split_events(false).map(|s| s.events.len()))
        .unwrap_or(0);
    assert_eq!(n, 3);
    // As the handler does it: decode, build the events (the URL's parameters once, read
    // through by each event), index each event's keys.
    group.bench_function("gtag_3_events", |b| {
        b.iter(|| {
            let d = gtag_parse::decode(black_box(QUERY), black_box(BODY)).ok();
            black_box(d.as_ref().map(|d| d.split_events(false).map(event_data)))
        })
    });
    // The URL's parameters built into every event (before 2026-11-30), for comparison.
    group.bench_function("gtag_3_events_merged", |b| {
        b.iter(|| {
            let d = gtag_parse::decode(black_box(QUERY), black_box(BODY)).ok();
            black_box(d.as_ref().map(|d| {
                d.events(false).map(|(events, _)| {
                    let mut n = 0;
                    for e in events {
                        black_box(EventData::new(e));
                        n += 1;
                    }
                    n
                })
            }))
        })
    });
    group.bench_function("gtag_decode_only", |b| {
        b.iter(|| black_box(gtag_parse::decode(black_box(QUERY), black_box(BODY)).is_ok()))
    });
    let decoded = gtag_parse::decode(QUERY, BODY).expect("decodes");
    group.bench_function("gtag_events_only", |b| {
        b.iter(|| black_box(decoded.split_events(false).map(event_data)))
    });
    group.bench_function("mp_3_events", |b| {
        b.iter(|| {
            black_box(
                mp_parse::parse_borrowed(black_box(MP_BODY.as_bytes()), false)
                    .map(|p| p.events.len()),
            )
        })
    });
    group.bench_function("baseline_copy", |b| {
        b.iter(|| black_box(black_box(QUERY).to_owned() + black_box(BODY)))
    });
    group.finish();
    let mut group = c.benchmark_group("parse");
    group.throughput(Throughput::Elements(1));
    group.bench_function("data_1_event", |b| {
        b.iter(|| {
            black_box(
                parse_json(black_box(DATA_BODY.as_bytes()), 100).map(|v| matches!(v, Val::Obj(_))),
            )
        })
    });
    group.finish();
}

/// Event data for split gtag events, as the handler builds it (without enrichment).
fn event_data(split: gtag_parse::SplitEvents<'_>) -> usize {
    let shared = &split.shared;
    let mut n = 0;
    for (own, reads) in split.events {
        black_box(match reads {
            true => EventData::with_shared(own, shared),
            false => EventData::new(own),
        });
        n += 1;
    }
    n
}

fn map(c: &mut Criterion) {
    let settings: PinterestSettings = serde_json::from_value(json!({
        "name": "pinterest", "advertiser_id": "549755885175", "access_token": "pina_x",
        "custom_data": {"content_category": {"from": "items.0.item_category"}}
    }))
    .expect("settings");
    let tag = TagConfig::Pinterest(settings).build();
    let mut value = parse_json(DATA_BODY.as_bytes(), 100).expect("json");
    let Val::Obj(obj) = std::mem::take(&mut value) else {
        panic!("object")
    };
    let mut event = EventData::new(obj);
    event.insert("ip_override", Val::str("203.0.113.7"));
    event.insert(
        "user_agent",
        Val::str("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36"),
    );
    let req = RequestContext::detached(SystemTime::now());
    let mut out = Vec::with_capacity(2048);
    let mut group = c.benchmark_group("map");
    group.throughput(Throughput::Elements(1));
    group.bench_function("pinterest_purchase_map_and_hash", |b| {
        b.iter(|| black_box(tag.evaluate(black_box(&event), black_box(&req), &mut out)))
    });
    group.finish();

    // Framing and appending the mapped event.
    let _ = tag.evaluate(&event, &req, &mut out);
    let body = out.clone();
    let queue = Queue::open(
        Arc::new(MemStorage::default()),
        None,
        QueueOptions::new(1 << 30, 1 << 20),
        1,
        &|_| Some(0),
    )
    .expect("queue")
    .0;
    let head = EventHead {
        seq: 0,
        received_ms: 1_700_000_000_000,
        log: false,
        tag: "pinterest",
        event_id: "T-100234",
        event_name: "checkout",
        trace_id: "7f38388d0f8b44fea6cf897c45d9e7e9",
    };
    let mut group = c.benchmark_group("queue");
    group.throughput(Throughput::Elements(3));
    group.bench_function("frame_3_events", |b| {
        b.iter(|| {
            let mut batch = AppendBatch::default();
            for _ in 0..3 {
                batch.push(&queue, 0, head, black_box(&body), None);
            }
            black_box(batch.bytes())
        })
    });
    group.bench_function("frame_and_append_3_events", |b| {
        b.iter(|| {
            let mut batch = AppendBatch::default();
            for _ in 0..3 {
                batch.push(&queue, 0, head, black_box(&body), None);
            }
            let _ = black_box(queue.append(batch).is_ok());
            // Keep the in-memory queue small: settle what was appended.
            let leased = queue.lease(0, 1000, u64::MAX);
            let _ = queue.settle(0, &leased, &[]);
        })
    });
    group.finish();
}

criterion_group!(benches, parse, map);
criterion_main!(benches);
