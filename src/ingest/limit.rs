//! `server.rate_limit`: requests per second per client address (governor's keyed GCRA
//! limiter), keyed by the address after trusted proxies; IPv6 clients by their /64, since
//! one client holds a whole /64. Memory stays bounded: idle keys are dropped every few
//! seconds, and the table is cleared past [`MAX_KEYS`].

use std::{
    net::IpAddr,
    num::NonZeroU32,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, RwLock,
    },
    time::Duration,
};

use governor::{clock::Clock, DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::RateLimitConfig;

/// Most client keys kept; past it the table is cleared (an attack from that many addresses
/// is not stopped by a per-address limit anyway).
pub const MAX_KEYS: usize = 200_000;

pub struct RateLimit {
    quota: Quota,
    limiter: RwLock<DefaultKeyedRateLimiter<IpAddr>>,
    checks: AtomicU64,
}

impl RateLimit {
    pub fn new(config: RateLimitConfig) -> Arc<Self> {
        let per_s = NonZeroU32::new(config.requests_per_s).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(config.burst).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::per_second(per_s).allow_burst(burst);
        Arc::new(Self {
            quota,
            limiter: RwLock::new(RateLimiter::keyed(quota)),
            checks: AtomicU64::new(0),
        })
    }

    /// `Ok` when `ip` may make a request now, else how long until it may.
    pub fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        let key = match ip {
            IpAddr::V6(v6) => {
                let mut octets = v6.octets();
                octets[8..].fill(0);
                IpAddr::from(octets)
            }
            v4 => v4,
        };
        if self
            .checks
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(4096)
        {
            self.housekeeping();
        }
        let limiter = self.limiter.read().unwrap_or_else(|p| p.into_inner());
        limiter
            .check_key(&key)
            .map_err(|not_until| not_until.wait_time_from(limiter.clock().now()))
    }

    /// Drops keys that are back to full burst; clears the table past [`MAX_KEYS`].
    pub fn housekeeping(&self) {
        let len = {
            let limiter = self.limiter.read().unwrap_or_else(|p| p.into_inner());
            limiter.retain_recent();
            limiter.shrink_to_fit();
            limiter.len()
        };
        let len = if len > MAX_KEYS {
            tracing::warn!(keys = len, "Rate-limit table over its cap: cleared.");
            *self.limiter.write().unwrap_or_else(|p| p.into_inner()) =
                RateLimiter::keyed(self.quota);
            0
        } else {
            len
        };
        metrics::gauge!("tagbridge_rate_limit_keys").set(len as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refused_per_client_and_ipv6_by_prefix() {
        let rl = RateLimit::new(RateLimitConfig {
            requests_per_s: 1,
            burst: 3,
        });
        let a: IpAddr = "203.0.113.1".parse().unwrap();
        let b: IpAddr = "203.0.113.2".parse().unwrap();
        assert!((0..3).all(|_| rl.check(a).is_ok()));
        let wait = rl.check(a).unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(1));
        assert!(rl.check(b).is_ok(), "another client has its own budget");
        let v6a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let v6b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        assert!((0..3).all(|_| rl.check(v6a).is_ok()));
        assert!(rl.check(v6b).is_err(), "same /64, same budget");
    }
}
