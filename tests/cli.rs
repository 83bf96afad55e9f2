//! The command line through the built binary: `check`, `map`, and config errors.

use std::process::Command;

use serde_json::{json, Value};

fn tagbridge(args: &[&str], dir: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tagbridge"))
        .args(args)
        .current_dir(dir)
        .env_remove("PINTEREST_ACCESS_TOKEN")
        .env("SECRET_TOKEN", "pina_SUPERSECRET")
        .output()
        .expect("run tagbridge")
}

const CONFIG: &str = r#"
tags:
  - name: pin
    type: pinterest
    advertiser_id: "549755885175"
    access_token: "${SECRET_TOKEN}"
    test_mode: true
  - name: leads-only
    type: pinterest
    advertiser_id: "549755885176"
    trigger: {events: [generate_lead]}
"#;

#[test]
fn check_prints_the_resolved_config_with_secrets_masked() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("c.yaml"), CONFIG).expect("write");
    let out = tagbridge(&["check", "--config", "c.yaml"], dir.path());
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("pina_SUPERSECRET"));
    let printed: Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(printed["tags"][0]["access_token"], "***");
    assert_eq!(printed["tags"][1]["access_token"], "");
    assert_eq!(printed["dispatch"]["batch_max_events"], 1000);
}

#[test]
fn map_prints_each_tags_request_without_sending() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("c.yaml"), CONFIG).expect("write");
    std::fs::write(
        dir.path().join("e.json"),
        r#"{"event_name": "purchase", "transaction_id": "T1", "email": "a@b.c",
            "ip_override": "203.0.113.5", "user_agent": "UA", "timestamp_micros": 1700000000000000}"#,
    )
    .expect("write");
    let out = tagbridge(
        &["map", "--config", "c.yaml", "--event", "e.json"],
        dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("pina_SUPERSECRET"));
    let printed: Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(
        printed,
        json!([
            {
                "tag": "pin",
                "match_keys": ["em", "client_ip_address+client_user_agent"],
                "decision": "send",
                "request": {
                    "method": "POST",
                    "url": "https://api.pinterest.com/v5/ad_accounts/549755885175/events?test=true",
                    "headers": {"authorization": "Bearer ***", "content-type": "application/json"},
                    "body": {"data": [{
                        "event_name": "checkout",
                        "action_source": "web",
                        "event_time": 1700000000,
                        "event_id": "T1",
                        "user_data": {
                            "client_ip_address": "203.0.113.5",
                            "client_user_agent": "UA",
                            "em": ["d648b243a3e817eaa3309e00e183483f2867baadf522099f0c2121770536b25a"]
                        },
                        "custom_data": {"order_id": "T1"}
                    }]}
                }
            },
            {"tag": "leads-only", "decision": "skip", "reason": "trigger"}
        ])
    );
    let out = tagbridge(
        &[
            "map", "--config", "c.yaml", "--event", "e.json", "--tag", "nope",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "no tag named \"nope\" in the config"
    );
}

#[test]
fn a_config_error_is_one_line_and_stops_start_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("bad.yaml"),
        "tags:\n  - name: p\n    type: pinterest\n    advertiser_id: abc\n",
    )
    .expect("write");
    for cmd in ["serve", "check"] {
        let out = tagbridge(&[cmd, "--config", "bad.yaml"], dir.path());
        assert_eq!(out.status.code(), Some(2), "{cmd}");
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            "config error: tags[0].advertiser_id: must be digits, got \"abc\"\n"
        );
    }
    let out = tagbridge(&["check", "--config", "missing.yaml"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr)
        .starts_with("config error: missing.yaml: cannot read:"));
}

#[test]
fn queue_stats_on_a_fresh_queue() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("c.yaml"), "queue: {path: ./q}\n").expect("write");
    let out = tagbridge(&["queue", "stats", "--config", "c.yaml"], dir.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stats: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(
        stats,
        json!({"depth": 0, "bytes": 0, "oldest_age_s": null, "dead_letters": 0, "dead_by_reason": {},
               "dead_letter_bytes": 0, "dead_letters_evicted": 0, "disk_bytes": 0})
    );
    let out = tagbridge(&["queue", "replay-dead", "--config", "c.yaml"], dir.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "{\"replayed\":0,\"kept_files\":[]}"
    );
}
