//! Keyed token-bucket limits (per user, per IP, per user and session) answering `429` with
//! `Retry-After`. In memory, per replica: the gateway's per-IP limit is the first line.

use std::hash::Hash;
use std::num::NonZeroU32;
use std::sync::Arc;

use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use crate::error::ApiError;

/// A limit of `per_minute` with a burst of the same size.
#[derive(Clone)]
pub struct KeyedLimiter<K: Hash + Eq + Clone + Send + Sync + 'static> {
    inner: Arc<RateLimiter<K, DefaultKeyedStateStore<K>, DefaultClock>>,
    clock: DefaultClock,
}

impl<K: Hash + Eq + Clone + Send + Sync + 'static> KeyedLimiter<K> {
    pub fn per_minute(per_minute: u32) -> Self {
        let n = NonZeroU32::new(per_minute.max(1)).expect("max(1) is non-zero");
        KeyedLimiter {
            inner: Arc::new(RateLimiter::keyed(Quota::per_minute(n).allow_burst(n))),
            clock: DefaultClock::default(),
        }
    }

    /// Takes one token for `key`, or answers 429 with the seconds until the next one.
    pub fn check(&self, key: &K) -> Result<(), ApiError> {
        self.inner.check_key(key).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            ApiError::rate_limited(wait.as_secs() + u64::from(wait.subsec_nanos() > 0))
        })
    }

    /// Forgets keys whose buckets are full again (call periodically).
    pub fn shrink(&self) {
        self.inner.retain_recent();
        self.inner.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_past_the_burst_with_a_retry_after() {
        let limiter = KeyedLimiter::per_minute(3);
        for _ in 0..3 {
            limiter.check(&"a").unwrap();
        }
        let err = limiter.check(&"a").unwrap_err();
        assert_eq!(err.code, domain::ErrorCode::RateLimited);
        let secs = err.retry_after.unwrap();
        assert!((1..=20).contains(&secs), "retry after {secs}s");
        limiter.check(&"b").unwrap();
    }
}
