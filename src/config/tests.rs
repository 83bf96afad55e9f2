use super::*;

use serde_json::{json, Value};

pub(crate) fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

pub(crate) fn load(yaml: &str) -> Result<(Config, LoadReport), ConfigError> {
    Config::from_yaml(yaml, "test.yaml", &[])
}

pub(crate) fn load_env(
    yaml: &str,
    pairs: &[(&str, &str)],
) -> Result<(Config, LoadReport), ConfigError> {
    Config::from_yaml(yaml, "test.yaml", &env(pairs))
}

/// The error text of a config that must not load.
pub(crate) fn error(yaml: &str) -> String {
    match load(yaml) {
        Ok((config, _)) => panic!("expected an error, loaded:\n{config}"),
        Err(e) => e.to_string(),
    }
}

/// What `tagbridge check` prints, parsed back.
pub(crate) fn printed(config: &Config) -> Value {
    serde_json::from_str(&format!("{config}")).expect("Display prints JSON")
}

pub(crate) fn default_tree() -> Value {
    json!({
        "server": {
            "listen": "0.0.0.0:8080",
            "max_body_bytes": 65536,
            "request_timeout_ms": 5000,
            "allowed_origins": [],
            "trusted_proxies": [],
            "client_ip_header": null,
            "paths": {"gtag": "/g/collect", "mp": "/mp/collect", "data": "/data"},
            "ingest_key": "",
            "admin_listen": "127.0.0.1:9090",
            "max_connections": 10000,
            "rate_limit": null
        },
        "privacy": {"redact_query_params": ["email", "e-mail", "mail", "phone", "tel", "mobile"]},
        "queue": {
            "path": "./data/queue",
            "max_bytes": 1_073_741_824_u64,
            "dead_letter_max_bytes": 268_435_456_u64,
            "min_free_bytes": 67_108_864_u64,
            "sync_interval_ms": 0
        },
        "dispatch": {
            "batch_max_events": 1000,
            "batch_max_wait_ms": 1000,
            "concurrency": 4,
            "timeout_ms": 10000,
            "drain_s": 20,
            "retry": {"initial_ms": 500, "max_ms": 60000, "give_up_after_s": 86400}
        },
        "debug": {"enabled": false, "token": "", "max_requests": 200},
        "logging": {"format": "json", "level": "info"},
        "tags": []
    })
}

// ---------------------------------------------------------------------------------------
// The shipped file and defaults
// ---------------------------------------------------------------------------------------

#[test]
fn empty_file_gives_defaults() {
    for text in ["", "\n", "# nothing but a comment\n"] {
        let (config, report) = load(text).unwrap();
        assert_eq!(printed(&config), default_tree(), "{text:?}");
        assert_eq!(report.unset_env_vars, Vec::<String>::new());
        assert_eq!(
            report.warnings,
            vec!["no tags configured: events are accepted and dropped".to_string()]
        );
    }
}

/// Settings unset by default still take their type from an override: a rate limit's
/// numbers, a tag's `dry_run`.
#[test]
fn overrides_of_unset_settings_take_their_type() {
    let yaml =
        "tags:\n  - {name: p, type: pinterest, advertiser_id: \"549755885175\", access_token: t}\n";
    let (config, _) = load_env(
        yaml,
        &[
            ("TAGBRIDGE__SERVER__RATE_LIMIT__REQUESTS_PER_S", "20"),
            ("TAGBRIDGE__SERVER__RATE_LIMIT__BURST", "40"),
            ("TAGBRIDGE__TAGS__0__DRY_RUN", "true"),
        ],
    )
    .unwrap();
    assert_eq!(
        config.server.rate_limit,
        Some(RateLimitConfig {
            requests_per_s: 20,
            burst: 40
        })
    );
    assert!(config.tags[0].is_dry_run());
    let (config, _) = load_env(
        yaml,
        &[(
            "TAGBRIDGE__SERVER__RATE_LIMIT",
            r#"{"requests_per_s": 5, "burst": 10}"#,
        )],
    )
    .unwrap();
    assert_eq!(
        config.server.rate_limit,
        Some(RateLimitConfig {
            requests_per_s: 5,
            burst: 10
        })
    );
    let err = load_env(yaml, &[("TAGBRIDGE__TAGS__0__DRY_RUN", "maybe")]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "TAGBRIDGE__TAGS__0__DRY_RUN (tags[0].dry_run): expected true or false, got \"maybe\""
    );
}

#[test]
fn expansion_into_a_number_field_takes_the_setting_type() {
    // An expanded value takes the type of the setting it fills.
    let (config, _) = Config::from_yaml(
        "dispatch:\n  batch_max_events: \"${BATCH}\"\ndebug:\n  enabled: \"${DBG}\"\n",
        "test.yaml",
        &env(&[("BATCH", "10"), ("DBG", "true")]),
    )
    .unwrap();
    assert_eq!(config.dispatch.batch_max_events, 10);
    assert!(config.debug.enabled);
    let err = Config::from_yaml(
        "dispatch:\n  batch_max_events: \"${BATCH}\"\n",
        "test.yaml",
        &env(&[("BATCH", "ten")]),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "dispatch.batch_max_events: expected a number, got \"ten\""
    );
}

#[test]
fn unknown_top_level_key() {
    assert_eq!(
        error("bogus: 1\n"),
        "bogus: unknown field `bogus`, expected one of `server`, `privacy`, `queue`, \
         `dispatch`, `debug`, `logging`, `tags`"
    );
}

#[test]
fn unknown_key_inside_server() {
    assert_eq!(
        error("server:\n  lisen: \"0.0.0.0:80\"\n"),
        "server.lisen: unknown field `lisen`, expected one of `listen`, `max_body_bytes`, \
         `request_timeout_ms`, `allowed_origins`, `trusted_proxies`, `client_ip_header`, \
         `paths`, `ingest_key`, `admin_listen`, `max_connections`, `rate_limit`"
    );
}

#[test]
fn bad_listen_address() {
    assert_eq!(
        error("server:\n  listen: \"localhost\"\n"),
        "server.listen: must be IP:port such as \"0.0.0.0:8080\", got \"localhost\""
    );
    assert_eq!(
        error("server:\n  listen: \"shop.example:8080\"\n"),
        "server.listen: must be IP:port such as \"0.0.0.0:8080\", got \"shop.example:8080\""
    );
    // localhost:PORT means loopback.
    let (config, _) = load("server:\n  listen: \"localhost:8080\"\n").unwrap();
    assert_eq!(config.server.listen.to_string(), "127.0.0.1:8080");
    let (config, _) = load("server:\n  listen: \"[::]:8080\"\n").unwrap();
    assert_eq!(config.server.listen.to_string(), "[::]:8080");
}

#[test]
fn trusted_proxies_entries() {
    assert_eq!(
        error("server:\n  trusted_proxies: [\"10.0.0.0/33\"]\n"),
        "server.trusted_proxies: not a CIDR or IP address: \"10.0.0.0/33\""
    );
    assert_eq!(
        error("server:\n  trusted_proxies: [\"10.0.0.0/8\", \"proxy.internal\"]\n"),
        "server.trusted_proxies: not a CIDR or IP address: \"proxy.internal\""
    );
    let (config, _) =
        load("server:\n  trusted_proxies: [\"10.1.2.3\", \" 192.168.0.0/16 \", \"::1\"]\n")
            .unwrap();
    assert_eq!(
        printed(&config)["server"]["trusted_proxies"],
        json!(["10.1.2.3/32", "192.168.0.0/16", "::1/128"])
    );
}

#[test]
fn other_validation_errors() {
    let cases = [
        (
            "server:\n  max_body_bytes: 0\n",
            "server.max_body_bytes: must be > 0",
        ),
        (
            "server:\n  paths: {data: \"data\"}\n",
            "server.paths.data: must be a plain absolute path such as \"/data\", got \"data\"",
        ),
        (
            "server:\n  paths: {data: \"/g/collect\"}\n",
            "server.paths: path \"/g/collect\" is used twice",
        ),
        (
            "server:\n  allowed_origins: [\"shop.example\"]\n",
            "server.allowed_origins[0]: must be an origin such as \"https://shop.example\", \
             got \"shop.example\"",
        ),
        (
            "dispatch:\n  retry: {initial_ms: 1000, max_ms: 10}\n",
            "dispatch.retry: needs 0 < initial_ms <= max_ms",
        ),
        (
            "logging: {level: \"\"}\n",
            "logging.level: not a log level or filter: \"\"",
        ),
    ];
    for (yaml, want) in cases {
        assert_eq!(error(yaml), want, "{yaml}");
    }
}

#[test]
fn for_tests_config_is_valid() {
    let config = Config::for_tests();
    assert_eq!(
        config.validate().unwrap(),
        vec!["no tags configured: events are accepted and dropped".to_string()]
    );
    assert_eq!(config.server.listen, SocketAddr::from(([127, 0, 0, 1], 0)));
    assert_eq!(config.dispatch.batch_max_wait_ms, 50);
    assert_eq!(config.dispatch.drain_s, 10);
}
