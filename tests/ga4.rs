//! GA4 ingest end to end: raw gtag.js and Measurement Protocol requests in, exact
//! Pinterest events out (mock Pinterest on loopback), plus CORS and client addresses.

mod common;

use common::TestServer;
use serde_json::{json, Value};
use tagbridge::config::Config;

const UA: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36";
const SHARED: &str = "v=2&tid=G-ABC123&gtm=45je4bk0v9&_p=1732874400123&cid=1234567890.1732874000&ul=en-us&sr=1920x1080&uaa=x86&sid=1732874000&sct=3&seg=1&dl=https%3A%2F%2Fshop.example.com%2Fcheckout%2Fthanks%3Fepik%3DdJ0yJnU9&dr=https%3A%2F%2Fwww.pinterest.com%2F&dt=Thank%20you&gcs=G111&_s=4";

fn config(mock: &str, tag: Value) -> Config {
    let mut settings =
        json!({"name": "pin", "advertiser_id": "549755885175", "access_token": "pina_T"});
    for (k, v) in tag.as_object().into_iter().flatten() {
        settings[k] = v.clone();
    }
    common::config_with(vec![common::tag(settings, mock)])
}

async fn events_sent(mock: &wiremock::MockServer) -> Vec<Value> {
    common::received_bodies(mock)
        .await
        .iter()
        .flat_map(|b| b["data"].as_array().cloned().unwrap_or_default())
        .collect()
}

/// Event ids Pinterest received, sorted (separate requests may arrive in either order).
async fn sorted_ids(mock: &wiremock::MockServer) -> Vec<String> {
    let mut ids: Vec<String> = events_sent(mock)
        .await
        .iter()
        .map(|e| e["event_id"].as_str().unwrap_or_default().to_owned())
        .collect();
    ids.sort();
    ids
}

fn without_time_and_id(mut e: Value) -> Value {
    if let Some(o) = e.as_object_mut() {
        assert!(
            o.remove("event_time").and_then(|t| t.as_i64()).is_some(),
            "event_time"
        );
        assert!(o
            .remove("event_id")
            .and_then(|t| t.as_str().map(str::to_owned))
            .is_some_and(|s| !s.is_empty()));
    }
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batched_purchase_with_items_and_the_epik_cookie() {
    let mock = common::mock_pinterest().await;
    let server = TestServer::start(config(&mock.uri(), json!({}))).await;
    let body = "en=page_view&_et=12\r\nen=purchase&ep.transaction_id=T-77&epn.value=59.98&cu=EUR&ep.email=Jane%40Example.com\
&pr1=idSKU-1~nmShoe~brAcme~caShoes~pr24.99~qt2~k0color~v0red&pr2=idSKU-2~nmSock~pr9.99~qt1\r\n\r\nen=add_to_cart&epn.value=abc\r\n";
    let resp = reqwest::Client::new()
        .post(format!("{}?{SHARED}", server.url("/g/collect")))
        .header("user-agent", UA)
        .header("host", "track.shop.example.com")
        .header("content-type", "text/plain;charset=UTF-8")
        .body(body)
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), 204);
    let cookies: Vec<&str> = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    assert_eq!(
        cookies,
        vec!["_epik=dJ0yJnU9; Path=/; Max-Age=31536000; Domain=example.com; Secure; SameSite=Lax"]
    );
    assert_eq!(resp.text().await.expect("body"), "");
    server.shutdown().await;
    let sent = events_sent(&mock).await;
    assert_eq!(sent.len(), 3);
    let user =
        json!({"client_ip_address": "127.0.0.1", "client_user_agent": UA, "click_id": "dJ0yJnU9"});
    let url = "https://shop.example.com/checkout/thanks?epik=dJ0yJnU9";
    assert_eq!(
        without_time_and_id(sent[0].clone()),
        json!({
        "event_name": "page_visit", "action_source": "web", "event_source_url": url, "user_data": user})
    );
    let mut purchase_user = user.clone();
    purchase_user["em"] =
        json!(["8c87b489ce35cf2e2f39f80e282cb2e804932a56a213983eeeb428407d43b52d"]);
    assert_eq!(sent[1]["event_id"], "T-77");
    assert_eq!(
        without_time_and_id(sent[1].clone()),
        json!({
        "event_name": "checkout", "action_source": "web", "event_source_url": url, "user_data": purchase_user,
        "custom_data": {
            "contents": [
                {"id": "SKU-1", "item_name": "Shoe", "item_brand": "Acme", "item_category": "Shoes", "item_price": "24.99", "quantity": 2},
                {"id": "SKU-2", "item_name": "Sock", "item_price": "9.99", "quantity": 1}
            ],
            "content_ids": ["SKU-1", "SKU-2"], "num_items": 3, "value": "59.98", "currency": "EUR", "order_id": "T-77"
        }})
    );
    // `epn.value=abc` does not parse: dropped, so no value at all.
    assert_eq!(
        without_time_and_id(sent[2].clone()),
        json!({
        "event_name": "add_to_cart", "action_source": "web", "event_source_url": url, "user_data": user})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_denied_sends_nothing_and_a_trigger_filters() {
    let mock = common::mock_pinterest().await;
    let server = TestServer::start(config(
        &mock.uri(),
        json!({"ad_storage_consent": "required", "trigger": {"events": ["purchase"]}}),
    ))
    .await;
    let client = reqwest::Client::new();
    let denied = SHARED.replace("gcs=G111", "gcs=G100");
    for (query, body) in [
        (denied.as_str(), "en=purchase&ep.transaction_id=D-1"),
        (SHARED, "en=page_view\r\nen=purchase&ep.transaction_id=OK-1"),
    ] {
        let resp = client
            .post(format!("{}?{query}", server.url("/g/collect")))
            .body(body)
            .send()
            .await
            .expect("post");
        assert_eq!(resp.status(), 204);
    }
    // A GET beacon carries one event in the URL.
    let resp = client
        .get(format!(
            "{}?{SHARED}&en=purchase&ep.transaction_id=OK-2",
            server.url("/g/collect")
        ))
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status(), 204);
    server.shutdown().await;
    let ids = sorted_ids(&mock).await;
    assert_eq!(ids, vec!["OK-1", "OK-2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_for_is_trusted_only_from_trusted_proxies() {
    let mock = common::mock_pinterest().await;
    let mut c = config(&mock.uri(), json!({}));
    c.server.trusted_proxies = vec!["127.0.0.0/8".parse().expect("cidr")];
    let server = TestServer::start(c).await;
    let client = reqwest::Client::new();
    let resp = client
        .get(format!(
            "{}?{SHARED}&en=page_view&ep.event_id=xff-1",
            server.url("/g/collect")
        ))
        .header("x-forwarded-for", "198.51.100.23, 127.0.0.9")
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status(), 204);
    server.shutdown().await;
    // The peer (127.0.0.1) is untrusted here: the header is ignored.
    let mock2 = common::mock_pinterest().await;
    let server2 = TestServer::start(config(&mock2.uri(), json!({}))).await;
    let resp = client
        .get(format!(
            "{}?{SHARED}&en=page_view&ep.event_id=xff-2",
            server2.url("/g/collect")
        ))
        .header("x-forwarded-for", "198.51.100.23")
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status(), 204);
    server2.shutdown().await;
    assert_eq!(
        events_sent(&mock).await[0]["user_data"]["client_ip_address"],
        "198.51.100.23"
    );
    assert_eq!(
        events_sent(&mock2).await[0]["user_data"]["client_ip_address"],
        "127.0.0.1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_allowlist_preflight_and_refusal() {
    let mock = common::mock_pinterest().await;
    let mut c = config(&mock.uri(), json!({}));
    c.server.allowed_origins = vec!["https://shop.example.com".into()];
    let server = TestServer::start(c).await;
    let client = reqwest::Client::new();
    let pre = client
        .request(reqwest::Method::OPTIONS, server.url("/g/collect"))
        .header("origin", "https://shop.example.com")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .expect("preflight");
    assert_eq!(pre.status(), 204);
    let h = pre.headers();
    assert_eq!(h["access-control-allow-origin"], "https://shop.example.com");
    assert_eq!(h["access-control-allow-credentials"], "true");
    assert_eq!(h["access-control-allow-methods"], "GET, POST, OPTIONS");
    assert_eq!(h["access-control-allow-headers"], "content-type");
    let ok = client
        .post(format!("{}?{SHARED}", server.url("/g/collect")))
        .header("origin", "https://shop.example.com")
        .body("en=page_view&ep.event_id=c-1")
        .send()
        .await
        .expect("post");
    assert_eq!(ok.status(), 204);
    assert_eq!(
        ok.headers()["access-control-allow-origin"],
        "https://shop.example.com"
    );
    let bad = client
        .post(format!("{}?{SHARED}", server.url("/g/collect")))
        .header("origin", "https://evil.example")
        .body("en=page_view&ep.event_id=c-2")
        .send()
        .await
        .expect("post");
    assert_eq!(bad.status(), 403);
    assert!(bad.headers().get("access-control-allow-origin").is_none());
    assert_eq!(
        bad.json::<Value>().await.expect("json"),
        json!({"error": "origin not allowed"})
    );
    // No Origin (server call, image beacon): processed.
    let none = client
        .get(format!(
            "{}?{SHARED}&en=page_view&ep.event_id=c-3",
            server.url("/g/collect")
        ))
        .send()
        .await
        .expect("get");
    assert_eq!(none.status(), 204);
    server.shutdown().await;
    let ids = sorted_ids(&mock).await;
    assert_eq!(ids, vec!["c-1", "c-3"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn measurement_protocol_with_and_without_the_ingest_key() {
    let mock = common::mock_pinterest().await;
    let mut c = config(&mock.uri(), json!({"ad_storage_consent": "required"}));
    c.server.ingest_key = tagbridge::config::Secret::new("k-123");
    let server = TestServer::start(c).await;
    let client = reqwest::Client::new();
    let body = json!({
        "client_id": "555.666", "user_id": "u-9", "timestamp_micros": 1_700_000_000_000_000u64,
        "ip_override": "203.0.113.50",
        "consent": {"ad_user_data": "GRANTED", "ad_personalization": "GRANTED"},
        "user_data": {"sha256_email_address": "973dfe463ec85785f5f95af5ba3906eedb2d931c24e69824a89ea65dba4e813b"},
        "events": [{"name": "purchase", "params": {"transaction_id": "MP-1", "value": 10, "currency": "USD",
                    "user_agent": UA}}]
    });
    let resp = client
        .post(format!("{}?api_secret=k-123", server.url("/mp/collect")))
        .json(&body)
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), 204);
    let mut unauth = body.clone();
    unauth["events"][0]["params"]["transaction_id"] = json!("MP-2");
    let resp = client
        .post(server.url("/mp/collect"))
        .json(&unauth)
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), 204);
    let mut denied = body.clone();
    denied["consent"]["ad_user_data"] = json!("DENIED");
    denied["events"][0]["params"]["transaction_id"] = json!("MP-3");
    assert_eq!(
        client
            .post(server.url("/mp/collect"))
            .json(&denied)
            .send()
            .await
            .expect("post")
            .status(),
        204
    );
    let resp = client
        .post(server.url("/mp/collect"))
        .body("{not json")
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), 400);
    assert!(resp.json::<Value>().await.expect("json")["error"]
        .as_str()
        .unwrap_or_default()
        .starts_with("invalid JSON"));
    for (body, message) in [
        (
            "",
            "empty request body: send a Measurement Protocol JSON object",
        ),
        (
            "{\"client_id\": \"1.2\", \"events\": []}",
            "no event in the request",
        ),
    ] {
        let resp = client
            .post(server.url("/mp/collect"))
            .body(body)
            .send()
            .await
            .expect("post");
        assert_eq!(resp.status(), 400);
        assert_eq!(resp.json::<Value>().await.expect("json")["error"], message);
    }
    let resp = client
        .post(server.url("/g/collect?v=2&tid=G-ABC123&cid=1.2"))
        .body("foo=bar")
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), 400);
    assert_eq!(
        resp.json::<Value>().await.expect("json")["error"],
        "no event in the request (a line without `en` is not an event)"
    );
    server.shutdown().await;
    let sent = events_sent(&mock).await;
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert_eq!(sent[0]["event_id"], "MP-1");
    assert_eq!(sent[0]["event_time"], 1_700_000_000);
    assert_eq!(sent[0]["user_data"]["client_ip_address"], "203.0.113.50");
    assert_eq!(
        sent[0]["user_data"]["em"],
        json!(["973dfe463ec85785f5f95af5ba3906eedb2d931c24e69824a89ea65dba4e813b"])
    );
    assert_eq!(
        sent[0]["custom_data"],
        json!({"value": "10", "currency": "USD", "order_id": "MP-1"})
    );
    // Without the key the body's ip_override is not trusted: the connection's address.
    assert_eq!(sent[1]["event_id"], "MP-2");
    assert_eq!(sent[1]["user_data"]["client_ip_address"], "127.0.0.1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configurable_paths_and_ga4_debug_traffic() {
    let mock = common::mock_pinterest().await;
    let mut c = config(&mock.uri(), json!({"log": "debug"}));
    c.debug.token = tagbridge::config::Secret::new("dbg-token");
    c.server.paths.gtag = "/t/e".into();
    c.server.paths.data = "/beacon".into();
    let server = TestServer::start(c).await;
    let client = reqwest::Client::new();
    // The default paths are gone.
    let old = client
        .get(format!(
            "{}?{SHARED}&en=page_view",
            server.url("/g/collect")
        ))
        .send()
        .await
        .expect("get");
    assert_eq!(old.status(), 404);
    let old = client
        .post(server.url("/data"))
        .json(&json!({"event": "x"}))
        .send()
        .await
        .expect("post");
    assert_eq!(old.status(), 404);
    // Normal traffic: not logged with `log: debug`; `_dbg=1` is debug traffic, logged when
    // the request carries the debug token (here in the debug cookie), not otherwise.
    let plain = client
        .get(format!(
            "{}?{SHARED}&en=page_view&ep.event_id=p-1",
            server.url("/t/e")
        ))
        .send()
        .await
        .expect("get");
    assert_eq!(plain.status(), 204);
    let dbg = client
        .get(format!(
            "{}?{SHARED}&_dbg=1&en=page_view&ep.event_id=p-2",
            server.url("/t/e")
        ))
        .header("cookie", "_ga=GA1.1.1; tagbridge_debug=dbg-token")
        .send()
        .await
        .expect("get");
    assert_eq!(dbg.status(), 204);
    let anyone = client
        .get(format!(
            "{}?{SHARED}&_dbg=1&en=page_view&ep.event_id=p-4",
            server.url("/t/e")
        ))
        .send()
        .await
        .expect("get");
    assert_eq!(anyone.status(), 204);
    let beacon = client
        .post(server.url("/beacon"))
        .json(&json!({"event": "lead", "event_id": "p-3"}))
        .send()
        .await
        .expect("post");
    assert_eq!(beacon.status(), 200);
    let log = server.log.clone();
    server.shutdown().await;
    let ids = sorted_ids(&mock).await;
    assert_eq!(ids.len(), 4);
    let logged: Vec<(String, String)> = log
        .records()
        .iter()
        .map(|r| {
            (
                r["Type"].as_str().unwrap_or_default().to_owned(),
                r["EventId"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        logged,
        vec![
            ("Request".to_owned(), "p-2".to_owned()),
            ("Response".to_owned(), "p-2".to_owned())
        ]
    );
}

/// A cookie that is not ASCII (browsers send UTF-8 as it was set) hides no other cookie, a
/// site with many cookies keeps the ones tags read however late they come, and a UTF-8
/// User-Agent is used as it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookies_past_non_ascii_and_past_many_others_are_read() {
    let mock = common::mock_pinterest().await;
    let server = TestServer::start(config(&mock.uri(), json!({}))).await;
    let client = reqwest::Client::new();
    let filler: Vec<String> = (0..80).map(|i| format!("c{i}=v{i}")).collect();
    let cases = [
        (
            "non-ascii",
            reqwest::header::HeaderValue::from_bytes("city=München; _epik=CLICK1".as_bytes()),
            "CLICK1",
        ),
        (
            "many",
            reqwest::header::HeaderValue::from_str(&format!("{}; _epik=CLICK2", filler.join("; "))),
            "CLICK2",
        ),
    ];
    let ua = "Mozilla/5.0 (Linux; Android 14; Ünïcode Phone) Mobile";
    for (i, (name, cookie, _)) in cases.iter().enumerate() {
        let resp = client
            .post(format!(
                "{}?v=2&tid=G-1&cid=1.2&gcs=G111&dl=https%3A%2F%2Fshop.example.com%2F",
                server.url("/g/collect")
            ))
            .header(
                "user-agent",
                reqwest::header::HeaderValue::from_bytes(ua.as_bytes()).expect("ua"),
            )
            .header("cookie", cookie.as_ref().expect("cookie").clone())
            .body(format!("en=page_view&ep.event_id=ck-{i}"))
            .send()
            .await
            .expect("post");
        assert_eq!(resp.status(), 204, "{name}");
    }
    server.shutdown().await;
    let mut got: Vec<(String, Value, Value)> = events_sent(&mock)
        .await
        .iter()
        .map(|e| {
            (
                e["event_id"].as_str().unwrap_or_default().to_owned(),
                e["user_data"]["click_id"].clone(),
                e["user_data"]["client_user_agent"].clone(),
            )
        })
        .collect();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        got,
        vec![
            ("ck-0".to_owned(), json!(cases[0].2), json!(ua)),
            ("ck-1".to_owned(), json!(cases[1].2), json!(ua)),
        ]
    );
}
