//! `/g/collect` and `/mp/collect` parsing: a realistic gtag batch (≈600 bytes of shared URL
//! parameters + 3 body lines, one a purchase with 3 items) and the equivalent MP body.
//!
//! Run: `cargo bench --bench ga4_parse`. Throughput is in events, so criterion's
//! `thrpt` line is events/s; ns per event = the `time` line / 3.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tagbridge::ingest::{gtag_parse, mp_parse};

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

fn bench(c: &mut Criterion) {
    let events = gtag_parse::parse(QUERY, BODY).map(|p| p.events.len());
    assert_eq!(events, Ok(3), "the benchmark batch must parse to 3 events");
    let mut group = c.benchmark_group("ga4_parse");
    group.throughput(Throughput::Elements(3));
    group.bench_function("gtag_batch_3_events", |b| {
        b.iter(|| black_box(gtag_parse::parse(black_box(QUERY), black_box(BODY))))
    });
    group.bench_function("mp_batch_3_events", |b| {
        b.iter(|| black_box(mp_parse::parse(black_box(MP_BODY.as_bytes()), false)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
