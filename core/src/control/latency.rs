//! Reading a [`HistogramSnapshot`]: its buckets made well-formed, and quantile estimates.

use crate::dispatch::{HistogramSnapshot, BUCKETS};

/// One cumulative bucket: observations `<= le` (`None`: `+Inf`, i.e. all of them).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bucket {
    /// The upper bound in seconds; `None` for `+Inf`.
    pub le: Option<f64>,
    /// Observations at or below it.
    pub count: u64,
}

/// One bucket per bound of [`BUCKETS`] and a last `+Inf` one, whatever length the snapshot's
/// `cumulative` has: counts never decrease, never exceed `count`, and `+Inf` equals `count`.
pub fn buckets(h: &HistogramSnapshot) -> Vec<Bucket> {
    let mut running = 0;
    let mut out: Vec<Bucket> = BUCKETS
        .iter()
        .enumerate()
        .map(|(i, &le)| {
            running = running
                .max(h.cumulative.get(i).copied().unwrap_or(0))
                .min(h.count);
            Bucket {
                le: Some(le),
                count: running,
            }
        })
        .collect();
    out.push(Bucket {
        le: None,
        count: h.count,
    });
    out
}

/// The `q` quantile (0 < q <= 1) in seconds, interpolated linearly inside its bucket as
/// Prometheus' `histogram_quantile` does; the largest finite bound when it falls in `+Inf`.
/// `None` without observations.
pub fn quantile(h: &HistogramSnapshot, q: f64) -> Option<f64> {
    if h.count == 0 {
        return None;
    }
    let rank = q.clamp(0.0, 1.0) * h.count as f64;
    let (mut lower, mut below) = (0.0, 0u64);
    for bucket in buckets(h) {
        let Some(upper) = bucket.le else {
            return Some(lower);
        };
        if bucket.count as f64 >= rank && bucket.count > below {
            let share = (rank - below as f64) / (bucket.count - below) as f64;
            return Some(lower + (upper - lower) * share);
        }
        (lower, below) = (upper, bucket.count);
    }
    Some(lower)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(cumulative: &[u64], count: u64) -> HistogramSnapshot {
        HistogramSnapshot {
            cumulative: cumulative.to_vec(),
            sum_seconds: 0.0,
            count,
        }
    }

    #[test]
    fn an_empty_snapshot_still_has_every_bucket() {
        let b = buckets(&HistogramSnapshot::default());
        assert_eq!(b.len(), BUCKETS.len() + 1);
        assert!(b.iter().all(|b| b.count == 0));
        assert_eq!(b.last().unwrap().le, None);
        assert_eq!(quantile(&HistogramSnapshot::default(), 0.5), None);
    }

    #[test]
    fn malformed_counts_are_made_cumulative() {
        let b = buckets(&snapshot(&[5, 3, 9, 100], 7));
        let counts: Vec<u64> = b.iter().map(|b| b.count).collect();
        assert_eq!(&counts[..5], &[5, 5, 7, 7, 7]);
        assert_eq!(*counts.last().unwrap(), 7);
    }

    #[test]
    fn quantiles_interpolate_inside_the_bucket() {
        // 10 observations: 4 at <= 5 ms, 6 more at <= 10 ms.
        let mut cumulative = vec![4, 10];
        cumulative.resize(BUCKETS.len() + 1, 10);
        let h = snapshot(&cumulative, 10);
        assert!((quantile(&h, 0.2).unwrap() - 0.0025).abs() < 1e-12);
        assert!((quantile(&h, 0.5).unwrap() - 0.005 - 0.005 / 6.0).abs() < 1e-12);
        assert!((quantile(&h, 1.0).unwrap() - 0.01).abs() < 1e-12);
    }

    #[test]
    fn a_quantile_in_the_last_bucket_is_the_largest_bound() {
        let mut cumulative = vec![0; BUCKETS.len()];
        cumulative.push(3);
        assert_eq!(quantile(&snapshot(&cumulative, 3), 0.99), Some(60.0));
    }
}
