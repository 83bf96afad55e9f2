//! Capped exponential backoff with full jitter (AWS "Exponential Backoff and Jitter").

use std::time::Duration;

use rand::Rng;

use crate::config::RetryConfig;

#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    initial_ms: u64,
    max_ms: u64,
}

impl Backoff {
    pub fn new(initial_ms: u64, max_ms: u64) -> Self {
        Self {
            initial_ms: initial_ms.max(1),
            max_ms: max_ms.max(initial_ms.max(1)),
        }
    }

    pub fn from_config(config: &RetryConfig) -> Self {
        Self::new(config.initial_ms, config.max_ms)
    }

    /// The longest delay: `Retry-After` hints are capped here too.
    pub fn max(&self) -> Duration {
        Duration::from_millis(self.max_ms)
    }

    /// The cap for retry number `attempt` (0-based): `min(max, initial * 2^attempt)`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u64.checked_shl(attempt.min(32)).unwrap_or(u64::MAX);
        Duration::from_millis(self.initial_ms.saturating_mul(factor).min(self.max_ms))
    }

    /// A delay drawn uniformly from `[0, ceiling(attempt)]`; a `Retry-After` hint is a floor,
    /// itself capped at the maximum (a hostile or broken `Retry-After: 18446744073709551615`
    /// must not stop a route for good).
    pub fn delay(
        &self,
        attempt: u32,
        retry_after: Option<Duration>,
        rng: &mut impl Rng,
    ) -> Duration {
        let ceiling = self.ceiling(attempt).as_millis() as u64;
        let jittered = Duration::from_millis(rng.random_range(0..=ceiling));
        match retry_after {
            Some(floor) => jittered.max(floor.min(self.max())),
            None => jittered,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceiling_doubles_then_caps() {
        let b = Backoff::from_config(&RetryConfig {
            initial_ms: 500,
            max_ms: 60_000,
            give_up_after_s: 10,
        });
        let ms: Vec<u128> = (0..10).map(|a| b.ceiling(a).as_millis()).collect();
        assert_eq!(
            ms,
            [500, 1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000, 60000]
        );
        assert_eq!(b.ceiling(200).as_millis(), 60_000);
    }

    #[test]
    fn jitter_stays_in_range_and_honours_retry_after() {
        let b = Backoff::new(100, 1_000);
        let mut rng = rand::rng();
        let mut seen_low = false;
        let mut seen_high = false;
        for _ in 0..2_000 {
            let d = b.delay(3, None, &mut rng).as_millis();
            assert!(d <= 800, "{d}");
            seen_low |= d < 200;
            seen_high |= d > 600;
        }
        assert!(seen_low && seen_high, "full jitter covers the range");
        for _ in 0..100 {
            let d = b.delay(0, Some(Duration::from_millis(700)), &mut rng);
            assert!(d >= Duration::from_millis(700));
            // Retry-After beyond the maximum is capped at it.
            let d = b.delay(0, Some(Duration::from_secs(u64::MAX)), &mut rng);
            assert_eq!(d, Duration::from_millis(1_000));
        }
    }
}
