//! Bad input on `/data`: each gets a clear 4xx with a JSON error, and the server goes on
//! serving the next request.

mod common;

use common::TestServer;
use serde_json::{json, Value};

/// A gateway with one Pinterest tag delivering to a fresh mock.
async fn start() -> (wiremock::MockServer, TestServer) {
    let mock = common::mock_pinterest().await;
    let tag = common::tag(
        json!({"name": "p", "advertiser_id": "549755885175", "access_token": "tok"}),
        &mock.uri(),
    );
    let server = TestServer::start(common::config_with(vec![tag])).await;
    (mock, server)
}

async fn assert_still_serves(client: &reqwest::Client, server: &TestServer) {
    let resp = client
        .post(server.url("/data"))
        .json(&json!({"event_name": "page_view", "event_id": "ok-1"}))
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body, json!({"client_id": null, "event_id": "ok-1"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bodies_get_4xx_and_the_server_survives() {
    let (mock, server) = start().await;
    let client = reqwest::Client::new();
    let huge_array = format!("[{}]", vec!["{}"; 10_000].join(","));
    let one_mib = "x".repeat(1 << 20);
    let cases: Vec<(&str, String, u16, &str)> = vec![
        ("empty body", String::new(), 400,
         "empty request body: send a JSON object, an array of objects, or {\"events\": [...]}"),
        ("invalid JSON", "{\"event_name\": ".into(), 400,
         "invalid JSON: unexpected end of input at line 1 column 15"),
        ("a JSON string", "\"purchase\"".into(), 400,
         "expected a JSON object, an array of objects, or {\"events\": [...]}; got a string"),
        ("a number", "42".into(), 400,
         "expected a JSON object, an array of objects, or {\"events\": [...]}; got a number"),
        ("1 MiB body", format!("{{\"x\":\"{one_mib}\"}}"), 413, "request body larger than 65536 bytes"),
        ("10,000-element array", huge_array, 400, "too many events in one request: 10000 (limit 100)"),
        ("empty array", "[]".into(), 400, "no event in the request"),
        ("array of non-objects", "[1, 2]".into(), 400,
         "expected a JSON object, an array of objects, or {\"events\": [...]}; got an array element that is not an object"),
    ];
    for (what, body, status, message) in cases {
        let resp = match client.post(server.url("/data")).body(body).send().await {
            Ok(r) => r,
            // A 413 can close the connection before the client finished uploading.
            Err(e) if status == 413 && (e.is_request() || e.is_body()) => {
                assert_still_serves(&client, &server).await;
                continue;
            }
            Err(e) => panic!("{what}: {e}"),
        };
        assert_eq!(resp.status().as_u16(), status, "{what}");
        assert_eq!(
            resp.headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("application/json"),
            "{what}"
        );
        let err: Value = resp.json().await.expect("json error");
        assert_eq!(err, json!({"error": message}), "{what}");
        assert_still_serves(&client, &server).await;
    }
    // A chunked 1 MiB body (no Content-Length) is cut off while reading: the server answers
    // 413 and closes; the client sees the 413, or (racing) the close while still uploading.
    let stream = futures_stream(1 << 20);
    let result = client
        .post(server.url("/data"))
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await;
    match result {
        Ok(resp) => assert_eq!(resp.status().as_u16(), 413),
        Err(e) => assert!(e.is_request() || e.is_body(), "unexpected error: {e}"),
    }
    assert_still_serves(&client, &server).await;
    server.shutdown().await;
    // Only the good events reached Pinterest.
    let bodies = common::received_bodies(&mock).await;
    let ids: Vec<&str> = bodies
        .iter()
        .flat_map(|b| b["data"].as_array().into_iter().flatten())
        .map(|e| e["event_id"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(ids.len(), 9);
    assert!(ids.iter().all(|id| *id == "ok-1"));
}

fn futures_stream(
    total: usize,
) -> impl futures_core::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    let chunk = vec![b' '; 16 * 1024];
    let n = total / chunk.len();
    tokio_stream_iter((0..n).map(move |_| Ok(chunk.clone())))
}

fn tokio_stream_iter<I: Iterator + Unpin>(iter: I) -> impl futures_core::Stream<Item = I::Item> {
    struct Iter<I>(I);
    impl<I: Iterator + Unpin> futures_core::Stream for Iter<I> {
        type Item = I::Item;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<I::Item>> {
            std::task::Poll::Ready(self.0.next())
        }
    }
    Iter(iter)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_data_and_health_endpoints() {
    let (mock, server) = start().await;
    let client = reqwest::Client::new();
    let resp = client
        .get(server.url("/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(
        (
            resp.status().as_u16(),
            resp.text().await.unwrap_or_default()
        ),
        (200, "ok".into())
    );
    let resp = client
        .get(server.url("/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(
        (
            resp.status().as_u16(),
            resp.text().await.unwrap_or_default()
        ),
        (200, "ready".into())
    );
    let resp = client
        .get(server.url("/data?event=sign_up&event_id=g-1&client_id=c.1&email=Jane%40Example.com"))
        .header("user-agent", "UA/2")
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.json::<Value>().await.expect("json"),
        json!({"client_id": "c.1", "event_id": "g-1"})
    );
    let resp = client.get(server.url("/data")).send().await.expect("get");
    assert_eq!(resp.status(), 400);
    server.shutdown().await;
    let bodies = common::received_bodies(&mock).await;
    assert_eq!(bodies.len(), 1);
    let ev = &bodies[0]["data"][0];
    assert_eq!(ev["event_name"], "signup");
    assert_eq!(ev["event_id"], "g-1");
    assert_eq!(ev["user_data"]["client_ip_address"], "127.0.0.1");
    assert_eq!(ev["user_data"]["client_user_agent"], "UA/2");
    assert_eq!(
        ev["user_data"]["em"],
        json!(["8c87b489ce35cf2e2f39f80e282cb2e804932a56a213983eeeb428407d43b52d"])
    );
}

/// A wrong path or method on the public listener gets a JSON error too (the 405 with its
/// `Allow` header), and a preflight still reaches the CORS layer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_paths_and_methods_get_json_errors() {
    let (_mock, server) = start().await;
    let client = reqwest::Client::new();
    for (method, path, status, allow) in [
        ("PUT", "/data", 405, Some("GET,HEAD,POST")),
        ("DELETE", "/g/collect", 405, Some("GET,HEAD,POST")),
        ("GET", "/mp/collect", 405, Some("POST")),
        ("OPTIONS", "/data", 405, Some("GET,HEAD,POST")),
        ("POST", "/healthz", 405, Some("GET,HEAD")),
        ("GET", "/nope", 404, None),
        ("POST", "/metrics", 404, None),
    ] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let resp = client
            .request(method.clone(), server.url(path))
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status().as_u16(), status, "{method} {path}");
        assert_eq!(
            resp.headers().get("allow").and_then(|v| v.to_str().ok()),
            allow,
            "{method} {path}"
        );
        assert_eq!(
            resp.headers()["content-type"],
            "application/json",
            "{method} {path}"
        );
        let want = if status == 404 {
            json!({"error": "no such endpoint"})
        } else {
            json!({"error": "method not allowed"})
        };
        assert_eq!(
            resp.json::<Value>().await.expect("json"),
            want,
            "{method} {path}"
        );
    }
    // A same-site preflight is still answered by the CORS layer.
    let pre = client
        .request(reqwest::Method::OPTIONS, server.url("/g/collect"))
        .header("host", "track.shop.example.com")
        .header("origin", "https://shop.example.com")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .expect("preflight");
    assert_eq!(pre.status(), 204);
    assert_eq!(
        pre.headers()["access-control-allow-origin"],
        "https://shop.example.com"
    );
    assert_still_serves(&client, &server).await;
    server.shutdown().await;
}

/// In the `{"events": [...]}` form, an event's own keys beat the wrapper's whatever alias
/// either uses: the event's `event` and `url` win over the wrapper's `event_name` and
/// `page_location`; an event without them reads the wrapper's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_wrapper_own_aliases_beat_shared_keys() {
    let (mock, server) = start().await;
    let resp = reqwest::Client::new()
        .post(server.url("/data"))
        .json(&json!({
            "event_name": "page_view", "page_location": "https://shop.example.com/list",
            "user_id": 42,
            "events": [
                {"event": "purchase", "url": "https://shop.example.com/thanks", "event_id": "a-1",
                 "userId": "u-7"},
                {"event_id": "a-2"}
            ]
        }))
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), 200);
    server.shutdown().await;
    let bodies = common::received_bodies(&mock).await;
    let mut sent: Vec<Value> = bodies
        .iter()
        .flat_map(|b| b["data"].as_array().cloned().unwrap_or_default())
        .collect();
    sent.sort_by_key(|e| e["event_id"].as_str().unwrap_or_default().to_owned());
    let summary: Vec<Value> = sent
        .iter()
        .map(|e| {
            json!([
                e["event_id"],
                e["event_name"],
                e["event_source_url"],
                e["user_data"]["external_id"]
            ])
        })
        .collect();
    // external_id: SHA-256 of "u-7" (the event's own userId) and of "42" (the wrapper's).
    assert_eq!(
        summary,
        vec![
            json!([
                "a-1",
                "checkout",
                "https://shop.example.com/thanks",
                [common::sha256("u-7")]
            ]),
            json!([
                "a-2",
                "page_visit",
                "https://shop.example.com/list",
                [common::sha256("42")]
            ]),
        ]
    );
}
