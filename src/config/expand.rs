//! `${VAR}` and `${VAR:-default}` expansion in config string values.
//!
//! Expansion runs on parsed string values, not on the file text, so a secret that contains
//! YAML syntax (`:`, `#`, quotes) cannot change the structure of the file. An unset variable
//! expands to the empty string (so the shipped config runs without secrets: no token means
//! the Pinterest tag is in dry-run) and is reported so the caller can warn about it.

use serde_json::Value;

/// What expansion did.
#[derive(Debug, Default)]
pub struct Expansion {
    /// Names of variables that were not set, sorted.
    pub unset: Vec<String>,
    /// Paths (key segments, list indexes as numbers) of the strings that contained `${`.
    pub expanded: Vec<Vec<String>>,
}

/// Expands every string in `value` in place.
pub fn expand_tree(value: &mut Value, lookup: &dyn Fn(&str) -> Option<String>) -> Expansion {
    let mut out = Expansion::default();
    let mut path = Vec::new();
    walk(value, lookup, &mut out, &mut path);
    out.unset.sort();
    out.unset.dedup();
    out
}

fn walk(
    value: &mut Value,
    lookup: &dyn Fn(&str) -> Option<String>,
    out: &mut Expansion,
    path: &mut Vec<String>,
) {
    match value {
        Value::String(s) if s.contains("${") => {
            *s = expand_str(s, lookup, &mut out.unset);
            out.expanded.push(path.clone());
        }
        Value::Array(items) => {
            for (i, v) in items.iter_mut().enumerate() {
                path.push(i.to_string());
                walk(v, lookup, out, path);
                path.pop();
            }
        }
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                path.push(k.clone());
                walk(v, lookup, out, path);
                path.pop();
            }
        }
        _ => {}
    }
}

/// Expands `${NAME}` / `${NAME:-default}`; `$${` is a literal `${`. An unterminated `${` is kept as text.
pub fn expand_str(
    input: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    unset: &mut Vec<String>,
) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find("${") {
        if rest[..pos].ends_with('$') {
            out.push_str(&rest[..pos - 1]);
            out.push_str("${");
            rest = &rest[pos + 2..];
            continue;
        }
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[pos..]);
            return out;
        };
        let inner = &after[..end];
        let (name, default) = match inner.split_once(":-") {
            Some((n, d)) => (n.trim(), Some(d)),
            None => (inner.trim(), None),
        };
        match lookup(name).filter(|v| !(v.is_empty() && default.is_some())) {
            Some(v) => out.push_str(&v),
            None => match default {
                Some(d) => out.push_str(d),
                None => unset.push(name.to_owned()),
            },
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "TOKEN" => Some("pina_abc".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expands_set_unset_and_defaults() {
        let mut unset = Vec::new();
        assert_eq!(
            expand_str("Bearer ${TOKEN}", &env, &mut unset),
            "Bearer pina_abc"
        );
        assert_eq!(expand_str("${MISSING}", &env, &mut unset), "");
        assert_eq!(expand_str("${MISSING:-dflt}", &env, &mut unset), "dflt");
        assert_eq!(expand_str("${EMPTY:-dflt}", &env, &mut unset), "dflt");
        assert_eq!(expand_str("a$${TOKEN}b", &env, &mut unset), "a${TOKEN}b");
        assert_eq!(expand_str("x${TOKEN", &env, &mut unset), "x${TOKEN");
        assert_eq!(unset, vec!["MISSING".to_string()]);
    }

    #[test]
    fn expands_nested_values() {
        let mut v = serde_json::json!({"a": ["${TOKEN}", 1], "b": {"c": "${NOPE}"}});
        let out = expand_tree(&mut v, &env);
        assert_eq!(v, serde_json::json!({"a": ["pina_abc", 1], "b": {"c": ""}}));
        assert_eq!(out.unset, vec!["NOPE".to_string()]);
        assert_eq!(
            out.expanded,
            vec![
                vec!["a".to_string(), "0".to_string()],
                vec!["b".to_string(), "c".to_string()]
            ]
        );
    }
}
