//! `/g/collect` request parsing: a gtag.js request (URL query string + body lines) → GA4
//! event data (`docs/INGEST.md` §1).
//!
//! Pure functions: no HTTP, no I/O. The handler adds `ip_override`, `user_agent` and
//! `common_cookie`. Decoding happens once per request ([`decode`]); each event is built
//! from the decoded pairs, borrowing their text ([`Decoded::events`]).
//!
//! Rules beyond the parameter tables (choices where GA4's unpublished wire format leaves room;
//! all of them are in `docs/INGEST.md` §1):
//!
//! - Repeated keys: the first value wins (within the URL and within a line). A key in a body
//!   line replaces the URL's values of that key.
//! - Precedence for one event-data key: a mapped parameter (`cu`, `dl`, `en`, ...) beats
//!   `epn.NAME`, which beats `ep.NAME` (`cu=EUR&ep.currency=USD` gives `currency: "EUR"`).
//! - Internal parameters Google lists as `x-ga-*` (`gcu`, `ecid`, `gdid`, `ur`, `pscdl`, and
//!   `tfd` as a number) keep that name; `sst.NAME` goes to `x-sst-system_properties.NAME`;
//!   the UA client hints (`uaa`, `uab`, `uafvl`, `uamb`, `uam`, `uap`, `uapv`, `uaw`) become
//!   the `client_hints` object; any other unknown parameter `k` becomes the string
//!   `x-ga-mp2-k` (as `tt`, `ir`, `richsstsse`, `tag_exp`, `are`, `frm` in sGTM dumps).
//! - An empty `en` is no event name. Prefixed keys with an empty name (`ep.`, `_`) are dropped.
//! - `_x` flags are strings, as the §1 table says (sGTM dumps show `_ee` as `true`).
//! - Debug traffic: an event with a truthy `_dbg` or `debug_mode` (`ep.`/`epn.`) gets
//!   `debug_mode: true`.
//! - `ep.ip_override`, `ep.user_agent` (and their `epn.` forms) are kept only for callers
//!   that presented the ingest key: a browser must not choose the IP or User-Agent sent
//!   downstream.
//! - Limits are checked before anything is built: at most [`MAX_LINES`] events, and at
//!   most [`MAX_SHARED_COPIES`] URL parameters × events (the URL's parameters are read by
//!   every event of the request).
//! - Items: `ca` is `item_category`; `ca2`..`ca5` are `item_category2..5` only after a first
//!   `ca` part in the same item (gtag sends one `ca` part whose value may start with a digit,
//!   `ca4K TVs`; Stape's encoder sends `ca` before `ca2`..`ca5`). Within an item the first
//!   part for a field wins; unknown two-letter keys are ignored; `k0`..`k9`/`v0`..`v9` pairs
//!   add custom fields that do not replace standard ones.

use std::borrow::Cow;

use serde_json::{Map, Value};

use crate::event::{is_truthy, Num, Obj, Shared, Val};

/// Most events (non-blank body lines) one request may carry.
pub const MAX_LINES: usize = 100;
/// Most items per event (`pr1`..`pr200`); higher `prN` are ignored.
pub const MAX_ITEMS: usize = 200;
/// Most distinct keys read from the URL and from each body line (gtag sends well under 300:
/// ~50 shared, up to 200 `prN`, event parameters); later keys are ignored.
pub const MAX_PARAMS: usize = 500;
/// Most (URL parameter, event) pairs one request may make: the URL's parameters are read by
/// each of its events, so their product bounds the work (legitimate batches stay far below:
/// 25 events × 60 parameters).
pub const MAX_SHARED_COPIES: usize = 20_000;

/// Why a `/g/collect` request carries no usable event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GtagError {
    #[error("no event in the request (a line without `en` is not an event)")]
    NoEvents,
    #[error("too many events in one request: {count} (limit {limit})")]
    TooManyEvents { count: usize, limit: usize },
    #[error(
        "too many URL parameters for {events} events: {params} (limit {limit} parameters × events)"
    )]
    TooManyShared {
        events: usize,
        params: usize,
        limit: usize,
    },
}

/// The events of one request (owned, as JSON objects: tools and tests), and how many body
/// lines were not events (no `en`).
#[derive(Debug, Clone, PartialEq)]
pub struct GtagParse {
    pub events: Vec<Map<String, Value>>,
    pub skipped_lines: usize,
}

/// Tolerant `application/x-www-form-urlencoded` decoding: `+` is a space, a bad `%` escape
/// keeps its raw text, invalid UTF-8 after decoding becomes U+FFFD, a bare key has the value
/// `""`, empty pairs (`&&`) are ignored. Order and repeated keys are kept.
pub fn decode_pairs(input: &str) -> Vec<(String, String)> {
    pairs(input)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// The inverse of [`decode_pairs`] (for tests): `decode_pairs(&encode_pairs(p)) == p`.
pub fn encode_pairs(pairs: &[(String, String)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// One decoded parameter, classified (and its value parsed where that costs) once per
/// request, however many events read it.
#[derive(Debug)]
struct Param<'q> {
    key: Cow<'q, str>,
    value: Cow<'q, str>,
    kind: Kind,
}

/// What a parameter becomes in event data.
#[derive(Debug)]
enum Kind {
    Text(&'static str),
    /// A number field (dropped when the value does not parse).
    Number(&'static str, Option<Num>),
    /// A UA client hint: its `client_hints` field.
    Hint(&'static str),
    /// `ep.NAME` (the name starts after 3 bytes).
    Ep,
    /// `epn.NAME` with its parsed number.
    Epn(Option<Num>),
    Up,
    Upn(Option<Num>),
    Sst,
    /// `prN`: the item's position.
    Item(usize),
    /// `_x` flags.
    System,
    /// Any other parameter: its `x-ga-mp2-` key.
    Unknown(String),
    /// Not event data (an empty prefixed name, an out-of-range `prN`, an empty key).
    Ignored,
}

/// A request decoded once: the URL's parameters and each body line's.
#[derive(Debug)]
pub struct Decoded<'q> {
    shared: Vec<Param<'q>>,
    lines: Vec<Vec<Param<'q>>>,
}

/// A set of keys for the small sets parsing needs (FxHash: short keys, no DoS concern at
/// [`MAX_PARAMS`] keys).
type KeySet<'k> = rustc_hash::FxHashSet<&'k str>;

/// Decodes a `/g/collect` request: `query` is the URL's query string (without `?`), `body`
/// the request body as text (may be empty). Each non-blank body line (trimmed, so `\r\n`
/// works) is one event whose keys replace the URL's; an empty or blank body is one event
/// from the URL alone.
///
/// # Errors
/// [`GtagError::TooManyEvents`] for more than [`MAX_LINES`] non-blank lines,
/// [`GtagError::TooManyShared`] past [`MAX_SHARED_COPIES`].
pub fn decode<'q>(query: &'q str, body: &'q str) -> Result<Decoded<'q>, GtagError> {
    let lines = || body.split('\n').map(str::trim).filter(|l| !l.is_empty());
    let count = lines().count();
    if count > MAX_LINES {
        return Err(GtagError::TooManyEvents {
            count,
            limit: MAX_LINES,
        });
    }
    let shared = first_values(query);
    if shared.len().saturating_mul(count.max(1)) > MAX_SHARED_COPIES {
        return Err(GtagError::TooManyShared {
            events: count,
            params: shared.len(),
            limit: MAX_SHARED_COPIES,
        });
    }
    Ok(Decoded {
        shared,
        lines: lines().map(first_values).collect(),
    })
}

impl<'q> Decoded<'q> {
    /// The events, each from its line's pairs plus the URL's (a line's key wins). A line
    /// whose merged parameters have no `en` is skipped and counted. `trusted`: the caller
    /// presented the ingest key (then `ep.ip_override`/`ep.user_agent` count).
    ///
    /// # Errors
    /// [`GtagError::NoEvents`] when no event is left.
    pub fn events<'p>(&'p self, trusted: bool) -> Result<(Vec<Obj<'p>>, usize), GtagError> {
        let mut events = Vec::with_capacity(self.lines.len().max(1));
        let mut skipped = 0;
        if self.lines.is_empty() {
            if let Some(e) = build_event(self.shared.iter(), trusted) {
                events.push(e);
            }
        } else {
            for own in &self.lines {
                match self.merged_event(own, trusted) {
                    Some(e) => events.push(e),
                    None => skipped += 1,
                }
            }
        }
        if events.is_empty() {
            return Err(GtagError::NoEvents);
        }
        Ok((events, skipped))
    }

    /// The event of one body line: its pairs plus the URL's whose keys it does not have.
    /// `None` without an `en`.
    fn merged_event<'p>(&'p self, own: &'p [Param<'q>], trusted: bool) -> Option<Obj<'p>> {
        let own_keys: KeySet<'_> = own.iter().map(|p| p.key.as_ref()).collect();
        let merged = own.iter().chain(
            self.shared
                .iter()
                .filter(|p| !own_keys.contains(p.key.as_ref())),
        );
        build_event(merged, trusted)
    }
}

/// A request's events with the URL's parameters built once: `shared` is the event data the
/// URL gives; each event is its own keys and whether it
/// reads the rest through `shared` (`EventData::with_shared`). An event whose line could
/// interact with the URL's parameters (a key of both, or an event-data key both make) is
/// built whole from the merged parameters instead, as [`Decoded::events`] builds every
/// event: either way an event reads exactly what [`Decoded::events`] gives it.
#[derive(Debug, Default)]
pub struct SplitEvents<'p> {
    pub shared: Shared<'p>,
    pub events: Vec<(Obj<'p>, bool)>,
    /// Body lines that were not events (no `en`).
    pub skipped: usize,
}

impl<'q> Decoded<'q> {
    /// [`Decoded::events`] without building the URL's parameters into every event.
    ///
    /// # Errors
    /// [`GtagError::NoEvents`] when no event is left.
    pub fn split_events<'p>(&'p self, trusted: bool) -> Result<SplitEvents<'p>, GtagError> {
        if self.lines.is_empty() {
            let (events, skipped) = self.events(trusted)?;
            return Ok(SplitEvents {
                shared: Shared::default(),
                events: events.into_iter().map(|e| (e, false)).collect(),
                skipped,
            });
        }
        let (shared, shared_named) = build_fields(self.shared.iter(), trusted);
        let shared = Shared::new(shared);
        let shared_keys: KeySet<'_> = self.shared.iter().map(|p| p.key.as_ref()).collect();
        let mut out = SplitEvents {
            shared,
            events: Vec::with_capacity(self.lines.len()),
            skipped: 0,
        };
        for own in &self.lines {
            let separate = !own.iter().any(|p| shared_keys.contains(p.key.as_ref()));
            if separate {
                let (fields, named) = build_fields(own.iter(), trusted);
                if fields.iter().all(|(k, _)| out.shared.get(k).is_none()) {
                    if named || shared_named {
                        out.events.push((fields, true));
                    } else {
                        out.skipped += 1;
                    }
                    continue;
                }
            }
            match self.merged_event(own, trusted) {
                Some(e) => out.events.push((e, false)),
                None => out.skipped += 1,
            }
        }
        if out.events.is_empty() {
            return Err(GtagError::NoEvents);
        }
        Ok(out)
    }
}

/// Parses a request into owned JSON objects (tools and tests; the handler uses [`decode`]
/// and [`Decoded::events`], which borrow). Parameters that only the ingest key may set are
/// kept, as for a trusted caller.
///
/// # Errors
/// As [`decode`] and [`Decoded::events`].
pub fn parse(query: &str, body: &str) -> Result<GtagParse, GtagError> {
    let decoded = decode(query, body)?;
    let (events, skipped_lines) = decoded.events(true)?;
    Ok(GtagParse {
        events: events
            .iter()
            .map(|o| match o.to_json() {
                Value::Object(m) => m,
                _ => Map::new(),
            })
            .collect(),
        skipped_lines,
    })
}

/// The decoded pairs of a query string, the first value of each key only, in order; at
/// most [`MAX_PARAMS`] keys.
fn first_values(input: &str) -> Vec<Param<'_>> {
    let n = input.bytes().filter(|&b| b == b'&').count() + 1;
    let mut out: Vec<Param<'_>> = Vec::with_capacity(n.min(MAX_PARAMS));
    // A body line has a handful of keys: a scan finds repeats sooner than a hash set is
    // built. The URL's dozens (up to MAX_PARAMS) get the set.
    let mut seen: Option<rustc_hash::FxHashSet<Cow<'_, str>>> = (n > SCAN_KEYS).then(|| {
        rustc_hash::FxHashSet::with_capacity_and_hasher(n.min(MAX_PARAMS), Default::default())
    });
    for (key, value) in pairs(input) {
        if out.len() == MAX_PARAMS {
            break;
        }
        let first = match seen.as_mut() {
            Some(seen) => seen.insert(key.clone()),
            None => !out.iter().any(|p| p.key == key),
        };
        if first {
            let kind = classify(&key, &value);
            out.push(Param { key, value, kind });
        }
    }
    out
}

/// Up to this many pairs, repeated keys are found by a scan.
const SCAN_KEYS: usize = 12;

/// The decoded pairs of `application/x-www-form-urlencoded` text, as [`decode_pairs`]
/// decodes them (the same rules as the `form_urlencoded` crate), borrowing every key and
/// value that needs no decoding.
fn pairs(input: &str) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> {
    let mut rest = input;
    std::iter::from_fn(move || loop {
        if rest.is_empty() {
            return None;
        }
        // SIMD scans (memchr): where the pair ends, where `=` is, and whether either side
        // needs decoding at all (most keys and values do not).
        let end = memchr::memchr(b'&', rest.as_bytes()).unwrap_or(rest.len());
        let pair = &rest[..end];
        rest = rest.get(end + 1..).unwrap_or("");
        if pair.is_empty() {
            continue; // `&&`
        }
        // Splitting at ASCII `=`/`&` keeps char boundaries.
        let (key, value) = match memchr::memchr(b'=', pair.as_bytes()) {
            Some(e) => (&pair[..e], &pair[e + 1..]),
            None => (pair, ""),
        };
        return Some((component(key), component(value)));
    })
}

/// A key or value of a pair: borrowed unless it has an escape (`%XX` or `+`).
fn component(s: &str) -> Cow<'_, str> {
    // Branch-free (vectorized) rather than memchr: most keys and values are a few bytes,
    // where a search call costs more than the scan.
    let escaped = s
        .bytes()
        .fold(false, |found, b| found | (b == b'%') | (b == b'+'));
    if escaped {
        decode_component(s)
    } else {
        Cow::Borrowed(s)
    }
}

/// `+` is a space; `%XX` is a byte; a bad escape is kept; invalid UTF-8 becomes U+FFFD.
fn decode_component(s: &str) -> Cow<'_, str> {
    let b = s.as_bytes();
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => match (
                b.get(i + 1).and_then(|&c| hex(c)),
                b.get(i + 2).and_then(|&c| hex(c)),
            ) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    match String::from_utf8(out) {
        Ok(s) => Cow::Owned(s),
        Err(e) => Cow::Owned(String::from_utf8_lossy(e.as_bytes()).into_owned()),
    }
}

/// What a parameter becomes (see the rules at the top of the module).
fn classify(key: &str, value: &str) -> Kind {
    if let Some(target) = plain_target(key) {
        return match target {
            Target::Text(name) => Kind::Text(name),
            Target::Number(name) => Kind::Number(name, Num::parse(value)),
        };
    }
    if let Some(field) = hint_field(key) {
        return Kind::Hint(field);
    }
    let named = |prefix: &str| key.strip_prefix(prefix).is_some_and(|n| !n.is_empty());
    if key.starts_with("ep.") {
        return if named("ep.") {
            Kind::Ep
        } else {
            Kind::Ignored
        };
    }
    if key.starts_with("epn.") {
        return if named("epn.") {
            Kind::Epn(Num::parse(value))
        } else {
            Kind::Ignored
        };
    }
    if key.starts_with("up.") {
        return if named("up.") {
            Kind::Up
        } else {
            Kind::Ignored
        };
    }
    if key.starts_with("upn.") {
        return if named("upn.") {
            Kind::Upn(Num::parse(value))
        } else {
            Kind::Ignored
        };
    }
    if key.starts_with("sst.") {
        return if named("sst.") {
            Kind::Sst
        } else {
            Kind::Ignored
        };
    }
    if let Some(slot) = item_slot(key) {
        return match slot {
            Some(n) => Kind::Item(n),
            None => Kind::Ignored,
        };
    }
    if key.starts_with('_') {
        return if named("_") {
            Kind::System
        } else {
            Kind::Ignored
        };
    }
    // A credential is never event data (it would reach logs and the debug page).
    if key.is_empty() || key == "api_secret" {
        return Kind::Ignored;
    }
    Kind::Unknown(format!("x-ga-mp2-{key}"))
}

/// Where a plain parameter goes.
enum Target {
    Text(&'static str),
    Number(&'static str),
}

fn plain_target(key: &str) -> Option<Target> {
    use Target::{Number as N, Text as T};
    Some(match key {
        "en" => T("event_name"),
        "v" => T("x-ga-protocol_version"),
        "tid" => T("x-ga-measurement_id"),
        "gtm" => T("x-ga-gtm_version"),
        "_p" => N("x-ga-page_id"),
        "_s" => N("x-ga-request_count"),
        "cid" => T("client_id"),
        "uid" => T("user_id"),
        "ul" => T("language"),
        "sr" => T("screen_resolution"),
        "sid" => T("ga_session_id"),
        "sct" => N("ga_session_number"),
        "seg" => T("x-ga-mp2-seg"),
        "dl" => T("page_location"),
        "dr" => T("page_referrer"),
        "dt" => T("page_title"),
        "_et" => N("engagement_time_msec"),
        "cu" => T("currency"),
        "gcs" => T("x-ga-gcs"),
        "gcd" => T("x-ga-gcd"),
        "npa" => T("x-ga-npa"),
        "dma" => T("x-ga-dma"),
        "dma_cps" => T("x-ga-dma_cps"),
        "em" => T("x-ga-em"),
        // Google's internal-parameter list (reference §1.3).
        "gcu" => T("x-ga-gcu"),
        "ecid" => T("x-ga-ecid"),
        "gdid" => T("x-ga-gdid"),
        "ur" => T("x-ga-ur"),
        "pscdl" => T("x-ga-pscdl"),
        "tfd" => N("x-ga-tfd"),
        _ => return None,
    })
}

/// `client_hints` field of a UA client-hint parameter.
fn hint_field(key: &str) -> Option<&'static str> {
    Some(match key {
        "uaa" => "architecture",
        "uab" => "bitness",
        "uafvl" => "full_version_list",
        "uamb" => "mobile",
        "uam" => "model",
        "uap" => "platform",
        "uapv" => "platform_version",
        "uaw" => "wow64",
        _ => return None,
    })
}

/// The item position of a `prN` key: `Some(Some(n))` for N = 1..=200 (decimal, no leading
/// zero), `Some(None)` for any other `pr<digits>` key (ignored), `None` for non-item keys.
fn item_slot(key: &str) -> Option<Option<usize>> {
    let digits = key.strip_prefix("pr")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if digits.starts_with('0') || digits.len() > 3 {
        return Some(None);
    }
    Some(digits.parse::<usize>().ok().filter(|n| *n <= MAX_ITEMS))
}

/// Keys only a caller with the ingest key may set through event parameters.
fn reserved(name: &str) -> bool {
    matches!(name, "ip_override" | "user_agent")
}

/// One event's data from its merged parameters (each key once). `None` without an `en`.
fn build_event<'p, 'q: 'p>(
    params: impl Iterator<Item = &'p Param<'q>>,
    trusted: bool,
) -> Option<Obj<'p>> {
    let (fields, has_name) = build_fields(params, trusted);
    has_name.then_some(fields)
}

/// The event data of `params` (each key once), and whether they name an event (a non-blank
/// `en`).
///
/// Entries are collected weakest first (`ep.`, then `epn.`, then mapped parameters, then
/// the objects built here, then `debug_mode`) and the event keeps the last of each key.
fn build_fields<'p, 'q: 'p>(
    params: impl Iterator<Item = &'p Param<'q>>,
    trusted: bool,
) -> (Obj<'p>, bool) {
    let mut ep: Vec<(&'p str, &'p str)> = Vec::new();
    let mut epn: Vec<(&'p str, Num)> = Vec::new();
    let mut plain: Vec<(Cow<'p, str>, Val<'p>)> = Vec::with_capacity(48);
    let mut user_props = Obj::new();
    let mut user_props_num: Vec<(&'p str, Num)> = Vec::new();
    let mut system = Obj::new();
    let mut sst = Obj::new();
    let mut hints = Obj::new();
    let mut items: Vec<(usize, &'p str)> = Vec::new();
    let mut has_name = false;

    for p in params {
        let (key, value) = (p.key.as_ref(), p.value.as_ref());
        match &p.kind {
            Kind::Text(name) => {
                if *name == "event_name" {
                    has_name = !value.trim().is_empty();
                }
                plain.push((Cow::Borrowed(name), Val::str(value)));
            }
            Kind::Number(name, n) => {
                if let Some(n) = n {
                    plain.push((Cow::Borrowed(name), Val::Num(*n)));
                }
            }
            Kind::Hint(field) => hints.push(*field, hint_value(field, value)),
            Kind::Ep => {
                let name = &key[3..];
                if trusted || !reserved(name) {
                    ep.push((name, value));
                }
            }
            Kind::Epn(n) => {
                let name = &key[4..];
                if let (true, Some(n)) = (trusted || !reserved(name), n) {
                    epn.push((name, *n));
                }
            }
            Kind::Up => user_props.push(&key[3..], Val::str(value)),
            Kind::Upn(n) => {
                if let Some(n) = n {
                    user_props_num.push((&key[4..], *n));
                }
            }
            Kind::Sst => sst.push(&key[4..], Val::str(value)),
            Kind::Item(n) => items.push((*n, value)),
            Kind::System => system.push(&key[1..], Val::str(value)),
            Kind::Unknown(k) => plain.push((Cow::Borrowed(k.as_str()), Val::str(value))),
            Kind::Ignored => {}
        }
    }

    let mut out: Vec<(Cow<'p, str>, Val<'p>)> =
        Vec::with_capacity(ep.len() + epn.len() + plain.len() + 6);
    out.extend(ep.into_iter().map(|(k, v)| (Cow::Borrowed(k), Val::str(v))));
    out.extend(
        epn.into_iter()
            .map(|(k, n)| (Cow::Borrowed(k), Val::Num(n))),
    );
    out.extend(plain);
    items.sort_unstable_by_key(|(n, _)| *n);
    let items: Vec<Val<'p>> = items
        .into_iter()
        .filter_map(|(_, v)| parse_item(v).map(Val::Obj))
        .collect();
    if !items.is_empty() {
        out.push((Cow::Borrowed("items"), Val::Arr(items)));
    }
    // `upn.NAME` beats `up.NAME`.
    for (name, n) in user_props_num {
        user_props.insert(name, Val::Num(n));
    }
    let debug = system.get("dbg").is_some_and(is_truthy);
    for (key, obj) in [
        ("x-ga-mp2-user_properties", user_props),
        ("x-ga-system_properties", system),
        ("x-sst-system_properties", sst),
        ("client_hints", hints),
    ] {
        if !obj.is_empty() {
            out.push((Cow::Borrowed(key), Val::Obj(obj)));
        }
    }
    let debug_param = out
        .iter()
        .rev()
        .find(|(k, _)| k == "debug_mode")
        .is_some_and(|(_, v)| is_truthy(v));
    if debug || debug_param {
        out.push((Cow::Borrowed("debug_mode"), Val::Bool(true)));
    }
    (Obj(out), has_name)
}

/// A client-hint value: `mobile`/`wow64` as booleans, `full_version_list` as
/// `[{brand, version}]` (each part percent-decoded once more: gtag encodes it twice).
fn hint_value<'p>(field: &str, value: &'p str) -> Val<'p> {
    match field {
        "mobile" | "wow64" => Val::Bool(value.trim() == "1"),
        "full_version_list" => Val::Arr(
            value
                .split('|')
                .filter(|e| !e.is_empty())
                .map(|entry| {
                    let (brand, version) = entry.split_once(';').unwrap_or((entry, ""));
                    let mut m = Obj::with_capacity(2);
                    m.push("brand", Val::Str(percent_decode_lossy(brand)));
                    m.push("version", Val::Str(percent_decode_lossy(version)));
                    Val::Obj(m)
                })
                .collect(),
        ),
        _ => Val::str(value),
    }
}

/// Percent-decoding only (no `+`): a bad escape keeps its text, bad UTF-8 becomes U+FFFD.
fn percent_decode_lossy(text: &str) -> Cow<'_, str> {
    let bytes = text.as_bytes();
    if !bytes.contains(&b'%') {
        return Cow::Borrowed(text);
    }
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b);
        i += 1;
    }
    Cow::Owned(
        String::from_utf8(out)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
    )
}

/// Item field of a two-letter item key.
fn item_field(key: &str) -> Option<(&'static str, bool)> {
    // (field, numeric)
    Some(match key {
        "id" => ("item_id", false),
        "nm" => ("item_name", false),
        "br" => ("item_brand", false),
        "ca" => ("item_category", false),
        "c2" => ("item_category2", false),
        "c3" => ("item_category3", false),
        "c4" => ("item_category4", false),
        "c5" => ("item_category5", false),
        "va" => ("item_variant", false),
        "pr" => ("price", true),
        "qt" => ("quantity", true),
        "cp" => ("coupon", false),
        "ds" => ("discount", true),
        "af" => ("affiliation", false),
        "lp" => ("index", true),
        "li" => ("item_list_id", false),
        "ln" => ("item_list_name", false),
        "lo" => ("location_id", false),
        "cn" => ("creative_name", false),
        "cs" => ("creative_slot", false),
        "pi" => ("promotion_id", false),
        "pn" => ("promotion_name", false),
        _ => return None,
    })
}

/// One `prN` value (already URL-decoded) → item object; `None` without `id` and `nm`.
fn parse_item(value: &str) -> Option<Obj<'_>> {
    let mut item = Obj::with_capacity(8);
    let mut custom_keys: [Option<&str>; 10] = [None; 10];
    let mut custom_values: [Option<&str>; 10] = [None; 10];
    let mut seen_ca = false;
    for part in value.split('~') {
        let Some((key, rest)) = split_at_char(part, 2) else {
            continue;
        };
        let (field, rest, numeric) = match key {
            "ca" => {
                let later_category = rest
                    .chars()
                    .next()
                    .filter(|c| seen_ca && matches!(c, '2'..='5'));
                seen_ca = true;
                match later_category {
                    Some(c) => (
                        match c {
                            '2' => "item_category2",
                            '3' => "item_category3",
                            '4' => "item_category4",
                            _ => "item_category5",
                        },
                        &rest[1..],
                        false,
                    ),
                    None => ("item_category", rest, false),
                }
            }
            _ => {
                let mut chars = key.chars();
                let (kind, digit) = (chars.next(), chars.next().and_then(|c| c.to_digit(10)));
                match (kind, digit) {
                    (Some('k'), Some(d)) => {
                        custom_keys[d as usize].get_or_insert(rest);
                        continue;
                    }
                    (Some('v'), Some(d)) => {
                        custom_values[d as usize].get_or_insert(rest);
                        continue;
                    }
                    _ => {}
                }
                match item_field(key) {
                    Some((field, numeric)) => (field, rest, numeric),
                    None => continue,
                }
            }
        };
        if item.contains_key(field) {
            continue;
        }
        if numeric {
            if let Some(n) = Num::parse(rest) {
                item.push(field, Val::Num(n));
            }
        } else {
            item.push(field, Val::str(rest));
        }
    }
    let named = |f: &str| {
        item.get(f)
            .and_then(Val::as_str)
            .is_some_and(|s| !s.is_empty())
    };
    if !named("item_id") && !named("item_name") {
        return None;
    }
    for (k, v) in custom_keys.iter().zip(custom_values.iter()) {
        if let (Some(k), Some(v)) = (k, v) {
            if !k.is_empty() && !item.contains_key(k) {
                item.push(*k, Val::str(v));
            }
        }
    }
    Some(item)
}

/// Splits after the first `n` characters; `None` when the text is shorter.
fn split_at_char(text: &str, n: usize) -> Option<(&str, &str)> {
    let at = text
        .char_indices()
        .map(|(i, _)| i)
        .chain(std::iter::once(text.len()))
        .nth(n)?;
    Some(text.split_at(at))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            other => panic!("not an object: {other}"),
        }
    }

    /// `base` with `extra`'s keys added (or replaced).
    fn with(base: &Value, extra: Value) -> Value {
        let mut m = obj(base.clone());
        m.extend(obj(extra));
        Value::Object(m)
    }

    fn events(query: &str, body: &str) -> Vec<Value> {
        parse(query, body)
            .unwrap()
            .events
            .into_iter()
            .map(Value::Object)
            .collect()
    }

    fn one(query: &str, body: &str) -> Value {
        let mut all = events(query, body);
        assert_eq!(all.len(), 1, "{all:?}");
        all.remove(0)
    }

    /// Example A of the reference: a page_view with everything in the URL, empty body.
    const PAGE_VIEW_URL: &str = "v=2&tid=G-XXXXXXX&gtm=45je55e1za200&_p=1747422523211&gcs=G111\
        &gcd=13r3r3r3r5l1&npa=0&dma=0&cid=1141082648.1693483972&ul=en-us&sr=1512x982\
        &uaa=arm&uab=64&uafvl=Chromium%3B136.0.7103.93%7CGoogle%2520Chrome%3B136.0.7103.93\
        &uamb=0&uam=&uap=macOS&uapv=15.2.0&uaw=0&are=1&frm=0&pscdl=noapi\
        &sst.etld=google.com&sst.tft=1747422523211&_s=1&sid=1747422523&sct=3&seg=0\
        &dl=https%3A%2F%2Fexample.com%2F%3Ftest%3D1&dr=&dt=Example%20Domain\
        &en=page_view&_ss=1&tfd=5784&richsstsse";

    #[test]
    fn page_view_all_in_the_url() {
        let got = parse(PAGE_VIEW_URL, "").unwrap();
        assert_eq!(got.skipped_lines, 0);
        assert_eq!(
            Value::Object(got.events.into_iter().next().unwrap()),
            json!({
                "event_name": "page_view",
                "x-ga-protocol_version": "2",
                "x-ga-measurement_id": "G-XXXXXXX",
                "x-ga-gtm_version": "45je55e1za200",
                "x-ga-page_id": 1_747_422_523_211_i64,
                "x-ga-gcs": "G111",
                "x-ga-gcd": "13r3r3r3r5l1",
                "x-ga-npa": "0",
                "x-ga-dma": "0",
                "client_id": "1141082648.1693483972",
                "language": "en-us",
                "screen_resolution": "1512x982",
                "client_hints": {
                    "architecture": "arm",
                    "bitness": "64",
                    "full_version_list": [
                        {"brand": "Chromium", "version": "136.0.7103.93"},
                        {"brand": "Google Chrome", "version": "136.0.7103.93"}
                    ],
                    "mobile": false,
                    "model": "",
                    "platform": "macOS",
                    "platform_version": "15.2.0",
                    "wow64": false
                },
                "x-ga-mp2-are": "1",
                "x-ga-mp2-frm": "0",
                "x-ga-pscdl": "noapi",
                "x-sst-system_properties": {"etld": "google.com", "tft": "1747422523211"},
                "x-ga-request_count": 1,
                "ga_session_id": "1747422523",
                "ga_session_number": 3,
                "x-ga-mp2-seg": "0",
                "page_location": "https://example.com/?test=1",
                "page_referrer": "",
                "page_title": "Example Domain",
                "x-ga-system_properties": {"ss": "1"},
                "x-ga-tfd": 5784,
                "x-ga-mp2-richsstsse": ""
            })
        );
    }

    const CART_URL: &str = "v=2&tid=G-XXXXXXX&gtm=45je55e1za200&_p=1747422523211\
        &cid=1141082648.1693483972&ul=en-us&sr=1512x982&_s=4&sid=1747422523&sct=3&seg=1\
        &dl=https%3A%2F%2Fshop.example%2Fcart&dt=Cart";

    fn cart_shared() -> Value {
        json!({
            "x-ga-protocol_version": "2",
            "x-ga-measurement_id": "G-XXXXXXX",
            "x-ga-gtm_version": "45je55e1za200",
            "x-ga-page_id": 1_747_422_523_211_i64,
            "client_id": "1141082648.1693483972",
            "language": "en-us",
            "screen_resolution": "1512x982",
            "x-ga-request_count": 4,
            "ga_session_id": "1747422523",
            "ga_session_number": 3,
            "x-ga-mp2-seg": "1",
            "page_location": "https://shop.example/cart",
            "page_title": "Cart"
        })
    }

    #[test]
    fn three_event_batch_with_crlf_and_a_blank_line() {
        let body = "en=view_cart&_et=1200&cu=EUR&epn.value=59.9\
            &pr1=idSKU1~nmBlue%20Tee~pr29.95~qt2~caApparel\r\n\
            \r\n\
            en=scroll&_et=3400&epn.percent_scrolled=90\r\n\
            en=user_engagement&_et=8012\r\n";
        let got = parse(CART_URL, body).unwrap();
        assert_eq!(got.skipped_lines, 0);
        let shared = cart_shared();
        assert_eq!(
            got.events
                .into_iter()
                .map(Value::Object)
                .collect::<Vec<_>>(),
            vec![
                with(
                    &shared,
                    json!({
                        "event_name": "view_cart",
                        "engagement_time_msec": 1200,
                        "currency": "EUR",
                        "value": 59.9,
                        "items": [{"item_id": "SKU1", "item_name": "Blue Tee", "price": 29.95,
                                   "quantity": 2, "item_category": "Apparel"}]
                    })
                ),
                with(
                    &shared,
                    json!({"event_name": "scroll", "engagement_time_msec": 3400,
                           "percent_scrolled": 90})
                ),
                with(
                    &shared,
                    json!({"event_name": "user_engagement", "engagement_time_msec": 8012})
                ),
            ]
        );
    }

    #[test]
    fn get_request_from_an_image_transport() {
        assert_eq!(
            one(
                "v=2&tid=G-XXXXXXX&cid=123.456&en=page_view&dl=https%3A%2F%2Fexample.com%2F",
                ""
            ),
            json!({
                "x-ga-protocol_version": "2",
                "x-ga-measurement_id": "G-XXXXXXX",
                "client_id": "123.456",
                "event_name": "page_view",
                "page_location": "https://example.com/"
            })
        );
    }

    #[test]
    fn purchase_with_items_custom_fields_and_both_category_forms() {
        let query = "v=2&tid=G-XXXXXXX&cid=123.456&uid=CRM-77&sid=1700000000&sct=2\
            &dl=https%3A%2F%2Fshop.example%2Fthanks&gcs=G111&gcd=13r3r3r3r5l1";
        let body = "en=purchase&cu=EUR&ep.transaction_id=T-1001&ep.event_id=ev-7\
            &epn.value=72.9&epn.tax=11.64&ep.coupon=SUMMER&_c=1&_et=15\
            &pr1=idSKU-1~nmRunning%20Shoe~brAcme~caShoes~c2Running~va42~pr49.95~qt1\
            ~k0color~v0red~k1fit~v1wide\
            &pr2=idSKU-2~nmSock%20Pack~caApparel~ca2Socks~pr11.475~qt2~ds1.5~lp2";
        assert_eq!(
            one(query, body),
            json!({
                "x-ga-protocol_version": "2",
                "x-ga-measurement_id": "G-XXXXXXX",
                "client_id": "123.456",
                "user_id": "CRM-77",
                "ga_session_id": "1700000000",
                "ga_session_number": 2,
                "page_location": "https://shop.example/thanks",
                "x-ga-gcs": "G111",
                "x-ga-gcd": "13r3r3r3r5l1",
                "event_name": "purchase",
                "currency": "EUR",
                "transaction_id": "T-1001",
                "event_id": "ev-7",
                "value": 72.9,
                "tax": 11.64,
                "coupon": "SUMMER",
                "engagement_time_msec": 15,
                "x-ga-system_properties": {"c": "1"},
                "items": [
                    {"item_id": "SKU-1", "item_name": "Running Shoe", "item_brand": "Acme",
                     "item_category": "Shoes", "item_category2": "Running",
                     "item_variant": "42", "price": 49.95, "quantity": 1,
                     "color": "red", "fit": "wide"},
                    {"item_id": "SKU-2", "item_name": "Sock Pack", "item_category": "Apparel",
                     "item_category2": "Socks", "price": 11.475, "quantity": 2,
                     "discount": 1.5, "index": 2}
                ]
            })
        );
    }

    #[test]
    fn item_parts_edge_cases() {
        let ev = one(
            "en=view_item_list",
            // pr1: gtag's one `ca` part may start with a digit; c3..c5, list and promotion
            // fields; unknown keys, a lone k2, an empty part and a 1-char part are ignored;
            // the first part of a field wins; custom fields never replace standard ones.
            // pr2: numbers that do not parse are dropped. pr3: neither id nor nm: dropped.
            // pr4: a `ca2` before any `ca` part is item_category "2..."; a later `ca3` is
            // item_category3; a k/v pair with an empty name is ignored.
            "pr1=id1~ca4K%20TVs~c3OLED~c4Big~c5Wall~cpC~afStore~liL1~lnList~loLoc\
             ~cnCreative~csSlot~piP1~pnPromo~zzX~k2lonely~~x~idIGNORED~k0item_id~v0custom\
             &pr2=nmOnly%20Name~prfree~qtnone\
             &pr3=br~caNo~pr9\
             &pr4=nmShirt~ca2Shirts~caApparel~ca3Tops~k9n~v9last~k1~v1empty-key",
        );
        assert_eq!(
            ev,
            json!({
                "event_name": "view_item_list",
                "items": [
                    {"item_id": "1", "item_category": "4K TVs", "item_category3": "OLED",
                     "item_category4": "Big", "item_category5": "Wall", "coupon": "C",
                     "affiliation": "Store", "item_list_id": "L1", "item_list_name": "List",
                     "location_id": "Loc", "creative_name": "Creative", "creative_slot": "Slot",
                     "promotion_id": "P1", "promotion_name": "Promo"},
                    {"item_name": "Only Name"},
                    {"item_name": "Shirt", "item_category": "2Shirts", "item_category3": "Tops",
                     "n": "last"}
                ]
            })
        );
    }

    #[test]
    fn numbers_that_do_not_parse_are_dropped() {
        assert_eq!(
            one(
                "en=purchase&_p=&_s=x&sct=3.5&_et=1e3",
                "epn.value=abc&epn.tax=NaN&epn.shipping=inf&epn.big=18446744073709551615\
                 &epn.neg=-7&epn.frac=19.99&epn.int=42&epn.pad=%2012%20&ep.plain=42"
            ),
            json!({
                "event_name": "purchase",
                "ga_session_number": 3.5,
                "engagement_time_msec": 1000.0,
                "big": 18_446_744_073_709_551_615_u64,
                "neg": -7,
                "frac": 19.99,
                "int": 42,
                "pad": 12,
                "plain": "42"
            })
        );
    }

    #[test]
    fn two_hundred_items_and_pr201_ignored() {
        let mut query = String::from("en=view_item_list");
        for n in (1..=201).rev() {
            query.push_str(&format!("&pr{n}=idSKU{n}~pr{n}"));
        }
        query.push_str("&pr0=idZERO&pr007=idPADDED&pr1000=idBIG");
        let want: Vec<Value> = (1..=200)
            .map(|n| json!({"item_id": format!("SKU{n}"), "price": n}))
            .collect();
        assert_eq!(
            one(&query, ""),
            json!({"event_name": "view_item_list", "items": want})
        );
    }

    #[test]
    fn item_gaps_are_compacted_in_index_order() {
        assert_eq!(
            one("en=view_cart&pr10=idC&pr3=idB&pr1=idA&pr7=nm", "")["items"],
            json!([{"item_id": "A"}, {"item_id": "B"}, {"item_id": "C"}])
        );
    }

    #[test]
    fn bad_escapes_plus_and_bare_keys() {
        assert_eq!(
            one(
                "en=page_view&dt=100%zz+off%&ep.euro=%E2%82%AC&ep.raw=%FF&ep.sum=1%2B1\
                 &dr&richsstsse&ep.trail=%&ep.half=%4",
                ""
            ),
            json!({
                "event_name": "page_view",
                "page_title": "100%zz off%",
                "euro": "\u{20ac}",
                "raw": "\u{fffd}",
                "sum": "1+1",
                "page_referrer": "",
                "x-ga-mp2-richsstsse": "",
                "trail": "%",
                "half": "%4"
            })
        );
    }

    proptest::proptest! {
        #[test]
        fn decoding_matches_the_form_urlencoded_crate(input in "[a-z=&%+.~\\-0-9A-F\u{e9}\u{1f600}]{0,80}") {
            let ours = decode_pairs(&input);
            let reference: Vec<(String, String)> =
                form_urlencoded::parse(input.as_bytes()).into_owned().collect();
            proptest::prop_assert_eq!(ours, reference);
        }
    }

    /// Pairs from a vocabulary where URL and line parameters meet in every way the merge
    /// rules know: the same key in both, different keys for one event-data key (`dt` and
    /// `ep.page_title`), objects both add to (`up.`, `_x`, `sst.`, client hints, items),
    /// debug flags, numbers that do not parse, blank names, the reserved `ep.` names.
    fn vocabulary_pairs(max: usize) -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let key = prop::sample::select(vec![
            "en",
            "dt",
            "dl",
            "_et",
            "cu",
            "ep.page_title",
            "ep.currency",
            "epn.currency",
            "ep.x",
            "epn.x",
            "epn.value",
            "up.tier",
            "upn.tier",
            "_dbg",
            "_p",
            "_s",
            "_ee",
            "sst.a",
            "uafvl",
            "uam",
            "uamb",
            "pr1",
            "pr2",
            "cid",
            "ep.debug_mode",
            "epn.debug_mode",
            "zz",
            "seg",
            "ep.x-ga-mp2-seg",
            "ep.ip_override",
            "ep.",
            "pr0",
        ]);
        let value = prop::sample::select(vec!["", "1", "0", "abc", "12.5", "idA~nmB", "a%7Cb%3B1"]);
        proptest::collection::vec((key, value), 0..max).prop_map(|pairs| {
            pairs
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("&")
        })
    }

    proptest::proptest! {
        // Rare meetings (an item in the URL and another in a line) need more than the
        // default 256 cases; 4,000 take well under a second.
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4000))]
        #[test]
        fn split_events_read_what_merged_events_hold(
            query in vocabulary_pairs(18),
            lines in proptest::collection::vec(vocabulary_pairs(5), 0..4),
            trusted in proptest::prelude::any::<bool>(),
        ) {
            use crate::event::EventData;
            let body = lines.join("\n");
            let decoded = decode(&query, &body).unwrap();
            let merged = decoded.events(trusted);
            let split = decoded.split_events(trusted);
            match (merged, split) {
                (Err(a), Err(b)) => proptest::prop_assert_eq!(a, b),
                (Ok((events, skipped)), Ok(split)) => {
                    proptest::prop_assert_eq!(skipped, split.skipped);
                    proptest::prop_assert_eq!(events.len(), split.events.len());
                    for (want, (own, reads_shared)) in events.iter().zip(&split.events) {
                        let got = if *reads_shared {
                            EventData::with_shared(own.clone(), &split.shared)
                        } else {
                            EventData::new(own.clone())
                        };
                        let want = EventData::new(want.clone());
                        proptest::prop_assert_eq!(got.to_json(), want.to_json());
                        proptest::prop_assert_eq!(got.is_debug(), want.is_debug());
                        proptest::prop_assert_eq!(got.event_name(), want.event_name());
                    }
                }
                (a, b) => proptest::prop_assert!(false, "merged {a:?} vs split {b:?}"),
            }
        }
    }

    proptest::proptest! {
        /// Scan (short input) or hash set (long input): the first value of each key, in
        /// order.
        #[test]
        fn first_values_keep_each_keys_first_value(
            pairs in proptest::collection::vec(("[a-e]{1,2}", "[0-9]{0,2}"), 0..40),
        ) {
            let input = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&");
            let mut want: Vec<(String, String)> = Vec::new();
            for (k, v) in &pairs {
                if !want.iter().any(|(w, _)| w == k) {
                    want.push((k.clone(), v.clone()));
                }
            }
            let got: Vec<(String, String)> = first_values(&input)
                .into_iter()
                .map(|p| (p.key.into_owned(), p.value.into_owned()))
                .collect();
            proptest::prop_assert_eq!(got, want);
        }
    }

    /// The realistic batch (shared URL, distinct line keys) reads the URL through.
    #[test]
    fn a_gtag_batch_reads_the_url_through() {
        let decoded = decode(
            "v=2&tid=G-1&cid=1.2&dl=https%3A%2F%2Fx%2F&uafvl=A%3B1%7CB%3B2&_p=5",
            "en=page_view&_et=1\nen=purchase&cu=EUR&pr1=idA~nmB\nen=x&_p=6",
        )
        .unwrap();
        let split = decoded.split_events(false).unwrap();
        let reads: Vec<bool> = split.events.iter().map(|(_, r)| *r).collect();
        // The third line repeats `_p`: it is built whole.
        assert_eq!(reads, [true, true, false]);
        assert_eq!(
            split.shared.get("page_location").and_then(Val::as_str),
            Some("https://x/")
        );
        assert_eq!(split.events[0].0.len(), 2, "{:?}", split.events[0].0);
    }

    #[test]
    fn decode_pairs_is_tolerant_and_keeps_order() {
        let got = decode_pairs("b=2&&a=1&a=3&bare&c=%zz&d=x+y%20z&=e&f=%&g=%C3%A9%C3");
        let want: Vec<(String, String)> = [
            ("b", "2"),
            ("a", "1"),
            ("a", "3"),
            ("bare", ""),
            ("c", "%zz"),
            ("d", "x y z"),
            ("", "e"),
            ("f", "%"),
            ("g", "\u{e9}\u{fffd}"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        assert_eq!(got, want);
        assert_eq!(decode_pairs(""), vec![]);
        assert_eq!(decode_pairs("&&&"), vec![]);
    }

    #[test]
    fn encode_pairs_round_trips() {
        let pairs: Vec<(String, String)> = [
            ("en", "page_view"),
            ("dt", "a&b=c d+e%f~g"),
            ("", ""),
            ("ep.\u{e9}t\u{e9}", "\u{1f600}"),
            ("k", ""),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        let encoded = encode_pairs(&pairs);
        assert_eq!(
            encoded,
            "en=page_view&dt=a%26b%3Dc+d%2Be%25f%7Eg&=&ep.%C3%A9t%C3%A9=%F0%9F%98%80&k="
        );
        assert_eq!(decode_pairs(&encoded), pairs);
    }

    #[test]
    fn lines_without_en_are_skipped_and_counted() {
        let got = parse(
            "v=2&tid=G-1&cid=1.2",
            "en=first\n_et=10\nen=\n\nen=second&cid=9.9",
        )
        .unwrap();
        assert_eq!(got.skipped_lines, 2);
        assert_eq!(
            got.events
                .into_iter()
                .map(Value::Object)
                .collect::<Vec<_>>(),
            vec![
                json!({"x-ga-protocol_version": "2", "x-ga-measurement_id": "G-1",
                       "client_id": "1.2", "event_name": "first"}),
                json!({"x-ga-protocol_version": "2", "x-ga-measurement_id": "G-1",
                       "client_id": "9.9", "event_name": "second"}),
            ]
        );
    }

    #[test]
    fn a_line_takes_the_url_en_when_it_has_none() {
        // The event name is decided per event after merging.
        assert_eq!(
            events("en=page_view&cid=1.2", "_et=5\nen=scroll"),
            vec![
                json!({"event_name": "page_view", "client_id": "1.2",
                       "engagement_time_msec": 5}),
                json!({"event_name": "scroll", "client_id": "1.2"}),
            ]
        );
    }

    #[test]
    fn line_keys_replace_url_keys_and_first_value_wins() {
        assert_eq!(
            events(
                "en=page_view&en=ignored&dt=URL&ep.a=url&ep.b=url&pr1=idA&pr2=idB",
                "en=one&dt=Line&ep.a=line&pr2=idC&dt=second\nen=two&pr1=nmOnly"
            ),
            vec![
                json!({"event_name": "one", "page_title": "Line", "a": "line", "b": "url",
                       "items": [{"item_id": "A"}, {"item_id": "C"}]}),
                json!({"event_name": "two", "page_title": "URL", "a": "url", "b": "url",
                       "items": [{"item_name": "Only"}, {"item_id": "B"}]}),
            ]
        );
    }

    #[test]
    fn mapped_parameters_beat_epn_which_beats_ep() {
        assert_eq!(
            one(
                "en=purchase&cu=EUR&ep.currency=USD&ep.event_name=x\
                 &ep.value=12&epn.value=12.5&ep.tax=low&epn.tax=oops&ep.=e&epn.=1",
                ""
            ),
            json!({"event_name": "purchase", "currency": "EUR", "value": 12.5, "tax": "low"})
        );
    }

    #[test]
    fn body_only_events_without_url_en() {
        assert_eq!(
            events("", "en=a&ep.k=1\nen=b\n"),
            vec![
                json!({"event_name": "a", "k": "1"}),
                json!({"event_name": "b"}),
            ]
        );
    }

    #[test]
    fn keys_past_max_params_are_ignored() {
        let mut query = String::from("en=a");
        for n in 1..MAX_PARAMS {
            query.push_str(&format!("&ep.p{n}=1&ep.p{n}=dup"));
        }
        query.push_str("&ep.late=1&dt=late");
        let ev = one(&query, "");
        assert_eq!(ev.as_object().map(Map::len), Some(MAX_PARAMS));
        assert_eq!((ev.get("p499"), ev.get("late")), (Some(&json!("1")), None));
        // The cap is per query string: a line's own keys are read in full again.
        let ev = one(&query, "en=b&ep.late=2");
        assert_eq!(
            (ev.get("p499"), ev.get("late")),
            (Some(&json!("1")), Some(&json!("2")))
        );
    }

    #[test]
    fn too_many_lines() {
        let body = "en=e\n".repeat(101);
        assert_eq!(
            parse("v=2", &body),
            Err(GtagError::TooManyEvents {
                count: 101,
                limit: 100
            })
        );
        // Blank lines do not count; exactly 100 events pass.
        let body = "en=e\r\n\r\n".repeat(100);
        assert_eq!(parse("v=2", &body).map(|p| p.events.len()), Ok(100));
    }

    #[test]
    fn no_event_at_all() {
        for (query, body) in [
            ("", ""),
            ("", "\r\n\n  \n"),
            ("v=2&tid=G-1&cid=1.2", ""),
            ("en=", ""),
            ("en=+", ""),
            ("v=2", "_et=1\nfoo"),
        ] {
            assert_eq!(
                parse(query, body),
                Err(GtagError::NoEvents),
                "{query:?} {body:?}"
            );
        }
        assert_eq!(
            GtagError::NoEvents.to_string(),
            "no event in the request (a line without `en` is not an event)"
        );
    }

    #[test]
    fn user_properties() {
        assert_eq!(
            one(
                "en=login&up.tier=gold&upn.age=25&upn.ltv=10.5&upn.bad=x&up.age=old&up.=x",
                ""
            ),
            json!({
                "event_name": "login",
                "x-ga-mp2-user_properties": {"tier": "gold", "age": 25, "ltv": 10.5}
            })
        );
    }

    #[test]
    fn system_properties_and_debug_mode() {
        assert_eq!(
            one(
                "en=page_view&_dbg=1&_fv=2&_nsi=1&_ee=1&_uip=%3A%3A&_gdid=dMWZhNz&_=x",
                ""
            ),
            json!({
                "event_name": "page_view",
                "debug_mode": true,
                "x-ga-system_properties": {"dbg": "1", "fv": "2", "nsi": "1", "ee": "1",
                                           "uip": "::", "gdid": "dMWZhNz"}
            })
        );
        assert_eq!(
            one("en=a&ep.debug_mode=true", ""),
            json!({"event_name": "a", "debug_mode": true})
        );
        assert_eq!(
            one("en=a&epn.debug_mode=1", ""),
            json!({"event_name": "a", "debug_mode": true})
        );
        assert_eq!(
            one("en=a&ep.debug_mode=false&_dbg=0", ""),
            json!({"event_name": "a", "debug_mode": "false",
                   "x-ga-system_properties": {"dbg": "0"}})
        );
    }

    #[test]
    fn consent_and_enhanced_conversion_strings_are_kept() {
        assert_eq!(
            one(
                "en=sign_up&gcs=G1--&gcd=13p3t3p2p5&npa=1&dma=1&dma_cps=syphamo&gcu=1\
                 &em=tv.1~em.BI-OMq6JiBzU0PMlTnMSc3kiYbq8Gp00VKYUN-xHfqA&ec_mode=a",
                ""
            ),
            json!({
                "event_name": "sign_up",
                "x-ga-gcs": "G1--",
                "x-ga-gcd": "13p3t3p2p5",
                "x-ga-npa": "1",
                "x-ga-dma": "1",
                "x-ga-dma_cps": "syphamo",
                "x-ga-gcu": "1",
                "x-ga-em": "tv.1~em.BI-OMq6JiBzU0PMlTnMSc3kiYbq8Gp00VKYUN-xHfqA",
                "x-ga-mp2-ec_mode": "a"
            })
        );
    }
}
