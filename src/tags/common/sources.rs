//! Where user data and click ids come from in event data: ordered source paths (first
//! non-empty wins), the GA4 `user_data.address` shape, cookies and URL parameters.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::event::{is_blank, value_text, EventData, KeyPath, Obj, RequestContext, Val};

/// A source path resolved once (at config load): reading it from an event is a hashed
/// lookup without splitting or hashing the path again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcePath {
    read: Read,
    /// Whether the path can only match inside `user_data`.
    in_user_data: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Read {
    /// A dotted path of the event data.
    Path(KeyPath),
    /// `@address.FIELD`: `FIELD` of `user_data.address`, an object or a list of them (the
    /// first is used).
    Address(Box<str>),
}

impl SourcePath {
    pub fn new(path: &str) -> Self {
        match path.strip_prefix("@address.") {
            Some(field) => Self {
                read: Read::Address(field.into()),
                in_user_data: true,
            },
            None => Self {
                read: Read::Path(KeyPath::new(path)),
                in_user_data: path.starts_with("user_data."),
            },
        }
    }

    /// Reads the path from `event`.
    pub fn read<'v, 'a>(&self, event: &'v EventData<'a>) -> Option<&'v Val<'a>> {
        match &self.read {
            Read::Path(p) => event.get_key_path(p),
            Read::Address(field) => {
                let address = event.get_key_path(&USER_DATA_ADDRESS)?;
                let address = match address {
                    Val::Arr(items) => items.first()?,
                    other => other,
                };
                address.as_obj()?.get(field)
            }
        }
    }
}

static USER_DATA_ADDRESS: std::sync::LazyLock<KeyPath> =
    std::sync::LazyLock::new(|| KeyPath::new("user_data.address"));

/// The first of `paths` with a non-blank value.
pub fn first_source<'v, 'a>(event: &'v EventData<'a>, paths: &[SourcePath]) -> Option<&'v Val<'a>> {
    // Most events carry no `user_data`: its paths cannot match then (unless a key with a
    // dot could stand for one), so they are not looked up.
    let mut has_user_data = None;
    paths
        .iter()
        .filter(|p| {
            !p.in_user_data
                || *has_user_data.get_or_insert_with(|| {
                    event.has_dotted_keys() || event.get("user_data").is_some()
                })
        })
        .filter_map(|p| p.read(event))
        .find(|v| !is_blank(v))
}

/// The value of query parameter `name` of an absolute URL, percent-decoded, when present
/// and non-blank. URLs without `name=` are not parsed at all (the common case).
pub fn query_param(url: &str, name: &str) -> Option<String> {
    url.match_indices(name)
        .find(|(i, _)| url[i + name.len()..].starts_with('='))?;
    let lower = url
        .get(..8)
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    let plain_http = (lower.starts_with("https://") || lower.starts_with("http://"))
        && !url.bytes().any(|b| b <= b' ' || b == 0x7f);
    if plain_http {
        // What the URL parser would find, without building the URL.
        let no_fragment = url.split('#').next().unwrap_or(url);
        let query = no_fragment.split_once('?')?.1;
        return form_urlencoded::parse(query.as_bytes())
            .find(|(k, v)| k == name && !v.trim().is_empty())
            .map(|(_, v)| v.into_owned());
    }
    let parsed = url::Url::parse(url).ok()?;
    parsed
        .query_pairs()
        .find(|(k, v)| k == name && !v.trim().is_empty())
        .map(|(_, v)| v.into_owned())
}

/// A click id carried in the landing page's URL (`epik`, `fbclid`, `ttclid`): from
/// `page_location`, or from the `Referer` when the event has no `page_location`.
pub fn url_click_id(
    event: &EventData<'_>,
    req: &RequestContext<'_>,
    param: &str,
) -> Option<String> {
    let page = event.text("page_location");
    let page = match &page {
        Some(p) => p.as_ref(),
        None => req.referer?,
    };
    query_param(page, param)
}

/// A click id: the first-party cookie, else the same name under `common_cookie`, else the
/// event key `key`, else the click id found in the page URL (`from_url`, see
/// [`url_click_id`]; stape stops before that last step, so a visitor's landing page loses
/// the click id).
pub fn click_id<'v>(
    event: &'v EventData<'_>,
    req: &'v RequestContext<'_>,
    cookie: &str,
    key: &str,
    from_url: Option<&'v str>,
) -> Option<Cow<'v, str>> {
    if let Some(c) = req.cookie(cookie) {
        return Some(Cow::Borrowed(c));
    }
    event
        .get("common_cookie")
        .and_then(|c| c.get(cookie))
        .and_then(value_text)
        .or_else(|| event.text(key))
        .or(from_url.map(Cow::Borrowed))
}

/// An override value: a literal, or `{from: dotted.path}` read from the event data.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum OverrideValue {
    From(FromPath),
    Literal(Value),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FromPath {
    pub from: String,
}

impl<'de> Deserialize<'de> for OverrideValue {
    /// `{from: path}` is a reference; any other value is a literal. A map that looks like a
    /// misspelt reference (`{form: x}`, `{From: x}`, `{from: x, other: y}`) is an error rather
    /// than a literal nobody meant.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let value = Value::deserialize(d)?;
        let Value::Object(map) = &value else {
            return Ok(OverrideValue::Literal(value));
        };
        if let Some(from) = map.get("from") {
            return match (from, map.len()) {
                (Value::String(path), 1) => {
                    Ok(OverrideValue::From(FromPath { from: path.clone() }))
                }
                (Value::String(_), _) => Err(D::Error::custom(
                    "a {from: path} override takes no other keys",
                )),
                _ => Err(D::Error::custom(
                    "from: must be a dotted event-data path (a string)",
                )),
            };
        }
        if map.len() == 1 {
            if let Some(key) = map.keys().next().filter(|k| looks_like_from(k)) {
                return Err(D::Error::custom(format!(
                    "{key:?} looks like a misspelt \"from\"; write {{from: dotted.path}}"
                )));
            }
        }
        Ok(OverrideValue::Literal(value))
    }
}

/// `from` with one edit or a different case (`form`, `frm`, `From`, `fromm`).
fn looks_like_from(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    if k == "from" {
        return true;
    }
    let (a, b) = (k.as_bytes(), b"from");
    let dist = {
        let mut prev: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.iter().enumerate() {
            let mut cur = vec![i + 1];
            for (j, cb) in b.iter().enumerate() {
                let sub = prev[j] + usize::from(ca != cb);
                cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
            }
            prev = cur;
        }
        prev[b.len()]
    };
    // Transposition ("form") counts as one edit.
    dist <= 1
        || (a.len() == 4 && {
            let mut s = a.to_vec();
            s.sort_unstable();
            s == b"fmor"
        })
}

/// An override prepared at config load: a literal (converted once) or a path.
#[derive(Debug, Clone)]
pub enum Override {
    Literal(Val<'static>),
    From(KeyPath),
}

impl From<&OverrideValue> for Override {
    fn from(v: &OverrideValue) -> Self {
        match v {
            OverrideValue::Literal(l) => Override::Literal(Val::from_json(l).into_owned()),
            OverrideValue::From(FromPath { from }) => Override::From(KeyPath::new(from.trim())),
        }
    }
}

/// Prepares a settings section of overrides (`key: literal` or `key: {from: path}`).
pub fn prepare(
    section: &std::collections::BTreeMap<String, OverrideValue>,
) -> Vec<(String, Override)> {
    section
        .iter()
        .map(|(k, v)| (k.clone(), Override::from(v)))
        .collect()
}

/// Sets each non-empty override on `target`; an empty one removes nothing and adds nothing.
pub fn apply_overrides<'e>(
    target: &mut Obj<'e>,
    overrides: &'e [(String, Override)],
    event: &'e EventData<'_>,
) {
    for (key, o) in overrides {
        let v: Option<Val<'e>> = match o {
            Override::Literal(l) => Some(l.reborrow()),
            Override::From(path) => event.get_key_path(path).map(Val::reborrow),
        };
        if let Some(v) = v.filter(|v| !is_blank(v)) {
            target.insert(key.as_str(), v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params() {
        assert_eq!(
            query_param("https://x/p?a=1&epik=abc#f", "epik").as_deref(),
            Some("abc")
        );
        assert_eq!(
            query_param("https://x/p?epik=a%2Bb+c", "epik").as_deref(),
            Some("a+b c")
        );
        assert_eq!(query_param("https://x/p?epik=", "epik"), None);
        assert_eq!(query_param("https://x/p#?epik=1", "epik"), None);
        assert_eq!(
            query_param("https://x/epik/?a=1&xepik=1&epik=2", "epik").as_deref(),
            Some("2")
        );
        assert_eq!(query_param("no query", "epik"), None);
        assert_eq!(query_param("not a url?epik=1", "epik"), None);
    }
}
