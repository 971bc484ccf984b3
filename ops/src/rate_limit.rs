//! Per-client request quotas (GCRA: a steady rate with a burst allowance).
//!
//! A client is its token's subject when it presented a valid token, otherwise its IP
//! address, so one busy client cannot starve the others and unauthenticated guessing is
//! throttled too.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use crate::env::{self, ConfigError, Lookup};

/// How often the limiter forgets clients that are back to a full burst.
const FORGET_EVERY_CHECKS: u64 = 10_000;

/// A steady rate and a burst, per client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitSettings {
    /// Requests per second, sustained.
    pub per_second: NonZeroU32,
    /// Requests that may arrive at once after a quiet period.
    pub burst: NonZeroU32,
}

impl RateLimitSettings {
    /// Reads `KEEL_RATE_LIMIT_PER_SECOND` (default 200; `0` turns limiting off) and
    /// `KEEL_RATE_LIMIT_BURST` (default twice the rate).
    ///
    /// # Errors
    /// [`ConfigError`] naming the variable.
    pub fn from_lookup(lookup: Lookup<'_>) -> Result<Option<Self>, ConfigError> {
        let env = env::Env::new(lookup);
        let per_second: u32 = env.parsed("KEEL_RATE_LIMIT_PER_SECOND")?.unwrap_or(200);
        let Some(per_second) = NonZeroU32::new(per_second) else {
            return Ok(None);
        };
        let burst = match env.parsed::<u32>("KEEL_RATE_LIMIT_BURST")? {
            None => per_second.saturating_mul(NonZeroU32::MIN.saturating_add(1)),
            Some(burst) => NonZeroU32::new(burst).ok_or_else(|| ConfigError {
                var: "KEEL_RATE_LIMIT_BURST",
                reason: "must be greater than zero".into(),
            })?,
        };
        Ok(Some(Self { per_second, burst }))
    }
}

/// The quota state of every client.
#[derive(Debug)]
pub struct ClientRateLimiter {
    limiter: DefaultKeyedRateLimiter<String>,
    checks: AtomicU64,
}

impl ClientRateLimiter {
    /// A limiter with `settings` for every client.
    pub fn new(settings: RateLimitSettings) -> Self {
        Self {
            limiter: DefaultKeyedRateLimiter::keyed(
                Quota::per_second(settings.per_second).allow_burst(settings.burst),
            ),
            checks: AtomicU64::new(0),
        }
    }

    /// Takes one request from `client`'s quota.
    ///
    /// # Errors
    /// How long until the client may try again, when its quota is used up.
    pub fn check(&self, client: &str) -> Result<(), Duration> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % FORGET_EVERY_CHECKS
            == FORGET_EVERY_CHECKS - 1
        {
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
        }
        self.limiter
            .check_key(&client.to_owned())
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Result<Option<RateLimitSettings>, ConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        RateLimitSettings::from_lookup(&|name| vars.get(name).cloned())
    }

    #[test]
    fn defaults_zero_and_errors() {
        let default = settings(&[]).unwrap().unwrap();
        assert_eq!((default.per_second.get(), default.burst.get()), (200, 400));
        assert_eq!(
            settings(&[("KEEL_RATE_LIMIT_PER_SECOND", "0")]).unwrap(),
            None
        );
        assert_eq!(
            settings(&[("KEEL_RATE_LIMIT_BURST", "0")]).unwrap_err().var,
            "KEEL_RATE_LIMIT_BURST"
        );
        assert_eq!(
            settings(&[("KEEL_RATE_LIMIT_PER_SECOND", "fast")])
                .unwrap_err()
                .var,
            "KEEL_RATE_LIMIT_PER_SECOND"
        );
    }

    #[test]
    fn a_client_past_its_burst_waits_and_others_are_unaffected() {
        let limiter = ClientRateLimiter::new(RateLimitSettings {
            per_second: NonZeroU32::new(1).unwrap(),
            burst: NonZeroU32::new(3).unwrap(),
        });
        for _ in 0..3 {
            limiter.check("alice").unwrap();
        }
        let wait = limiter.check("alice").unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        limiter.check("bob").unwrap();
    }
}
