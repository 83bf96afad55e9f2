//! Hot path of the request handler: one event through the Pinterest tag (name mapping,
//! user-data normalization + SHA-256, ecommerce fields, overrides, clean-up).
//!
//! Run: `cargo bench --bench map_hash`. The `baseline_clone` case (cloning the event-data
//! object) is the yardstick: the ratio of the two is what to compare between machines.

use std::{hint::black_box, time::SystemTime};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use serde_json::{json, Value};
use tagbridge::{
    event::{EventData, RequestContext},
    tags::{pinterest::PinterestSettings, TagConfig},
};

fn purchase() -> EventData {
    let v = json!({
        "event_name": "purchase",
        "transaction_id": "T-100234",
        "client_id": "1234567890.1700000000",
        "page_location": "https://shop.example.com/checkout/thanks?epik=dj0yJnU9abc",
        "ip_override": "203.0.113.7",
        "user_agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36",
        "currency": "EUR",
        "value": 129.97,
        "email": " Jane.Doe@Example.com ",
        "phone": "+49 (0)30 1234-5678",
        "user_data": {"address": {"first_name": "Jane", "last_name": "Doe", "city": "Berlin",
                                    "region": "BE", "postal_code": "10115", "country": "DE"}},
        "items": [
            {"item_id": "SKU-1", "item_name": "Shoe", "price": 49.99, "quantity": 2, "item_brand": "Acme"},
            {"item_id": "SKU-2", "item_name": "Sock", "price": 9.99, "quantity": 1},
            {"item_id": "SKU-3", "item_name": "Lace", "price": 20.0, "quantity": 1, "item_category": "Accessories"}
        ]
    });
    match v {
        Value::Object(m) => EventData::new(m),
        _ => EventData::default(),
    }
}

fn bench(c: &mut Criterion) {
    let settings: PinterestSettings = serde_json::from_value(json!({
        "name": "pinterest", "advertiser_id": "549755885175", "access_token": "pina_x",
        "custom_data": {"content_category": {"from": "items.0.item_category"}}
    }))
    .expect("settings");
    let tag = TagConfig::Pinterest(settings).build();
    let event = purchase();
    let req = RequestContext::detached(SystemTime::now());
    let mut group = c.benchmark_group("pinterest");
    group.throughput(Throughput::Elements(1));
    group.bench_function("map_and_hash_purchase", |b| {
        b.iter(|| black_box(tag.evaluate(black_box(&event), black_box(&req))))
    });
    group.bench_function("baseline_clone", |b| {
        b.iter(|| black_box(black_box(&event).clone()))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
