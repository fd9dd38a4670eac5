//! How flashgate waits before trying again: one backoff policy per kind of loop, built with
//! `backon` (exponential, with jitter so a fleet of workers does not retry in step).
//!
//! The loops that use these run until shutdown (a stream reader, a RabbitMQ consumer, the restock
//! listener, a batch waiting for MySQL): they never give up, so the policies have no maximum
//! number of tries; a success calls [`Backoff::reset`].

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

/// An endless exponential backoff that can start over.
#[derive(Debug)]
pub struct Backoff {
    builder: ExponentialBuilder,
    current: ExponentialBackoff,
}

impl Backoff {
    fn new(min: Duration, max: Duration) -> Self {
        let builder = ExponentialBuilder::default()
            .with_min_delay(min)
            .with_max_delay(max)
            .with_factor(2.0)
            .with_jitter()
            .without_max_times();
        Self {
            builder,
            current: builder.build(),
        }
    }

    /// The worker's loops (stream readers, consumers, MySQL writes, result writes):
    /// 100 ms doubling up to 5 s.
    pub fn worker() -> Self {
        Self::new(Duration::from_millis(100), Duration::from_secs(5))
    }

    /// The edge's restock listener, which should be back quickly: 100 ms doubling up to 2 s.
    pub fn listener() -> Self {
        Self::new(Duration::from_millis(100), Duration::from_secs(2))
    }

    /// How long to wait before the next try.
    pub fn next_delay(&mut self) -> Duration {
        self.current
            .next()
            .unwrap_or_else(|| Duration::from_secs(5))
    }

    /// After a success: the next failure waits the shortest time again.
    pub fn reset(&mut self) {
        self.current = self.builder.build();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_to_the_cap_and_start_over_after_a_reset() {
        let mut b = Backoff::worker();
        let first = b.next_delay();
        // jitter adds up to one more delay on top
        assert!(
            first >= Duration::from_millis(100) && first <= Duration::from_millis(200),
            "{first:?}"
        );
        let later: Vec<Duration> = (0..20).map(|_| b.next_delay()).collect();
        assert!(
            later.iter().all(|d| *d <= Duration::from_secs(10)),
            "{later:?}"
        );
        assert!(later.last().unwrap() >= &Duration::from_secs(5));
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(200));
    }
}
