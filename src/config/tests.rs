use super::*;

fn load(yaml: &str) -> Result<(Config, LoadReport), ConfigError> {
    Config::from_yaml(yaml, "test.yaml", &[])
}

#[test]
fn probe() {
    let tag = "tags:\n  - name: p\n    type: pinterest\n    advertiser_id: \"549755885175\"\n";
    let cases: Vec<String> = vec![
        format!("{tag}    event_map:\n      View_Item: lead\n      gtm.dom: lead\n      \"GTM4WP.x\": lead\n"),
        "tags:\n  - name: p\n    type: pinterest\n    advertiser_id: 0549755885175\n".into(),
        "tags:\n  - name: p\n    type: pinterest\n    advertiser_id: 12345678901234567890\n".into(),
        "tags:\n  - name: p\n    type: pinterest\n    advertiser_id: 5.49e11\n".into(),
        "server:\n  listen: \"localhost:8080\"\n".into(),
        "server:\n  listen: \"[::]:8080\"\n".into(),
        "server:\n  trusted_proxies: [\"10.1.2.3\", \" 192.168.0.0/16 \"]\n".into(),
        "server:\n  trusted_proxies: \"10.0.0.0/8\"\n".into(),
        format!("{tag}    access_token: \"${{TOK}}\"\n    test_mode: \"${{TM}}\"\n"),
        "dispatch:\n  batch_max_events: \"${BATCH}\"\n".into(),
        "dispatch:\n  batch_max_events: ${BATCH}\n".into(),
        format!("{tag}    name: \"\"\n"),
        "tags:\n  - name: \"\"\n    type: pinterest\n    advertiser_id: \"1\"\n".into(),
        format!("{tag}    trigger:\n      event: [a]\n"),
        format!("{tag}    server_event_data:\n      user_data: {{from: x}}\n"),
        format!("{tag}    custom_data:\n      value: {{from: \"\"}}\n"),
        format!("{tag}    custom_data:\n      value: {{from: a, extra: 1}}\n"),
        format!("{tag}    custom_data:\n      foo: 1\n    event_map: {{a: purchase}}\n"),
        "tags:\n  - name: p\n    type: Pinterest\n    advertiser_id: \"1\"\n".into(),
        "server: null\n".into(),
        "tags: null\n".into(),
        "[1,2]\n".into(),
        "just text\n".into(),
    ];
    let env = vec![("TOK".to_string(), "pina_SECRET".to_string()), ("TM".to_string(), "true".to_string()), ("BATCH".to_string(), "10".to_string())];
    for c in cases {
        match Config::from_yaml(&c, "t.yaml", &env) {
            Ok((cfg, rep)) => println!("=== {c:?}\nOK {:?} {:?} {:?}", cfg.tags.iter().map(|t| format!("{t:?}")).collect::<Vec<_>>(), cfg.server.trusted_proxies, rep),
            Err(e) => println!("=== {c:?}\nERR {e}"),
        }
    }
    for (k, v) in [("TAGBRIDGE__SERVER__INGEST_KEY", "1234"), ("TAGBRIDGE__LOGGING__LEVEL", "debug"), ("TAGBRIDGE__DEBUG__ENABLED", "false"), ("TAGBRIDGE__SERVER__NOPE", "1"), ("TAGBRIDGE__NOPE", "1"), ("tagbridge__server__listen", "127.0.0.1:1"), ("TAGBRIDGE__SERVER__MAX_BODY_BYTES", "12")] {
        let env = vec![(k.to_string(), v.to_string())];
        match Config::from_yaml("", "x", &env) {
            Ok((c, _)) => println!("{k} OK ingest={:?} level={} dbg={} listen={} mbb={}", c.server.ingest_key.expose(), c.logging.level, c.debug.enabled, c.server.listen, c.server.max_body_bytes),
            Err(e) => println!("{k} ERR {e}"),
        }
    }
}
