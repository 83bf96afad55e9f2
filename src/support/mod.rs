//! Leaf helpers every stage may use, depending on nothing else in the crate: the redacting
//! [`Secret`] type, the one-line [`ConfigError`], serde helpers for loosely typed settings,
//! and wall-clock helpers. Keeping them here is what lets `config` depend on `tags` (for the
//! tag registry) without `tags` depending back on `config`.

mod secret;
pub mod stringish;

use std::{
    net::IpAddr,
    time::{SystemTime, UNIX_EPOCH},
};

pub use secret::Secret;

/// A configuration problem, reported as one line: `path: problem`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ConfigError {
    /// Dotted key path (`tags[0].advertiser_id`), or the file name for file-level problems.
    pub path: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// Unix milliseconds now (0 if the clock is before 1970).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Unix milliseconds of a `SystemTime` (0 before 1970, saturating far in the future).
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A client address as logs and the debug page show it: `203.0.113.7` → `203.0.113.0`, IPv6
/// to its /48 (`2001:db8:1::`); anything that is not an address → `(hidden)`.
pub fn mask_ip(ip: &str) -> String {
    match ip.trim().parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => {
            let o = v4.octets();
            format!("{}.{}.{}.0", o[0], o[1], o[2])
        }
        Ok(IpAddr::V6(v6)) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}::", s[0], s[1], s[2])
        }
        Err(_) => "(hidden)".into(),
    }
}
