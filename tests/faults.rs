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
    /// A status with a raw `Retry-After` header value.
    RetryAfterRaw(u16, &'static str),
    /// 400 (the whole batch) when it holds one of these event ids; 200 otherwise.
    Poison(Vec<String>),
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
            Step::RetryAfterRaw(s, v) => ResponseTemplate::new(s)
                .insert_header("retry-after", v)
                .set_body_json(json!({"code": 8, "message": "rate limit"})),
            Step::Poison(ids) => {
                let bad = data
                    .iter()
                    .filter_map(|e| e["event_id"].as_str())
                    .find(|id| ids.iter().any(|p| p == id));
                match bad {
                    Some(id) => ResponseTemplate::new(400).set_body_json(
                        json!({"code": 1, "message": format!("Invalid event {id}: event_time is too old.")}),
                    ),
                    None => ok(&[]),
                }
            }
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
    // Pinterest comes up on that address: a server that answers from its first connection
    // (wiremock would answer 404, "no such ad account", between starting and mounting its
    // mock, and a 404 rightly pauses the route).
    let script = Script::new(vec![Step::Ok]);
    let listener = tokio::net::TcpListener::bind(addr).await.expect("rebind");
    let seen = script.clone();
    let app = axum::Router::new().fallback(move |body: axum::body::Bytes| {
        let seen = seen.clone();
        async move {
            let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let n = body["data"].as_array().map_or(0, Vec::len);
            seen.seen.lock().expect("lock").push((Instant::now(), body));
            let processed =
                json!({"status": "processed", "error_message": "", "warning_message": ""});
            axum::Json(json!({"num_events_received": n, "events": vec![processed; n]}))
        }
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
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

// Issue "self-healing", row 1: a Retry-After that overflows any clock arithmetic, then one
// of three years: both are capped at `retry.max_ms`; nothing panics, readiness holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absurd_retry_after_is_capped() {
    let dir = tempfile::tempdir().expect("dir");
    let script = Script::new(vec![
        Step::RetryAfterRaw(429, "18446744073709551615"),
        Step::RetryAfterRaw(503, "100000000"),
        Step::RetryAfterRaw(429, "Wed, 21 Oct 2999 07:28:00 GMT"),
        Step::Ok,
    ]);
    let mock = mock_with(&script).await;
    let mut cfg = config(&mock.uri(), dir.path());
    cfg.dispatch.retry.max_ms = 300;
    let server = TestServer::start(cfg).await;
    let acked = post_many(&server, "ra", 1).await;
    wait_until(
        "delivery after three capped waits",
        Duration::from_secs(20),
        || async { script.seen().len() >= 4 },
    )
    .await;
    assert_eq!(seen_ids(&script), acked);
    let seen = script.seen();
    for pair in seen.windows(2) {
        let gap = pair[1].0.duration_since(pair[0].0);
        // Waits are at most retry.max_ms (jitter below it); generous for a loaded machine.
        assert!(gap < Duration::from_secs(5), "{gap:?}");
    }
    let ready = reqwest::get(server.url("/readyz")).await.expect("readyz");
    assert_eq!(ready.status(), 200);
    wait_until("queue empty", Duration::from_secs(10), || async {
        server_queue_empty(dir.path())
    })
    .await;
    let report = server.shutdown().await;
    assert_eq!(report.left_in_queue, 0);
}

// Row 2: clients that reset the connection right after sending strand nothing: whatever
// was committed is delivered without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_vanish_strand_nothing() {
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().expect("dir");
    let script = Script::new(vec![Step::Ok]);
    let mock = mock_with(&script).await;
    let mut cfg = config(&mock.uri(), dir.path());
    // Batches leave only when full or after a long wait: stranded events would show.
    cfg.dispatch.batch_max_wait_ms = 200;
    let server = TestServer::start(cfg).await;
    let mut tasks = Vec::new();
    for c in 0..60u64 {
        let addr = server.addr;
        tasks.push(tokio::spawn(async move {
            let events: Vec<Value> = (0..100)
                .map(|i| json!({"event_name": "purchase", "event_id": format!("v-{c}-{i}")}))
                .collect();
            let body = serde_json::to_string(&events).unwrap_or_default();
            let head = format!(
                "POST /data HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
                return;
            };
            let _ = s.write_all(head.as_bytes()).await;
            let _ = s.write_all(body.as_bytes()).await;
            // Reset (not close) the connection 0.5 to 6 ms later.
            tokio::time::sleep(Duration::from_micros(500 + (c * 97) % 5500)).await;
            let _ = s.set_zero_linger();
            drop(s);
        }));
    }
    for t in tasks {
        t.await.expect("join");
    }
    // Whatever the queue took leaves it: nothing waits for a restart.
    wait_until(
        "every committed event delivered",
        Duration::from_secs(30),
        || async { server_queue_empty(dir.path()) },
    )
    .await;
    let delivered = seen_ids(&script);
    let sent_total: usize = script
        .seen()
        .iter()
        .map(|(_, b)| b["data"].as_array().map_or(0, Vec::len))
        .sum();
    assert_eq!(sent_total, delivered.len(), "each event sent once");
    let report = server.shutdown().await;
    assert_eq!(report.left_in_queue, 0);
}

// Rows 3 and 4: the queue cannot write (a full disk), then the volume runs low on free
// space: new events get 503 + Retry-After, /readyz says why; when space returns, appends
// and delivery resume without a restart and every acknowledged event is delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_then_heals() {
    full_disk_refuses_then_heals(0).await;
}

// The same in the interval durability mode (answered after the write, synced every N ms).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_then_heals_in_interval_mode() {
    full_disk_refuses_then_heals(50).await;
}

async fn full_disk_refuses_then_heals(sync_interval_ms: u64) {
    use tagbridge::queue::storage::{Faults, FaultyStorage, FileStorage};
    let dir = tempfile::tempdir().expect("dir");
    let script = Script::new(vec![Step::Status(503, json!({"message": "down"}))]);
    let mock = mock_with(&script).await;
    let mut cfg = config(&mock.uri(), dir.path());
    cfg.queue.min_free_bytes = 64 << 20;
    cfg.queue.sync_interval_ms = sync_interval_ms;
    let faults = Faults::new();
    let storage = FaultyStorage::new(
        std::sync::Arc::new(FileStorage::new(dir.path()).expect("storage")),
        faults.clone(),
    );
    let server = TestServer::start_with(
        cfg,
        tagbridge::Services {
            storage: Some(std::sync::Arc::new(storage)),
            ..tagbridge::Services::default()
        },
    )
    .await;
    let client = reqwest::Client::new();
    let before = post_many(&server, "before", 20).await;

    let post = |id: &'static str| {
        client
            .post(server.url("/data"))
            .json(&json!({"event_name": "purchase", "event_id": id}))
            .send()
    };
    faults
        .disk_full
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let refused = post("full-1").await.expect("post");
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().get("retry-after").is_some());
    let body: Value = refused.json().await.expect("json");
    assert_eq!(
        body["error"],
        "the event queue cannot store events right now; retry later"
    );
    let ready = client
        .get(server.url("/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status(), 503);
    assert_eq!(ready.text().await.expect("text"), "queue cannot write");

    // Space comes back: the writer's probe notices within a second or two.
    faults
        .disk_full
        .store(false, std::sync::atomic::Ordering::SeqCst);
    wait_until("writable again", Duration::from_secs(20), || async {
        client
            .get(server.url("/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    let after = post_many(&server, "after", 10).await;

    // Low on free space: refused before the disk is actually full.
    faults
        .free_bytes
        .store(10 << 20, std::sync::atomic::Ordering::SeqCst);
    wait_until("low disk noticed", Duration::from_secs(20), || async {
        post("low-1").await.is_ok_and(|r| r.status() == 503)
    })
    .await;
    let ready = client
        .get(server.url("/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(
        ready.text().await.expect("text"),
        "queue volume low on free space"
    );
    faults
        .free_bytes
        .store(u64::MAX, std::sync::atomic::Ordering::SeqCst);
    wait_until("writable again", Duration::from_secs(20), || async {
        client
            .get(server.url("/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;

    // Pinterest comes back: everything acknowledged is delivered, nothing refused is.
    *script.steps.lock().expect("lock") = vec![Step::Ok];
    let acked: BTreeSet<String> = before.union(&after).cloned().collect();
    wait_until(
        "all acknowledged delivered",
        Duration::from_secs(30),
        || async { acked.is_subset(&seen_ids(&script)) },
    )
    .await;
    let seen = seen_ids(&script);
    assert!(!seen.contains("full-1"));
    let report = server.shutdown().await;
    assert_eq!(report.left_in_queue, 0);
}

// Row 6: one event Pinterest refuses with a batch-level 400 among 50 valid ones: the
// halves are resent until it is alone; only it is dead-lettered, with Pinterest's message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_poisoned_event_is_isolated() {
    let dir = tempfile::tempdir().expect("dir");
    let script = Script::new(vec![Step::Poison(vec!["p-17".into()])]);
    let mock = mock_with(&script).await;
    let mut cfg = config(&mock.uri(), dir.path());
    cfg.dispatch.batch_max_wait_ms = 200;
    let server = TestServer::start(cfg).await;
    let client = reqwest::Client::new();
    let events: Vec<Value> = (0..51)
        .map(|i| json!({"event_name": "purchase", "event_id": format!("p-{i}")}))
        .collect();
    let resp = client
        .post(server.url("/data"))
        .json(&events)
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), 200);
    wait_until("isolation", Duration::from_secs(20), || async {
        queue::stats_at(dir.path()).is_ok_and(|s| s.depth == 0 && s.dead_letters == 1)
    })
    .await;
    let delivered: BTreeSet<String> = script
        .seen()
        .iter()
        .filter(|(_, b)| {
            !b["data"]
                .as_array()
                .is_some_and(|d| d.iter().any(|e| e["event_id"] == "p-17"))
        })
        .flat_map(|(_, b)| b["data"].as_array().cloned().unwrap_or_default())
        .map(|e| e["event_id"].as_str().unwrap_or_default().to_owned())
        .collect();
    let want: BTreeSet<String> = (0..51)
        .filter(|i| *i != 17)
        .map(|i| format!("p-{i}"))
        .collect();
    assert_eq!(delivered, want);
    // log2(51) rounds of halves: far fewer calls than events.
    assert!(script.seen().len() <= 14, "{} calls", script.seen().len());
    let dead = queue::dead_letters_at(dir.path(), 10).expect("dead letters");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].event_id.as_deref(), Some("p-17"));
    assert_eq!(dead[0].status, Some(400));
    assert_eq!(
        dead[0].message,
        "HTTP 400: Invalid event p-17: event_time is too old. (code 1)"
    );
    server.shutdown().await;
}

// Row 7: Pinterest refusing everything: dead letters stay under their cap (oldest evicted
// and counted), and the queue directory stays bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_stay_under_their_cap() {
    let dir = tempfile::tempdir().expect("dir");
    let script = Script::new(vec![Step::FailSome((0..1000).collect())]);
    let mock = mock_with(&script).await;
    let mut cfg = config(&mock.uri(), dir.path());
    cfg.queue.dead_letter_max_bytes = 1 << 20;
    let server = TestServer::start(cfg).await;
    let client = reqwest::Client::new();
    let long = format!("https://shop.example.com/{}", "p".repeat(1900));
    let mut acked = 0;
    for r in 0..48 {
        let events: Vec<Value> = (0..25)
            .map(|i| json!({"event_name": "purchase", "event_id": format!("d-{r}-{i}"), "page_location": long}))
            .collect();
        let resp = client
            .post(server.url("/data"))
            .json(&events)
            .send()
            .await
            .expect("post");
        assert_eq!(resp.status(), 200);
        acked += 25;
    }
    // `stats_at` reads the files: evictions are counted by the running gateway only.
    let deadline = Instant::now() + Duration::from_secs(30);
    let stats = loop {
        let s = queue::stats_at(dir.path()).expect("stats");
        let tried: u64 = script
            .seen()
            .iter()
            .map(|(_, b)| b["data"].as_array().map_or(0, Vec::len) as u64)
            .sum();
        if s.depth == 0 && tried >= acked {
            break s;
        }
        assert!(Instant::now() < deadline, "{s:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        stats.dead_letter_bytes <= 1 << 20,
        "{} bytes of dead letters",
        stats.dead_letter_bytes
    );
    let metrics = reqwest::get(server.admin_url("/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let evicted = acked - stats.dead_letters;
    assert!(evicted > 0);
    assert!(
        metrics
            .lines()
            .any(|l| l == format!("tagbridge_dead_letters_evicted_total {evicted}")),
        "{evicted} evictions in\n{metrics}"
    );
    let on_disk: u64 = std::fs::read_dir(dir.path())
        .expect("dir")
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    // The dead-letter cap plus a few segments of overhead (README, "Disk use").
    assert!(on_disk < 4 << 20, "{on_disk} bytes on disk");
    server.shutdown().await;
}
