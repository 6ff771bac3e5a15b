//! A fixed-bucket latency histogram, cheap to record into from a delivery thread.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the buckets, in seconds (Prometheus `le` labels); a last bucket holds
/// everything slower.
pub const BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Counts of observations per bucket, their sum and count.
#[derive(Debug, Default)]
pub struct Histogram {
    counts: [AtomicU64; 14],
    sum_micros: AtomicU64,
}

/// A copy of a [`Histogram`]'s numbers.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HistogramSnapshot {
    /// Cumulative counts per bucket of [`BUCKETS`] (Prometheus style), then `+Inf`.
    pub cumulative: Vec<u64>,
    /// Sum of all observations, in seconds.
    pub sum_seconds: f64,
    /// Number of observations.
    pub count: u64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, value: Duration) {
        let secs = value.as_secs_f64();
        let index = BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(BUCKETS.len());
        self.counts[index].fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(value.as_micros() as u64, Ordering::Relaxed);
    }

    /// The current numbers.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut running = 0;
        let cumulative = self
            .counts
            .iter()
            .map(|c| {
                running += c.load(Ordering::Relaxed);
                running
            })
            .collect();
        HistogramSnapshot {
            cumulative,
            sum_seconds: self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
            count: running,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative() {
        let h = Histogram::default();
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_millis(40));
        h.observe(Duration::from_secs(100));
        let s = h.snapshot();
        assert_eq!(s.count, 3);
        assert_eq!(s.cumulative[0], 1); // <= 5 ms
        assert_eq!(s.cumulative[3], 2); // <= 50 ms
        assert_eq!(s.cumulative[BUCKETS.len() - 1], 2); // <= 60 s
        assert_eq!(s.cumulative[BUCKETS.len()], 3); // +Inf
        assert!((s.sum_seconds - 100.043).abs() < 1e-6);
    }
}
