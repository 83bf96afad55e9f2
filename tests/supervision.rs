//! Supervision (issue "self-healing", point 2): a dispatcher that panics is restarted with
//! backoff and counted; /readyz says so meanwhile; one that keeps panicking makes the
//! gateway stop with an error (the binary then exits non-zero) instead of going silent.
//! The fault is injected through the destination seam: a wrapper whose `limits()` (read
//! each time the dispatcher starts) panics a given number of times.

mod common;

use std::{
    fmt,
    sync::{
        atomic::{AtomicU32, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use common::TestServer;
use serde_json::{json, Value};
use tagbridge::{
    destination::{Answer, BatchVerdict, Destination, Limits, OutboundRequest, RouteKey},
    event::{EventData, RequestContext},
    server::RunError,
    tags::{LogMode, Tag, TagOutput},
    Services,
};

struct Flaky {
    inner: Arc<dyn Destination>,
    panics_left: AtomicU32,
}

impl fmt::Debug for Flaky {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Flaky")
    }
}

impl Destination for Flaky {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
    fn display_name(&self) -> &'static str {
        self.inner.display_name()
    }
    fn route_key(&self) -> RouteKey {
        self.inner.route_key()
    }
    fn endpoint(&self) -> &str {
        self.inner.endpoint()
    }
    fn limits(&self) -> Limits {
        let left = self.panics_left.load(Ordering::SeqCst);
        if left > 0 {
            self.panics_left.store(left - 1, Ordering::SeqCst);
            panic!("injected: the dispatcher fails while starting");
        }
        self.inner.limits()
    }
    fn encode(&self, events: &[&[u8]]) -> OutboundRequest {
        self.inner.encode(events)
    }
    fn classify(&self, answer: &Answer<'_>, n: usize) -> BatchVerdict {
        self.inner.classify(answer, n)
    }
    fn event_answer(&self, body: &Value, i: usize) -> Option<Value> {
        self.inner.event_answer(body, i)
    }
    fn preview(&self, events: &[&serde_json::value::RawValue]) -> Value {
        self.inner.preview(events)
    }
}

struct FlakyTag {
    inner: Arc<dyn Tag>,
    dest: Arc<Flaky>,
}

impl fmt::Debug for FlakyTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FlakyTag")
    }
}

impl Tag for FlakyTag {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn log_mode(&self) -> LogMode {
        self.inner.log_mode()
    }
    fn wait_for_response(&self) -> bool {
        self.inner.wait_for_response()
    }
    fn destination(&self) -> Arc<dyn Destination> {
        self.dest.clone()
    }
    fn match_keys(&self) -> &'static [&'static str] {
        self.inner.match_keys()
    }
    fn evaluate(
        &self,
        event: &EventData<'_>,
        req: &RequestContext<'_>,
        out: &mut Vec<u8>,
    ) -> TagOutput {
        self.inner.evaluate(event, req, out)
    }
}

async fn start(mock: &str, panics: u32) -> TestServer {
    let pinterest = common::tag(
        json!({"name": "pin", "advertiser_id": "549755885175", "access_token": "tok"}),
        mock,
    )
    .build();
    let dest = Arc::new(Flaky {
        inner: pinterest.destination(),
        panics_left: AtomicU32::new(panics),
    });
    let tag: Arc<dyn Tag> = Arc::new(FlakyTag {
        inner: pinterest,
        dest,
    });
    let mut cfg = common::config_with(vec![]);
    cfg.dispatch.drain_s = 2;
    TestServer::start_with(
        cfg,
        Services {
            extra_tags: vec![tag],
            ..Services::default()
        },
    )
    .await
}

async fn post(server: &TestServer, id: &str) -> u16 {
    reqwest::Client::new()
        .post(server.url("/data"))
        .json(&json!({"event_name": "purchase", "event_id": id}))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

async fn restarts_counted(server: &TestServer) -> u64 {
    let metrics = reqwest::get(server.admin_url("/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("tagbridge_task_restarts_total{task=\"dispatcher\"} "))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Polls /readyz until it answers `status` (or panics after 20 s); returns the body.
async fn wait_readyz(server: &TestServer, status: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = reqwest::get(server.url("/readyz")).await {
            if r.status().as_u16() == status {
                return r.text().await.unwrap_or_default();
            }
        }
        assert!(Instant::now() < deadline, "/readyz never answered {status}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

// One test, two phases: the restart counter is process-wide.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_dispatcher_is_restarted_then_stops_the_gateway() {
    // Two panics: restarted with backoff, counted, then delivering as usual.
    let mock = common::mock_pinterest().await;
    let server = start(&mock.uri(), 2).await;
    assert_eq!(post(&server, "s-1").await, 200);
    let deadline = Instant::now() + Duration::from_secs(20);
    while common::received_bodies(&mock).await.is_empty() {
        assert!(Instant::now() < deadline, "never delivered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let sent = common::received_bodies(&mock).await;
    assert_eq!(sent[0]["data"][0]["event_id"], "s-1");
    assert_eq!(wait_readyz(&server, 200).await, "ready");
    assert_eq!(restarts_counted(&server).await, 2);
    let report = server.shutdown().await;
    assert_eq!(report.left_in_queue, 0);

    // Panicking at every start: /readyz says so, then the gateway stops with an error
    // after six restarts (100 ms, 200 ms, ... of backoff): it never goes silent.
    let mock = common::mock_pinterest().await;
    let server = start(&mock.uri(), u32::MAX).await;
    assert_eq!(
        post(&server, "f-1").await,
        200,
        "the queue still takes events"
    );
    assert_eq!(wait_readyz(&server, 503).await, "dispatcher restarting");
    let admin = server.admin;
    match server.finished().await {
        Err(RunError::Fatal(reason)) => {
            assert_eq!(reason, "the dispatcher panicked 6 times within 300 s")
        }
        other => panic!("{other:?}"),
    }
    assert!(common::received_bodies(&mock).await.is_empty());
    assert!(
        reqwest::get(format!("http://{admin}/metrics"))
            .await
            .is_err(),
        "stopped listening"
    );
}
