//! Batching: requests carry at most 1000 events, and events of different routes (ad
//! account, token, test mode) never share a request.

mod common;

use std::{collections::HashMap, time::Duration};

use common::TestServer;
use serde_json::{json, Value};

async fn post_events(client: &reqwest::Client, url: &str, first: usize, count: usize) {
    let events: Vec<Value> = (first..first + count)
        .map(|i| json!({"event_name": "purchase", "event_id": format!("e{i}"), "ip_override": "203.0.113.1", "user_agent": "UA"}))
        .collect();
    let resp = client.post(url).json(&events).send().await.expect("post");
    assert_eq!(resp.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_five_hundred_events_make_three_requests() {
    let mock = common::mock_pinterest().await;
    let tag = common::tag(
        json!({"name": "p", "advertiser_id": "549755885175", "access_token": "tok"}),
        &mock.uri(),
    );
    let mut config = common::config_with(vec![tag]);
    // Only size (or the drain) flushes in this test.
    config.dispatch.batch_max_wait_ms = 600_000;
    let server = TestServer::start(config).await;
    let client = reqwest::Client::new();
    for chunk in 0..25 {
        post_events(&client, &server.url("/data"), chunk * 100, 100).await;
    }
    server.shutdown().await;
    let bodies = common::received_bodies(&mock).await;
    let mut sizes: Vec<usize> = bodies
        .iter()
        .map(|b| b["data"].as_array().map_or(0, Vec::len))
        .collect();
    sizes.sort_unstable();
    assert_eq!(sizes, vec![500, 1000, 1000]);
    let mut ids: Vec<String> = bodies
        .iter()
        .flat_map(|b| b["data"].as_array().cloned().unwrap_or_default())
        .map(|e| e["event_id"].as_str().unwrap_or_default().to_owned())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 2500, "every event exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_never_share_a_request() {
    let mock = common::mock_pinterest().await;
    let uri = mock.uri();
    let tags = vec![
        common::tag(
            json!({"name": "a", "advertiser_id": "549000000001", "access_token": "tok-a"}),
            &uri,
        ),
        common::tag(
            json!({"name": "b", "advertiser_id": "549000000002", "access_token": "tok-b"}),
            &uri,
        ),
        // Same account and token as "a": shares a's batches.
        common::tag(
            json!({"name": "a2", "advertiser_id": "549000000001", "access_token": "tok-a", "event_name": "standard", "standard_event": "lead"}),
            &uri,
        ),
        // Same account as "a" in test mode: its own requests.
        common::tag(
            json!({"name": "a-test", "advertiser_id": "549000000001", "access_token": "tok-a", "test_mode": true}),
            &uri,
        ),
    ];
    let mut config = common::config_with(tags);
    config.dispatch.batch_max_wait_ms = 600_000;
    let server = TestServer::start(config).await;
    let client = reqwest::Client::new();
    for chunk in 0..3 {
        post_events(&client, &server.url("/data"), chunk * 100, 100).await;
    }
    server.shutdown().await;
    let requests = mock.received_requests().await.unwrap_or_default();
    let mut per_route: HashMap<(String, Option<String>, String), usize> = HashMap::new();
    for r in &requests {
        let auth = r
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body: Value = serde_json::from_slice(&r.body).expect("json");
        let n = body["data"].as_array().map_or(0, Vec::len);
        *per_route
            .entry((
                r.url.path().to_owned(),
                r.url.query().map(str::to_owned),
                auth,
            ))
            .or_default() += n;
    }
    let key = |acct: &str, q: Option<&str>, tok: &str| {
        (
            format!("/v5/ad_accounts/{acct}/events"),
            q.map(str::to_owned),
            format!("Bearer {tok}"),
        )
    };
    let mut expected = HashMap::new();
    expected.insert(key("549000000001", None, "tok-a"), 600); // tags a + a2
    expected.insert(key("549000000002", None, "tok-b"), 300);
    expected.insert(key("549000000001", Some("test=true"), "tok-a"), 300);
    assert_eq!(per_route, expected);
    // a and a2 share requests: 600 events in a single request.
    let shared = requests
        .iter()
        .filter(|r| r.url.path().ends_with("549000000001/events") && r.url.query().is_none())
        .count();
    assert_eq!(shared, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_batch_leaves_after_batch_max_wait() {
    let mock = common::mock_pinterest().await;
    let tag = common::tag(
        json!({"name": "p", "advertiser_id": "549755885175", "access_token": "tok"}),
        &mock.uri(),
    );
    let mut config = common::config_with(vec![tag]);
    config.dispatch.batch_max_wait_ms = 100;
    let server = TestServer::start(config).await;
    let client = reqwest::Client::new();
    post_events(&client, &server.url("/data"), 0, 3).await;
    // Without any shutdown, the batch must arrive on its own.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let bodies = common::received_bodies(&mock).await;
        if let Some(b) = bodies.first() {
            assert_eq!(b["data"].as_array().map(Vec::len), Some(3));
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "batch never left");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.shutdown().await;
}
