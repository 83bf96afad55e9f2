//! Delivery under faults: a scripted mock Pinterest injects outages, 429s, slow answers,
//! refused connections, per-event failures and 401s. Every acknowledged `event_id` must be
//! delivered, or dead-lettered with the right reason.

mod common;

use std::{
    collections::BTreeSet,
    future::Future,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use common::TestServer;
use serde_json::{json, Value};
use tagbridge::{config::Config, queue};
use wiremock::{matchers, Mock, MockServer, Request, Respond, ResponseTemplate};

/// What the mock does for one request.
#[derive(Clone)]
enum Step {
    Ok,
    Status(u16, Value),
    RetryAfter(u16, u64),
    Slow(Duration),
    /// 200 with `events[i]` failed for every i in the set.
    FailSome(Vec<usize>),
}

/// Plays `steps` in order (the last one repeats), recording each request's time and body.
#[derive(Clone, Default)]
struct Script {
    steps: Arc<Mutex<Vec<Step>>>,
    seen: Arc<Mutex<Vec<(Instant, Value)>>>,
}

impl Script {
    fn new(steps: Vec<Step>) -> Self {
        Self {
            steps: Arc::new(Mutex::new(steps)),
            seen: Arc::default(),
        }
    }
    fn seen(&self) -> Vec<(Instant, Value)> {
        self.seen.lock().expect("lock").clone()
    }
}

impl Respond for Script {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        let data = body["data"].as_array().cloned().unwrap_or_default();
        self.seen.lock().expect("lock").push((Instant::now(), body));
        let step = {
            let mut steps = self.steps.lock().expect("lock");
            if steps.len() > 1 {
                steps.remove(0)
            } else {
                steps[0].clone()
            }
        };
        let ok = |failed: &[usize]| {
            let events: Vec<Value> = (0..data.len())
                .map(|i| if failed.contains(&i) {
                    json!({"status": "failed", "error_message": "Invalid user_data: em must be hashed.", "warning_message": ""})
                } else {
                    json!({"status": "processed", "error_message": "", "warning_message": ""})
                })
                .collect();
            ResponseTemplate::new(200)
                .set_body_json(json!({"num_events_received": data.len(), "events": events}))
        };
        match step {
            Step::Ok => ok(&[]),
            Step::FailSome(f) => ok(&f),
            Step::Status(s, body) => ResponseTemplate::new(s).set_body_json(body),
            Step::RetryAfter(s, secs) => ResponseTemplate::new(s)
                .insert_header("retry-after", secs.to_string().as_str())
                .set_body_json(
                    json!({"code": 8, "message": "This request exceeded a rate limit."}),
                ),
            Step::Slow(d) => ok(&[]).set_delay(d),
        }
    }
}

/// Ids of every event the mock has seen (in any attempt).
fn seen_ids(script: &Script) -> BTreeSet<String> {
    script
        .seen()
        .iter()
        .flat_map(|(_, b)| b["data"].as_array().cloned().unwrap_or_default())
        .map(|e| e["event_id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

async fn mock_with(script: &Script) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(matchers::method("POST"))
        .respond_with(script.clone())
        .mount(&server)
        .await;
    server
}

fn config(api_base: &str, queue_dir: &std::path::Path) -> Config {
    let tag = common::tag(
        json!({"name": "pin", "advertiser_id": "549755885175", "access_token": "tok"}),
        api_base,
    );
    let mut c = common::config_with(vec![tag]);
    c.queue.path = queue_dir.to_path_buf();
    c.dispatch.batch_max_wait_ms = 20;
    c.dispatch.retry.initial_ms = 20;
    c.dispatch.retry.max_ms = 200;
    c.dispatch.timeout_ms = 2_000;
    c.dispatch.drain_s = 10;
    c
}

/// Posts `n` events concurrently; returns the acknowledged ids.
async fn post_many(server: &TestServer, prefix: &str, n: usize) -> BTreeSet<String> {
    let client = reqwest::Client::new();
    let mut tasks = Vec::new();
    for i in 0..n {
        let client = client.clone();
        let url = server.url("/data");
        let id = format!("{prefix}-{i}");
        tasks.push(tokio::spawn(async move {
            let resp = client
                .post(url)
                .json(&json!({"event_name": "purchase", "event_id": id, "ip_override": "203.0.113.9", "user_agent": "UA"}))
                .send()
                .await
                .expect("post");
            (resp.status().as_u16(), id)
        }));
    }
    let mut acked = BTreeSet::new();
    for t in tasks {
        let (status, id) = t.await.expect("join");
        assert_eq!(status, 200);
        acked.insert(id);
    }
    acked
}

async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_of_503s_loses_nothing_and_other_accounts_go_on() {
    let dir = tempfile::tempdir().expect("dir");
    let down = Script::new(vec![Step::Status(
        503,
        json!({"code": 4197, "message": "ramped down"}),
    )]);
    let down_mock = mock_with(&down).await;
    let healthy = Script::new(vec![Step::Ok]);
    let healthy_mock = mock_with(&healthy).await;
    let mut c = config(&down_mock.uri(), dir.path());
    c.tags.push(common::tag(
        json!({"name": "other", "advertiser_id": "549000000009", "access_token": "tok2"}),
        &healthy_mock.uri(),
    ));
    let server = TestServer::start(c).await;
    let acked = post_many(&server, "o", 60).await;
    // The healthy account gets everything while the other one is down.
    wait_until("the healthy account", Duration::from_secs(20), || async {
        seen_ids(&healthy) == acked
    })
    .await;
    wait_until(
        "retries of the down account",
        Duration::from_secs(20),
        || async { down.seen().len() >= 2 },
    )
    .await;
    // The outage ends.
    *down.steps.lock().expect("lock") = vec![Step::Ok];
    // Recovered: the queue is empty (each event deleted after a 200), nothing dead-lettered.
    wait_until("recovery", Duration::from_secs(20), || async {
        seen_ids(&down) == acked && server_queue_empty(dir.path())
    })
    .await;
    let report = server.shutdown().await;
    assert_eq!(report.left_in_queue, 0);
    assert!(queue::dead_letters_at(dir.path(), 10)
        .expect("dead")
        .is_empty());
    // Every attempt carried the same ids (retries keep event_id).
    for (_, body) in down.seen() {
        for e in body["data"].as_array().cloned().unwrap_or_default() {
            assert!(acked.contains(e["event_id"].as_str().unwrap_or_default()));
        }
    }
}

fn server_queue_empty(dir: &std::path::Path) -> bool {
    queue::stats_at(dir).map(|s| s.depth == 0).unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_with_retry_after_is_honoured() {
    let dir = tempfile::tempdir().expect("dir");
    let script = Script::new(vec![Step::RetryAfter(429, 1), Step::Ok]);
    let mock = mock_with(&script).await;
    let mut c = config(&mock.uri(), dir.path());
    // Retry-After is honoured up to retry.max_ms.
    c.dispatch.retry.max_ms = 5_000;
    let server = TestServer::start(c).await;
    let acked = post_many(&server, "r", 5).await;
    wait_until(
        "delivery after the 429",
        Duration::from_secs(20),
        || async { script.seen().len() >= 2 },
    )
    .await;
    let seen = script.seen();
    let gap = seen[1].0.duration_since(seen[0].0);
    assert!(
        gap >= Duration::from_millis(990),
        "retried after {gap:?}, before Retry-After: 1"
    );
    server.shutdown().await;
    let ids: BTreeSet<String> = seen[1].1["data"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|e| e["event_id"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(ids.is_subset(&acked));
    assert!(server_queue_empty(dir.path()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_answer_past_the_timeout_is_retried() {
    let dir = tempfile::tempdir().expect("dir");
    let script = Script::new(vec![Step::Slow(Duration::from_secs(3)), Step::Ok]);
    let mock = mock_with(&script).await;
    let mut c = config(&mock.uri(), dir.path());
    c.dispatch.timeout_ms = 300;
    let server = TestServer::start(c).await;
    let acked = post_many(&server, "s", 3).await;
    wait_until(
        "delivery after the timeout",
        Duration::from_secs(20),
        || async { script.seen().len() >= 2 && server_queue_empty(dir.path()) },
    )
    .await;
    server.shutdown().await;
    // Every event reached Pinterest, and the queue emptied without dead letters: each one
    // was deleted after a 2xx, i.e. after a retry of the attempt that timed out.
    assert!(acked.is_subset(&seen_ids(&script)));
    assert!(queue::dead_letters_at(dir.path(), 10)
        .expect("dead")
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_refused_until_pinterest_comes_up() {
    let dir = tempfile::tempdir().expect("dir");
    // A port with nothing behind it yet.
    let reserved = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = reserved.local_addr().expect("addr");
    drop(reserved);
    let server = TestServer::start(config(&format!("http://{addr}"), dir.path())).await;
    let acked = post_many(&server, "c", 20).await;
    wait_until("a refused attempt", Duration::from_secs(20), || async {
        tagbridge::telemetry::prometheus()
            .render()
            .contains("status=\"transport_error\"")
    })
    .await;
    assert!(!server_queue_empty(dir.path()), "events wait in the queue");
    // Pinterest comes up on that address.
    let script = Script::new(vec![Step::Ok]);
    let listener = std::net::TcpListener::bind(addr).expect("rebind");
    let mock = MockServer::builder().listener(listener).start().await;
    Mock::given(matchers::method("POST"))
        .respond_with(script.clone())
        .mount(&mock)
        .await;
    wait_until("delivery once up", Duration::from_secs(20), || async {
        seen_ids(&script) == acked
    })
    .await;
    server.shutdown().await;
    assert!(server_queue_empty(dir.path()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_event_failures_are_dead_lettered_with_pinterests_message() {
    let dir = tempfile::tempdir().expect("dir");
    let script = Script::new(vec![Step::FailSome(vec![1])]);
    let mock = mock_with(&script).await;
    let mut c = config(&mock.uri(), dir.path());
    c.dispatch.batch_max_wait_ms = 60_000;
    let server = TestServer::start(c).await;
    let client = reqwest::Client::new();
    let events: Vec<Value> = (0..3).map(|i| json!({"event_name": "purchase", "event_id": format!("f-{i}"), "ip_override": "203.0.113.9", "user_agent": "UA"})).collect();
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
    let report = server.shutdown().await;
    assert_eq!(report.left_in_queue, 0);
    assert_eq!(script.seen().len(), 1, "not retried");
    let dead = queue::dead_letters_at(dir.path(), 10).expect("dead");
    assert_eq!(dead.len(), 1);
    let letter = &dead[0];
    assert_eq!(letter.reason, queue::DeadReason::EventFailed);
    assert_eq!(letter.status, Some(200));
    assert_eq!(letter.message, "Invalid user_data: em must be hashed.");
    assert_eq!(letter.event_id.as_deref(), Some("f-1"));
    let stats = queue::stats_at(dir.path()).expect("stats");
    assert_eq!((stats.depth, stats.dead_letters), (0, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_dead_letters_the_batch_and_pauses_the_route() {
    let dir = tempfile::tempdir().expect("dir");
    let script = Script::new(vec![Step::Status(
        401,
        json!({"code": 2, "message": "Authentication failed."}),
    )]);
    let mock = mock_with(&script).await;
    let mut c = config(&mock.uri(), dir.path());
    c.dispatch.retry.max_ms = 60_000; // the pause after a refused credential
    c.dispatch.drain_s = 1;
    let server = TestServer::start(c).await;
    let first = post_many(&server, "a", 2).await;
    wait_until("the 401", Duration::from_secs(20), || async {
        !script.seen().is_empty()
    })
    .await;
    wait_until("the dead letters", Duration::from_secs(20), || async {
        queue::stats_at(dir.path())
            .map(|s| s.dead_letters == 2)
            .unwrap_or(false)
    })
    .await;
    // Later events wait in the queue instead of being refused one batch after another.
    let later = post_many(&server, "b", 2).await;
    let report = server.shutdown().await;
    assert_eq!(script.seen().len(), 1, "nothing was sent after the 401");
    assert_eq!(report.left_in_queue, later.len());
    let dead = queue::dead_letters_at(dir.path(), 10).expect("dead");
    let ids: BTreeSet<String> = dead.iter().filter_map(|d| d.event_id.clone()).collect();
    assert_eq!(ids, first);
    for d in &dead {
        assert_eq!(d.reason, queue::DeadReason::Refused);
        assert_eq!(d.status, Some(401));
        assert_eq!(d.message, "HTTP 401: Authentication failed. (code 2)");
    }
}
