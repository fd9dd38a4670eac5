//! A circuit breaker in front of Redis: degrade, don't fall over.
//!
//! When Redis stops answering, every request that needs it would wait out the command timeout,
//! pile up, and hold connections. After [`TRIP_AFTER`] consecutive Redis failures the breaker
//! *opens*: requests that need Redis are answered 503 at once, without trying. After [`COOL_DOWN`]
//! it lets requests try again (*half-open*); the first success closes it, a failure re-opens it.
//! Static pages, `/healthz` and the local sold-out answers never need Redis and keep working.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Consecutive failures that open the breaker.
pub const TRIP_AFTER: u32 = 5;
/// How long it stays open before letting requests try again.
pub const COOL_DOWN: Duration = Duration::from_millis(500);

#[derive(Debug, Default)]
pub struct Breaker {
    failures: AtomicU32,
    /// While `now < open_until` (ms since the epoch), requests are refused without trying.
    open_until_ms: AtomicU64,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Breaker {
    /// False while open: answer 503 without calling Redis.
    pub fn allow(&self) -> bool {
        now_ms() >= self.open_until_ms.load(Relaxed)
    }

    pub fn success(&self) {
        if self.failures.load(Relaxed) != 0 {
            self.failures.store(0, Relaxed);
            tracing::info!("Redis answers again; circuit closed");
        }
    }

    pub fn failure(&self) {
        let n = self.failures.fetch_add(1, Relaxed) + 1;
        if n >= TRIP_AFTER {
            self.open_until_ms
                .store(now_ms() + COOL_DOWN.as_millis() as u64, Relaxed);
            if n == TRIP_AFTER {
                tracing::warn!(failures = n, cool_down = ?COOL_DOWN, "Redis keeps failing; circuit open");
            }
        }
    }

    pub fn is_open(&self) -> bool {
        !self.allow()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_consecutive_failures_and_closes_on_success() {
        let b = Breaker::default();
        for _ in 0..TRIP_AFTER - 1 {
            b.failure();
        }
        assert!(b.allow(), "not yet");
        b.success();
        for _ in 0..TRIP_AFTER - 1 {
            b.failure();
        }
        assert!(b.allow(), "a success resets the count");
        b.failure();
        assert!(!b.allow(), "open");
        std::thread::sleep(COOL_DOWN + Duration::from_millis(20));
        assert!(b.allow(), "half-open after the cool-down");
        b.failure();
        assert!(!b.allow(), "a failure while half-open re-opens it");
        std::thread::sleep(COOL_DOWN + Duration::from_millis(20));
        b.success();
        assert!(b.allow());
    }
}
