//! Property tests of the GA4 request parsers (`src/ingest/gtag_parse.rs`, `mp_parse.rs`):
//! any input gives `Ok` or `Err` (never a panic) and the results keep their invariants;
//! `encode_pairs` / `decode_pairs` round-trip.

use proptest::prelude::*;
use serde_json::Value;
use tagbridge::ingest::{
    gtag_parse::{self, GtagError, MAX_ITEMS, MAX_LINES},
    mp_parse::{self, MpError, MAX_EVENTS},
};

/// Text made of the pieces gtag requests are made of, so that the parser's branches
/// (prefixes, items, numbers, escapes, line breaks) are hit far more often than by random
/// bytes.
fn gtag_like() -> impl Strategy<Value = String> {
    const TOKENS: &[&str] = &[
        "en=", "&", "=", "\n", "\r\n", "ep.", "epn.", "up.", "upn.", "sst.", "_", "_dbg=1",
        "uafvl=", "uamb=1", "~", "%", "%2", "%25", "%7E", "%FF", "+", ".", "-", "e", "|", ";",
        "pr", "id", "nm", "ca", "c2", "ca2", "qt", "k0", "v0", "_p=", "_s=", "sct=", "_et=",
        "tfd=", "a", "Z", " ",
    ];
    let piece = prop_oneof![
        4 => proptest::sample::select(TOKENS).prop_map(str::to_owned),
        2 => (0u32..250).prop_map(|n| n.to_string()),
        1 => any::<u64>().prop_map(|n| n.to_string()),
        1 => any::<char>().prop_map(String::from),
    ];
    proptest::collection::vec(piece, 0..64).prop_map(|v| v.concat())
}

fn check_gtag(query: &str, body: &str) {
    let lines = body.split('\n').filter(|l| !l.trim().is_empty()).count();
    match gtag_parse::parse(query, body) {
        Ok(p) => {
            assert!(!p.events.is_empty());
            assert_eq!(p.events.len() + p.skipped_lines, lines.max(1));
            for e in &p.events {
                let name = e.get("event_name").and_then(Value::as_str);
                assert!(name.is_some_and(|n| !n.trim().is_empty()), "{e:?}");
                if let Some(items) = e.get("items") {
                    let items = items.as_array().expect("items is an array");
                    assert!(!items.is_empty() && items.len() <= MAX_ITEMS);
                    for item in items {
                        let named = ["item_id", "item_name"].iter().any(|k| {
                            item.get(*k)
                                .and_then(Value::as_str)
                                .is_some_and(|s| !s.is_empty())
                        });
                        assert!(named, "{item}");
                    }
                }
                for key in ["x-ga-page_id", "x-ga-request_count", "engagement_time_msec"] {
                    assert!(e.get(key).is_none_or(Value::is_number), "{key}: {e:?}");
                }
            }
        }
        Err(GtagError::TooManyEvents { count, limit }) => {
            assert_eq!((count, limit), (lines, MAX_LINES));
            assert!(lines > MAX_LINES);
        }
        Err(GtagError::TooManyShared {
            events,
            params,
            limit,
        }) => {
            assert_eq!(events, lines);
            assert!(params * lines.max(1) > limit);
        }
        Err(GtagError::NoEvents) => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn gtag_parse_never_panics_on_arbitrary_bytes(
        query in proptest::collection::vec(any::<u8>(), 0..1024),
        body in proptest::collection::vec(any::<u8>(), 0..2048),
    ) {
        check_gtag(&String::from_utf8_lossy(&query), &String::from_utf8_lossy(&body));
    }

    #[test]
    fn gtag_parse_never_panics_on_gtag_like_text(query in gtag_like(), body in gtag_like()) {
        check_gtag(&query, &body);
    }

    #[test]
    fn encode_then_decode_gives_the_pairs_back(
        pairs in proptest::collection::vec((any::<String>(), any::<String>()), 0..12),
    ) {
        let encoded = gtag_parse::encode_pairs(&pairs);
        prop_assert_eq!(gtag_parse::decode_pairs(&encoded), pairs);
    }

    #[test]
    fn mp_parse_never_panics(
        body in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..1024),
            "\\{\"(events|client_id|user_data|consent|ip_override)\": ?(\\[\\{\"name\": ?\"[a-z]{0,5}\"(, ?\"params\": ?\\{\\})?\\}\\]|\"x\"|null|\\{\\}|1)\\}"
                .prop_map(String::into_bytes),
        ],
        authenticated in any::<bool>(),
    ) {
        match mp_parse::parse(&body, authenticated) {
            Ok(p) => {
                prop_assert!(!p.events.is_empty() && p.events.len() <= MAX_EVENTS);
                prop_assert!(authenticated || p.ip_override.is_none());
            }
            Err(MpError::TooManyEvents { count, .. }) => prop_assert!(count > MAX_EVENTS),
            Err(_) => {}
        }
    }
}
