//! Delivery outcomes and logs: `wait_for_response` answers, Pinterest's per-event
//! failures, permanent errors, a retried 5xx, and the `log` switch (stape's field names).

mod common;

use common::TestServer;
use serde_json::{json, Value};
use wiremock::{matchers, Mock, MockServer, ResponseTemplate};

fn event(id: &str) -> Value {
    json!({"event_name": "purchase", "event_id": id, "ip_override": "203.0.113.7",
           "user_agent": "UA", "page_location": "https://shop.example.com/x"})
}

async fn start(mock: &MockServer, extra: Value) -> TestServer {
    let mut settings =
        json!({"name": "pin", "advertiser_id": "549755885175", "access_token": "pina_SECRET"});
    for (k, v) in extra.as_object().into_iter().flatten() {
        settings[k] = v.clone();
    }
    let mut config = common::config_with(vec![common::tag(settings, &mock.uri())]);
    config.debug.token = tagbridge::config::Secret::new(DEBUG_TOKEN);
    TestServer::start(config).await
}

const DEBUG_TOKEN: &str = "dbg-7f3a";

/// A gateway that waits for Pinterest's answer and retries quickly (10–50 ms).
async fn start_retrying(mock: &MockServer) -> TestServer {
    let settings = json!({"name": "pin", "advertiser_id": "549755885175", "access_token": "t",
                          "wait_for_response": true});
    let mut config = common::config_with(vec![common::tag(settings, &mock.uri())]);
    config.dispatch.retry.initial_ms = 10;
    config.dispatch.retry.max_ms = 50;
    TestServer::start(config).await
}

/// Posts one event and expects the answer to report it sent (after however many retries).
async fn post_until_sent(server: &TestServer, id: &str) {
    let resp = reqwest::Client::new()
        .post(server.url("/data"))
        .json(&event(id))
        .send()
        .await
        .expect("post");
    assert_eq!(
        resp.json::<Value>().await.expect("json")["tags"],
        json!([{"name": "pin", "status": "sent"}])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_response_reports_sent_and_per_event_failures() {
    let mock = MockServer::start().await;
    Mock::given(matchers::method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
        "num_events_received": 2, "num_events_processed": 1,
        "events": [
            {"status": "processed", "error_message": "", "warning_message": ""},
            {"status": "failed", "error_message": "Invalid event_time.", "warning_message": ""}
        ]})))
        .mount(&mock)
        .await;
    let server = start(&mock, json!({"wait_for_response": true})).await;
    let resp = reqwest::Client::new()
        .post(server.url("/data"))
        .json(&json!([event("w-1"), event("w-2")]))
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.json::<Value>().await.expect("json"),
        json!([
            {"client_id": null, "event_id": "w-1", "tags": [{"name": "pin", "status": "sent"}]},
            {"client_id": null, "event_id": "w-2", "tags": [{"name": "pin", "status": "failed", "detail": "Invalid event_time."}]}
        ])
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_is_final_and_reported() {
    let mock = MockServer::start().await;
    Mock::given(matchers::method("POST"))
        .respond_with(
            ResponseTemplate::new(401)
                .set_body_json(json!({"code": 2, "message": "Authentication failed."})),
        )
        .mount(&mock)
        .await;
    let server = start(&mock, json!({"wait_for_response": true})).await;
    let resp = reqwest::Client::new()
        .post(server.url("/data"))
        .json(&event("a-1"))
        .send()
        .await
        .expect("post");
    assert_eq!(
        resp.json::<Value>().await.expect("json"),
        json!({"client_id": null, "event_id": "a-1",
               "tags": [{"name": "pin", "status": "failed", "detail": "HTTP 401: Authentication failed. (code 2)"}]})
    );
    let report = server.shutdown().await;
    assert_eq!(report.left_in_queue, 0);
    // Not retried.
    assert_eq!(mock.received_requests().await.unwrap_or_default().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_503_is_retried_until_delivered() {
    let mock = MockServer::start().await;
    Mock::given(matchers::method("POST"))
        .respond_with(
            ResponseTemplate::new(503)
                .set_body_json(json!({"code": 4197, "message": "ramped down"})),
        )
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&mock)
        .await;
    Mock::given(matchers::method("POST"))
        .respond_with(common::PinterestOk)
        .with_priority(2)
        .mount(&mock)
        .await;
    let server = start_retrying(&mock).await;
    post_until_sent(&server, "r-1").await;
    server.shutdown().await;
    let requests = mock.received_requests().await.unwrap_or_default();
    assert_eq!(requests.len(), 3);
    // Every attempt carries the same event (same event_id: Pinterest deduplicates).
    for r in &requests {
        let body: Value = serde_json::from_slice(&r.body).expect("json");
        assert_eq!(body["data"][0]["event_id"], "r-1");
    }
}

/// A redirect from `api_base` is not followed: no event goes to the other host, and the
/// events stay queued and are retried (then delivered once the API answers).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_is_not_followed_and_the_events_wait() {
    let elsewhere = MockServer::start().await;
    Mock::given(matchers::any())
        .respond_with(common::PinterestOk)
        .mount(&elsewhere)
        .await;
    let mock = MockServer::start().await;
    for status in [307, 302] {
        Mock::given(matchers::method("POST"))
            .respond_with(
                ResponseTemplate::new(status)
                    .insert_header("location", format!("{}/v5/elsewhere", elsewhere.uri())),
            )
            .up_to_n_times(1)
            .with_priority(1)
            .mount(&mock)
            .await;
    }
    Mock::given(matchers::method("POST"))
        .respond_with(common::PinterestOk)
        .with_priority(2)
        .mount(&mock)
        .await;
    let server = start_retrying(&mock).await;
    post_until_sent(&server, "rd-1").await;
    server.shutdown().await;
    assert_eq!(
        elsewhere
            .received_requests()
            .await
            .unwrap_or_default()
            .len(),
        0
    );
    let requests = mock.received_requests().await.unwrap_or_default();
    assert_eq!(requests.len(), 3);
    for r in &requests {
        let body: Value = serde_json::from_slice(&r.body).expect("json");
        assert_eq!(body["data"][0]["event_id"], "rd-1");
    }
}

async fn logged_records(log: &str, debug_header: Option<&str>, body: Value) -> Vec<Value> {
    let mock = common::mock_pinterest().await;
    let server = start(&mock, json!({"log": log})).await;
    let mut req = reqwest::Client::new().post(server.url("/data")).json(&body);
    if let Some(value) = debug_header {
        req = req.header("x-tagbridge-debug", value);
    }
    assert_eq!(req.send().await.expect("post").status(), 200);
    let log = server.log.clone();
    server.shutdown().await;
    log.records()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_switch_and_record_fields() {
    let records = logged_records("always", None, event("l-1")).await;
    assert_eq!(records.len(), 2, "{records:?}");
    let req = &records[0];
    assert_eq!(req["Name"], "Pinterest");
    assert_eq!(req["Type"], "Request");
    assert_eq!(req["EventName"], "checkout");
    assert_eq!(req["RequestMethod"], "POST");
    assert!(req["RequestUrl"]
        .as_str()
        .unwrap_or_default()
        .ends_with("/v5/ad_accounts/549755885175/events"));
    assert_eq!(req["RequestBody"]["data"][0]["event_id"], "l-1");
    // The client address is masked in logs (Pinterest gets it whole).
    assert_eq!(
        req["RequestBody"]["data"][0]["user_data"]["client_ip_address"],
        "203.0.113.0"
    );
    assert_eq!(req["TraceId"].as_str().map(str::len), Some(32));
    let resp = &records[1];
    assert_eq!(resp["Type"], "Response");
    assert_eq!(resp["ResponseStatusCode"], 200);
    assert_eq!(
        resp["ResponseBody"],
        json!({"status": "processed", "error_message": "", "warning_message": ""})
    );
    assert_eq!(resp["TraceId"], req["TraceId"]);
    assert!(resp["ResponseHeaders"].is_object());
    let all = serde_json::to_string(&records).unwrap_or_default();
    assert!(
        !all.contains("pina_SECRET"),
        "the token must never be logged"
    );

    assert!(logged_records("no", Some(DEBUG_TOKEN), event("l-2"))
        .await
        .is_empty());
    assert!(logged_records("debug", None, event("l-3")).await.is_empty());
    assert_eq!(
        logged_records("debug", Some(DEBUG_TOKEN), event("l-4"))
            .await
            .len(),
        2
    );
    // Client-side switches count only with the debug token: anyone can send them.
    assert!(logged_records("debug", Some("1"), event("l-5"))
        .await
        .is_empty());
    let mut dbg = event("l-6");
    dbg["debug_mode"] = json!(true);
    assert!(logged_records("debug", None, dbg).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_logs_and_sends_nothing() {
    let mock = common::mock_pinterest().await;
    let mut settings = json!({"name": "pin", "advertiser_id": "549755885175", "access_token": "", "wait_for_response": true});
    settings["log"] = json!("no");
    let server = TestServer::start(common::config_with(vec![common::tag(
        settings,
        &mock.uri(),
    )]))
    .await;
    let resp = reqwest::Client::new()
        .post(server.url("/data"))
        .json(&event("d-1"))
        .send()
        .await
        .expect("post");
    assert_eq!(
        resp.json::<Value>().await.expect("json")["tags"],
        json!([{"name": "pin", "status": "skipped", "detail": "dry_run"}])
    );
    let log = server.log.clone();
    server.shutdown().await;
    assert!(mock
        .received_requests()
        .await
        .unwrap_or_default()
        .is_empty());
    let records = log.records();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["DryRun"], true);
    assert_eq!(records[0]["RequestBody"]["data"][0]["event_id"], "d-1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_what_happened() {
    let mock = common::mock_pinterest().await;
    let server = start(&mock, json!({"trigger": {"exclude_events": ["page_view"]}})).await;
    let client = reqwest::Client::new();
    let events = json!([event("m-1"), {"event_name": "page_view", "event_id": "m-2"}]);
    assert_eq!(
        client
            .post(server.url("/data"))
            .json(&events)
            .send()
            .await
            .expect("post")
            .status(),
        200
    );
    assert_eq!(
        client
            .post(server.url("/data"))
            .body("{")
            .send()
            .await
            .expect("post")
            .status(),
        400
    );
    let resp = client
        .get(server.admin_url("/metrics"))
        .send()
        .await
        .expect("metrics");
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.expect("text");
    for family in [
        "tagbridge_http_requests_total{route=\"/data\",status=\"200\"}",
        "tagbridge_ingest_rejected_total{reason=\"invalid_json\"}",
        "tagbridge_events_mapped_total{tag=\"pin\"}",
        "tagbridge_events_skipped_total{tag=\"pin\",reason=\"trigger\"}",
        "tagbridge_events_queued_total",
        "tagbridge_queue_commits_total",
    ] {
        assert!(text.contains(family), "missing {family} in:\n{text}");
    }
    server.shutdown().await;
}
