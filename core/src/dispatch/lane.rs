//! A lane: one sink serving one watch, with its own pending state, its own threads and its
//! own retry state. A slow or failing lane never holds up another.
//!
//! A lane runs one worker thread per sink instance it was given. Workers cut batches from
//! the shared pending state and deliver them side by side, but a batch only takes changes
//! that no batch in flight touches ([`InFlight`]), so changes to one path never overtake
//! each other. Backoff after a failure pauses the whole lane.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use sersync_plugin_sdk::{Batch, Event, Sink, SinkError, WatchId};

use super::backoff::Backoff;
use super::histogram::Histogram;
use super::in_flight::{InFlight, Ticket};
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
    /// Events in the batches being delivered now.
    pub in_flight: AtomicU64,
    /// Consecutive failed deliveries (0 when the last one succeeded).
    pub retry_streak: AtomicU32,
    /// From a change being seen to its batch being delivered.
    pub latency: Histogram,
    /// When the last delivery succeeded, and the last error.
    pub last: Mutex<LastOutcome>,
    /// Drift audits run (`<engine auditSeconds>`).
    pub audit_runs: AtomicU64,
    /// Paths the audits found different on the remote (and sent again).
    pub audit_differences: AtomicU64,
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
    in_flight: InFlight,
    closing: bool,
    /// A delivery failed while closing: no worker starts another batch.
    stopped: bool,
    /// Set by [`Lane::retry_now`]: end the current backoff pause.
    retry_now: bool,
    /// No batch starts before this instant: the backoff after a failure.
    paused_until: Option<Instant>,
    backoff: Backoff,
    /// When the last delivery failed. A success resets the backoff only when its batch
    /// started after that, so a batch that keeps failing beside others that succeed still
    /// backs off.
    last_failure: Option<Instant>,
    /// Workers waiting because everything pending is held back by a batch in flight: a new
    /// change may be one they can take, so pushes wake them.
    blocked_workers: usize,
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

    /// Makes the journal hold exactly what is undelivered now: the batches in flight, then
    /// what is pending.
    fn compact_journal(&mut self, lane: &str) {
        if self.journal.is_some() {
            let mut undelivered: Vec<Event> = self.in_flight.events().cloned().collect();
            undelivered.extend(self.pending.snapshot());
            self.journal(lane, |j| j.rewrite(&undelivered));
        }
    }
}

/// One sink for one watch.
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
                in_flight: InFlight::default(),
                closing: false,
                stopped: false,
                retry_now: false,
                paused_until: None,
                backoff: Backoff::new(timing.retry_initial, timing.retry_max),
                last_failure: None,
                blocked_workers: 0,
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
        // Workers waiting for a batch to settle need no wake-up: a new change only delays it.
        let wake = state.pending.is_empty() || state.blocked_workers > 0;
        for event in mine {
            state.pending.push(event.clone());
        }
        drop(state);
        if wake {
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

    fn wait<'a>(&self, state: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        self.wake.wait(state).unwrap_or_else(|e| e.into_inner())
    }

    fn wait_until<'a>(
        &self,
        state: MutexGuard<'a, State>,
        deadline: Instant,
    ) -> MutexGuard<'a, State> {
        let timeout = deadline.saturating_duration_since(Instant::now());
        self.wake
            .wait_timeout(state, timeout)
            .unwrap_or_else(|e| e.into_inner())
            .0
    }

    /// Waits for the next batch a worker may deliver: until the lane is not paused, something
    /// is pending and has settled, and some of it is not held back by a batch in flight (or
    /// the lane is closing). `None` when this worker has nothing left to do.
    fn next_batch(&self) -> Option<(Ticket, Arc<Batch>)> {
        let mut state = self.lock();
        loop {
            if state.stopped {
                return None;
            }
            if let Some(until) = state.paused_until {
                if state.closing || std::mem::take(&mut state.retry_now) || Instant::now() >= until
                {
                    state.paused_until = None;
                } else {
                    state = self.wait_until(state, until);
                    continue;
                }
            }
            let Some((first, last)) = state.pending.arrival_window() else {
                if state.closing {
                    return None;
                }
                state = self.wait(state);
                continue;
            };
            let due = (last + self.timing.settle).min(first + self.timing.max_delay);
            if !state.closing && Instant::now() < due {
                state = self.wait_until(state, due);
                continue;
            }
            let State {
                pending, in_flight, ..
            } = &mut *state;
            let events = pending.take_unblocked(|path| in_flight.blocks(path));
            if !events.is_empty() {
                let batch = Arc::new(Batch {
                    watch: self.watch,
                    root: self.root.clone(),
                    events,
                });
                let ticket = state.in_flight.begin(batch.clone());
                return Some((ticket, batch));
            }
            // Everything pending waits for a batch in flight: its end, or a new change, wakes us.
            state.blocked_workers += 1;
            state = self.wait(state);
            state.blocked_workers -= 1;
        }
    }

    /// The lane's threads: one worker per sink instance in `sinks`, each cutting batches,
    /// delivering them and putting failures back, until the lane is closed. Returns the
    /// events that could not be delivered when it was closed; they stay in the journal for
    /// the next run, which is removed when nothing is left.
    pub fn run(self: Arc<Self>, sinks: Vec<Box<dyn Sink>>, mode: Mode) -> Vec<Event> {
        std::thread::scope(|scope| {
            let mut sinks = sinks.into_iter();
            let own = sinks.next();
            for (index, sink) in sinks.enumerate() {
                let lane = &self;
                std::thread::Builder::new()
                    .name(format!("lane {} #{}", self.name, index + 2))
                    .spawn_scoped(scope, move || lane.work(sink, mode))
                    .expect("spawning a lane worker");
            }
            if let Some(sink) = own {
                self.work(sink, mode);
            }
        });
        let mut state = self.lock();
        let left = state.pending.take();
        if left.is_empty() {
            if let Some(journal) = state.journal.take() {
                let _ = journal.remove();
            }
        }
        left
    }

    /// One worker: delivers batches through `sink` until [`Lane::next_batch`] has none.
    fn work(&self, mut sink: Box<dyn Sink>, mode: Mode) {
        while let Some((ticket, batch)) = self.next_batch() {
            if mode == Mode::DryRun {
                for line in sink.describe(&batch) {
                    println!("[{}] {line}", self.name);
                }
                self.lock().in_flight.end(ticket);
                self.wake.notify_all();
                continue;
            }
            let size = batch.len() as u64;
            self.stats.in_flight.fetch_add(size, Ordering::Relaxed);
            let started = Instant::now();
            // A panicking sink is a failed delivery, not a dead lane.
            let outcome =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sink.deliver(&batch)))
                    .unwrap_or_else(|_| Err(SinkError::retryable("the sink panicked")));
            self.stats.in_flight.fetch_sub(size, Ordering::Relaxed);
            match outcome {
                Ok(()) => self.on_delivered(ticket, &batch, started),
                Err(error) => self.on_failed(ticket, batch, &error),
            }
        }
    }

    /// Bookkeeping after `batch` went through: counters, latency, recovery, journal.
    fn on_delivered(&self, ticket: Ticket, batch: &Batch, started: Instant) {
        let recovered = {
            let mut state = self.lock();
            state.in_flight.end(ticket);
            let failed_meanwhile = state.last_failure.is_some_and(|at| at >= started);
            let recovered = !failed_meanwhile && state.backoff.failures() > 0;
            if !failed_meanwhile {
                state.backoff.reset();
                self.stats.retry_streak.store(0, Ordering::Relaxed);
            }
            state.compact_journal(&self.name);
            recovered
        };
        self.wake.notify_all();
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
        tracing::debug!(lane = %self.name, events = batch.len(), elapsed_ms = started.elapsed().as_millis() as u64, "batch delivered");
    }

    /// Bookkeeping after a delivery of `batch` failed: the batch goes back (older than what
    /// is pending), the failure is counted and logged, and the lane pauses for the backoff.
    fn on_failed(&self, ticket: Ticket, batch: Arc<Batch>, error: &SinkError) {
        if let Some(recorder) = self.recorder.get() {
            recorder.failed(&self.name, &batch);
        }
        let (delay, attempt) = {
            let mut state = self.lock();
            state.in_flight.end(ticket);
            let delay = if error.is_retryable() {
                state.backoff.next_delay()
            } else {
                state.backoff.fatal_delay()
            };
            let now = Instant::now();
            state.last_failure = Some(now);
            state.paused_until = Some(now + delay);
            state.retry_now = false;
            state.stopped = state.closing;
            // Ending the ticket dropped the other reference: the events are not copied.
            let events = Arc::try_unwrap(batch).map_or_else(|b| b.events.clone(), |b| b.events);
            state.pending.requeue(events);
            state.compact_journal(&self.name);
            (delay, state.backoff.failures())
        };
        self.wake.notify_all();
        self.stats.failures.fetch_add(1, Ordering::Relaxed);
        self.stats.retry_streak.store(attempt, Ordering::Relaxed);
        self.record(|last| last.error = Some((SystemTime::now(), error.message.clone())));
        if error.is_retryable() {
            tracing::warn!(lane = %self.name, attempt, retry_in_ms = delay.as_millis() as u64, "{}", error.message);
        } else {
            tracing::error!(lane = %self.name, retry_in_ms = delay.as_millis() as u64, "{} — the changes are kept; fix the cause (or send SIGHUP after fixing the config)", error.message);
        }
    }

    fn record(&self, update: impl FnOnce(&mut LastOutcome)) {
        update(&mut self.stats.last.lock().unwrap_or_else(|e| e.into_inner()));
    }
}

#[cfg(test)]
#[path = "lane_tests.rs"]
mod tests;
