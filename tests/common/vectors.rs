//! Conformance vectors (`tests/fixtures/pinterest-vectors.json`): loading, sending, checking.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

pub const FIXTURE: &str = include_str!("../fixtures/pinterest-vectors.json");

pub fn all() -> Vec<Value> {
    let doc: Value = serde_json::from_str(FIXTURE).expect("vectors JSON");
    doc["vectors"].as_array().expect("vectors").clone()
}

pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The vector's tag entry, pointed at the mock (as JSON for a config file).
pub fn tag_json(vector: &Value, api_base: &str) -> Value {
    let mut tag = vector["tag"].clone();
    tag["api_base"] = json!(api_base);
    tag
}

/// Sends the vector's request; returns (status, Set-Cookie headers, receive time).
pub async fn send(client: &reqwest::Client, base: &str, vector: &Value) -> (u16, Vec<String>, i64) {
    let req = &vector["request"];
    let method = req["method"].as_str().unwrap_or("POST");
    let url = format!("{base}{}", req["path"].as_str().unwrap_or("/data"));
    let mut builder = match method {
        "GET" => client.get(&url),
        _ => client.post(&url),
    };
    if let Some(headers) = req["headers"].as_object() {
        for (k, v) in headers {
            builder = builder.header(k.as_str(), v.as_str().unwrap_or_default());
        }
    }
    if let Some(cookies) = req["cookies"].as_object() {
        if !cookies.is_empty() {
            let header = cookies
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join("; ");
            builder = builder.header("cookie", header);
        }
    }
    match &req["body"] {
        Value::Null => {}
        Value::String(s) => builder = builder.body(s.clone()),
        other => {
            builder = builder
                .header("content-type", "application/json")
                .body(other.to_string())
        }
    }
    let sent_at = now_secs();
    let resp = builder.send().await.expect("request to gateway");
    let status = resp.status().as_u16();
    let cookies = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap_or_default().to_owned())
        .collect();
    (status, cookies, sent_at)
}

/// Compares `actual` with `expected`, honouring `<generated>` and `<receive time>`.
pub fn match_value(
    expected: &Value,
    actual: &Value,
    sent_at: i64,
    path: &str,
) -> Result<(), String> {
    match (expected, actual) {
        (Value::String(p), a) if p == "<generated>" => match a {
            Value::String(s) if !s.is_empty() => Ok(()),
            _ => Err(format!(
                "{path}: expected a generated non-empty string, got {a}"
            )),
        },
        (Value::String(p), a) if p == "<receive time>" => match a.as_i64() {
            Some(t) if (t - sent_at).abs() <= 5 => Ok(()),
            _ => Err(format!(
                "{path}: expected the receive time (~{sent_at}), got {a}"
            )),
        },
        (Value::Object(e), Value::Object(a)) => {
            let mut ek: Vec<_> = e.keys().collect();
            let mut ak: Vec<_> = a.keys().collect();
            ek.sort();
            ak.sort();
            if ek != ak {
                return Err(format!("{path}: keys differ: expected {ek:?}, got {ak:?}"));
            }
            for (k, ev) in e {
                match_value(ev, &a[k], sent_at, &format!("{path}.{k}"))?;
            }
            Ok(())
        }
        (Value::Array(e), Value::Array(a)) => {
            if e.len() != a.len() {
                return Err(format!(
                    "{path}: expected {} elements, got {}: {actual}",
                    e.len(),
                    a.len()
                ));
            }
            for (i, (ev, av)) in e.iter().zip(a).enumerate() {
                match_value(ev, av, sent_at, &format!("{path}[{i}]"))?;
            }
            Ok(())
        }
        (e, a) if e == a => Ok(()),
        (e, a) => Err(format!("{path}: expected {e}, got {a}")),
    }
}

/// A `Set-Cookie` header as the vectors describe cookies.
pub fn parse_set_cookie(header: &str) -> Value {
    let mut parts = header.split(';').map(str::trim);
    let (name, value) = parts
        .next()
        .and_then(|p| p.split_once('='))
        .unwrap_or(("", ""));
    let mut c = json!({
        "name": name, "value": value, "secure": false, "http_only": false,
    });
    for attr in parts {
        let (k, v) = attr.split_once('=').unwrap_or((attr, ""));
        match k.to_ascii_lowercase().as_str() {
            "path" => c["path"] = json!(v),
            "domain" => c["domain"] = json!(v),
            "max-age" => c["max_age"] = json!(v.parse::<i64>().unwrap_or(-1)),
            "secure" => c["secure"] = json!(true),
            "httponly" => c["http_only"] = json!(true),
            "samesite" => c["same_site"] = json!(v),
            _ => {}
        }
    }
    c
}

/// Checks the cookies: same count; each expected field equal (fields the vector does not
/// list, such as `domain`, are not compared).
pub fn check_cookies(expected: &Value, headers: &[String]) -> Result<(), String> {
    let expected = expected.as_array().cloned().unwrap_or_default();
    if expected.len() != headers.len() {
        return Err(format!(
            "set_cookies: expected {expected:?}, got {headers:?}"
        ));
    }
    for (e, h) in expected.iter().zip(headers) {
        let actual = parse_set_cookie(h);
        for (k, v) in e.as_object().into_iter().flatten() {
            if &actual[k] != v {
                return Err(format!(
                    "set_cookies.{k}: expected {v}, got {} in {h:?}",
                    actual[k]
                ));
            }
        }
    }
    Ok(())
}

/// Checks what the mock Pinterest received against the vector's expectation.
pub fn check_sent(
    vector: &Value,
    requests: &[wiremock::Request],
    sent_at: i64,
) -> Result<(), String> {
    let expect = &vector["expect"];
    if expect["sent"] == json!(false) {
        return match requests.len() {
            0 => Ok(()),
            n => Err(format!("expected nothing sent, got {n} request(s)")),
        };
    }
    if requests.len() != 1 {
        return Err(format!(
            "expected exactly 1 request, got {}",
            requests.len()
        ));
    }
    let r = &requests[0];
    let want =
        url::Url::parse(expect["url"].as_str().unwrap_or_default()).map_err(|e| e.to_string())?;
    if r.url.path() != want.path() || r.url.query() != want.query() {
        return Err(format!(
            "url: expected {} ?{:?}, got {} ?{:?}",
            want.path(),
            want.query(),
            r.url.path(),
            r.url.query()
        ));
    }
    if r.method.as_str() != "POST" {
        return Err(format!("method: {}", r.method));
    }
    let auth = r
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if Some(auth) != expect["authorization"].as_str() {
        return Err(format!(
            "authorization: expected {}, got {auth:?}",
            expect["authorization"]
        ));
    }
    let ct = r
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if ct != "application/json" {
        return Err(format!("content-type: {ct:?}"));
    }
    let body: Value = serde_json::from_slice(&r.body).map_err(|e| e.to_string())?;
    let data = body["data"].as_array().ok_or("body has no data array")?;
    if body.as_object().map(|o| o.len()) != Some(1) || data.len() != 1 {
        return Err(format!(
            "body: expected {{\"data\": [one event]}}, got {body}"
        ));
    }
    match_value(&expect["event"], &data[0], sent_at, "event")
}

/// What one vector run observed.
pub struct Observed<'a> {
    pub status: u16,
    pub cookies: &'a [String],
    pub sent_at: i64,
    pub requests: &'a [wiremock::Request],
}

/// Checks a run against the vector: status 200, the cookies, and what Pinterest received.
pub fn check(vector: &Value, seen: &Observed<'_>) -> Result<(), String> {
    if seen.status != 200 {
        return Err(format!("status {}", seen.status));
    }
    check_cookies(&vector["expect"]["set_cookies"], seen.cookies)?;
    check_sent(vector, seen.requests, seen.sent_at)
}

/// Panics with every failure, one line each.
pub fn assert_all_passed(failures: &[String], total: usize) {
    assert!(
        failures.is_empty(),
        "{} of {} vectors failed:\n{}",
        failures.len(),
        total,
        failures.join("\n")
    );
}
