//! Every conformance vector through the real HTTP path: the gateway on 127.0.0.1:0, a mock
//! Pinterest as `api_base`; the vector's request goes to `/data`; then the drain sends what
//! is pending and the mock's requests are compared with the expectation.

mod common;

use common::{vectors, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_vectors_in_process() {
    let client = reqwest::Client::new();
    let mut failures = Vec::new();
    let all = vectors::all();
    assert!(all.len() >= 78, "fixture has {} vectors", all.len());
    for vector in &all {
        let name = vector["name"].as_str().unwrap_or("?").to_owned();
        let mock = common::mock_pinterest().await;
        let tag = common::tag(vectors::tag_json(vector, &mock.uri()), &mock.uri());
        let server = TestServer::start(common::config_with(vec![tag])).await;
        let (status, cookies, sent_at) = vectors::send(&client, &server.url(""), vector).await;
        let report = server.shutdown().await;
        let requests = mock.received_requests().await.unwrap_or_default();
        let seen = vectors::Observed {
            status,
            cookies: &cookies,
            sent_at,
            requests: &requests,
        };
        let result = vectors::check(vector, &seen).and_then(|()| {
            if report.left_in_queue != 0 {
                return Err(format!("drain left {} events queued", report.left_in_queue));
            }
            Ok(())
        });
        if let Err(e) = result {
            failures.push(format!("{name}: {e}"));
        }
    }
    vectors::assert_all_passed(&failures, all.len());
}

/// The checker must be able to fail: a changed hash, a missing key or a stale time are caught.
#[test]
fn vector_checker_catches_differences() {
    let expected = serde_json::json!({"event_time": "<receive time>", "event_id": "<generated>",
        "user_data": {"em": ["aa"]}});
    let now = vectors::now_secs();
    let good = serde_json::json!({"event_time": now, "event_id": "x", "user_data": {"em": ["aa"]}});
    assert_eq!(vectors::match_value(&expected, &good, now, "event"), Ok(()));
    let bad_hash =
        serde_json::json!({"event_time": now, "event_id": "x", "user_data": {"em": ["ab"]}});
    assert!(vectors::match_value(&expected, &bad_hash, now, "event").is_err());
    let extra_key = serde_json::json!({"event_time": now, "event_id": "x", "user_data": {"em": ["aa"], "ph": ["1"]}});
    assert!(vectors::match_value(&expected, &extra_key, now, "event").is_err());
    let stale =
        serde_json::json!({"event_time": now - 60, "event_id": "x", "user_data": {"em": ["aa"]}});
    assert!(vectors::match_value(&expected, &stale, now, "event").is_err());
    let empty_id =
        serde_json::json!({"event_time": now, "event_id": "", "user_data": {"em": ["aa"]}});
    assert!(vectors::match_value(&expected, &empty_id, now, "event").is_err());
}
