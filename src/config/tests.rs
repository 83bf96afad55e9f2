use super::*;

fn load(yaml: &str) -> Result<(Config, LoadReport), ConfigError> {
    Config::from_yaml(yaml, "test.yaml", &[])
}

#[test]
fn probe() {
    let tag = "tags:\n  - name: p\n    type: pinterest\n    advertiser_id: \"549755885175\"\n";
    let cases: Vec<String> = vec![
        "bogus: 1\n".into(),
        "server:\n  lisen: x\n".into(),
        format!("{tag}    evnt_name: inherit\n"),
        "server:\n  max_body_bytes: \"big\"\n".into(),
        "server:\n  listen: \"localhost\"\n".into(),
        "tags:\n  - name: p\n    type: pinterest\n    advertiser_id: abc\n".into(),
        "tags:\n  - name: p\n    type: pinterest\n".into(),
        "tags:\n  - name: p\n    type: meta\n    advertiser_id: \"1\"\n".into(),
        "tags:\n  - name: p\n    advertiser_id: \"1\"\n".into(),
        format!("{tag}  - name: p\n    type: pinterest\n    advertiser_id: \"549755885176\"\n"),
        "dispatch:\n  batch_max_events: 0\n".into(),
        "dispatch:\n  batch_max_events: 1001\n".into(),
        format!("{tag}    event_name: standard\n"),
        format!("{tag}    standard_event: purchase\n"),
        format!("{tag}    user_data:\n      email: x\n"),
        format!("{tag}    dry_run: false\n"),
        "server:\n  trusted_proxies: [\"10.0.0.0/33\"]\n".into(),
        format!("{tag}    api_base: \"ftp://x\"\n"),
        format!("{tag}    api_base: \"not a url\"\n"),
        "server:\n  listen: [\n".into(),
        "server: {a: 1\n".into(),
        "server:\n\tlisten: x\n".into(),
        "server:\n  listen: \"a\"\n   max: 2\n".into(),
        format!("{tag}    log: no\n"),
        format!("{tag}    log: false\n"),
        format!("{tag}    log: sometimes\n"),
        format!("{tag}    advertiser_id: 1\n"),
        "tags:\n  - name: p\n    type: pinterest\n    advertiser_id: 549755885175\n".into(),
        "server:\n  max_body_bytes: -1\n".into(),
        "dispatch:\n  batch_max_events: \"ten\"\n".into(),
        format!("{tag}    test_mode: maybe\n"),
        format!("{tag}    action_source: desktop\n"),
        "".into(),
        "# only a comment\n".into(),
        "tags: {}\n".into(),
    ];
    for c in cases {
        match load(&c) {
            Ok((cfg, rep)) => println!(
                "=== {c:?}\nOK {:?} {:?}",
                cfg.tags
                    .iter()
                    .map(|t| format!("{t:?}"))
                    .collect::<Vec<_>>(),
                rep
            ),
            Err(e) => println!("=== {c:?}\nERR {e}"),
        }
    }
    let env = vec![
        (
            "TAGBRIDGE__SERVER__LISTEN".to_string(),
            "127.0.0.1:9090".to_string(),
        ),
        (
            "TAGBRIDGE__DISPATCH__BATCH_MAX_EVENTS".to_string(),
            "500".to_string(),
        ),
    ];
    let r = Config::from_yaml(include_str!("../../config/tagbridge.yaml"), "x", &env);
    match r {
        Ok((c, rep)) => println!("{c}\n{rep:?}"),
        Err(e) => println!("ERR {e}"),
    }
    let env = vec![("TAGBRIDGE__SERVER__LISTEN".to_string(), "bad".to_string())];
    println!("{:?}", Config::from_yaml("", "x", &env).map(|_| ()));
    let env = vec![(
        "TAGBRIDGE__DISPATCH__BATCH_MAX_EVENTS".to_string(),
        "lots".to_string(),
    )];
    println!("{:?}", Config::from_yaml("", "x", &env).map(|_| ()));
}
