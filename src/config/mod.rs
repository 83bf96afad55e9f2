//! Configuration: one YAML file, read once at start-up, validated, passed explicitly.
//!
//! Loading order: the file (YAML, via the `config` crate), then `TAGBRIDGE__SECTION__KEY`
//! environment overrides, then `${VAR}` expansion in string values, then typed
//! deserialization (unknown keys are errors, so typos cannot pass silently), then
//! [`Config::validate`]. Every error names the key path (`tags[0].advertiser_id: ...`).

mod expand;
mod overrides;

use std::{collections::HashSet, fmt, net::SocketAddr, path::PathBuf};

use serde::{Deserialize, Serialize};

use crate::tags::TagConfig;

pub use crate::support::{ConfigError, Secret};

/// Prefix of environment overrides: `TAGBRIDGE__DISPATCH__BATCH_MAX_EVENTS=500`.
pub const ENV_PREFIX: &str = "TAGBRIDGE";

/// The whole configuration tree.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub privacy: PrivacyConfig,
    pub queue: QueueConfig,
    pub dispatch: DispatchConfig,
    pub debug: DebugConfig,
    pub logging: LoggingConfig,
    pub tags: Vec<TagConfig>,
}

/// `server:` — the HTTP listener and ingest limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on (default `0.0.0.0:8080`).
    #[serde(with = "listen_addr")]
    pub listen: SocketAddr,
    /// Largest accepted request body in bytes (default 65536); larger bodies get 413.
    pub max_body_bytes: usize,
    /// Time allowed to receive a request body (default 5000 ms); slower clients get 408.
    pub request_timeout_ms: u64,
    /// CORS allowlist of origins (`https://shop.example`); empty = same-site only.
    pub allowed_origins: Vec<String>,
    /// Peers (CIDRs or addresses) allowed to set `X-Forwarded-For`.
    #[serde(with = "cidr_list")]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Header a trusted proxy uses for the client address (`CF-Connecting-IP`, ...).
    pub client_ip_header: Option<String>,
    /// Ingest paths, configurable so sites can avoid paths ad blockers match.
    pub paths: PathsConfig,
    /// Optional key that authenticates server-to-server callers (`X-Tagbridge-Key` header).
    pub ingest_key: Secret,
    /// Address of the admin listener: `/metrics` and `/debug` (default `127.0.0.1:9090`).
    /// Never put it behind the public load balancer.
    #[serde(with = "listen_addr")]
    pub admin_listen: SocketAddr,
    /// Open connections beyond this are closed at once (default 10000).
    pub max_connections: usize,
    /// Per-client request rate limit on the ingest paths (default: off).
    pub rate_limit: Option<RateLimitConfig>,
}

/// `server.rate_limit:` — requests per second per client address (after trusted proxies;
/// IPv6 clients by /64), beyond which requests get 429 with `Retry-After`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    pub requests_per_s: u32,
    pub burst: u32,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            max_body_bytes: 65_536,
            request_timeout_ms: 5_000,
            allowed_origins: Vec::new(),
            trusted_proxies: Vec::new(),
            client_ip_header: None,
            paths: PathsConfig::default(),
            ingest_key: Secret::default(),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
            max_connections: 10_000,
            rate_limit: None,
        }
    }
}

/// `server.paths:` — where each ingest endpoint is mounted.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PathsConfig {
    pub gtag: String,
    pub mp: String,
    pub data: String,
}

impl Default for PathsConfig {
    fn default() -> Self {
        Self {
            gtag: "/g/collect".into(),
            mp: "/mp/collect".into(),
            data: "/data".into(),
        }
    }
}

/// `privacy:` — what is redacted before mapping.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrivacyConfig {
    /// Query parameters whose values are replaced by `(redacted)` in `page_location`,
    /// `page_referrer` and `event_source_url` (default `[email, e-mail, mail, phone, tel,
    /// mobile]`; e-mail addresses anywhere in those URLs are redacted regardless).
    pub redact_query_params: Vec<String>,
}

impl Default for PrivacyConfig {
    fn default() -> Self {
        Self {
            redact_query_params: ["email", "e-mail", "mail", "phone", "tel", "mobile"]
                .map(str::to_owned)
                .to_vec(),
        }
    }
}

/// `queue:` — the embedded durable store.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// Directory of the queue (default `./data/queue`; `":memory:"` for tests, not durable).
    pub path: PathBuf,
    /// Cap on pending event bytes (default 1 GiB); when full, new events get 503, never a
    /// silent drop.
    pub max_bytes: u64,
    /// Cap on dead-letter bytes (default 256 MiB); the oldest are evicted first, counted.
    pub dead_letter_max_bytes: u64,
    /// New events get 503 while the queue's volume has less free space than this
    /// (default 64 MiB), so acks and dead letters always have room.
    pub min_free_bytes: u64,
    /// `0` (default): a request is answered after its events were `fdatasync`ed (survives
    /// power loss). `N > 0`: answered once the write reached the OS (survives `kill -9`),
    /// synced every N ms (a power loss can cost the last N ms).
    pub sync_interval_ms: u64,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from("./data/queue"),
            max_bytes: 1 << 30,
            dead_letter_max_bytes: 256 << 20,
            min_free_bytes: 64 << 20,
            sync_interval_ms: 0,
        }
    }
}

impl QueueConfig {
    /// The queue's open options.
    pub fn options(&self) -> crate::queue::QueueOptions {
        let mut o = crate::queue::QueueOptions::new(self.max_bytes, self.dead_letter_max_bytes);
        o.min_free_bytes = self.min_free_bytes;
        o.sync_interval = (self.sync_interval_ms > 0)
            .then(|| std::time::Duration::from_millis(self.sync_interval_ms));
        o
    }
}

/// `dispatch:` — batching and delivery to destinations.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DispatchConfig {
    /// Events per request (default 1000); each destination caps it at its own limit
    /// (Pinterest: 1000).
    pub batch_max_events: usize,
    /// Longest time an event waits for its batch to fill (default 1000 ms).
    pub batch_max_wait_ms: u64,
    /// Requests in flight per destination route (default 4).
    pub concurrency: usize,
    /// Timeout of one HTTP attempt (default 10000 ms).
    pub timeout_ms: u64,
    /// On SIGTERM: time allowed to send what is pending (default 20 s).
    pub drain_s: u64,
    pub retry: RetryConfig,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        Self {
            batch_max_events: 1000,
            batch_max_wait_ms: 1000,
            concurrency: 4,
            timeout_ms: 10_000,
            drain_s: 20,
            retry: RetryConfig::default(),
        }
    }
}

/// `dispatch.retry:` — exponential backoff with full jitter.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    pub initial_ms: u64,
    pub max_ms: u64,
    pub give_up_after_s: u64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            initial_ms: 500,
            max_ms: 60_000,
            give_up_after_s: 86_400,
        }
    }
}

/// `debug:` — the live debug page (on `server.admin_listen`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DebugConfig {
    /// Serve `/debug` and record recent requests for it (default false).
    pub enabled: bool,
    /// Required for `/debug` from other hosts (without one: loopback clients only), and for
    /// client-side debug switches (`X-Tagbridge-Debug: <token>`).
    pub token: Secret,
    /// Requests the page keeps (default 200; also capped at 8 MiB).
    pub max_requests: usize,
}

impl Default for DebugConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            token: Secret::default(),
            max_requests: 200,
        }
    }
}

/// `logging:` — format and level of the gateway's own log (JSON lines on stdout by default).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoggingConfig {
    pub format: LogFormat,
    /// A `tracing` filter: `info`, `debug`, `tagbridge=debug,info` (`RUST_LOG` wins when set).
    pub level: String,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Json,
            level: "info".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Json,
    Text,
}

/// What loading found besides errors: things worth a warning at start-up.
#[derive(Debug, Default)]
pub struct LoadReport {
    pub unset_env_vars: Vec<String>,
    pub warnings: Vec<String>,
}

impl Config {
    /// Reads, overrides, expands, deserializes and validates the file at `path`.
    ///
    /// # Errors
    /// The first problem found, as `key.path: problem`.
    pub fn load(path: &std::path::Path) -> Result<(Config, LoadReport), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new(path.display().to_string(), format!("cannot read: {e}"))
        })?;
        let env: Vec<(String, String)> = std::env::vars().collect();
        Self::from_yaml(&text, &path.display().to_string(), &env)
    }

    /// Like [`Config::load`], from YAML text and an explicit environment (tests pass their own).
    pub fn from_yaml(
        text: &str,
        origin: &str,
        env: &[(String, String)],
    ) -> Result<(Config, LoadReport), ConfigError> {
        let file = config::Config::builder()
            .add_source(config::File::from_str(text, config::FileFormat::Yaml))
            .build()
            .map_err(|e| ConfigError::new(origin, humanize(&e.to_string())))?;
        let mut tree: serde_json::Value = file
            .try_deserialize()
            .map_err(|e| ConfigError::new(origin, humanize(&e.to_string())))?;
        if tree.is_null() {
            tree = serde_json::Value::Object(Default::default());
        }
        if !tree.is_object() {
            return Err(ConfigError::new(
                origin,
                "expected a map of sections (server, tags, ...)",
            ));
        }
        let mut defaults = serde_json::to_value(Config::default())
            .map_err(|e| ConfigError::new(origin, e.to_string()))?;
        // Each tag's defaults, by its type, so `TAGBRIDGE__TAGS__0__TEST_MODE=true` is a bool.
        let tag_defaults: Vec<serde_json::Value> = tree
            .get("tags")
            .and_then(serde_json::Value::as_array)
            .map(|tags| {
                tags.iter()
                    .map(|t| {
                        t.get("type")
                            .and_then(serde_json::Value::as_str)
                            .and_then(TagConfig::defaults)
                            .unwrap_or_default()
                    })
                    .collect()
            })
            .unwrap_or_default();
        defaults["tags"] = serde_json::Value::Array(tag_defaults);
        typed_unset_settings(&mut defaults);
        let applied = overrides::apply(&mut tree, &defaults, env)?;
        let lookup = |name: &str| {
            env.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.to_owned())
        };
        let expansion = expand::expand_tree(&mut tree, &lookup);
        // `batch_max_events: "${BATCH}"`: an expanded value takes the type of its setting.
        for path in &expansion.expanded {
            if let Some(hint) =
                lookup_path(&defaults, path).filter(|h| h.is_number() || h.is_boolean())
            {
                if let Some(slot) = lookup_path_mut(&mut tree, path) {
                    if let Some(text) = slot.as_str() {
                        *slot = overrides::coerce(text, Some(hint))
                            .map_err(|m| ConfigError::new(overrides::display_path(path), m))?;
                    }
                }
            }
        }
        let source_of = |path: &str| {
            applied
                .iter()
                .find(|a| a.path == path)
                .map(|a| format!(" (set by {})", a.var))
                .unwrap_or_default()
        };
        let raw_tags = tree.as_object_mut().and_then(|m| m.remove("tags"));
        let mut config: Config = serde_path_to_error::deserialize(tree).map_err(|e| {
            let path = e.path().to_string();
            let path = if path == "." { origin.to_owned() } else { path };
            let message = humanize(&e.into_inner().to_string());
            let from = source_of(&path);
            ConfigError::new(path, format!("{message}{from}"))
        })?;
        config.tags = parse_tags(raw_tags)?;
        let warnings = config.validate()?;
        Ok((
            config,
            LoadReport {
                unset_env_vars: expansion.unset,
                warnings,
            },
        ))
    }

    /// Checks what types alone cannot; returns warnings for odd-but-valid settings.
    ///
    /// # Errors
    /// The first invalid setting.
    pub fn validate(&self) -> Result<Vec<String>, ConfigError> {
        let mut warnings = Vec::new();
        let s = &self.server;
        if s.max_body_bytes == 0 {
            return Err(ConfigError::new("server.max_body_bytes", "must be > 0"));
        }
        if s.request_timeout_ms == 0 || s.request_timeout_ms > 600_000 {
            return Err(ConfigError::new(
                "server.request_timeout_ms",
                "must be 1..=600000",
            ));
        }
        if s.max_connections == 0 {
            return Err(ConfigError::new("server.max_connections", "must be > 0"));
        }
        if let Some(r) = s.rate_limit {
            if r.requests_per_s == 0 || r.burst == 0 {
                return Err(ConfigError::new(
                    "server.rate_limit",
                    "requests_per_s and burst must be > 0 (remove rate_limit to turn it off)",
                ));
            }
        }
        if s.admin_listen == s.listen && s.listen.port() != 0 {
            return Err(ConfigError::new(
                "server.admin_listen",
                "must differ from server.listen (metrics and the debug page are never public)",
            ));
        }
        if self.debug.max_requests == 0 || self.debug.max_requests > 10_000 {
            return Err(ConfigError::new("debug.max_requests", "must be 1..=10000"));
        }
        for (name, p) in [
            ("gtag", &s.paths.gtag),
            ("mp", &s.paths.mp),
            ("data", &s.paths.data),
        ] {
            if !p.starts_with('/') || p.len() < 2 || p.contains(['{', '}', '*', '?', '#']) {
                return Err(ConfigError::new(
                    format!("server.paths.{name}"),
                    format!("must be a plain absolute path such as \"/data\", got {p:?}"),
                ));
            }
        }
        let mut seen = HashSet::new();
        for p in [&s.paths.gtag, &s.paths.mp, &s.paths.data] {
            if !seen.insert(p)
                || ["/healthz", "/readyz", "/metrics", "/debug"].contains(&p.as_str())
            {
                return Err(ConfigError::new(
                    "server.paths",
                    format!("path {p:?} is used twice"),
                ));
            }
        }
        for (i, o) in s.allowed_origins.iter().enumerate() {
            if o != "*"
                && url::Url::parse(o)
                    .map(|u| u.host().is_none())
                    .unwrap_or(true)
            {
                return Err(ConfigError::new(
                    format!("server.allowed_origins[{i}]"),
                    format!("must be an origin such as \"https://shop.example\", got {o:?}"),
                ));
            }
        }
        if let Some(h) = &s.client_ip_header {
            if axum::http::HeaderName::try_from(h.as_str()).is_err() {
                return Err(ConfigError::new(
                    "server.client_ip_header",
                    format!("not a valid header name: {h:?}"),
                ));
            }
        }
        let d = &self.dispatch;
        if d.batch_max_events == 0 {
            return Err(ConfigError::new("dispatch.batch_max_events", "must be > 0"));
        }
        for (i, tag) in self.tags.iter().enumerate() {
            let limit = tag.max_batch_events();
            if d.batch_max_events > limit {
                return Err(ConfigError::new(
                    "dispatch.batch_max_events",
                    format!(
                        "must be at most {limit} (the limit of tags[{i}], a {} tag), got {}",
                        tag.kind(),
                        d.batch_max_events
                    ),
                ));
            }
        }
        if d.concurrency == 0 {
            return Err(ConfigError::new("dispatch.concurrency", "must be > 0"));
        }
        if d.timeout_ms == 0 {
            return Err(ConfigError::new("dispatch.timeout_ms", "must be > 0"));
        }
        if d.retry.initial_ms == 0 || d.retry.max_ms < d.retry.initial_ms {
            return Err(ConfigError::new(
                "dispatch.retry",
                "needs 0 < initial_ms <= max_ms",
            ));
        }
        if d.retry.max_ms > 86_400_000 {
            return Err(ConfigError::new(
                "dispatch.retry.max_ms",
                "must be at most 86400000 (one day)",
            ));
        }
        if d.timeout_ms > 600_000 || d.batch_max_wait_ms > 600_000 || d.drain_s > 3_600 {
            return Err(ConfigError::new(
                "dispatch",
                "timeout_ms and batch_max_wait_ms must be at most 600000, drain_s at most 3600",
            ));
        }
        if self.queue.max_bytes < 1 << 20 {
            return Err(ConfigError::new(
                "queue.max_bytes",
                "must be at least 1048576 (1 MiB)",
            ));
        }
        if self.queue.dead_letter_max_bytes < 1 << 20 {
            return Err(ConfigError::new(
                "queue.dead_letter_max_bytes",
                "must be at least 1048576 (1 MiB)",
            ));
        }
        if self.queue.sync_interval_ms > 60_000 {
            return Err(ConfigError::new(
                "queue.sync_interval_ms",
                "must be at most 60000 (a minute of events at risk on power loss)",
            ));
        }
        if self.logging.level.trim().is_empty()
            || tracing_subscriber::EnvFilter::try_new(&self.logging.level).is_err()
        {
            return Err(ConfigError::new(
                "logging.level",
                format!("not a log level or filter: {:?}", self.logging.level),
            ));
        }
        let mut names = HashSet::new();
        for (i, tag) in self.tags.iter().enumerate() {
            let path = format!("tags[{i}]");
            // Queue records carry the name in one length byte, and it labels metrics.
            if tag.name().len() > 100 {
                return Err(ConfigError::new(
                    format!("{path}.name"),
                    format!("must be at most 100 bytes, got {}", tag.name().len()),
                ));
            }
            if !names.insert(tag.name()) {
                return Err(ConfigError::new(
                    format!("{path}.name"),
                    format!("duplicate tag name {:?}", tag.name()),
                ));
            }
            warnings.extend(tag.validate(&path)?);
        }
        if self.tags.is_empty() {
            warnings.push("no tags configured: events are accepted and dropped".into());
        }
        Ok(warnings)
    }

    /// A copy for tests: listens on 127.0.0.1:0, queue in memory, short batch wait, no tags.
    pub fn for_tests() -> Config {
        let mut c = Config::default();
        c.queue.path = PathBuf::from(":memory:");
        c.queue.min_free_bytes = 0;
        c.server.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        c.server.admin_listen = SocketAddr::from(([127, 0, 0, 1], 0));
        c.dispatch.batch_max_wait_ms = 50;
        c.dispatch.drain_s = 10;
        c
    }
}

impl fmt::Display for Config {
    /// The resolved configuration as pretty JSON, secrets masked (what `tagbridge check` prints).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match serde_json::to_string_pretty(self) {
            Ok(s) => f.write_str(&s),
            Err(_) => Err(fmt::Error),
        }
    }
}

/// Tags are parsed one by one so an error names the key inside the tag
/// (`tags[0].test_mode: ...`), which serde's internally tagged enums cannot do.
fn parse_tags(raw: Option<serde_json::Value>) -> Result<Vec<TagConfig>, ConfigError> {
    use serde_json::Value;
    let items = match raw {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(ConfigError::new("tags", "must be a list of tags")),
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let Value::Object(mut settings) = item else {
                return Err(ConfigError::new(
                    format!("tags[{i}]"),
                    "must be a map of settings",
                ));
            };
            let kind = match settings.remove("type") {
                Some(Value::String(k)) => k,
                Some(_) => {
                    return Err(ConfigError::new(
                        format!("tags[{i}].type"),
                        "must be a string",
                    ))
                }
                None => {
                    return Err(ConfigError::new(
                        format!("tags[{i}].type"),
                        format!("missing; expected one of: {}", TagConfig::TYPES.join(", ")),
                    ))
                }
            };
            TagConfig::parse(&kind, Value::Object(settings)).map_err(|(inner, message)| {
                let path = if inner.is_empty() || inner == "." {
                    format!("tags[{i}]")
                } else {
                    format!("tags[{i}].{inner}")
                };
                ConfigError::new(path, humanize(&message))
            })
        })
        .collect()
}

/// Settings that are unset by default (`null` in the defaults tree) carry no type for an
/// override to take. Give them a typed stand-in, so that `TAGBRIDGE__SERVER__RATE_LIMIT__
/// REQUESTS_PER_S=20` is a number and `TAGBRIDGE__TAGS__0__DRY_RUN=true` a boolean even when
/// the file does not set them. (The unset text settings stay text: no stand-in needed.)
fn typed_unset_settings(defaults: &mut serde_json::Value) {
    let rate_limit = &mut defaults["server"]["rate_limit"];
    if rate_limit.is_null() {
        *rate_limit = serde_json::json!({"requests_per_s": 0, "burst": 0});
    }
    if let Some(tags) = defaults["tags"].as_array_mut() {
        for tag in tags.iter_mut().filter_map(serde_json::Value::as_object_mut) {
            if let Some(dry_run) = tag.get_mut("dry_run").filter(|v| v.is_null()) {
                *dry_run = serde_json::Value::Bool(false);
            }
        }
    }
}

/// Operator-facing wording for serde's messages (no Rust type names).
fn humanize(message: &str) -> String {
    let mut m = message.to_owned();
    for t in ["usize", "u64", "u32", "u16", "u8"] {
        m = m.replace(&format!("expected {t}"), "expected a non-negative integer");
    }
    if let Some(pos) = m.find("expected struct ") {
        let end = m[pos + 16..]
            .find(|c: char| !c.is_alphanumeric())
            .map_or(m.len(), |e| pos + 16 + e);
        m.replace_range(pos..end, "expected a map of settings");
    }
    m.replace("String(\"", "\"")
        .replace("\"): duplicated key", "\": duplicated key")
}

fn lookup_path<'a>(tree: &'a serde_json::Value, path: &[String]) -> Option<&'a serde_json::Value> {
    path.iter().try_fold(tree, |cur, seg| match cur {
        serde_json::Value::Object(m) => m.get(seg),
        serde_json::Value::Array(a) => a.get(seg.parse::<usize>().ok()?),
        _ => None,
    })
}

fn lookup_path_mut<'a>(
    tree: &'a mut serde_json::Value,
    path: &[String],
) -> Option<&'a mut serde_json::Value> {
    path.iter().try_fold(tree, |cur, seg| match cur {
        serde_json::Value::Object(m) => m.get_mut(seg),
        serde_json::Value::Array(a) => a.get_mut(seg.parse::<usize>().ok()?),
        _ => None,
    })
}

/// `listen`: `IP:port`; `localhost:PORT` means loopback.
mod listen_addr {
    use std::net::SocketAddr;

    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &SocketAddr, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
        let text = String::deserialize(d)?;
        let t = text.trim();
        if let Ok(a) = t.parse() {
            return Ok(a);
        }
        if let Some(port) = t
            .strip_prefix("localhost:")
            .and_then(|p| p.parse::<u16>().ok())
        {
            return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
        }
        Err(D::Error::custom(format!(
            "must be IP:port such as \"0.0.0.0:8080\", got {text:?}"
        )))
    }
}

/// `trusted_proxies` entries: CIDRs (`10.0.0.0/8`) or single addresses (`10.1.2.3`).
mod cidr_list {
    use ipnet::IpNet;
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[IpNet], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|n| n.to_string()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<IpNet>, D::Error> {
        let raw = Vec::<String>::deserialize(d)?;
        raw.iter()
            .map(|t| {
                let t = t.trim();
                t.parse::<IpNet>()
                    .or_else(|_| t.parse::<std::net::IpAddr>().map(IpNet::from))
                    .map_err(|_| D::Error::custom(format!("not a CIDR or IP address: {t:?}")))
            })
            .collect()
    }
}

#[cfg(test)]
pub(crate) mod tests;
