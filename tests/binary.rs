//! The conformance vectors through the built binary, the way an operator runs it: a config
//! file per product.md with `api_base` pointing at a mock, `tagbridge serve`, one vector
//! posted to `/data`, then SIGTERM: pending events must reach the mock before the process
//! exits (with status 0).

mod common;

use common::{vectors, BinaryServer};
use serde_json::{json, Value};

fn product_config(tag: Value, queue_dir: &str) -> Value {
    json!({
        "server": {
            "listen": "127.0.0.1:0", "admin_listen": "127.0.0.1:0",
            "max_body_bytes": 65536,
            "request_timeout_ms": 5000,
            "allowed_origins": [],
            "trusted_proxies": ["10.0.0.0/8"],
            "client_ip_header": null,
            "paths": {"gtag": "/g/collect", "mp": "/mp/collect", "data": "/data"},
            "ingest_key": "${TAGBRIDGE_INGEST_KEY}"
        },
        "queue": {"path": queue_dir, "max_bytes": 1073741824u64},
        "dispatch": {
            "batch_max_events": 1000, "batch_max_wait_ms": 1000, "concurrency": 4,
            "timeout_ms": 10000, "drain_s": 20,
            "retry": {"initial_ms": 500, "max_ms": 60000, "give_up_after_s": 86400}
        },
        "debug": {"enabled": true, "token": "${TAGBRIDGE_DEBUG_TOKEN}"},
        "logging": {"format": "json", "level": "info"},
        "tags": [tag]
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_vectors_through_the_binary() {
    let client = reqwest::Client::new();
    let all = vectors::all();
    let mut failures = Vec::new();
    for vector in &all {
        let name = vector["name"].as_str().unwrap_or("?").to_owned();
        let mock = common::mock_pinterest().await;
        let config = product_config(vectors::tag_json(vector, &mock.uri()), "./data/queue");
        let server = BinaryServer::start(&config);
        let (status, cookies, sent_at) = vectors::send(&client, &server.url(""), vector).await;
        let (exit, lines) = tokio::task::spawn_blocking(move || server.terminate())
            .await
            .expect("join");
        let requests = mock.received_requests().await.unwrap_or_default();
        let seen = vectors::Observed {
            status,
            cookies: &cookies,
            sent_at,
            requests: &requests,
        };
        let result = vectors::check(vector, &seen).and_then(|()| {
            if !exit.success() {
                return Err(format!("exit status {exit}"));
            }
            // The token never appears in the process's output.
            if lines.iter().any(|l| l.contains("pina_TESTTOKEN")) {
                return Err("the access token appeared in the log".into());
            }
            Ok(())
        });
        if let Err(e) = result {
            failures.push(format!("{name}: {e}"));
        }
    }
    vectors::assert_all_passed(&failures, all.len());
}
