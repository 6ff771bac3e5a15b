//! A lane: one sink serving one watch, with its own pending state, its own sink instances
//! and its own retry state. A slow or failing lane never holds up another.
//!
//! A lane holds no thread of its own. Whenever something changes (a change pushed, a
//! delivery over, a wake-up from the [`Pool`]'s timer, a close) it cuts what batches it can
//! and hands each, with a free sink instance, to a pool thread; so it delivers as many
//! batches side by side as it has instances, but a batch only takes changes that no batch
//! in flight touches ([`InFlight`]), so changes to one path never overtake each other. A
//! lane waiting for its batch to settle, or for its backoff after a failure (which pauses
//! the whole lane), only has a wake-up booked with the timer.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant, SystemTime};

use sersync_plugin_sdk::{Batch, Event, Sink, SinkError, WatchId};

use super::backoff::Backoff;
use super::histogram::{Histogram, HistogramSnapshot};
use super::in_flight::{InFlight, Ticket};
use super::journal::Journal;
use super::order::{self, Flights, Links, Sequence};
use super::pool::Pool;
use super::writer::{JournalQueue, Step};
use crate::coalesce::{Coalescer, Stamp};

/// How long an append waits for the journal's writer, so that the appends of the pushes
/// meanwhile are written together (see [`Lane::start_writer_soon`]). A change reaches the
/// file this much later than it reached the lane, as if it had waited this long in the
/// reader's channel; a heartbeat's catch-up finds what a crash in that moment lost.
const JOURNAL_LINGER: Duration = Duration::from_millis(5);

/// Who a lane is across restarts and reloads: its name (the sink it serves, e.g.
/// `rsync backup@10.0.0.2::www`) and the root it watches. Its journal is named after it
/// ([`Journal::file_name`]), and a reload tells the lanes it adds from those it keeps by it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LaneId {
    name: String,
    root: PathBuf,
}

impl LaneId {
    /// The lane `name` serving the watch root `root`.
    pub fn new(name: impl Into<String>, root: impl Into<PathBuf>) -> LaneId {
        LaneId {
            name: name.into(),
            root: root.into(),
        }
    }

    /// The lane's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The watch root it serves.
    pub fn root(&self) -> &Path {
        &self.root
    }
}

/// How a lane cuts batches and retries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LaneTiming {
    /// Quiet time after the last event before a batch is cut.
    pub settle: Duration,
    /// The settle window of a lane that was idle: when nothing had changed for `settle`
    /// before the pending changes began, and every one of them is a file its writer is done
    /// with ([`Coalescer::is_finished`]), the batch is cut this long after the last event
    /// instead. At least `settle` turns it off.
    pub idle_settle: Duration,
    /// Longest time a change waits for the batch to be cut while the tree is busy, when no
    /// other delivery of the lane runs.
    pub max_delay: Duration,
    /// While another delivery of the lane runs, a batch waits, after its first change, as
    /// long as the lane's last delivery took (when that is more than `max_delay`), at most
    /// this: a lane behind a stream of changes cuts fewer, bigger batches.
    pub busy_max_delay: Duration,
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

/// Counters and last outcomes, for logs and the control endpoint: written by the lane
/// (and its audit), read through the accessors.
#[derive(Debug, Default)]
pub struct LaneStats {
    batches: AtomicU64,
    events: AtomicU64,
    failures: AtomicU64,
    in_flight: AtomicU64,
    retry_streak: AtomicU32,
    latency: Histogram,
    last: Mutex<LastOutcome>,
    audit_runs: AtomicU64,
    audit_differences: AtomicU64,
}

impl LaneStats {
    /// Batches delivered.
    pub fn batches(&self) -> u64 {
        self.batches.load(Ordering::Relaxed)
    }

    /// Events delivered.
    pub fn events(&self) -> u64 {
        self.events.load(Ordering::Relaxed)
    }

    /// Failed deliveries.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Events in the batches being delivered now.
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Consecutive failed deliveries (0 when the last one succeeded).
    pub fn retry_streak(&self) -> u32 {
        self.retry_streak.load(Ordering::Relaxed)
    }

    /// From a change being seen to its batch being delivered.
    pub fn latency(&self) -> HistogramSnapshot {
        self.latency.snapshot()
    }

    /// When the last delivery succeeded, and the last error.
    pub fn last(&self) -> LastOutcome {
        self.last.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Drift audits run (`<engine auditSeconds>`).
    pub fn audit_runs(&self) -> u64 {
        self.audit_runs.load(Ordering::Relaxed)
    }

    /// Paths the audits found different on the remote (and sent again).
    pub fn audit_differences(&self) -> u64 {
        self.audit_differences.load(Ordering::Relaxed)
    }

    /// Counts one drift audit that found `differences` paths different.
    pub fn count_audit(&self, differences: u64) {
        self.audit_runs.fetch_add(1, Ordering::Relaxed);
        self.audit_differences
            .fetch_add(differences, Ordering::Relaxed);
    }
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
    /// A delivery failed; `undelivered` is everything the lane still owes (the batches in
    /// flight, then what is pending, the failed batch among it).
    fn failed(&self, lane: &str, undelivered: &Batch);
    /// A delivery went through after failures.
    fn recovered(&self, lane: &str);
}

struct State {
    pending: Coalescer,
    in_flight: InFlight,
    /// The stamps of the batches in flight (see [`super::order`]).
    flights: Flights,
    /// The lane finished owing changes: the smallest number among them, so that lanes
    /// ordered after it keep waiting for them (they stay in its journal).
    left_owed: Option<u64>,
    closing: bool,
    /// A delivery failed while closing: no worker starts another batch.
    stopped: bool,
    /// Set by [`Lane::retry_now`]: end the current backoff pause.
    retry_now: bool,
    /// No batch starts before this instant: the backoff after a failure.
    paused_until: Option<Instant>,
    /// No batch starts while set: why the lane is held (its watch root is lost, `hold.rs`).
    held: Option<String>,
    backoff: Backoff,
    /// When the last delivery failed. A success resets the backoff only when its batch
    /// started after that, so a batch that keeps failing beside others that succeed still
    /// backs off.
    last_failure: Option<Instant>,
    /// How long the last successful delivery took ([`LaneTiming::busy_max_delay`]).
    last_took: Duration,
    /// Everything pending was held back by a batch in flight: a new change may be one that
    /// can go, so a push looks again.
    blocked: bool,
    /// What the journal's writer has still to write; `None` without a journal (or after
    /// one failed). The file itself is the writer's ([`Lane::journal_file`]).
    journal: Option<JournalQueue>,
    /// The sink instances, from [`Lane::start`] until the lane finishes.
    slots: Option<Slots>,
    /// The wake-up booked with the pool's timer, if any.
    timer: Option<Instant>,
    /// What was left undelivered when the lane finished, until [`Lane::wait_finished`].
    left: Option<Vec<Event>>,
    /// What was left, while the journal's writer still writes it (then it becomes `left`).
    left_unwritten: Option<Vec<Event>>,
}

/// A started lane's sink instances and where it delivers.
struct Slots {
    /// Instances free for the next batch, the one free the longest first: it has had the
    /// most time to prepare its next delivery (an rsync instance's warm process connects
    /// while the instance waits).
    idle: VecDeque<Box<dyn Sink>>,
    /// Instances delivering now, on pool threads.
    busy: usize,
    mode: Mode,
    pool: Arc<Pool>,
}

/// What a lane can do next (see [`Lane::next_batch`]).
enum Next {
    /// Deliver this batch.
    Deliver(Ticket, Arc<Batch>),
    /// Look again at this instant.
    At(Instant),
    /// Look again after a change, a delivery ending or a close.
    Wait,
    /// Closed, with nothing more it can deliver.
    Finish,
}

impl State {
    /// The undelivered set changed other than by a push: the journal is to be rewritten.
    /// Returns whether a writer must be started.
    fn rewrite_journal(&mut self) -> bool {
        self.journal.as_mut().is_some_and(JournalQueue::rewrite)
    }
}

/// One sink for one watch.
pub struct Lane {
    id: LaneId,
    watch: WatchId,
    timing: LaneTiming,
    state: Mutex<State>,
    /// Signalled when the lane finishes.
    finished: Condvar,
    /// Itself, for the deliveries and wake-ups it hands out.
    me: Weak<Lane>,
    stats: LaneStats,
    recorder: std::sync::OnceLock<Arc<dyn FailureRecorder>>,
    /// Set by [`Lane::tell_every_delete`]: every change is pushed as one the destination may
    /// have seen already.
    tells_every_delete: AtomicBool,
    /// The journal's file, written only by the lane's writer (see [`super::writer`]),
    /// never under the lane's lock.
    journal_file: Mutex<Option<Journal>>,
    /// The journal's size after the writer's last step.
    journal_bytes: AtomicU64,
    /// Where the writer runs: the pool given to [`Lane::start`].
    pool: std::sync::OnceLock<Arc<Pool>>,
    /// Its place in the ordering between the sinks of its watch ([`super::order`]).
    order: Links,
}

impl Lane {
    /// The lane `id` for `watch` (rooted at `id`'s root), holding at most `max_pending` paths
    /// before collapsing them. With a `journal`, the changes it holds are replayed first
    /// and every change is recorded until delivered.
    pub fn new(
        id: LaneId,
        watch: WatchId,
        timing: LaneTiming,
        max_pending: usize,
        journal: Option<(Journal, Vec<Event>)>,
    ) -> Arc<Lane> {
        Lane::new_in(id, watch, timing, max_pending, journal, Sequence::new())
    }

    /// As [`Lane::new`], stamping its pushes from `sequence`, the engine's one
    /// ([`super::order`]): lanes ordered after one another share it, and are made in that
    /// order (so replayed changes are stamped upstream first).
    pub fn new_in(
        id: LaneId,
        watch: WatchId,
        timing: LaneTiming,
        max_pending: usize,
        journal: Option<(Journal, Vec<Event>)>,
        sequence: Arc<Sequence>,
    ) -> Arc<Lane> {
        let mut pending = Coalescer::new(watch, max_pending);
        if timing.idle_settle < timing.settle {
            pending.track_finished_after(timing.settle);
        }
        let journal = journal.map(|(journal, replayed)| {
            if !replayed.is_empty() {
                tracing::info!(lane = %id.name, changes = replayed.len(), "replaying changes left undelivered by the previous run");
                pending.stamp(Stamp::new(sequence.next()));
                pending.requeue(replayed);
            }
            journal
        });
        let journal_bytes = AtomicU64::new(journal.as_ref().map_or(0, Journal::bytes));
        let queue = journal.is_some().then(JournalQueue::default);
        Arc::new_cyclic(|me| Lane {
            id,
            watch,
            timing,
            state: Mutex::new(State {
                pending,
                in_flight: InFlight::default(),
                flights: Flights::default(),
                left_owed: None,
                closing: false,
                stopped: false,
                retry_now: false,
                paused_until: None,
                held: None,
                backoff: Backoff::new(timing.retry_initial, timing.retry_max),
                last_failure: None,
                last_took: Duration::ZERO,
                blocked: false,
                journal: queue,
                slots: None,
                timer: None,
                left: None,
                left_unwritten: None,
            }),
            finished: Condvar::new(),
            me: me.clone(),
            stats: LaneStats::default(),
            recorder: std::sync::OnceLock::new(),
            tells_every_delete: AtomicBool::new(false),
            journal_file: Mutex::new(journal),
            journal_bytes,
            pool: std::sync::OnceLock::new(),
            order: Links::new(sequence),
        })
    }

    pub(super) fn links(&self) -> &Links {
        &self.order
    }

    /// This lane's low watermark ([`super::order`]): every change it was given with a number
    /// at most this has been delivered.
    pub(super) fn watermark(&self) -> u64 {
        let state = self.lock();
        let owed = state
            .pending
            .min_first()
            .into_iter()
            .chain(state.left_owed)
            .min();
        order::watermark(owed, &state.flights)
    }

    /// True once the lane has finished (closed, its sink instances retired).
    pub(super) fn has_finished(&self) -> bool {
        let state = self.lock();
        state.closing && state.slots.is_none()
    }

    /// A lane this one runs after delivered, finished or emptied: what it holds may go now.
    pub(super) fn upstream_moved(&self) {
        self.schedule();
    }

    /// Runs `f` over the stamps of the pending entries, under the lane's lock.
    pub(super) fn with_pending_stamps<R>(
        &self,
        f: impl FnOnce(&mut dyn Iterator<Item = &Stamp>) -> R,
    ) -> R {
        let state = self.lock();
        let mut stamps = state.pending.stamps();
        f(&mut stamps)
    }

    /// The lane's name, e.g. `rsync backup@10.0.0.2::www`.
    pub fn name(&self) -> &str {
        &self.id.name
    }

    /// Who it is across restarts and reloads.
    pub fn id(&self) -> &LaneId {
        &self.id
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
        self.journal_bytes.load(Ordering::Relaxed)
    }

    /// When the oldest change the lane still owes happened: pending ([`crate::coalesce::Coalescer::oldest`])
    /// or in a batch being delivered. `None` when it owes nothing. For the lag a monitor
    /// sees (`sersync_lane_oldest_pending_seconds`); walks the batches in flight, so it is
    /// for a scrape, not for every event.
    pub fn oldest_pending(&self) -> Option<SystemTime> {
        let state = self.lock();
        let in_flight = state.in_flight.events().map(|e| e.time).min();
        match (state.pending.oldest(), in_flight) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
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
        // A lane waiting for its batch to settle, or for a free sink instance, need not look
        // again: a new change only delays the batch, unless it finished it (below).
        let look = state.pending.is_empty() || state.blocked;
        // One number for this push ([`super::order`]), taken under the lock.
        let seq = self.order.sequence.next();
        state.pending.stamp(Stamp::new(seq));
        let journaled = state.journal.is_some();
        let tells_every_delete = self.tells_every_delete.load(Ordering::Relaxed);
        let mut recorded = Vec::with_capacity(if journaled { mine.len() } else { 0 });
        for event in mine {
            // A batch in flight that covers this path (a directory sent whole) may carry it
            // to the remote already: a create then is no "new" path a delete may cancel.
            // Nor is any create for a lane whose consumers read the tree themselves.
            let changed = if tells_every_delete || state.in_flight.blocks(&event.path) {
                state.pending.push_maybe_sent(event.clone())
            } else {
                state.pending.push(event.clone())
            };
            // What changed nothing but times (a file written again while pending as created)
            // is in the journal already, as the entry it merged into.
            if journaled && changed {
                recorded.push(event);
            }
        }
        // Only queued, in the order merged: the lane's writer appends it, so a slow disk
        // delays no push.
        let write = !recorded.is_empty()
            && state
                .journal
                .as_mut()
                .is_some_and(|queue| queue.append(&recorded));
        // The push may have cancelled all this lane owed (created and deleted again).
        let emptied = state.pending.is_empty() && state.in_flight.events().next().is_none();
        // Or finished it: it may go sooner than the settle window it was waiting for.
        let look = look || state.pending.is_finished();
        drop(state);
        if write {
            self.start_writer_soon();
        }
        if look {
            self.schedule();
        }
        if emptied && self.order.has_downstream() {
            self.order.wake_downstream();
        }
    }

    /// Never lets a delete cancel a create (set before `start`): for a sink whose
    /// consumers read the watched tree themselves, at moments of their own
    /// ([`sersync_plugins::SinkSpec::consumers_read_the_tree`]), a path made and removed or
    /// renamed again before its batch left may have reached them with a directory they
    /// pulled whole, so its delete, or the rename's old name, must still be told.
    pub fn tell_every_delete(&self) {
        self.tells_every_delete.store(true, Ordering::Relaxed);
    }

    /// Reports this lane's failures and recoveries to `recorder` (set once, before `start`).
    pub fn record_failures(&self, recorder: Arc<dyn FailureRecorder>) {
        let _ = self.recorder.set(recorder);
    }

    /// Ends a backoff pause now: the lane retries its failed work at once.
    pub fn retry_now(&self) {
        self.lock().retry_now = true;
        self.schedule();
    }

    /// Asks the lane to deliver what is pending at once and stop.
    pub fn close(&self) {
        self.lock().closing = true;
        self.schedule();
    }

    /// What the lane can do now, from its state: hand a batch to a free sink instance, wait
    /// for an instant (the batch settling, or the backoff ending), wait for a change or a
    /// delivery to end, or finish (closed, nothing in flight, nothing left it can deliver).
    fn next_batch(&self, state: &mut State) -> Next {
        let Some(slots) = state.slots.as_ref() else {
            return Next::Wait;
        };
        let done = state.pending.is_empty() || state.held.is_some();
        let finished = slots.busy == 0 && (state.stopped || (state.closing && done));
        if finished {
            return Next::Finish;
        }
        if state.stopped || slots.idle.is_empty() || state.held.is_some() {
            return Next::Wait;
        }
        if let Some(until) = state.paused_until {
            if state.closing || std::mem::take(&mut state.retry_now) || Instant::now() >= until {
                state.paused_until = None;
            } else {
                return Next::At(until);
            }
        }
        let Some((first, last)) = state.pending.arrival_window() else {
            return Next::Wait;
        };
        let due = self.due(state, first, last);
        if !state.closing && Instant::now() < due {
            return Next::At(due);
        }
        // Ordered after other lanes: only what they have delivered ([`super::order`]).
        let gate = self.order.gate();
        let State {
            pending, in_flight, ..
        } = &mut *state;
        let (events, stamps) = pending.take_admitted(
            |path| in_flight.blocks(path),
            |stamp| gate.as_ref().is_none_or(|g| g.admits(stamp)),
        );
        // Everything pending may wait for a batch in flight: its end, or a new change, may
        // free some of it.
        state.blocked = events.is_empty();
        if state.blocked {
            let Some(gate) = gate else {
                return Next::Wait;
            };
            // Held for the lanes this one runs after: they wake it when they deliver, the
            // timer when the first held change reaches maxWait. Closing, once they have
            // finished, it finishes too, what they still owe kept in its journal.
            let busy = state.slots.as_ref().map_or(0, |s| s.busy);
            if state.closing && busy == 0 && self.order.upstream_finished() {
                return Next::Finish;
            }
            return match gate.next_timeout(state.pending.stamps()) {
                Some(at) => Next::At(at),
                None => Next::Wait,
            };
        }
        if let Some(gate) = &gate {
            order::report_timeouts(&self.id.name, &self.order, gate, &stamps);
        }
        let batch = Arc::new(Batch {
            watch: self.watch,
            root: self.id.root.clone(),
            events,
        });
        let ticket = state.in_flight.begin(batch.clone());
        state.flights.begin(ticket, stamps);
        Next::Deliver(ticket, batch)
    }

    /// When the pending changes, which arrived from `first` to `last`, are to be cut: after
    /// the settle window (the idle one when they are finished), at the latest the maximum
    /// delay after the first (stretched while another delivery runs, see
    /// [`LaneTiming::busy_max_delay`]).
    fn due(&self, state: &State, first: Instant, last: Instant) -> Instant {
        let timing = &self.timing;
        let settle = if state.pending.is_finished() {
            timing.idle_settle
        } else {
            timing.settle
        };
        let delivering = state.slots.as_ref().is_some_and(|s| s.busy > 0);
        let max_delay = if delivering {
            timing
                .max_delay
                .max(state.last_took.min(timing.busy_max_delay))
        } else {
            timing.max_delay
        };
        (last + settle).min(first + max_delay)
    }

    /// Starts delivering: each sink instance in `sinks` delivers one batch at a time, on a
    /// thread of `pool` taken only for that delivery. Wait for the end with
    /// [`Lane::wait_finished`] after [`Lane::close`].
    pub fn start(&self, sinks: Vec<Box<dyn Sink>>, mode: Mode, pool: &Arc<Pool>) {
        assert!(!sinks.is_empty(), "a lane needs a sink instance");
        // Set before the lock is taken: see `start_writer`.
        let _ = self.pool.set(pool.clone());
        let write = {
            let mut state = self.lock();
            state.slots = Some(Slots {
                idle: sinks.into(),
                busy: 0,
                mode,
                pool: pool.clone(),
            });
            // Changes pushed before the start are queued for a writer not started yet.
            state.journal.as_mut().is_some_and(JournalQueue::kick)
        };
        if write {
            self.start_writer();
        }
        self.schedule();
    }

    /// Does what the lane can do now (see [`Lane::next_batch`]): hands every batch it can
    /// cut to the pool, asks the pool's timer to call again when it must wait for an
    /// instant, or finishes. Called whenever that may have changed: a change, a delivery
    /// ending, a wake-up, a close.
    fn schedule(&self) {
        let mut deliveries = Vec::new();
        let mut wake_at = None;
        let mut retired = Vec::new();
        let mut write = false;
        let mut finished = false;
        let (pool, mode) = {
            let mut state = self.lock();
            let Some(slots) = state.slots.as_ref() else {
                return;
            };
            let (pool, mode) = (slots.pool.clone(), slots.mode);
            loop {
                match self.next_batch(&mut state) {
                    Next::Deliver(ticket, batch) => {
                        let slots = state.slots.as_mut().expect("the lane was started");
                        let sink = slots.idle.pop_front().expect("a free sink instance");
                        slots.busy += 1;
                        deliveries.push((ticket, batch, sink));
                    }
                    Next::At(at) => {
                        if state.timer.is_none_or(|armed| at < armed) {
                            state.timer = Some(at);
                            wake_at = Some(at);
                        }
                        break;
                    }
                    Next::Wait => break,
                    Next::Finish => {
                        (retired, write) = self.finish(&mut state);
                        finished = true;
                        break;
                    }
                }
            }
            (pool, mode)
        };
        if finished && self.order.has_downstream() {
            self.order.wake_downstream();
        }
        // Sink instances may take a while to stop (a plugin's process): not under the lock.
        drop(retired);
        if write {
            self.start_writer();
        }
        if let Some(at) = wake_at {
            let lane = self.me.clone();
            pool.at(at, move || {
                if let Some(lane) = lane.upgrade() {
                    lane.woken(at);
                }
            });
        }
        for (ticket, batch, sink) in deliveries {
            let lane = self.me.upgrade().expect("a lane in use is alive");
            pool.run(move || lane.deliver(ticket, batch, sink, mode));
        }
    }

    /// The pool's timer called back for the wake-up asked for `at`.
    fn woken(&self, at: Instant) {
        {
            let mut state = self.lock();
            if state.timer == Some(at) {
                state.timer = None;
            }
        }
        self.schedule();
    }

    /// The lane is done: what could not be delivered is kept for [`Lane::wait_finished`] (and
    /// stays in the journal for the next run, which is removed when nothing is left) once
    /// the journal's writer has written it. Returns the sink instances, to be dropped
    /// outside the lock, and whether a writer must be started.
    fn finish(&self, state: &mut State) -> (Vec<Box<dyn Sink>>, bool) {
        state.left_owed = state.pending.min_first();
        let left = state.pending.take();
        let sinks = state
            .slots
            .take()
            .map(|s| s.idle.into())
            .unwrap_or_default();
        match state.journal.as_mut().and_then(|queue| queue.finish(&left)) {
            Some(write) => {
                state.left_unwritten = Some(left);
                (sinks, write)
            }
            None => {
                state.left = Some(left);
                self.finished.notify_all();
                (sinks, false)
            }
        }
    }

    /// What was left is in the journal (or there is no journal to wait for): the lane has
    /// finished for [`Lane::wait_finished`].
    fn written_left(&self, state: &mut State) {
        if let Some(left) = state.left_unwritten.take() {
            state.left = Some(left);
            self.finished.notify_all();
        }
    }

    /// Runs the journal's writer on the pool a moment from now ([`JOURNAL_LINGER`]), so that
    /// the appends of the pushes meanwhile are written together: under a stream of changes
    /// one wake-up and one `write()` per moment, not per push. For appends only; what waits
    /// for the writer (a rewrite, the lane's end) finds it started by then.
    fn start_writer_soon(&self) {
        let Some(pool) = self.pool.get() else {
            return self.start_writer();
        };
        let lane = self.me.clone();
        pool.at(Instant::now() + JOURNAL_LINGER, move || {
            if let Some(lane) = lane.upgrade() {
                lane.start_writer();
            }
        });
    }

    /// Runs the journal's writer on the pool (the caller marked it running). Before
    /// [`Lane::start`] there is no pool: the writer is marked stopped again, and the start
    /// kicks it. (The pool is set before the start takes the lock, and looked for here
    /// again under it, so one of the two always starts it.)
    fn start_writer(&self) {
        let pool = match self.pool.get() {
            Some(pool) => pool,
            None => {
                let mut state = self.lock();
                match self.pool.get() {
                    Some(pool) => pool,
                    None => {
                        if let Some(queue) = state.journal.as_mut() {
                            queue.not_started();
                        }
                        return;
                    }
                }
            }
        };
        let lane = self.me.upgrade().expect("a lane in use is alive");
        pool.run(move || lane.write_journal());
    }

    /// The journal's writer, on a pool thread: takes each step from the lane's
    /// [`JournalQueue`] under the lock and does its I/O outside it, until nothing is left.
    /// A failed write is logged once and the lane goes on without a journal, so that a full
    /// disk or an unwritable state directory never stops syncing.
    fn write_journal(&self) {
        loop {
            let step = {
                let mut state = self.lock();
                let State {
                    journal,
                    in_flight,
                    pending,
                    ..
                } = &mut *state;
                let Some(queue) = journal.as_mut() else {
                    return;
                };
                // The batches in flight, then what is pending.
                let undelivered = || {
                    let mut events: Vec<Event> = in_flight.events().cloned().collect();
                    events.extend(pending.snapshot());
                    events
                };
                match queue.next(undelivered) {
                    Some(step) => step,
                    None => return,
                }
            };
            let removal = matches!(step, Step::Remove);
            let last = removal || matches!(step, Step::Rewrite { last: true, .. });
            let outcome = {
                let mut file = self.journal_file.lock().unwrap_or_else(|e| e.into_inner());
                let outcome = match step {
                    Step::Append(events) => file.as_mut().map(|j| j.append(&events)),
                    Step::Rewrite { events, .. } => file.as_mut().map(|j| j.rewrite(&events)),
                    Step::Remove => file.take().map(Journal::remove),
                };
                if matches!(outcome, Some(Err(_))) {
                    *file = None;
                }
                let bytes = file.as_ref().map_or(0, Journal::bytes);
                self.journal_bytes.store(bytes, Ordering::Relaxed);
                outcome
            };
            if let Some(Err(error)) = &outcome {
                tracing::error!(lane = %self.id.name, %error, "cannot write the lane's journal; syncing goes on, but changes pending at a crash would need a full sync (-r) to recover");
            }
            let done = removal || !matches!(outcome, Some(Ok(())));
            let mut state = self.lock();
            if done {
                state.journal = None;
            }
            if last || done {
                self.written_left(&mut state);
            }
            if done {
                return;
            }
        }
    }

    /// Waits, until `deadline` at most, for the lane to finish after [`Lane::close`]. Returns
    /// the events that could not be delivered, or `None` when the deadline passed first
    /// (or the result was already taken).
    pub fn wait_finished(&self, deadline: Instant) -> Option<Vec<Event>> {
        let mut state = self.lock();
        loop {
            if let Some(left) = state.left.take() {
                return Some(left);
            }
            let timeout = deadline.saturating_duration_since(Instant::now());
            if timeout.is_zero() {
                return None;
            }
            state = self
                .finished
                .wait_timeout(state, timeout)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// One delivery, on a pool thread: `batch` through `sink`, the bookkeeping, then the
    /// sink instance is free again and the lane looks for its next batch.
    fn deliver(&self, ticket: Ticket, batch: Arc<Batch>, mut sink: Box<dyn Sink>, mode: Mode) {
        if mode == Mode::DryRun {
            for line in sink.describe(&batch) {
                println!("[{}] {line}", self.id.name);
            }
            {
                let mut state = self.lock();
                state.in_flight.end(ticket);
                state.flights.end(ticket);
            }
        } else {
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
        if let Some(slots) = self.lock().slots.as_mut() {
            slots.idle.push_back(sink);
            slots.busy -= 1;
        }
        self.schedule();
        if self.order.has_downstream() {
            self.order.wake_downstream();
        }
    }

    /// Bookkeeping after `batch` went through: counters, latency, recovery, journal.
    fn on_delivered(&self, ticket: Ticket, batch: &Batch, started: Instant) {
        let (recovered, write) = {
            let mut state = self.lock();
            state.in_flight.end(ticket);
            state.flights.end(ticket);
            state.last_took = started.elapsed();
            let failed_meanwhile = state.last_failure.is_some_and(|at| at >= started);
            let recovered = !failed_meanwhile && state.backoff.failures() > 0;
            if !failed_meanwhile {
                state.backoff.reset();
                self.stats.retry_streak.store(0, Ordering::Relaxed);
            }
            let write = state.rewrite_journal();
            (recovered, write)
        };
        if write {
            self.start_writer();
        }
        if let (true, Some(recorder)) = (recovered, self.recorder.get()) {
            recorder.recovered(&self.id.name);
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
        tracing::debug!(lane = %self.id.name, events = batch.len(), elapsed_ms = started.elapsed().as_millis() as u64, "batch delivered");
    }

    /// Bookkeeping after a delivery of `batch` failed: the batch goes back (older than what
    /// is pending), the failure is counted and logged, and the lane pauses for the backoff.
    fn on_failed(&self, ticket: Ticket, batch: Arc<Batch>, error: &SinkError) {
        let (delay, attempt, write, undelivered) = {
            let mut state = self.lock();
            state.in_flight.end(ticket);
            // Still owed: it goes back with the numbers it had.
            let stamps = state.flights.end(ticket);
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
            if stamps.len() == events.len() {
                state.pending.requeue_stamped(events, stamps);
            } else {
                state.pending.requeue(events);
            }
            let write = state.rewrite_journal();
            // What the recorder shows is everything the lane still owes, not this batch
            // alone: with several deliveries at once, another batch may have failed before.
            let undelivered = self.recorder.get().map(|_| Batch {
                watch: self.watch,
                root: self.id.root.clone(),
                events: state
                    .in_flight
                    .events()
                    .cloned()
                    .chain(state.pending.snapshot())
                    .collect(),
            });
            (delay, state.backoff.failures(), write, undelivered)
        };
        if write {
            self.start_writer();
        }
        if let (Some(recorder), Some(undelivered)) = (self.recorder.get(), undelivered) {
            recorder.failed(&self.id.name, &undelivered);
        }
        self.stats.failures.fetch_add(1, Ordering::Relaxed);
        self.stats.retry_streak.store(attempt, Ordering::Relaxed);
        self.record(|last| last.error = Some((SystemTime::now(), error.message.clone())));
        if error.is_retryable() {
            tracing::warn!(lane = %self.id.name, attempt, retry_in_ms = delay.as_millis() as u64, "{}", error.message);
        } else {
            tracing::error!(lane = %self.id.name, retry_in_ms = delay.as_millis() as u64, "{} — the changes are kept; fix the cause (or send SIGHUP after fixing the config)", error.message);
        }
    }

    fn record(&self, update: impl FnOnce(&mut LastOutcome)) {
        update(&mut self.stats.last.lock().unwrap_or_else(|e| e.into_inner()));
    }
}

#[path = "hold.rs"]
mod hold;

#[cfg(test)]
#[path = "lane_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "cut_tests.rs"]
mod cut_tests;
