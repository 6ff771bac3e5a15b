//! Ordering between the sinks of one watch: a lane declared to run *after* others (a CDN
//! purge after the rsync lanes of its watch) delivers a change only once they have.
//!
//! **Sequence.** Every push into a lane takes the next number of the engine's one
//! [`Sequence`], under the lane's lock, and stamps what it merges with it (the coalescer
//! keeps, per pending entry, the oldest and the newest number it stands for:
//! [`Stamp`]). Whoever pushes a change into several lanes of a watch (the router, the
//! catch-up walk) pushes them in plan order, upstream lanes first, so the number a change
//! gets in a downstream lane is higher than the one it got in each upstream lane.
//!
//! **Watermark.** A lane's low watermark is the smallest number it still owes minus one:
//! the oldest `first` of its pending entries and of the batches in flight (a failed batch
//! goes back with its old stamps: it is still owed). Holding nothing, it owes nothing: its
//! watermark is `u64::MAX`. So "watermark ≥ n" means: every change this lane was given with
//! a number ≤ n has been delivered (a full sync delivered counts: its rescan stands for
//! everything it swallowed).
//!
//! **Gate.** A downstream lane cuts only entries whose newest number (`last`) is at most
//! the quorum of its upstream watermarks (`all`: the lowest; `any`: the highest; `N`: the
//! N-th highest). A change none of the upstream lanes was given is held only while one of
//! them is behind on older changes (the watermark is per lane, not per path). An upstream
//! lane wakes its downstream lanes when it delivers, finishes or empties. Past `maxWait`
//! since the newest change of an entry arrived, `onTimeout="send"` lets it go with a
//! warning naming the upstream lanes that had not delivered it (counted in
//! [`OrderStatus::timeouts`]); `wait` holds it until they do.
//!
//! **Locks.** A downstream lane reads its upstream lanes' watermarks under its own lock
//! (each upstream lock taken briefly, one at a time); an upstream lane wakes its downstream
//! lanes only outside its lock. Lanes are ordered by a DAG (the configuration refuses a
//! cycle), so the lock order downstream → upstream never inverts.
//!
//! **Restart.** Replayed changes are stamped when their lane is made, and lanes are made
//! in plan order, so a downstream lane's replayed changes wait for its upstream lanes'
//! replayed ones. A held change is pending, so it is in the lane's journal; a lane that is
//! stopped while its upstream lanes still owe its changes keeps them there (it finishes
//! once they have finished) instead of sending them early.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use super::in_flight::Ticket;
use super::lane::Lane;
use crate::coalesce::Stamp;

/// The numbers every push of one engine is stamped with (see the module's doc).
#[derive(Debug, Default)]
pub struct Sequence(AtomicU64);

impl Sequence {
    /// A sequence starting at 1.
    pub fn new() -> Arc<Sequence> {
        Arc::new(Sequence::default())
    }

    /// The next number.
    pub(super) fn next(&self) -> u64 {
        self.0.fetch_add(1, Ordering::SeqCst) + 1
    }
}

/// How many of the upstream lanes must have delivered a change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quorum {
    /// Every one (the default).
    All,
    /// At least one.
    Any,
    /// At least this many (more than there are means all).
    AtLeast(usize),
}

impl std::fmt::Display for Quorum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Quorum::All => f.write_str("all"),
            Quorum::Any => f.write_str("any"),
            Quorum::AtLeast(n) => write!(f, "{n}"),
        }
    }
}

/// What a change held past `maxWait` does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnTimeout {
    /// It goes out, with a warning naming the upstream lanes that had not delivered it.
    Send,
    /// It keeps waiting.
    Wait,
}

/// How a lane waits for its upstream lanes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrderRule {
    /// How many must have delivered.
    pub quorum: Quorum,
    /// How long a change waits at most (from its newest change's arrival).
    pub max_wait: Duration,
    /// What happens then.
    pub on_timeout: OnTimeout,
}

/// What an ordered lane is waiting for, for `/status` and `/metrics`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderStatus {
    /// The names of the upstream lanes.
    pub after: Vec<String>,
    /// The rule.
    pub rule: OrderRule,
    /// Pending changes not yet delivered by (a quorum of) the upstream lanes.
    pub waiting: u64,
    /// How long the oldest of them has waited.
    pub oldest_wait: Option<Duration>,
    /// Changes sent after `maxWait` before their upstream lanes had delivered them.
    pub timeouts: u64,
}

/// The stamps of each batch in flight of a lane.
#[derive(Debug, Default)]
pub(super) struct Flights(Vec<(Ticket, Vec<Stamp>)>);

impl Flights {
    pub(super) fn begin(&mut self, ticket: Ticket, stamps: Vec<Stamp>) {
        self.0.push((ticket, stamps));
    }

    /// The stamps of batch `ticket`, which is over.
    pub(super) fn end(&mut self, ticket: Ticket) -> Vec<Stamp> {
        match self.0.iter().position(|(t, _)| *t == ticket) {
            Some(index) => self.0.remove(index).1,
            None => Vec::new(),
        }
    }

    fn min_first(&self) -> Option<u64> {
        self.0
            .iter()
            .flat_map(|(_, stamps)| stamps.iter().map(|s| s.first))
            .min()
    }
}

/// A lane's low watermark from what it holds (see the module's doc).
pub(super) fn watermark(pending_min_first: Option<u64>, flights: &Flights) -> u64 {
    match (pending_min_first, flights.min_first()) {
        (None, None) => u64::MAX,
        (a, b) => a.into_iter().chain(b).min().unwrap_or(0).saturating_sub(1),
    }
}

/// The lanes one lane waits for.
struct Upstream {
    lanes: Vec<Arc<Lane>>,
    rule: OrderRule,
}

/// A lane's place in the ordering: the sequence it stamps pushes with, the lanes it waits
/// for (set once, before it starts) and the lanes that wait for it.
pub(super) struct Links {
    pub(super) sequence: Arc<Sequence>,
    upstream: OnceLock<Upstream>,
    downstream: Mutex<Vec<Weak<Lane>>>,
    timeouts: AtomicU64,
}

impl Links {
    pub(super) fn new(sequence: Arc<Sequence>) -> Links {
        Links {
            sequence,
            upstream: OnceLock::new(),
            downstream: Mutex::new(Vec::new()),
            timeouts: AtomicU64::new(0),
        }
    }

    /// True when some lane waits for this one.
    pub(super) fn has_downstream(&self) -> bool {
        !self
            .downstream
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    }

    /// The upstream watermarks now, as a gate for this lane's cut; `None` when unordered.
    /// Takes each upstream lane's lock in turn (see the module's doc on locks).
    pub(super) fn gate(&self) -> Option<Gate> {
        let upstream = self.upstream.get()?;
        let marks: Vec<(String, u64)> = upstream
            .lanes
            .iter()
            .map(|l| (l.name().to_string(), l.watermark()))
            .collect();
        let mut sorted: Vec<u64> = marks.iter().map(|(_, m)| *m).collect();
        sorted.sort_unstable_by(|a, b| b.cmp(a));
        let needed = match upstream.rule.quorum {
            Quorum::All => sorted.len(),
            Quorum::Any => 1,
            Quorum::AtLeast(n) => n.clamp(1, sorted.len().max(1)),
        };
        let quorum = sorted
            .get(needed.saturating_sub(1))
            .copied()
            .unwrap_or(u64::MAX);
        Some(Gate {
            quorum,
            marks,
            rule: upstream.rule,
            now: Instant::now(),
        })
    }

    /// True when every upstream lane has finished (closed, nothing more it will deliver).
    pub(super) fn upstream_finished(&self) -> bool {
        self.upstream
            .get()
            .is_some_and(|u| u.lanes.iter().all(|l| l.has_finished()))
    }

    /// Counts `n` changes sent past `maxWait`.
    pub(super) fn count_timeouts(&self, n: u64) {
        self.timeouts.fetch_add(n, Ordering::Relaxed);
    }

    /// Tells every downstream lane that this one may have delivered (called outside this
    /// lane's lock).
    pub(super) fn wake_downstream(&self) {
        let downstream: Vec<Arc<Lane>> = self
            .downstream
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        for lane in downstream {
            lane.upstream_moved();
        }
    }

    fn status(&self, gate: &Gate, stamps: &mut dyn Iterator<Item = &Stamp>) -> OrderStatus {
        let upstream = self.upstream.get().expect("an ordered lane");
        let (mut waiting, mut oldest) = (0, None::<Instant>);
        for stamp in stamps.filter(|s| !gate.delivered(s)) {
            waiting += 1;
            oldest = Some(oldest.map_or(stamp.at, |o| o.min(stamp.at)));
        }
        OrderStatus {
            after: upstream
                .lanes
                .iter()
                .map(|l| l.name().to_string())
                .collect(),
            rule: upstream.rule,
            waiting,
            oldest_wait: oldest.map(|at| gate.now.saturating_duration_since(at)),
            timeouts: self.timeouts.load(Ordering::Relaxed),
        }
    }
}

/// The upstream watermarks at one moment, applied to a downstream lane's pending entries.
pub(super) struct Gate {
    /// The quorum watermark.
    quorum: u64,
    /// Each upstream lane's watermark.
    marks: Vec<(String, u64)>,
    rule: OrderRule,
    now: Instant,
}

impl Gate {
    /// True when a quorum of the upstream lanes delivered what `stamp` stands for.
    pub(super) fn delivered(&self, stamp: &Stamp) -> bool {
        stamp.last <= self.quorum
    }

    /// True when `stamp`'s entry may be cut: delivered upstream, or held past `maxWait` in
    /// `send` mode.
    pub(super) fn admits(&self, stamp: &Stamp) -> bool {
        self.delivered(stamp)
            || (self.rule.on_timeout == OnTimeout::Send
                && self.now >= stamp.at + self.rule.max_wait)
    }

    /// The upstream lanes that have not delivered what `stamp` stands for.
    pub(super) fn laggards(&self, stamp: &Stamp) -> Vec<&str> {
        self.marks
            .iter()
            .filter(|(_, mark)| *mark < stamp.last)
            .map(|(name, _)| name.as_str())
            .collect()
    }

    /// When the first held entry times out (`send` mode), for the lane's timer.
    pub(super) fn next_timeout<'a>(
        &self,
        stamps: impl Iterator<Item = &'a Stamp>,
    ) -> Option<Instant> {
        if self.rule.on_timeout != OnTimeout::Send {
            return None;
        }
        stamps
            .filter(|s| !self.admits(s))
            .map(|s| s.at + self.rule.max_wait)
            .min()
    }
}

impl Lane {
    /// Orders this lane after `upstream` (lanes of the same watch, made before it, so its
    /// replayed changes wait for theirs): it delivers a change only once `rule`'s quorum of
    /// them has. Called once, before [`Lane::start`].
    pub fn order_after(self: &Arc<Self>, upstream: Vec<Arc<Lane>>, rule: OrderRule) {
        for lane in &upstream {
            lane.links()
                .downstream
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(Arc::downgrade(self));
        }
        let names: Vec<&str> = upstream.iter().map(|l| l.name()).collect();
        tracing::info!(lane = %self.name(), after = %names.join(", "), quorum = %rule.quorum, max_wait_ms = rule.max_wait.as_millis() as u64, on_timeout = ?rule.on_timeout, "ordered: delivers a change only once the lanes it runs after have");
        let _ = self.links().upstream.set(Upstream {
            lanes: upstream,
            rule,
        });
    }

    /// What this lane waits for, when it is ordered after others.
    pub fn order_status(&self) -> Option<OrderStatus> {
        let links = self.links();
        links.upstream.get()?;
        self.with_pending_stamps(|stamps| {
            let gate = links.gate()?;
            Some(links.status(&gate, stamps))
        })
    }
}

/// How one delivery of a gated cut is logged: the entries let go past `maxWait`.
pub(super) fn report_timeouts(lane: &str, links: &Links, gate: &Gate, stamps: &[Stamp]) {
    let late: Vec<&Stamp> = stamps.iter().filter(|s| !gate.delivered(s)).collect();
    if late.is_empty() {
        return;
    }
    let mut laggards: Vec<&str> = late.iter().flat_map(|s| gate.laggards(s)).collect();
    laggards.sort_unstable();
    laggards.dedup();
    links.count_timeouts(late.len() as u64);
    tracing::warn!(lane, changes = late.len(), not_delivered_by = %laggards.join(", "), max_wait_ms = gate.rule.max_wait.as_millis() as u64, "sending changes before the lanes this one runs after delivered them: maxWait passed (onTimeout=\"send\")");
}

#[cfg(test)]
#[path = "order_tests.rs"]
mod tests;
