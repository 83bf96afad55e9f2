//! Crash and drain through the real binary: acknowledged events survive `kill -9` while
//! Pinterest is down and are sent on the next start; SIGTERM with a backlog sends it all.

mod common;

use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use common::BinaryServer;
use serde_json::{json, Value};
use wiremock::{matchers, Mock, MockServer, ResponseTemplate};

fn config(api_base: &str, queue_dir: &std::path::Path, batch_wait_ms: u64) -> Value {
    json!({
        "server": {"listen": "127.0.0.1:0", "admin_listen": "127.0.0.1:0"},
        "queue": {"path": queue_dir},
        "dispatch": {"batch_max_wait_ms": batch_wait_ms, "timeout_ms": 2000, "drain_s": 20,
                     "retry": {"initial_ms": 50, "max_ms": 500, "give_up_after_s": 86400}},
        "logging": {"format": "json", "level": "info"},
        "tags": [{"name": "pin", "type": "pinterest", "advertiser_id": "549755885175",
                  "access_token": "pina_TOKEN", "api_base": api_base}]
    })
}

async fn post_concurrently(
    url: &str,
    prefix: &str,
    requests: usize,
    per_request: usize,
) -> BTreeSet<String> {
    let client = reqwest::Client::new();
    let mut tasks = Vec::new();
    for r in 0..requests {
        let client = client.clone();
        let url = url.to_owned();
        let prefix = prefix.to_owned();
        tasks.push(tokio::spawn(async move {
            let ids: Vec<String> = (0..per_request).map(|i| format!("{prefix}-{r}-{i}")).collect();
            let body: Vec<Value> = ids.iter().map(|id| json!({"event_name": "purchase", "event_id": id, "ip_override": "198.51.100.2", "user_agent": "UA"})).collect();
            let status = client.post(&url).json(&body).send().await.map(|r| r.status().as_u16()).unwrap_or(0);
            (status, ids)
        }));
    }
    let mut acked = BTreeSet::new();
    for t in tasks {
        let (status, ids) = t.await.expect("join");
        if status == 200 {
            acked.extend(ids);
        }
    }
    acked
}

async fn received_ids(mock: &MockServer) -> BTreeSet<String> {
    common::received_bodies(mock)
        .await
        .iter()
        .flat_map(|b| b["data"].as_array().cloned().unwrap_or_default())
        .map(|e| e["event_id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_events_survive_kill_9() {
    let dir = tempfile::tempdir().expect("dir");
    // Pinterest is down: every attempt gets a 503.
    let down = MockServer::start().await;
    Mock::given(matchers::method("POST"))
        .respond_with(
            ResponseTemplate::new(503).set_body_json(json!({"code": 4197, "message": "down"})),
        )
        .mount(&down)
        .await;
    let gateway = BinaryServer::start(&config(&down.uri(), dir.path(), 50));
    let acked = post_concurrently(&gateway.url("/data"), "k", 40, 25).await;
    assert_eq!(acked.len(), 1000, "all requests acknowledged");
    let mut gateway = gateway;
    gateway.child.kill().expect("kill -9");
    let _ = gateway.child.wait();
    drop(gateway);

    // Pinterest is back; the gateway restarts on the same queue.
    let up = common::mock_pinterest().await;
    let gateway = BinaryServer::start(&config(&up.uri(), dir.path(), 50));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = received_ids(&up).await;
        if acked.is_subset(&got) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {} delivered after restart",
            acked.intersection(&got).count(),
            acked.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, _) = tokio::task::spawn_blocking(move || gateway.terminate())
        .await
        .expect("join");
    assert!(status.success());
    let stats = tagbridge::queue::stats_at(dir.path()).expect("stats");
    assert_eq!((stats.depth, stats.dead_letters), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_sends_the_whole_backlog_before_exit() {
    let dir = tempfile::tempdir().expect("dir");
    let mock = common::mock_pinterest().await;
    // Batches would wait ten minutes: only the drain sends them.
    let gateway = BinaryServer::start(&config(&mock.uri(), dir.path(), 600_000));
    let acked = post_concurrently(&gateway.url("/data"), "d", 25, 100).await;
    assert_eq!(acked.len(), 2500);
    // Two full batches leave at once; the last 500 wait for their batch to fill.
    let deadline = Instant::now() + Duration::from_secs(20);
    while received_ids(&mock).await.len() < 2000 {
        assert!(Instant::now() < deadline, "full batches not sent");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        received_ids(&mock).await.len(),
        2000,
        "the partial batch waits for the drain"
    );
    let (status, _) = tokio::task::spawn_blocking(move || gateway.terminate())
        .await
        .expect("join");
    assert!(status.success());
    assert_eq!(received_ids(&mock).await, acked);
    let sizes: Vec<usize> = common::received_bodies(&mock)
        .await
        .iter()
        .map(|b| b["data"].as_array().map_or(0, Vec::len))
        .collect();
    assert!(sizes.iter().all(|n| *n <= 1000), "{sizes:?}");
    assert_eq!(
        tagbridge::queue::stats_at(dir.path()).expect("stats").depth,
        0
    );
}
