//! How many processes an instance keeps waiting: ⌈set-up time ÷ batch interval⌉, from what
//! the instance measures (see [`warm`](super::super::warm)).

use std::time::{Duration, Instant};

use super::IDLE;

/// Weight of a new sample in the running averages (1/4: a few runs adapt it, one odd run
/// does not swing it).
const WEIGHT: f64 = 0.25;

/// The running averages a pool is sized from.
#[derive(Debug, Default)]
pub struct Sizing {
    /// A fresh changes run's duration, spawn to exit: the set-up time with a little more.
    setup: Option<f64>,
    /// Between the starts of two runs of the warm kind (a gap longer than [`IDLE`] counts as
    /// [`IDLE`]: after it the pool is gone anyway).
    interval: Option<f64>,
    last_run: Option<Instant>,
}

impl Sizing {
    /// A run of the warm kind begins at `now`.
    pub fn run_began(&mut self, now: Instant) {
        if let Some(last) = self.last_run.replace(now) {
            let gap = now.saturating_duration_since(last).min(IDLE);
            average(&mut self.interval, gap);
        }
    }

    /// A fresh run of the warm kind took `took`, spawn to exit.
    pub fn fresh_run_took(&mut self, took: Duration) {
        average(&mut self.setup, took);
    }

    /// Processes to keep waiting: enough that each has had the set-up time before its batch
    /// comes, at least one, at most `bound` (none when `bound` is 0).
    pub fn target(&self, bound: usize) -> usize {
        let wanted = match (self.setup, self.interval) {
            (Some(setup), Some(interval)) if interval > 0.0 => (setup / interval).ceil() as usize,
            _ => 1,
        };
        if bound == 0 {
            0
        } else {
            wanted.clamp(1, bound)
        }
    }
}

fn average(slot: &mut Option<f64>, sample: Duration) {
    let sample = sample.as_secs_f64();
    *slot = Some(match *slot {
        Some(mean) => mean + WEIGHT * (sample - mean),
        None => sample,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sized(setup_ms: u64, interval_ms: u64, runs: u32) -> Sizing {
        let mut sizing = Sizing::default();
        sizing.fresh_run_took(Duration::from_millis(setup_ms));
        let start = Instant::now();
        for i in 0..runs {
            sizing.run_began(start + Duration::from_millis(interval_ms) * i);
        }
        sizing
    }

    #[test]
    fn the_pool_covers_the_set_up_time_at_the_batch_interval_within_its_bound() {
        // 90 ms to set up, a batch every 40 ms: the third batch after a process starts is
        // its own.
        assert_eq!(sized(90, 40, 10).target(4), 3);
        assert_eq!(sized(90, 40, 10).target(2), 2);
        // Slower batches than the set-up: one is enough.
        assert_eq!(sized(90, 500, 10).target(4), 1);
        // Not measured yet: one.
        assert_eq!(Sizing::default().target(4), 1);
        assert_eq!(sized(90, 40, 1).target(4), 1);
        // No share of the connection left: none.
        assert_eq!(sized(90, 40, 10).target(0), 0);
    }

    #[test]
    fn a_long_quiet_gap_counts_as_the_idle_time() {
        let mut sizing = sized(90, 40, 5);
        let later = Instant::now() + Duration::from_secs(3_600);
        sizing.run_began(later);
        let interval = sizing.interval.unwrap();
        assert!(interval <= IDLE.as_secs_f64(), "{interval}");
    }
}
