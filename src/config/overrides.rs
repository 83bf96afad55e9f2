//! `TAGBRIDGE__SECTION__KEY` environment overrides, typed by the setting they replace.
//!
//! The `config` crate's own environment source either keeps every value as text (then
//! `TAGBRIDGE__DISPATCH__CONCURRENCY=8` is not a number) or guesses types from the text
//! (then a token `0123` loses its zero). Here the type comes from the setting being
//! overridden: the file's value, else the default. Text stays text, numbers and booleans
//! are parsed, lists take a JSON array or comma-separated items, and a number segment
//! indexes a list (`TAGBRIDGE__TAGS__0__ACCESS_TOKEN`).

use serde_json::{Map, Value};

use super::{ConfigError, ENV_PREFIX};

/// One applied override: the config path it set and the variable that set it.
#[derive(Debug, Clone)]
pub struct Applied {
    pub path: String,
    pub var: String,
}

/// Applies the overrides found in `env` to `tree`; `defaults` gives the types of settings
/// the file does not mention.
pub fn apply(
    tree: &mut Value,
    defaults: &Value,
    env: &[(String, String)],
) -> Result<Vec<Applied>, ConfigError> {
    let prefix = format!("{ENV_PREFIX}__");
    let mut vars: Vec<&(String, String)> =
        env.iter().filter(|(k, _)| k.starts_with(&prefix)).collect();
    vars.sort();
    let mut applied = Vec::new();
    for (var, raw) in vars {
        let segments: Vec<String> = var[prefix.len()..]
            .split("__")
            .map(str::to_ascii_lowercase)
            .collect();
        if segments.iter().any(String::is_empty) {
            return Err(ConfigError::new(
                var.clone(),
                "empty key segment (use TAGBRIDGE__SECTION__KEY)",
            ));
        }
        let path = display_path(&segments);
        // A secret is text whatever the file holds (a placeholder `1` must not make the
        // token a number, and an error must not print it).
        let hint = if is_secret(&segments) {
            None
        } else {
            lookup(tree, &segments).or_else(|| lookup(defaults, &segments))
        };
        let value =
            coerce(raw, hint).map_err(|m| ConfigError::new(format!("{var} ({path})"), m))?;
        set(tree, &segments, value).map_err(|m| ConfigError::new(format!("{var} ({path})"), m))?;
        applied.push(Applied {
            path,
            var: var.clone(),
        });
    }
    Ok(applied)
}

/// The settings that hold secrets (`support::Secret`): the ingest key, the debug token,
/// a tag's access token.
fn is_secret(segments: &[String]) -> bool {
    match segments {
        [server, key] if server == "server" => key == "ingest_key",
        [debug, key] if debug == "debug" => key == "token",
        [tags, _, key] if tags == "tags" => key == "access_token",
        _ => false,
    }
}

/// `tags[0].access_token` style.
pub fn display_path(segments: &[String]) -> String {
    let mut out = String::new();
    for s in segments {
        if s.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{s}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(s);
        }
    }
    out
}

fn lookup<'a>(tree: &'a Value, segments: &[String]) -> Option<&'a Value> {
    let mut cur = tree;
    for s in segments {
        cur = match cur {
            Value::Object(m) => m.get(s)?,
            Value::Array(items) => items.get(s.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

/// Parses `raw` as the kind of value `hint` is.
pub fn coerce(raw: &str, hint: Option<&Value>) -> Result<Value, String> {
    let t = raw.trim();
    match hint {
        Some(Value::Number(_)) => {
            if let Ok(u) = t.parse::<u64>() {
                Ok(Value::from(u))
            } else if let Ok(i) = t.parse::<i64>() {
                Ok(Value::from(i))
            } else {
                t.parse::<f64>()
                    .ok()
                    .and_then(serde_json::Number::from_f64)
                    .map(Value::Number)
                    .ok_or_else(|| format!("expected a number, got {raw:?}"))
            }
        }
        Some(Value::Bool(_)) => match t.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(Value::Bool(true)),
            "false" | "0" | "no" | "off" => Ok(Value::Bool(false)),
            _ => Err(format!("expected true or false, got {raw:?}")),
        },
        Some(Value::Array(_)) => {
            if t.starts_with('[') {
                serde_json::from_str::<Value>(t)
                    .ok()
                    .filter(Value::is_array)
                    .ok_or_else(|| "expected a JSON array or comma-separated items".to_owned())
            } else {
                Ok(Value::Array(
                    t.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(|s| Value::String(s.to_owned()))
                        .collect(),
                ))
            }
        }
        Some(Value::Object(_)) => serde_json::from_str::<Value>(t)
            .ok()
            .filter(Value::is_object)
            .ok_or_else(|| "expected a JSON object".to_owned()),
        // Text settings (and unknown ones) keep the text exactly as given.
        _ => Ok(Value::String(raw.to_owned())),
    }
}

fn set(tree: &mut Value, segments: &[String], value: Value) -> Result<(), String> {
    let Some((last, parents)) = segments.split_last() else {
        return Err("no key".into());
    };
    let mut cur = tree;
    for s in parents {
        cur = match cur {
            Value::Array(items) => {
                let len = items.len();
                let i = s
                    .parse::<usize>()
                    .map_err(|_| format!("{s:?} is not a list index"))?;
                items.get_mut(i).ok_or_else(|| {
                    format!("index {i} is past the end of the list ({len} entries)")
                })?
            }
            Value::Object(m) => m
                .entry(s.clone())
                .or_insert_with(|| Value::Object(Map::new())),
            _ => return Err(format!("{s:?} is inside a value that is not a section")),
        };
        if cur.is_null() {
            *cur = Value::Object(Map::new());
        }
    }
    match cur {
        Value::Object(m) => {
            m.insert(last.clone(), value);
            Ok(())
        }
        Value::Array(items) => {
            let len = items.len();
            let i = last
                .parse::<usize>()
                .map_err(|_| format!("{last:?} is not a list index"))?;
            let slot = items
                .get_mut(i)
                .ok_or_else(|| format!("index {i} is past the end of the list ({len} entries)"))?;
            *slot = value;
            Ok(())
        }
        _ => Err("the parent is not a section".into()),
    }
}
