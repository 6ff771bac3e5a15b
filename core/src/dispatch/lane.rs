//! A lane: one sink instance serving one watch, with its own pending state, its own thread
//! and its own retry state. A slow or failing lane never holds up another.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use sersync_plugin_sdk::{Batch, Event, Sink, SinkError, WatchId};

use super::backoff::Backoff;
use super::histogram::Histogram;
use super::journal::Journal;
use crate::coalesce::Coalescer;

/// How a lane cuts batches and retries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LaneTiming {
    /// Quiet time after the last event before a batch is cut.
    pub settle: Duration,
    /// Longest time a change waits for the batch to be cut, however busy the tree.
    pub max_delay: Duration,
    /// First retry delay.
    pub retry_initial: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
}

/// What a lane does with a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Hand it to the sink.
    Deliver,
    /// Print what the sink would do (`--dry-run`).
    DryRun,
}

/// Counters and last outcomes, for logs and the control endpoint.
#[derive(Debug, Default)]
pub struct LaneStats {
    /// Batches delivered.
    pub batches: AtomicU64,
    /// Events delivered.
    pub events: AtomicU64,
    /// Failed deliveries.
    pub failures: AtomicU64,
    /// Events in the batch being delivered now.
    pub in_flight: AtomicU64,
    /// Consecutive failed deliveries (0 when the last one succeeded).
    pub retry_streak: AtomicU32,
    /// From a change being seen to its batch being delivered.
    pub latency: Histogram,
    /// When the last delivery succeeded, and the last error.
    pub last: Mutex<LastOutcome>,
}

/// The last success and failure of a lane.
#[derive(Debug, Default, Clone)]
pub struct LastOutcome {
    /// When the last batch was delivered.
    pub success: Option<SystemTime>,
    /// The last error, with when it happened.
    pub error: Option<(SystemTime, String)>,
}

/// Told when a lane's delivery fails and when it goes through again (the `<failLog>`
/// script listens).
pub trait FailureRecorder: Send + Sync {
    /// A delivery of `batch` failed.
    fn failed(&self, lane: &str, batch: &Batch);
    /// A delivery went through after failures.
    fn recovered(&self, lane: &str);
}

struct State {
    pending: Coalescer,
    closing: bool,
    /// Set by [`Lane::retry_now`]: end the current backoff pause.
    retry_now: bool,
    journal: Option<Journal>,
}

impl State {
    /// Runs a journal operation; on failure logs it once and goes on without a journal, so
    /// that a full disk or an unwritable state directory never stops syncing.
    fn journal(&mut self, lane: &str, op: impl FnOnce(&mut Journal) -> std::io::Result<()>) {
        if let Some(journal) = self.journal.as_mut() {
            if let Err(error) = op(journal) {
                tracing::error!(lane, %error, "cannot write the lane's journal; syncing goes on, but changes pending at a crash would need a full sync (-r) to recover");
                self.journal = None;
            }
        }
    }

    /// Makes the journal hold exactly what is pending now.
    fn compact_journal(&mut self, lane: &str) {
        if self.journal.is_some() {
            let pending = self.pending.snapshot();
            self.journal(lane, |j| j.rewrite(&pending));
        }
    }
}

/// One sink instance for one watch.
pub struct Lane {
    name: String,
    watch: WatchId,
    root: PathBuf,
    timing: LaneTiming,
    state: Mutex<State>,
    wake: Condvar,
    stats: LaneStats,
    recorder: std::sync::OnceLock<Arc<dyn FailureRecorder>>,
}

impl Lane {
    /// A lane called `name` for `watch` rooted at `root`, holding at most `max_pending` paths
    /// before collapsing them. With a `journal`, the changes it holds are replayed first
    /// and every change is recorded until delivered.
    pub fn new(
        name: String,
        watch: WatchId,
        root: PathBuf,
        timing: LaneTiming,
        max_pending: usize,
        journal: Option<(Journal, Vec<Event>)>,
    ) -> Arc<Lane> {
        let mut pending = Coalescer::new(watch, max_pending);
        let journal = journal.map(|(journal, replayed)| {
            if !replayed.is_empty() {
                tracing::info!(lane = %name, changes = replayed.len(), "replaying changes left undelivered by the previous run");
                pending.requeue(replayed);
            }
            journal
        });
        Arc::new(Lane {
            name,
            watch,
            root,
            timing,
            state: Mutex::new(State {
                pending,
                closing: false,
                retry_now: false,
                journal,
            }),
            wake: Condvar::new(),
            stats: LaneStats::default(),
            recorder: std::sync::OnceLock::new(),
        })
    }

    /// The lane's name, e.g. `rsync backup@10.0.0.2::www`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The watch it serves.
    pub fn watch(&self) -> WatchId {
        self.watch
    }

    /// Its counters.
    pub fn stats(&self) -> &LaneStats {
        &self.stats
    }

    /// Paths waiting for the next batch.
    pub fn pending(&self) -> usize {
        self.lock().pending.len()
    }

    /// Bytes in the lane's journal (0 without one).
    pub fn journal_bytes(&self) -> u64 {
        self.lock().journal.as_ref().map_or(0, Journal::bytes)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Merges events of this lane's watch into its pending state.
    pub fn push_all<'a>(&self, events: impl IntoIterator<Item = &'a Event>) {
        let mine: Vec<&Event> = events
            .into_iter()
            .filter(|e| e.watch == self.watch)
            .collect();
        if mine.is_empty() {
            return;
        }
        let mut state = self.lock();
        state.journal(&self.name, |j| j.append(mine.iter().copied()));
        let before = state.pending.len();
        for event in mine {
            state.pending.push(event.clone());
        }
        if before == 0 {
            self.wake.notify_all();
        }
    }

    /// Reports this lane's failures and recoveries to `recorder` (set once, before `run`).
    pub fn record_failures(&self, recorder: Arc<dyn FailureRecorder>) {
        let _ = self.recorder.set(recorder);
    }

    /// Ends a backoff pause now: the lane retries its failed work at once.
    pub fn retry_now(&self) {
        self.lock().retry_now = true;
        self.wake.notify_all();
    }

    /// Asks the lane to deliver what is pending at once and stop.
    pub fn close(&self) {
        self.lock().closing = true;
        self.wake.notify_all();
    }

    /// Waits for the next batch: until something is pending and has settled, or the lane is
    /// closing. `None` when closing with nothing pending.
    fn next_batch(&self) -> Option<Vec<Event>> {
        let mut state = self.lock();
        loop {
            let window = state.pending.arrival_window();
            let Some((first, last)) = window else {
                if state.closing {
                    return None;
                }
                state = self.wake.wait(state).unwrap_or_else(|e| e.into_inner());
                continue;
            };
            let due = (last + self.timing.settle).min(first + self.timing.max_delay);
            let now = Instant::now();
            if state.closing || now >= due {
                return Some(state.pending.take());
            }
            state = self
                .wake
                .wait_timeout(state, due - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Sleeps for `delay` unless the lane is closed meanwhile.
    fn pause(&self, delay: Duration) {
        let deadline = Instant::now() + delay;
        let mut state = self.lock();
        state.retry_now = false;
        while !state.closing && !std::mem::take(&mut state.retry_now) {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            state = self
                .wake
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// The lane's thread: cut batches, deliver them, retry failures, until closed. Returns
    /// the events that could not be delivered when it was closed; they stay in the journal
    /// for the next run, which is removed when nothing is left.
    pub fn run(self: Arc<Self>, mut sink: Box<dyn Sink>, mode: Mode) -> Vec<Event> {
        let mut backoff = Backoff::new(self.timing.retry_initial, self.timing.retry_max);
        while let Some(events) = self.next_batch() {
            let batch = Batch {
                watch: self.watch,
                root: self.root.clone(),
                events,
            };
            if mode == Mode::DryRun {
                for line in sink.describe(&batch) {
                    println!("[{}] {line}", self.name);
                }
                continue;
            }
            self.stats
                .in_flight
                .store(batch.len() as u64, Ordering::Relaxed);
            let started = Instant::now();
            // A panicking sink is a failed delivery, not a dead lane.
            let outcome =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sink.deliver(&batch)))
                    .unwrap_or_else(|_| Err(SinkError::retryable("the sink panicked")));
            self.stats.in_flight.store(0, Ordering::Relaxed);
            match outcome {
                Ok(()) => self.on_delivered(&batch, started, &mut backoff),
                Err(error) => {
                    let delay = self.on_failed(batch, &error, &mut backoff);
                    if self.lock().closing {
                        break;
                    }
                    self.pause(delay);
                }
            }
        }
        let mut state = self.lock();
        let left = state.pending.take();
        if left.is_empty() {
            if let Some(journal) = state.journal.take() {
                let _ = journal.remove();
            }
        }
        left
    }

    /// Bookkeeping after `batch` went through: counters, latency, recovery, journal.
    fn on_delivered(&self, batch: &Batch, started: Instant, backoff: &mut Backoff) {
        let recovered = backoff.failures() > 0;
        backoff.reset();
        self.stats.retry_streak.store(0, Ordering::Relaxed);
        if let (true, Some(recorder)) = (recovered, self.recorder.get()) {
            recorder.recovered(&self.name);
        }
        let now = SystemTime::now();
        for event in &batch.events {
            self.stats
                .latency
                .observe(now.duration_since(event.time).unwrap_or_default());
        }
        self.stats.batches.fetch_add(1, Ordering::Relaxed);
        self.stats
            .events
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        self.record(|last| last.success = Some(now));
        self.lock().compact_journal(&self.name);
        tracing::debug!(lane = %self.name, events = batch.len(), elapsed_ms = started.elapsed().as_millis() as u64, "batch delivered");
    }

    /// Bookkeeping after a delivery of `batch` failed: the batch goes back (older than what
    /// is pending), the failure is counted and logged; returns how long to wait.
    fn on_failed(&self, batch: Batch, error: &SinkError, backoff: &mut Backoff) -> Duration {
        if let Some(recorder) = self.recorder.get() {
            recorder.failed(&self.name, &batch);
        }
        let delay = if error.is_retryable() {
            backoff.next_delay()
        } else {
            backoff.fatal_delay()
        };
        self.stats.failures.fetch_add(1, Ordering::Relaxed);
        self.stats
            .retry_streak
            .store(backoff.failures(), Ordering::Relaxed);
        self.record(|last| last.error = Some((SystemTime::now(), error.message.clone())));
        {
            let mut state = self.lock();
            state.pending.requeue(batch.events);
            state.compact_journal(&self.name);
        }
        if error.is_retryable() {
            tracing::warn!(lane = %self.name, attempt = backoff.failures(), retry_in_ms = delay.as_millis() as u64, "{}", error.message);
        } else {
            tracing::error!(lane = %self.name, retry_in_ms = delay.as_millis() as u64, "{} — the changes are kept; fix the cause (or send SIGHUP after fixing the config)", error.message);
        }
        delay
    }

    fn record(&self, update: impl FnOnce(&mut LastOutcome)) {
        update(&mut self.stats.last.lock().unwrap_or_else(|e| e.into_inner()));
    }
}
