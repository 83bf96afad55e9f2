//! Fuzzes `POST /data` end to end in process: the input is the request body, sent through
//! the crate's real ingest router (`tagbridge::ingest::routes`: rate limit, CORS, body
//! read, the `/data` parser, canonical keys, privacy redaction, the pipeline) with one
//! Pinterest tag in dry run (its mapped events land in an in-memory request log, nothing
//! is queued or sent). The parser itself (`ingest::data::parse_body`) is private; the
//! router is the public way to it.
//!
//! Invariants beyond "no panic":
//! - the answer is `200` or `400` (`413` only past `server.max_body_bytes`), always JSON;
//! - it equals an independent model of the `/data` format (`serde_json::Value`): accepted
//!   iff the model accepts, with the same event count (≤ 100) and shape (an array iff the
//!   body had several events), else exactly the model's error message (never input text);
//! - each answer's `event_id` is the event's own `event_id`, else `transaction_id` (own key
//!   before the wrapper's shared one), else a generated UUID; `client_id` likewise;
//! - the tag mapped every event once, into valid JSON, with the answer's `event_id` (the id
//!   Pinterest deduplicates on);
//! - no e-mail address the request carried only in personal-data fields (user data sources,
//!   URLs) reaches the mapped events raw;
//! - every `Set-Cookie` is a well-formed `_epik` cookie for the request's registrable domain.
//!
//! Run from `fuzz/`: `cargo +nightly fuzz run data_parse corpus/data_parse seeds/data_parse`.

#![no_main]

use std::{
    net::SocketAddr,
    path::Path,
    sync::{Arc, OnceLock},
    time::Duration,
};

use axum::{
    body::Body,
    extract::ConnectInfo,
    http::{header, Request, StatusCode},
    Router,
};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};
use tagbridge::{
    config::Config,
    debug::Recorder,
    dispatch::MemoryLog,
    health::Health,
    ingest::{self, privacy::Redactor, AppState, ClientIpResolver, IngestError},
    pipeline::Pipeline,
    queue::Queue,
    server::build_tags,
    tags::TagConfig,
};
use tagbridge_fuzz::{
    assert_epik_cookie, is_invalid_json_message, lookup, model_data_body, sensitive_emails,
    text_of, DataModel, DATA_MAX_EVENTS,
};
use tower::ServiceExt;

const HOST: &str = "track.shop.example.com";
const UA: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36";

struct Harness {
    rt: tokio::runtime::Runtime,
    app: Router,
    log: MemoryLog,
    max_body: usize,
}

fn harness() -> &'static Harness {
    static H: OnceLock<Harness> = OnceLock::new();
    H.get_or_init(|| {
        let mut config = Config::for_tests();
        // The shipped tag (config/tagbridge.yaml) without a token: dry run.
        let tag: TagConfig = serde_json::from_value(json!({
            "type": "pinterest",
            "name": "pinterest",
            "advertiser_id": "549755885175",
            "inherit_table": "native",
            "action_source": "web",
            "ad_storage_consent": "optional",
        }))
        .expect("tag settings");
        config.tags = vec![tag];
        let config = Arc::new(config);
        let (tags, routes) = build_tags(&config);
        let route_of = |name: &str| tags.iter().find(|s| s.tag.name() == name).map(|s| s.route);
        let (queue, _) = Queue::open_path(
            Path::new(":memory:"),
            config.queue.options(),
            routes.len(),
            &route_of,
        )
        .expect("in-memory queue");
        let log = MemoryLog::default();
        let recorder = Recorder::new(&config.debug);
        let state = Arc::new(AppState {
            client_ip: ClientIpResolver::new(
                config.server.trusted_proxies.clone(),
                config.server.client_ip_header.as_deref(),
            ),
            pipeline: Pipeline {
                tags,
                queue,
                log: Arc::new(log.clone()),
                reply_timeout: Duration::from_secs(1),
                trace: recorder.enabled(),
            },
            health: Arc::new(Health::default()),
            redactor: Redactor::new(&config.privacy.redact_query_params),
            rate_limit: None,
            recorder,
            config: config.clone(),
        });
        let app = ingest::routes(state.clone()).with_state(state);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        Harness {
            rt,
            app,
            log,
            max_body: config.server.max_body_bytes,
        }
    })
}

fn error_of(body: &Value) -> &str {
    body.get("error")
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("a refusal without {{\"error\": string}}: {body}"))
}

fuzz_target!(|data: &[u8]| {
    let h = harness();
    let mut req = Request::builder()
        .method("POST")
        .uri("/data")
        .header(header::HOST, HOST)
        .header(header::USER_AGENT, UA)
        .header(header::CONTENT_TYPE, "text/plain;charset=UTF-8")
        .header(header::ACCEPT_LANGUAGE, "de-DE,de;q=0.9")
        .body(Body::from(data.to_vec()))
        .expect("request");
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([203, 0, 113, 9], 41000))));
    let resp =
        h.rt.block_on(h.app.clone().oneshot(req))
            .expect("infallible");
    let status = resp.status();
    let cookies: Vec<String> = resp
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().expect("Set-Cookie not text").to_owned())
        .collect();
    let bytes =
        h.rt.block_on(axum::body::to_bytes(resp.into_body(), usize::MAX))
            .expect("response body");
    let records = std::mem::take(&mut *h.log.0.lock().expect("log"));
    let answer: Value = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "answer is not JSON ({e}): {:?}",
            String::from_utf8_lossy(&bytes)
        )
    });

    if data.len() > h.max_body {
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        return;
    }
    match model_data_body(data) {
        DataModel::Refuse(e) => {
            assert_eq!(
                status,
                StatusCode::BAD_REQUEST,
                "model refuses with {e}; answer {answer}"
            );
            assert_eq!(error_of(&answer), e.to_string());
            assert!(records.is_empty() && cookies.is_empty());
        }
        DataModel::Invalid { array_len } => {
            assert_eq!(
                status,
                StatusCode::BAD_REQUEST,
                "invalid JSON accepted: {answer}"
            );
            let message = error_of(&answer);
            let too_many = array_len.map(|count| {
                IngestError::TooManyEvents {
                    count,
                    limit: DATA_MAX_EVENTS,
                }
                .to_string()
            });
            assert!(
                is_invalid_json_message(message) || too_many.as_deref() == Some(message),
                "unexpected refusal of invalid JSON: {message:?}"
            );
            assert!(records.is_empty() && cookies.is_empty());
        }
        DataModel::Accept {
            events,
            shared,
            many,
        } => {
            assert_eq!(
                status,
                StatusCode::OK,
                "model accepts {} events; answer {answer}",
                events.len()
            );
            assert!(events.len() <= DATA_MAX_EVENTS);
            let answers: Vec<&Value> = if many {
                answer
                    .as_array()
                    .expect("several events: an array")
                    .iter()
                    .collect()
            } else {
                vec![&answer]
            };
            assert_eq!(answers.len(), events.len(), "one answer per event");
            assert_eq!(
                records.len(),
                events.len(),
                "one mapped (dry-run) event per event"
            );
            let body: Value = serde_json::from_slice(data).expect("the model parsed it");
            let emails = sensitive_emails(&body);
            for (i, ((own, a), record)) in events.iter().zip(&answers).zip(&records).enumerate() {
                let shared = shared.as_ref();
                let id = text_of(lookup(own, shared, "event_id"))
                    .or_else(|| text_of(lookup(own, shared, "transaction_id")));
                let got_id = a["event_id"].as_str().expect("event_id: a string");
                match &id {
                    Some(id) => assert_eq!(got_id, id, "event {i}: answer event_id"),
                    None => {
                        assert_eq!(got_id.len(), 36, "event {i}: generated event_id {got_id:?}")
                    }
                }
                let client_id = text_of(lookup(own, shared, "client_id"));
                assert_eq!(
                    a["client_id"].as_str(),
                    client_id.as_deref(),
                    "event {i}: client_id"
                );

                // The tag's mapped event (dry run: the request log's preview of it).
                assert_eq!(record["DryRun"], Value::Bool(true));
                assert_eq!(
                    record["EventId"].as_str(),
                    Some(got_id),
                    "event {i}: the answer's event_id is not the one sent to Pinterest"
                );
                let sent = &record["RequestBody"];
                if let Some(mapped) = sent.get("data").and_then(|d| d.get(0)) {
                    assert!(
                        mapped.is_object(),
                        "event {i}: mapped event is not a JSON object: {sent}"
                    );
                    assert_eq!(mapped["event_id"].as_str(), Some(got_id));
                } else {
                    // Clipped by the request log (`MAX_RECORD_BYTES`): text, still checked for leaks.
                    assert!(sent.is_string(), "event {i}: RequestBody {sent}");
                }
                tagbridge_fuzz::assert_no_email_leak(sent, &emails, "mapped event");
            }
            for c in &cookies {
                assert_epik_cookie(c, Some("example.com"));
            }
        }
    }
});
