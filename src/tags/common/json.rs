//! Writing JSON straight into a byte buffer: each mapped event is serialized once, into the
//! queue record, without an intermediate `serde_json::Value`.
//!
//! [`write_clean`] drops empty values on the way (null, blank strings, empty arrays and
//! objects, recursively), which is how every destination wants its payloads.

use crate::event::{Num, Val};

/// Writes `s` as a JSON string (escaping as serde_json does).
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    out.reserve(s.len() + 2);
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    loop {
        // Most text needs no escape: find the next byte that does, copy the run before it.
        let Some(rel) = find_escape(&bytes[start..]) else {
            out.extend_from_slice(&bytes[start..]);
            break;
        };
        let i = start + rel;
        out.extend_from_slice(&bytes[start..i]);
        let b = bytes[i];
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
            }
        }
        start = i + 1;
    }
    out.push(b'"');
}

/// Where the first byte JSON must escape (`"`, `\\`, a control character) is. Eight bytes at
/// a time: a word with none of them is skipped whole (the usual case), a word with one is
/// searched byte by byte.
fn find_escape(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    // Whether any byte of `w` is below `n` (n <= 0x80): exact for "any", which is all this
    // needs (the word is then searched byte by byte).
    let any_below = |w: u64, n: u8| w.wrapping_sub(ONES * u64::from(n)) & !w & HIGHS != 0;
    let any_zero = |w: u64| any_below(w, 1);
    let mut words = bytes.chunks_exact(8);
    let mut skipped = 0;
    for word in words.by_ref() {
        let mut w = [0u8; 8];
        w.copy_from_slice(word);
        let w = u64::from_ne_bytes(w);
        if any_below(w, 0x20)
            || any_zero(w ^ (ONES * u64::from(b'"')))
            || any_zero(w ^ (ONES * u64::from(b'\\')))
        {
            break;
        }
        skipped += 8;
    }
    bytes[skipped..]
        .iter()
        .position(|&b| b < 0x20 || b == b'"' || b == b'\\')
        .map(|i| skipped + i)
}

pub fn write_num(out: &mut Vec<u8>, n: Num) {
    match n {
        Num::I(i) => out.extend_from_slice(itoa::Buffer::new().format(i).as_bytes()),
        Num::U(u) => out.extend_from_slice(itoa::Buffer::new().format(u).as_bytes()),
        // serde_json's own float format (`1e+21`), so output matches what it would write.
        Num::F(f) => {
            if !f.is_finite() || serde_json::to_writer(&mut *out, &f).is_err() {
                out.extend_from_slice(b"null");
            }
        }
    }
}

/// Whether a value is removed by cleaning: null, blank text, and arrays or objects with
/// nothing left after cleaning.
pub fn is_empty_clean(v: &Val<'_>) -> bool {
    match v {
        Val::Null => true,
        Val::Str(s) => s.trim().is_empty(),
        Val::Arr(a) => a.iter().all(is_empty_clean),
        Val::Obj(o) => o.iter().all(|(_, v)| is_empty_clean(v)),
        Val::Bool(_) | Val::Num(_) => false,
    }
}

/// Writes `v` without its empty parts. A value that is empty after cleaning is written as
/// it is (`null`, the blank text, `[]` or `{}`).
pub fn write_clean(out: &mut Vec<u8>, v: &Val<'_>) {
    if write_nonempty(out, v) {
        return;
    }
    match v {
        Val::Str(s) => write_str(out, s),
        Val::Arr(_) => out.extend_from_slice(b"[]"),
        Val::Obj(_) => out.extend_from_slice(b"{}"),
        _ => out.extend_from_slice(b"null"),
    }
}

/// Writes `v` without its empty parts and returns true, or, when nothing is left after
/// cleaning ([`is_empty_clean`]), writes nothing and returns false. One pass: a container
/// is written tentatively and cut back when none of its members stayed.
pub fn write_nonempty(out: &mut Vec<u8>, v: &Val<'_>) -> bool {
    match v {
        Val::Null => false,
        Val::Bool(b) => {
            out.extend_from_slice(if *b { b"true" } else { b"false" });
            true
        }
        Val::Num(n) => {
            write_num(out, *n);
            true
        }
        Val::Str(s) => {
            if s.trim().is_empty() {
                return false;
            }
            write_str(out, s);
            true
        }
        Val::Arr(a) => write_members(out, (b'[', b']'), a.iter().map(|v| (None, v))),
        Val::Obj(o) => write_members(out, (b'{', b'}'), o.iter().map(|(k, v)| (Some(k), v))),
    }
}

/// A container's non-empty members (`key` for an object's, none for an array's) between
/// its brackets; nothing is written, and false returned, when none is left.
fn write_members<'v, 'a: 'v>(
    out: &mut Vec<u8>,
    (open, close): (u8, u8),
    members: impl Iterator<Item = (Option<&'v str>, &'v Val<'a>)>,
) -> bool {
    let start = out.len();
    out.push(open);
    let mut any = false;
    for (key, v) in members {
        let at = out.len();
        if any {
            out.push(b',');
        }
        if let Some(k) = key {
            write_str(out, k);
            out.push(b':');
        }
        if write_nonempty(out, v) {
            any = true;
        } else {
            out.truncate(at);
        }
    }
    if !any {
        out.truncate(start);
        return false;
    }
    out.push(close);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn clean(v: serde_json::Value) -> String {
        let val = Val::from_json(&v);
        let mut out = Vec::new();
        write_clean(&mut out, &val);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn strings_escape_like_serde_json() {
        for s in [
            "plain",
            "q\"uo\\te",
            "nl\n\r\t",
            "\u{1}\u{8}\u{c}\u{1f}",
            "ünï 東京 /",
        ] {
            let mut out = Vec::new();
            write_str(&mut out, s);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                serde_json::to_string(s).unwrap()
            );
        }
    }

    #[test]
    fn numbers_write_like_serde_json() {
        for v in [
            json!(1),
            json!(-7),
            json!(18446744073709551615_u64),
            json!(1.5),
            json!(1e21),
            json!(0.1),
            json!(100.0),
        ] {
            let mut out = Vec::new();
            write_clean(&mut out, &Val::from_json(&v));
            assert_eq!(String::from_utf8(out).unwrap(), v.to_string());
        }
    }

    /// The two-pass definition the one-pass writer must match: drop what
    /// [`is_empty_clean`] calls empty, recursively.
    fn reference(v: &Val<'_>) -> Option<serde_json::Value> {
        use serde_json::Value;
        if is_empty_clean(v) {
            return None;
        }
        Some(match v {
            Val::Arr(a) => Value::Array(a.iter().filter_map(reference).collect()),
            Val::Obj(o) => Value::Object(
                o.iter()
                    .filter_map(|(k, v)| reference(v).map(|r| (k.to_owned(), r)))
                    .collect(),
            ),
            other => other.to_json(),
        })
    }

    fn json_value() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(json!(null)),
            Just(json!("")),
            Just(json!("  ")),
            "[a-z\\\" ]{0,4}".prop_map(serde_json::Value::from),
            any::<i32>().prop_map(serde_json::Value::from),
            any::<bool>().prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                proptest::collection::btree_map("[a-c]", inner, 0..4)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        #[test]
        fn strings_escape_like_serde_json_whatever_the_text(s in "(\\PC|[\\x00-\\x1f\"\\\\])*") {
            let mut out = Vec::new();
            write_str(&mut out, &s);
            proptest::prop_assert_eq!(String::from_utf8(out).unwrap(), serde_json::to_string(&s).unwrap());
        }

        #[test]
        fn one_pass_cleaning_matches_the_definition(v in json_value()) {
            let val = Val::from_json(&v);
            let mut out = b"x".to_vec();
            let written = write_nonempty(&mut out, &val);
            match reference(&val) {
                None => {
                    proptest::prop_assert!(!written);
                    proptest::prop_assert_eq!(&out, b"x");
                }
                Some(r) => {
                    proptest::prop_assert!(written);
                    let parsed: serde_json::Value = serde_json::from_slice(&out[1..]).unwrap();
                    proptest::prop_assert_eq!(parsed, r);
                }
            }
        }
    }

    #[test]
    fn cleaning_drops_empty_members_recursively() {
        assert_eq!(
            clean(
                json!({"a": null, "b": " ", "c": [], "d": {"x": [null, ""]}, "e": 0, "f": false, "g": ["", "k"]})
            ),
            r#"{"e":0,"f":false,"g":["k"]}"#
        );
    }
}
