//! Prometheus metrics, kept in atomics and rendered as text at `GET /metrics`.
//!
//! Hand-rolled on purpose: a handful of counters and fixed-bucket histograms that the buy path
//! updates with one relaxed atomic add each, no locks and no allocation.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Latency bucket bounds, in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// A histogram with [`BUCKETS`]: per-bucket counts, the sum in microseconds, the count.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    sum_us: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, seconds: f64) {
        if let Some(i) = BUCKETS.iter().position(|b| seconds <= *b) {
            self.buckets[i].fetch_add(1, Relaxed);
        }
        self.sum_us.fetch_add((seconds * 1e6) as u64, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (bound, n) in BUCKETS.iter().zip(&self.buckets) {
            cumulative += n.load(Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}"
            );
        }
        let count = self.count.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let sum = self.sum_us.load(Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
    }
}

/// The route families latency is kept for.
pub const ROUTES: [&str; 7] = ["buy", "path", "result", "goods", "auth", "static", "other"];
/// The admission outcomes, in the order of `lua/admit.lua`'s codes, plus the local flag.
pub const OUTCOMES: [&str; 9] = [
    "queued",
    "bad_path",
    "not_started",
    "ended",
    "rate_limited",
    "duplicate",
    "sold_out",
    "no_sale",
    "sold_out_local",
];

#[derive(Debug, Default)]
pub struct Metrics {
    pub admissions: [AtomicU64; OUTCOMES.len()],
    pub latency: [Histogram; ROUTES.len()],
    pub redis_errors: AtomicU64,
    pub batches: AtomicU64,
    pub batch_entries: Histogram,
    pub commit_seconds: Histogram,
    pub orders: AtomicU64,
    pub failed: AtomicU64,
    pub replays: AtomicU64,
    pub dead_letters: AtomicU64,
    pub closed_unpaid: AtomicU64,
    /// Units moved between the buckets of split sales.
    pub stock_moves: AtomicU64,
}

impl Metrics {
    pub fn admission(&self, outcome: &str) {
        if let Some(i) = OUTCOMES.iter().position(|o| *o == outcome) {
            self.admissions[i].fetch_add(1, Relaxed);
        }
    }

    pub fn route_latency(&self, route: &str, seconds: f64) {
        let i = ROUTES
            .iter()
            .position(|r| *r == route)
            .unwrap_or(ROUTES.len() - 1);
        self.latency[i].observe(seconds);
    }

    /// The Prometheus text exposition; `extra` is appended (per-sale gauges read from Redis).
    pub fn render(&self, extra: &str) -> String {
        let mut out = String::new();
        out.push_str("# TYPE flashgate_admissions_total counter\n");
        for (o, n) in OUTCOMES.iter().zip(&self.admissions) {
            let _ = writeln!(
                out,
                "flashgate_admissions_total{{outcome=\"{o}\"}} {}",
                n.load(Relaxed)
            );
        }
        out.push_str("# TYPE flashgate_request_seconds histogram\n");
        for (r, h) in ROUTES.iter().zip(&self.latency) {
            h.render(
                &mut out,
                "flashgate_request_seconds",
                &format!("route=\"{r}\""),
            );
        }
        let counters = [
            ("flashgate_redis_errors_total", &self.redis_errors),
            ("flashgate_worker_batches_total", &self.batches),
            ("flashgate_worker_orders_total", &self.orders),
            ("flashgate_worker_failed_total", &self.failed),
            ("flashgate_worker_replays_total", &self.replays),
            ("flashgate_worker_dead_letters_total", &self.dead_letters),
            ("flashgate_unpaid_closed_total", &self.closed_unpaid),
            ("flashgate_stock_moves_total", &self.stock_moves),
        ];
        for (name, c) in counters {
            let _ = writeln!(out, "# TYPE {name} counter\n{name} {}", c.load(Relaxed));
        }
        out.push_str("# TYPE flashgate_worker_commit_seconds histogram\n");
        self.commit_seconds
            .render(&mut out, "flashgate_worker_commit_seconds", "");
        out.push_str(extra);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let m = Metrics::default();
        m.route_latency("buy", 0.0004);
        m.route_latency("buy", 0.003);
        m.admission("queued");
        let text = m.render("");
        assert!(text.contains("flashgate_request_seconds_bucket{route=\"buy\",le=\"0.0005\"} 1"));
        assert!(text.contains("flashgate_request_seconds_bucket{route=\"buy\",le=\"0.005\"} 2"));
        assert!(text.contains("flashgate_request_seconds_count{route=\"buy\"} 2"));
        assert!(text.contains("flashgate_admissions_total{outcome=\"queued\"} 1"));
    }
}
