//! Loading tags from the config file: the shipped file, defaults, environment overrides
//! and validation of the Pinterest tag's settings (the config module's own rules are tested
//! in `config/tests.rs`).

use std::{net::SocketAddr, path::PathBuf};

use crate::config::{
    tests::{default_tree, error, load, load_env, printed},
    Config, LogFormat,
};

use serde_json::{json, Value};

use crate::tags::LogMode;

const SHIPPED: &str = include_str!("../../../config/tagbridge.yaml");

/// A minimal valid Pinterest tag; tests append keys to it (4-space indent).
const TAG: &str = "tags:
  - name: pinterest
    type: pinterest
    advertiser_id: \"549755885175\"
";

/// A config with one tag carrying `extra` (lines indented by 4 spaces).
fn with_tag(extra: &str) -> String {
    format!("{TAG}{extra}")
}

fn pinterest(config: &Config, i: usize) -> &crate::tags::pinterest::PinterestSettings {
    match &config.tags[i] {
        crate::tags::TagConfig::Pinterest(s) => s,
    }
}

fn default_tag_tree() -> Value {
    json!({
        "type": "pinterest",
        "name": "pinterest",
        "advertiser_id": "549755885175",
        "access_token": "",
        "api_base": "https://api.pinterest.com",
        "event_name": "inherit",
        "standard_event": null,
        "inherit_table": "native",
        "event_map": {},
        "action_source": "web",
        "test_mode": false,
        "wait_for_response": false,
        "ad_storage_consent": "optional",
        "log": "debug",
        "partner_name": null,
        "server_event_data": {},
        "user_data": {},
        "custom_data": {},
        "trigger": {"events": [], "exclude_events": []},
        "dry_run": null
    })
}

// ---------------------------------------------------------------------------------------
// The shipped file and defaults
// ---------------------------------------------------------------------------------------

#[test]
fn shipped_file_loads_with_product_defaults_and_no_secrets() {
    let (config, report) = load(SHIPPED).unwrap();

    let mut want = default_tree();
    want["debug"]["enabled"] = json!(true);
    let mut tag = default_tag_tree();
    tag["test_mode"] = json!(true);
    tag["log"] = json!("always");
    want["tags"] = json!([tag]);
    assert_eq!(printed(&config), want);

    assert_eq!(
        report.unset_env_vars,
        vec![
            "PINTEREST_ACCESS_TOKEN".to_string(),
            "TAGBRIDGE_DEBUG_TOKEN".to_string(),
            "TAGBRIDGE_INGEST_KEY".to_string(),
        ]
    );
    assert_eq!(report.warnings, Vec::<String>::new());

    // Without a token the tag is in dry run: nothing leaves the machine.
    let tag = pinterest(&config, 0);
    assert_eq!(tag.access_token.expose(), "");
    assert!(tag.is_dry_run());
    assert_eq!(config.server.ingest_key.expose(), "");
    assert_eq!(config.debug.token.expose(), "");
    assert_eq!(config.queue.path, PathBuf::from("./data/queue"));
    assert_eq!(config.logging.format, LogFormat::Json);
}

#[test]
fn shipped_file_with_all_secrets_set_reports_nothing_unset() {
    let (config, report) = load_env(
        SHIPPED,
        &[
            ("PINTEREST_ACCESS_TOKEN", "pina_SHIPPED_TOKEN"),
            ("TAGBRIDGE_DEBUG_TOKEN", "dbg_SECRET"),
            ("TAGBRIDGE_INGEST_KEY", "ingest_SECRET"),
        ],
    )
    .unwrap();
    assert_eq!(report.unset_env_vars, Vec::<String>::new());
    let tag = pinterest(&config, 0);
    assert_eq!(tag.access_token.expose(), "pina_SHIPPED_TOKEN");
    assert!(!tag.is_dry_run());
    assert_eq!(config.debug.token.expose(), "dbg_SECRET");
    assert_eq!(config.server.ingest_key.expose(), "ingest_SECRET");
}

#[test]
fn minimal_tag_gets_section_1_defaults() {
    let (config, report) = load(TAG).unwrap();
    assert_eq!(printed(&config)["tags"], json!([default_tag_tree()]));
    assert_eq!(report.warnings, Vec::<String>::new());
    let tag = pinterest(&config, 0);
    assert_eq!(tag.log, LogMode::Debug);
    assert!(tag.is_dry_run());
}

#[test]
fn partial_section_keeps_the_other_defaults() {
    let (config, _) = load("server:\n  max_body_bytes: 1024\n").unwrap();
    let mut want = default_tree();
    want["server"]["max_body_bytes"] = json!(1024);
    assert_eq!(printed(&config), want);
}

// ---------------------------------------------------------------------------------------
// ${VAR} expansion and TAGBRIDGE__ overrides
// ---------------------------------------------------------------------------------------

#[test]
fn env_var_expands_into_access_token() {
    let yaml = with_tag("    access_token: \"${PIN_TOKEN}\"\n");
    let (config, report) = load_env(&yaml, &[("PIN_TOKEN", "pina_FROM_ENV")]).unwrap();
    let tag = pinterest(&config, 0);
    assert_eq!(tag.access_token.expose(), "pina_FROM_ENV");
    assert!(!tag.is_dry_run());
    assert_eq!(report.unset_env_vars, Vec::<String>::new());
}

#[test]
fn unset_env_var_expands_to_empty_and_is_reported() {
    let yaml =
        with_tag("    access_token: \"${PIN_TOKEN}\"\n    partner_name: \"${PARTNER:-acme}\"\n");
    let (config, report) = load_env(&yaml, &[("OTHER", "x")]).unwrap();
    let tag = pinterest(&config, 0);
    assert_eq!(tag.access_token.expose(), "");
    assert!(tag.is_dry_run());
    assert_eq!(tag.partner_name.as_deref(), Some("acme"));
    assert_eq!(report.unset_env_vars, vec!["PIN_TOKEN".to_string()]);
}

#[test]
fn expansion_does_not_reparse_yaml_inside_the_value() {
    // A secret containing YAML syntax stays one string (an access token cannot hold
    // spaces: the debug token can).
    let yaml = format!(
        "debug:\n  token: \"${{DBG}}\"\n{}",
        with_tag("    access_token: \"${PIN_TOKEN}\"\n")
    );
    let (config, _) = load_env(
        &yaml,
        &[("DBG", "a: b # c, {d}"), ("PIN_TOKEN", "pina:b#c,{d}[e]")],
    )
    .unwrap();
    assert_eq!(config.debug.token.expose(), "a: b # c, {d}");
    assert_eq!(
        pinterest(&config, 0).access_token.expose(),
        "pina:b#c,{d}[e]"
    );
}

#[test]
fn env_overrides_win_over_the_file() {
    let (config, report) = load_env(
        SHIPPED,
        &[
            ("TAGBRIDGE__SERVER__LISTEN", "127.0.0.1:9191"),
            ("TAGBRIDGE__DISPATCH__BATCH_MAX_EVENTS", "500"),
        ],
    )
    .unwrap();
    assert_eq!(
        config.server.listen,
        SocketAddr::from(([127, 0, 0, 1], 9191))
    );
    assert_eq!(config.dispatch.batch_max_events, 500);
    assert_eq!(report.warnings, Vec::<String>::new());
    let mut want = printed(&load(SHIPPED).unwrap().0);
    want["server"]["listen"] = json!("127.0.0.1:9191");
    want["dispatch"]["batch_max_events"] = json!(500);
    assert_eq!(printed(&config), want);
}

#[test]
fn env_overrides_apply_to_an_empty_file_and_are_validated() {
    let (config, _) = load_env(
        "",
        &[
            ("TAGBRIDGE__SERVER__INGEST_KEY", "1234"),
            ("TAGBRIDGE__DEBUG__ENABLED", "true"),
            ("TAGBRIDGE__LOGGING__LEVEL", "debug"),
        ],
    )
    .unwrap();
    assert_eq!(config.server.ingest_key.expose(), "1234");
    assert!(config.debug.enabled);
    assert_eq!(config.logging.level, "debug");

    let err = load_env(TAG, &[("TAGBRIDGE__DISPATCH__BATCH_MAX_EVENTS", "1001")]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "dispatch.batch_max_events: must be at most 1000 (the limit of tags[0], a pinterest tag), got 1001"
    );
    let err = load_env("", &[("TAGBRIDGE__SERVER__NOPE", "1")]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "server.nope: unknown field `nope`, expected one of `listen`, `max_body_bytes`, \
         `request_timeout_ms`, `allowed_origins`, `trusted_proxies`, `client_ip_header`, \
         `paths`, `ingest_key`, `admin_listen`, `max_connections`, `rate_limit` \
         (set by TAGBRIDGE__SERVER__NOPE)"
    );
}

#[test]
fn bad_env_override_error_names_the_variable() {
    let err = load_env("", &[("TAGBRIDGE__SERVER__LISTEN", "localhost")]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "server.listen: must be IP:port such as \"0.0.0.0:8080\", got \"localhost\" \
         (set by TAGBRIDGE__SERVER__LISTEN)"
    );
    let err = load_env("", &[("TAGBRIDGE__DISPATCH__CONCURRENCY", "many")]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "TAGBRIDGE__DISPATCH__CONCURRENCY (dispatch.concurrency): expected a number, got \"many\""
    );
}

#[test]
fn env_override_keeps_secret_text_exactly() {
    for (key, value) in [
        ("TAGBRIDGE__SERVER__INGEST_KEY", "0123456789"),
        ("TAGBRIDGE__SERVER__INGEST_KEY", "1e5"),
        ("TAGBRIDGE__SERVER__INGEST_KEY", "12345678901234567890123"),
        ("TAGBRIDGE__DEBUG__TOKEN", "007"),
    ] {
        let (config, _) = load_env("", &[(key, value)]).unwrap();
        let got = if key.contains("DEBUG") {
            config.debug.token.expose().to_owned()
        } else {
            config.server.ingest_key.expose().to_owned()
        };
        assert_eq!(got, value, "{key}={value}");
    }
}

#[test]
fn env_override_numeric_text_for_string_keys() {
    let (config, _) = load_env(
        "",
        &[
            ("TAGBRIDGE__QUEUE__PATH", "2024"),
            ("TAGBRIDGE__SERVER__CLIENT_IP_HEADER", "123"),
        ],
    )
    .unwrap();
    assert_eq!(config.queue.path, PathBuf::from("2024"));
    assert_eq!(config.server.client_ip_header.as_deref(), Some("123"));
}

#[test]
fn env_override_secret_and_nested_keys() {
    let (config, _) = load_env(
        "",
        &[
            ("TAGBRIDGE__SERVER__INGEST_KEY", "1234"),
            ("TAGBRIDGE__DISPATCH__RETRY__INITIAL_MS", "100"),
            ("TAGBRIDGE__SERVER__PATHS__DATA", "/collect"),
        ],
    )
    .unwrap();
    assert_eq!(config.server.ingest_key.expose(), "1234");
    assert_eq!(config.dispatch.retry.initial_ms, 100);
    assert_eq!(config.server.paths.data, "/collect");
    let (config, _) = load_env("", &[("TAGBRIDGE__SERVER__INGEST_KEY", "0123456789")]).unwrap();
    assert_eq!(config.server.ingest_key.expose(), "0123456789");
}

#[test]
fn env_override_reaches_lists_and_tags() {
    let (config, _) = load_env(
        TAG,
        &[
            ("TAGBRIDGE__TAGS__0__ACCESS_TOKEN", "pina_env"),
            ("TAGBRIDGE__TAGS__0__TEST_MODE", "true"),
            (
                "TAGBRIDGE__SERVER__ALLOWED_ORIGINS",
                "https://a.example, https://b.example",
            ),
            ("TAGBRIDGE__SERVER__TRUSTED_PROXIES", "[\"10.0.0.0/8\"]"),
        ],
    )
    .unwrap();
    assert_eq!(pinterest(&config, 0).access_token.expose(), "pina_env");
    assert!(pinterest(&config, 0).test_mode);
    assert_eq!(
        config.server.allowed_origins,
        vec![
            "https://a.example".to_string(),
            "https://b.example".to_string()
        ]
    );
    assert_eq!(config.server.trusted_proxies.len(), 1);
    assert_eq!(
        load_env(TAG, &[("TAGBRIDGE__TAGS__3__ACCESS_TOKEN", "x")])
            .unwrap_err()
            .to_string(),
        "TAGBRIDGE__TAGS__3__ACCESS_TOKEN (tags[3].access_token): index 3 is past the end of the list (1 entries)"
    );
}

#[test]
fn env_vars_without_the_exact_prefix_are_ignored() {
    let (config, _) = load_env(
        "",
        &[
            ("tagbridge__server__listen", "127.0.0.1:1"),
            ("TAGBRIDGE_SERVER_LISTEN", "127.0.0.1:2"),
            ("OTHER__SERVER__LISTEN", "127.0.0.1:3"),
        ],
    )
    .unwrap();
    assert_eq!(config.server.listen, SocketAddr::from(([0, 0, 0, 0], 8080)));
}

// ---------------------------------------------------------------------------------------
// Errors: one line, `path: problem`
// ---------------------------------------------------------------------------------------

#[test]
fn unknown_key_inside_a_tag() {
    assert_eq!(
        error(&with_tag("    evnt_name: inherit\n")),
        "tags[0].evnt_name: unknown field `evnt_name`, expected one of `name`, `advertiser_id`, \
         `access_token`, `api_base`, `event_name`, `standard_event`, `inherit_table`, \
         `event_map`, `action_source`, `test_mode`, `wait_for_response`, \
         `ad_storage_consent`, `log`, `partner_name`, `server_event_data`, `user_data`, \
         `custom_data`, `trigger`, `dry_run`"
    );
    assert_eq!(
        error(&with_tag("    trigger:\n      event: [purchase]\n")),
        "tags[0].trigger.event: unknown field `event`, expected `events` or `exclude_events`"
    );
}

#[test]
fn wrong_type() {
    assert_eq!(
        error("server:\n  max_body_bytes: \"big\"\n"),
        "server.max_body_bytes: invalid type: string \"big\", expected a non-negative integer"
    );
    assert_eq!(
        error("server:\n  max_body_bytes: -1\n"),
        "server.max_body_bytes: invalid value: integer `-1`, expected a non-negative integer"
    );
    assert_eq!(
        error("server:\n  trusted_proxies: \"10.0.0.0/8\"\n"),
        "server.trusted_proxies: invalid type: string \"10.0.0.0/8\", expected a sequence"
    );
    assert_eq!(error("tags: {}\n"), "tags: must be a list of tags");
    assert_eq!(
        error("server: null\n"),
        "server: invalid type: null, expected a map of settings"
    );
    assert_eq!(
        error("just text\n"),
        "test.yaml: invalid type: string \"just text\", expected a map"
    );
}

#[test]
fn wrong_type_inside_a_tag_names_the_key_in_the_message() {
    assert_eq!(
        error(&with_tag("    test_mode: maybe\n")),
        "tags[0].test_mode: invalid type: string \"maybe\", expected a boolean"
    );
    assert_eq!(
        error(&with_tag("    action_source: desktop\n")),
        "tags[0].action_source: unknown variant `desktop`, expected one of `web`, `offline`, \
         `app_ios`, `app_android`"
    );
    assert_eq!(
        error(&with_tag("    log: sometimes\n")),
        "tags[0].log: expected one of \"no\", \"debug\", \"always\", got \"sometimes\""
    );
}

#[test]
fn wrong_type_inside_a_tag_names_the_key() {
    let err = load(&with_tag("    test_mode: maybe\n")).unwrap_err();
    assert_eq!(err.path, "tags[0].test_mode");
    let err = load(&with_tag("    action_source: desktop\n")).unwrap_err();
    assert_eq!(err.path, "tags[0].action_source");
    let err = load(&with_tag("    log: sometimes\n")).unwrap_err();
    assert_eq!(err.path, "tags[0].log");
}

#[test]
fn advertiser_id_must_be_digits() {
    assert_eq!(
        error("tags:\n  - name: p\n    type: pinterest\n    advertiser_id: abc\n"),
        "tags[0].advertiser_id: must be digits, got \"abc\""
    );
    assert_eq!(
        error("tags:\n  - name: p\n    type: pinterest\n    advertiser_id: \"\"\n"),
        "tags[0].advertiser_id: must be digits, got \"\""
    );
    assert_eq!(
        error("tags:\n  - name: p\n    type: pinterest\n    advertiser_id: \"549-755\"\n"),
        "tags[0].advertiser_id: must be digits, got \"549-755\""
    );
}

#[test]
fn advertiser_id_missing() {
    assert_eq!(
        error("tags:\n  - name: p\n    type: pinterest\n"),
        "tags[0]: missing field `advertiser_id`"
    );
}

#[test]
fn advertiser_id_as_yaml_number() {
    let (config, report) =
        load("tags:\n  - name: p\n    type: pinterest\n    advertiser_id: 549755885175\n").unwrap();
    assert_eq!(pinterest(&config, 0).advertiser_id, "549755885175");
    assert_eq!(report.warnings, Vec::<String>::new());
}

#[test]
fn advertiser_id_of_unusual_length_is_a_warning() {
    let (config, report) =
        load("tags:\n  - name: p\n    type: pinterest\n    advertiser_id: 12345\n").unwrap();
    assert_eq!(pinterest(&config, 0).advertiser_id, "12345");
    assert_eq!(
        report.warnings,
        vec!["tags[0].advertiser_id: Pinterest ad account ids have 12 digits, got 5".to_string()]
    );
}

#[test]
fn advertiser_id_number_is_never_silently_changed() {
    let err =
        load("tags:\n  - name: p\n    type: pinterest\n    advertiser_id: 12345678901234567890\n")
            .map(|(c, _)| pinterest(&c, 0).advertiser_id.clone());
    assert_eq!(
        err.as_ref().map_err(|e| e.path.as_str()),
        Err("tags[0].advertiser_id")
    );
    // A whole number a float holds exactly is kept.
    let ok = load("tags:\n  - name: p\n    type: pinterest\n    advertiser_id: 5.49e11\n")
        .map(|(c, _)| pinterest(&c, 0).advertiser_id.clone());
    assert_eq!(
        ok.as_deref().map_err(|e| e.path.as_str()),
        Ok("549000000000")
    );
}

#[test]
fn unknown_tag_type() {
    assert_eq!(
        error("tags:\n  - name: p\n    type: meta\n    advertiser_id: \"1\"\n"),
        "tags[0].type: unknown tag type \"meta\"; expected one of: pinterest"
    );
    assert_eq!(
        error("tags:\n  - name: p\n    type: Pinterest\n    advertiser_id: \"1\"\n"),
        "tags[0].type: unknown tag type \"Pinterest\"; expected one of: pinterest"
    );
    assert_eq!(
        error("tags:\n  - name: p\n    advertiser_id: \"1\"\n"),
        "tags[0].type: missing; expected one of: pinterest"
    );
}

#[test]
fn duplicate_tag_names() {
    let yaml = format!(
        "{TAG}  - name: pinterest\n    type: pinterest\n    advertiser_id: \"549755885176\"\n"
    );
    assert_eq!(
        error(&yaml),
        "tags[1].name: duplicate tag name \"pinterest\""
    );
}

#[test]
fn long_tag_name() {
    let name = "n".repeat(101);
    assert_eq!(
        error(&format!(
            "tags:\n  - name: {name}\n    type: pinterest\n    advertiser_id: \"1\"\n"
        )),
        "tags[0].name: must be at most 100 bytes, got 101"
    );
}

#[test]
fn empty_tag_name() {
    assert_eq!(
        error("tags:\n  - name: \" \"\n    type: pinterest\n    advertiser_id: \"1\"\n"),
        "tags[0].name: must not be empty"
    );
}

#[test]
fn batch_max_events_bounds() {
    assert_eq!(
        error("dispatch:\n  batch_max_events: 0\n"),
        "dispatch.batch_max_events: must be > 0"
    );
    assert_eq!(
        error(&format!("{TAG}dispatch:\n  batch_max_events: 1001\n")),
        "dispatch.batch_max_events: must be at most 1000 (the limit of tags[0], a pinterest tag), got 1001"
    );
    // Without tags nothing limits it.
    assert!(load("dispatch:\n  batch_max_events: 5000\n").is_ok());
    for ok in [1, 1000] {
        let (config, _) = load(&format!("dispatch:\n  batch_max_events: {ok}\n")).unwrap();
        assert_eq!(config.dispatch.batch_max_events, ok);
    }
}

#[test]
fn standard_event_required_with_event_name_standard() {
    assert_eq!(
        error(&with_tag("    event_name: standard\n")),
        "tags[0].standard_event: is required with event_name: standard"
    );
    let (config, _) = load(&with_tag(
        "    event_name: standard\n    standard_event: lead\n",
    ))
    .unwrap();
    assert_eq!(
        pinterest(&config, 0).standard_event.as_deref(),
        Some("lead")
    );
}

#[test]
fn standard_event_not_in_the_list() {
    assert_eq!(
        error(&with_tag(
            "    event_name: standard\n    standard_event: purchase\n"
        )),
        "tags[0].standard_event: must be one of page_visit, add_to_cart, checkout, lead, \
         search, signup, view_category, watch_video, custom, add_payment_info, \
         add_to_wishlist, initiate_checkout, subscribe, view_content, app_install, got \
         \"purchase\""
    );
}

#[test]
fn unknown_user_data_override_key() {
    assert_eq!(
        error(&with_tag("    user_data:\n      email: \"a@b.c\"\n")),
        "tags[0].user_data.email: unknown user_data key; expected one of em, ph, ge, db, ln, \
         fn, ct, st, zp, country, external_id, hashed_maids, client_ip_address, \
         client_user_agent, click_id, partner_id"
    );
}

#[test]
fn server_event_data_cannot_replace_user_data_or_custom_data() {
    assert_eq!(
        error(&with_tag(
            "    server_event_data:\n      custom_data: {from: x}\n"
        )),
        "tags[0].server_event_data.custom_data: set custom_data fields with the tag's own \
         custom_data: setting"
    );
}

#[test]
fn empty_from_path() {
    assert_eq!(
        error(&with_tag("    custom_data:\n      value: {from: \" \"}\n")),
        "tags[0].custom_data.value.from: must be a dotted event-data path"
    );
}

#[test]
fn misspelled_from_override_is_an_error() {
    let err = load(&with_tag(
        "    custom_data:\n      value: {form: \"x-ga-mp1-ev\"}\n",
    ))
    .map(|_| ());
    assert_eq!(
        err.as_ref().map_err(|e| e.path.as_str()),
        Err("tags[0].custom_data.value")
    );
}

#[test]
fn warnings_for_unknown_event_map_target_and_custom_data_key() {
    let (_, report) = load(&with_tag(
        "    event_map: {Purchase: purchase}\n    custom_data:\n      foo: 1\n",
    ))
    .unwrap();
    assert_eq!(
        report.warnings,
        vec![
            "tags[0].event_map.Purchase: \"purchase\" is not one of Pinterest's event names \
             (page_visit, add_to_cart, checkout, lead, search, signup, view_category, \
             watch_video, custom, add_payment_info, add_to_wishlist, initiate_checkout, \
             subscribe, view_content, app_install)"
                .to_string(),
            "tags[0].custom_data.foo: not a Pinterest custom_data field; Pinterest may reject \
             the event"
                .to_string(),
        ]
    );
}

#[test]
fn dry_run_false_with_empty_token() {
    assert_eq!(
        error(&with_tag("    dry_run: false\n")),
        "tags[0].access_token: is empty but dry_run is false: set the token or remove dry_run"
    );
    // An unset ${VAR} is an empty token too.
    let err = load_env(
        &with_tag("    dry_run: false\n    access_token: \"${PIN_TOKEN}\"\n"),
        &[],
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "tags[0].access_token: is empty but dry_run is false: set the token or remove dry_run"
    );
    let (config, _) = load_env(
        &with_tag("    dry_run: false\n    access_token: \"${PIN_TOKEN}\"\n"),
        &[("PIN_TOKEN", "pina_X")],
    )
    .unwrap();
    assert!(!pinterest(&config, 0).is_dry_run());
}

#[test]
fn bad_api_base() {
    assert_eq!(
        error(&with_tag("    api_base: \"ftp://api.pinterest.com\"\n")),
        "tags[0].api_base: must be an http(s) URL, got \"ftp://api.pinterest.com\""
    );
    assert_eq!(
        error(&with_tag("    api_base: \"api.pinterest.com\"\n")),
        "tags[0].api_base: must be an http(s) URL, got \"api.pinterest.com\""
    );
    let (config, _) = load(&with_tag("    api_base: \"http://127.0.0.1:9999/\"\n")).unwrap();
    assert_eq!(pinterest(&config, 0).api_base, "http://127.0.0.1:9999/");
}

#[test]
fn yaml_syntax_errors_carry_line_and_column() {
    assert_eq!(
        error("server:\n  listen: \"a\"\n   max: 2\n"),
        "test.yaml: while parsing a block mapping, did not find expected key at byte 28 line 3 \
         column 7"
    );
    assert_eq!(
        error("server: {a: 1\n"),
        "test.yaml: while parsing a flow mapping, did not find expected ',' or '}' at byte 14 \
         line 2 column 1"
    );
    assert_eq!(
        error("server:\n\tlisten: x\n"),
        "test.yaml: tabs disallowed within this context (block indentation) at byte 9 line 2 \
         column 2"
    );
    assert_eq!(
        error("tags:\n  - name: p\n    name: q\n"),
        "test.yaml: \"name\": duplicated key in mapping at byte 28 line 3 column 11"
    );
}

// ---------------------------------------------------------------------------------------
// Loosely typed values, secrets
// ---------------------------------------------------------------------------------------

#[test]
fn log_no_and_false_both_mean_no() {
    for (value, want) in [
        ("no", LogMode::No),
        ("false", LogMode::No),
        ("\"no\"", LogMode::No),
        ("off", LogMode::No),
        ("debug", LogMode::Debug),
        ("always", LogMode::Always),
        ("true", LogMode::Always),
    ] {
        let (config, _) = load(&with_tag(&format!("    log: {value}\n"))).unwrap();
        assert_eq!(pinterest(&config, 0).log, want, "log: {value}");
    }
}

#[test]
fn secrets_are_masked_in_check_output() {
    let yaml = format!(
        "server:\n  ingest_key: \"${{INGEST}}\"\ndebug:\n  token: \"${{DBG}}\"\n{}",
        with_tag("    access_token: \"${PIN_TOKEN}\"\n")
    );
    let (config, _) = load_env(
        &yaml,
        &[
            ("PIN_TOKEN", "pina_VERY_SECRET_TOKEN"),
            ("INGEST", "ingest_VERY_SECRET"),
            ("DBG", "debug_VERY_SECRET"),
        ],
    )
    .unwrap();
    let text = format!("{config}");
    for secret in [
        "pina_VERY_SECRET_TOKEN",
        "ingest_VERY_SECRET",
        "debug_VERY_SECRET",
        "VERY_SECRET",
    ] {
        assert!(!text.contains(secret), "{secret} leaked:\n{text}");
    }
    let tree = printed(&config);
    assert_eq!(tree["tags"][0]["access_token"], json!("***"));
    assert_eq!(tree["server"]["ingest_key"], json!("***"));
    assert_eq!(tree["debug"]["token"], json!("***"));
    // Debug output (tracing fields) is masked too.
    let debug = format!("{config:?}");
    assert!(!debug.contains("VERY_SECRET"), "{debug}");
    // The secrets themselves are intact.
    assert_eq!(
        pinterest(&config, 0).access_token.expose(),
        "pina_VERY_SECRET_TOKEN"
    );
}

/// An override of a secret is text whatever the file holds, and no error prints it.
#[test]
fn secret_overrides_are_text_and_never_echoed() {
    let yaml = format!(
        "server:\n  ingest_key: 1\ndebug:\n  token: 2\n{}",
        with_tag("    access_token: 3\n")
    );
    let (config, _) = load_env(
        &yaml,
        &[
            ("TAGBRIDGE__TAGS__0__ACCESS_TOKEN", "pina_realtoken"),
            ("TAGBRIDGE__SERVER__INGEST_KEY", "ingest_0123"),
            ("TAGBRIDGE__DEBUG__TOKEN", "dbg_x"),
        ],
    )
    .unwrap();
    assert_eq!(
        pinterest(&config, 0).access_token.expose(),
        "pina_realtoken"
    );
    assert_eq!(config.server.ingest_key.expose(), "ingest_0123");
    assert_eq!(config.debug.token.expose(), "dbg_x");
}

/// A token a header cannot carry is a config error that names the key, not the value; a
/// line break around it (a token read from a file) is not part of it.
#[test]
fn access_token_must_fit_a_header() {
    for bad in ["pina_a b", "pina_a\nb", "pina_ä"] {
        let err = load_env(
            &with_tag("    access_token: \"${PIN_TOKEN}\"\n"),
            &[("PIN_TOKEN", bad)],
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            "tags[0].access_token: must be printable ASCII without spaces or line breaks inside (as Pinterest issues it)",
            "{bad:?}"
        );
    }
    let (config, _) = load_env(
        &with_tag("    access_token: \"${PIN_TOKEN}\"\n"),
        &[("PIN_TOKEN", "pina_ok\n")],
    )
    .unwrap();
    let tag = crate::tags::TagConfig::Pinterest(pinterest(&config, 0).clone()).build();
    let request = tag.destination().encode(&[b"{}"]);
    assert_eq!(
        request.headers[0],
        ("authorization", "Bearer pina_ok".to_owned())
    );
}
