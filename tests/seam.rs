//! The destination seam: a second destination ("Acme") implemented only here, in the test,
//! with its own envelope (`{"batch": [...]}`), its own rate limit (600 calls per minute per
//! account), its own answer format (`results[i].ok`) and its own error codes (HTTP 400 with
//! `error_code: 190` means a refused credential, Meta-style; any other 400 refuses the
//! payload). It is registered through `Services::extra_tags` and nothing in `src/` knows it:
//! batching, retries, splits, dead letters and the credential pause work for it exactly as
//! for Pinterest.

mod common;

use std::{
    collections::BTreeSet,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use common::TestServer;
use serde_json::{json, value::RawValue, Value};
use tagbridge::{
    destination::{
        json_envelope, Answer, BatchVerdict, Destination, EventOutcome, Limits, OutboundRequest,
        RejectCause, RouteKey,
    },
    event::{EventData, RequestContext},
    queue::{self, DeadReason},
    server::Services,
    support::Secret,
    tags::{
        common::{
            gate::TriggerMatcher,
            hashing::{hash_value, Rule},
            json::{write_clean, write_str},
        },
        Gate, LogMode, MapReport, Mapper, Outbound, StandardTag, Tag,
    },
};
use wiremock::{matchers, Mock, MockServer, Request, Respond, ResponseTemplate};

#[derive(Debug)]
struct AcmeDestination {
    url: String,
    account: String,
    key: Secret,
}

impl Destination for AcmeDestination {
    fn kind(&self) -> &'static str {
        "acme"
    }
    fn display_name(&self) -> &'static str {
        "Acme"
    }
    fn route_key(&self) -> RouteKey {
        RouteKey {
            kind: "acme",
            endpoint: self.url.clone(),
            credential: self.key.clone(),
        }
    }
    fn endpoint(&self) -> &str {
        &self.url
    }
    fn limits(&self) -> Limits {
        Limits {
            max_events: 100,
            max_bytes: 1 << 20,
            calls_per_minute: 600,
            account: self.account.clone(),
        }
    }
    fn encode(&self, events: &[&[u8]]) -> OutboundRequest {
        OutboundRequest {
            url: self.url.clone(),
            headers: vec![("x-acme-key", self.key.expose().to_owned())],
            body: json_envelope("batch", events),
        }
    }
    fn classify(&self, answer: &Answer<'_>, n: usize) -> BatchVerdict {
        let body: Value = serde_json::from_slice(answer.body).unwrap_or(Value::Null);
        match answer.status {
            200 => BatchVerdict::Delivered(
                (0..n)
                    .map(|i| match body["results"][i]["ok"].as_bool() {
                        Some(false) => EventOutcome::Failed {
                            error: body["results"][i]["why"]
                                .as_str()
                                .unwrap_or("refused")
                                .to_owned(),
                        },
                        _ => EventOutcome::Accepted { warning: None },
                    })
                    .collect(),
            ),
            400 if body["error_code"] == 190 => BatchVerdict::Reject {
                reason: "acme: bad key".into(),
                cause: RejectCause::Credentials,
            },
            400 => BatchVerdict::Reject {
                reason: format!(
                    "acme: {}",
                    body["message"].as_str().unwrap_or("bad request")
                ),
                cause: RejectCause::Payload,
            },
            _ => BatchVerdict::Retry {
                reason: format!("acme: HTTP {}", answer.status),
                after: answer.retry_after,
            },
        }
    }
    fn event_answer(&self, body: &Value, i: usize) -> Option<Value> {
        body.get("results").and_then(|r| r.get(i)).cloned()
    }
    fn preview(&self, events: &[&RawValue]) -> Value {
        json!({"method": "POST", "url": self.url, "headers": {"x-acme-key": "***"}, "body": {"batch": events}})
    }
}

/// Acme's event: `{"name", "id", "em": [sha256...]}`, built from the shared blocks.
#[derive(Debug)]
struct AcmeMapper;

impl Mapper for AcmeMapper {
    fn map(
        &self,
        event: &EventData<'_>,
        _req: &RequestContext<'_>,
        out: &mut Vec<u8>,
        report: &mut MapReport,
    ) -> Outbound {
        let id = event
            .text("event_id")
            .map(|t| t.into_owned())
            .unwrap_or_default();
        let name = event.event_name().to_owned();
        out.extend_from_slice(b"{\"name\":");
        write_str(out, &name);
        out.extend_from_slice(b",\"id\":");
        write_str(out, &id);
        if let Some(email) = event.get("email") {
            let hashed = hash_value(Rule::Plain, email, &mut report.dropped);
            if !hashed.is_empty() {
                report.match_keys |= 1;
                out.extend_from_slice(b",\"em\":");
                let arr = tagbridge::event::Val::Arr(
                    hashed
                        .into_iter()
                        .map(tagbridge::event::Val::string)
                        .collect(),
                );
                write_clean(out, &arr);
            }
        }
        out.push(b'}');
        Outbound {
            event_id: id,
            event_name: name,
        }
    }
    fn match_keys(&self) -> &'static [&'static str] {
        &["em"]
    }
}

fn acme_tag(mock: &str, key: &str) -> Arc<dyn Tag> {
    Arc::new(StandardTag {
        gate: Gate {
            name: "acme".into(),
            log: LogMode::No,
            wait_for_response: false,
            dry_run: false,
            consent: Default::default(),
            trigger: TriggerMatcher::default(),
        },
        mapper: AcmeMapper,
        destination: Arc::new(AcmeDestination {
            url: format!("{mock}/v1/collect"),
            account: format!("{mock}/acct-1"),
            key: Secret::new(key),
        }),
    })
}

#[derive(Clone)]
enum Step {
    Ok,
    /// 200 with `results[i].ok == false` for these ids.
    Refuse(&'static [&'static str]),
    Status(u16, Value),
    /// 400 (payload) when the batch holds any of these ids; 200 otherwise.
    Poison(&'static [&'static str]),
}

/// When a request arrived, its body and its `X-Acme-Key` header.
type Seen = (Instant, Value, Option<String>);

#[derive(Clone, Default)]
struct Script {
    steps: Arc<Mutex<Vec<Step>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Script {
    fn new(steps: Vec<Step>) -> Self {
        Self {
            steps: Arc::new(Mutex::new(steps)),
            seen: Arc::default(),
        }
    }
    fn bodies(&self) -> Vec<Value> {
        self.seen
            .lock()
            .expect("lock")
            .iter()
            .map(|(_, b, _)| b.clone())
            .collect()
    }
}

fn ids_of(body: &Value) -> Vec<String> {
    body["batch"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|e| e["id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

impl Respond for Script {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        let key = request
            .headers
            .get("x-acme-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        self.seen
            .lock()
            .expect("lock")
            .push((Instant::now(), body.clone(), key));
        let step = {
            let mut steps = self.steps.lock().expect("lock");
            if steps.len() > 1 {
                steps.remove(0)
            } else {
                steps[0].clone()
            }
        };
        let ids = ids_of(&body);
        let results = |bad: &[&str]| {
            let r: Vec<Value> = ids
                .iter()
                .map(|id| {
                    if bad.contains(&id.as_str()) {
                        json!({"ok": false, "why": "acme refused it"})
                    } else {
                        json!({"ok": true})
                    }
                })
                .collect();
            ResponseTemplate::new(200).set_body_json(json!({"results": r}))
        };
        match step {
            Step::Ok => results(&[]),
            Step::Refuse(bad) => results(bad),
            Step::Status(s, b) => ResponseTemplate::new(s).set_body_json(b),
            Step::Poison(bad) => {
                if ids.iter().any(|i| bad.contains(&i.as_str())) {
                    ResponseTemplate::new(400).set_body_json(
                        json!({"error_code": 100, "message": "one event is malformed"}),
                    )
                } else {
                    results(&[])
                }
            }
        }
    }
}

async fn start(script: &Script, dir: &std::path::Path) -> (MockServer, TestServer) {
    let mock = MockServer::start().await;
    Mock::given(matchers::method("POST"))
        .respond_with(script.clone())
        .mount(&mock)
        .await;
    let mut config = common::config_with(vec![]);
    config.queue.path = dir.to_path_buf();
    config.dispatch.batch_max_wait_ms = 50;
    config.dispatch.retry.initial_ms = 20;
    config.dispatch.retry.max_ms = 60_000;
    config.dispatch.drain_s = 1;
    let server = TestServer::start_with(
        config,
        Services {
            extra_tags: vec![acme_tag(&mock.uri(), "acme-key-1")],
            ..Services::default()
        },
    )
    .await;
    (mock, server)
}

async fn post(server: &TestServer, prefix: &str, n: usize) -> BTreeSet<String> {
    let ids: Vec<String> = (0..n).map(|i| format!("{prefix}-{i}")).collect();
    let body: Vec<Value> = ids
        .iter()
        .map(|id| json!({"event_name": "purchase", "event_id": id, "email": "Jane@Example.com"}))
        .collect();
    for chunk in body.chunks(100) {
        let status = reqwest::Client::new()
            .post(server.url("/data"))
            .json(&chunk)
            .send()
            .await
            .expect("post")
            .status();
        assert_eq!(status, 200);
    }
    ids.into_iter().collect()
}

async fn wait_until<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn delivered(script: &Script) -> BTreeSet<String> {
    script.bodies().iter().flat_map(ids_of).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_use_the_destinations_envelope_and_limits() {
    let dir = tempfile::tempdir().expect("dir");
    let script = Script::new(vec![Step::Ok]);
    let (_mock, server) = start(&script, dir.path()).await;
    let sent = post(&server, "b", 250).await;
    wait_until("delivery", || async { delivered(&script) == sent }).await;
    server.shutdown().await;
    let bodies = script.bodies();
    // Acme takes 100 events a request.
    let mut sizes: Vec<usize> = bodies.iter().map(|b| ids_of(b).len()).collect();
    sizes.sort_unstable();
    assert_eq!(sizes, vec![50, 100, 100], "{sizes:?}");
    let first = &bodies[0]["batch"][0];
    assert_eq!(first["name"], "purchase");
    assert_eq!(
        first["em"],
        json!(["8c87b489ce35cf2e2f39f80e282cb2e804932a56a213983eeeb428407d43b52d"])
    );
    for (_, _, key) in script.seen.lock().expect("lock").iter() {
        assert_eq!(key.as_deref(), Some("acme-key-1"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_per_event_failures_splits_and_the_credential_pause() {
    // A 503, then per-event refusals, then a poisoned batch, then a credential refusal.
    let dir = tempfile::tempdir().expect("dir");
    let script = Script::new(vec![Step::Status(503, json!({})), Step::Refuse(&["r-1"])]);
    let (_mock, server) = start(&script, dir.path()).await;
    let sent = post(&server, "r", 4).await;
    wait_until("retry and delivery", || async {
        script.bodies().len() >= 2 && queue::stats_at(dir.path()).is_ok_and(|s| s.depth == 0)
    })
    .await;
    assert_eq!(
        delivered(&script),
        sent,
        "the 503 was retried with the same events"
    );

    *script.steps.lock().expect("lock") = vec![Step::Poison(&["p-3"])];
    let poisoned = post(&server, "p", 8).await;
    wait_until("the split", || async {
        queue::stats_at(dir.path()).is_ok_and(|s| s.depth == 0 && s.dead_letters == 2)
    })
    .await;
    let accepted: BTreeSet<String> = script
        .bodies()
        .iter()
        .filter(|b| !ids_of(b).contains(&"p-3".to_owned()))
        .flat_map(ids_of)
        .filter(|i| i.starts_with("p-"))
        .collect();
    let mut want = poisoned.clone();
    want.remove("p-3");
    assert_eq!(accepted, want, "only the refused event is isolated");

    *script.steps.lock().expect("lock") = vec![Step::Status(
        400,
        json!({"error_code": 190, "message": "bad key"}),
    )];
    let before = script.bodies().len();
    post(&server, "c", 2).await;
    wait_until("the credential refusal", || async {
        queue::stats_at(dir.path()).is_ok_and(|s| s.dead_letters == 4)
    })
    .await;
    post(&server, "w", 2).await;
    let report = server.shutdown().await;
    assert_eq!(
        script.bodies().len(),
        before + 1,
        "the route paused after the refused credential"
    );
    assert_eq!(report.left_in_queue, 2);
    let dead = queue::dead_letters_at(dir.path(), 10).expect("dead");
    let reasons: Vec<(DeadReason, Option<String>)> = dead
        .iter()
        .map(|d| (d.reason, d.event_id.clone()))
        .collect();
    assert_eq!(
        reasons,
        vec![
            (DeadReason::EventFailed, Some("r-1".into())),
            (DeadReason::Refused, Some("p-3".into())),
            (DeadReason::Refused, Some("c-0".into())),
            (DeadReason::Refused, Some("c-1".into())),
        ]
    );
    assert_eq!(dead[1].message, "acme: one event is malformed");
}
