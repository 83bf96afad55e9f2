//! Fuzzes the `/g/collect` parser: the input is split at its first 0xFF byte into the URL
//! query string and the body (both decoded lossily, as a handler would), then parsed. Any
//! panic is a bug; the result's invariants are checked too.
//!
//! Run from `fuzz/`: `cargo +nightly fuzz run -O gtag_parse corpus/gtag_parse seeds/gtag_parse -- -dict=gtag.dict`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tagbridge::ingest::gtag_parse::{
    self, GtagError, MAX_ITEMS, MAX_LINES, MAX_PARAMS, MAX_SHARED_COPIES,
};

fuzz_target!(|data: &[u8]| {
    let (query, body) = match data.iter().position(|&b| b == 0xFF) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let query = String::from_utf8_lossy(query);
    let body = String::from_utf8_lossy(body);
    let lines = body.split('\n').filter(|l| !l.trim().is_empty()).count();
    match gtag_parse::parse(&query, &body) {
        Ok(p) => {
            assert_eq!(p.events.len() + p.skipped_lines, lines.max(1));
            assert!(p.events.len() <= MAX_LINES);
            for event in &p.events {
                assert!(event
                    .get("event_name")
                    .and_then(|v| v.as_str())
                    .is_some_and(|n| !n.trim().is_empty()));
                if let Some(items) = event.get("items").and_then(|v| v.as_array()) {
                    assert!(!items.is_empty() && items.len() <= MAX_ITEMS);
                }
            }
        }
        Err(GtagError::TooManyEvents { count, .. }) => assert!(count > MAX_LINES),
        Err(GtagError::NoEvents) => {}
        Err(GtagError::TooManyShared {
            events,
            params,
            limit,
        }) => {
            assert_eq!(limit, MAX_SHARED_COPIES);
            assert_eq!(events, lines);
            assert!(events <= MAX_LINES && params <= MAX_PARAMS);
            assert!(params * events.max(1) > MAX_SHARED_COPIES);
        }
    }
});
