//! Ordering between lanes of one watch: a downstream lane never delivers a change before a
//! quorum of its upstream lanes has (`all`, `any`, N), whatever they do meanwhile (hold,
//! fail and retry); `maxWait` lets a held change go in `send` mode and not in `wait` mode;
//! changes no upstream lane was given are not held; replayed changes wait for the upstream
//! lanes' replayed ones; a lane stopped while held keeps its changes.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use sersync_plugin_sdk::{Batch, Event, Sink, SinkError, WatchId};

use super::super::journal::Journal;
use super::super::{route, Lane, LaneId, LaneTiming, Mode, Pool, Sequence};
use super::{OnTimeout, OrderRule, Quorum};
use crate::state_dir::StateDir;

const PATIENCE: Duration = Duration::from_secs(10);

fn timing() -> LaneTiming {
    LaneTiming {
        settle: Duration::from_millis(1),
        // Off: every batch waits out its settle window.
        idle_settle: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
        busy_max_delay: Duration::from_millis(5),
        retry_initial: Duration::from_millis(5),
        retry_max: Duration::from_millis(20),
    }
}

use crate::dispatch::test_support::written as write;

/// Who delivered which path, and every downstream delivery that came too early.
#[derive(Default)]
struct Ledger {
    delivered: Mutex<HashMap<String, HashSet<String>>>,
    /// Downstream deliveries, in order.
    downstream: Mutex<Vec<String>>,
    violations: Mutex<Vec<String>>,
}

impl Ledger {
    fn delivered_by(&self, lane: &str) -> usize {
        self.delivered
            .lock()
            .unwrap()
            .get(lane)
            .map_or(0, HashSet::len)
    }

    fn downstream(&self) -> usize {
        self.downstream.lock().unwrap().len()
    }
}

/// An upstream sink that delivers while open, fails while failing, blocks while closed.
#[derive(Clone, Default)]
struct Valve(Arc<(Mutex<(bool, bool)>, Condvar)>);

impl Valve {
    fn closed() -> Valve {
        Valve::default()
    }

    fn set(&self, open: bool, fail: bool) {
        *self.0 .0.lock().unwrap() = (open, fail);
        self.0 .1.notify_all();
    }
}

struct Upstream {
    name: String,
    valve: Valve,
    ledger: Arc<Ledger>,
}

impl Sink for Upstream {
    fn deliver(&mut self, batch: &Batch) -> Result<(), SinkError> {
        let (lock, cvar) = &*self.valve.0;
        let mut state = lock.lock().unwrap();
        let deadline = Instant::now() + PATIENCE;
        while !state.0 && !state.1 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(SinkError::retryable("closed"));
            }
            state = cvar.wait_timeout(state, left).unwrap().0;
        }
        if state.1 {
            return Err(SinkError::retryable("down"));
        }
        let mut delivered = self.ledger.delivered.lock().unwrap();
        let set = delivered.entry(self.name.clone()).or_default();
        set.extend(batch.events.iter().map(|e| e.path.to_string()));
        Ok(())
    }
}

/// A downstream sink checking, as each delivery starts, that `quorum` upstream lanes
/// delivered every path of it.
struct Downstream {
    quorum: usize,
    ledger: Arc<Ledger>,
}

impl Sink for Downstream {
    fn deliver(&mut self, batch: &Batch) -> Result<(), SinkError> {
        let delivered = self.ledger.delivered.lock().unwrap();
        for event in &batch.events {
            let path = event.path.to_string();
            let by = delivered.values().filter(|s| s.contains(&path)).count();
            if by < self.quorum {
                self.ledger
                    .violations
                    .lock()
                    .unwrap()
                    .push(format!("{path}: delivered upstream by {by}"));
            }
            self.ledger.downstream.lock().unwrap().push(path);
        }
        Ok(())
    }
}

struct Setup {
    upstream: Vec<(Arc<Lane>, Valve)>,
    downstream: Arc<Lane>,
    ledger: Arc<Ledger>,
}

impl Setup {
    /// `n` upstream lanes (closed) and one downstream lane after them with `rule`, which
    /// checks `check_quorum` upstream deliveries at each of its own.
    fn new(n: usize, rule: OrderRule, check_quorum: usize) -> Setup {
        Setup::with_journals(n, rule, check_quorum, None)
    }

    fn with_journals(
        n: usize,
        rule: OrderRule,
        check_quorum: usize,
        journals: Option<(&Arc<StateDir>, Vec<Event>)>,
    ) -> Setup {
        let sequence = Sequence::new();
        let pool = Pool::new();
        let ledger = Arc::new(Ledger::default());
        let journal = |name: &str| {
            journals.as_ref().map(|(dir, replay)| {
                let (mut journal, _) = Journal::open(dir, name, WatchId(0)).unwrap();
                journal.append(replay.iter()).unwrap();
                drop(journal);
                Journal::open(dir, name, WatchId(0)).unwrap()
            })
        };
        let make = |name: &str| {
            Lane::new_in(
                LaneId::new(name, "/w"),
                WatchId(0),
                timing(),
                100_000,
                journal(name),
                sequence.clone(),
            )
        };
        let upstream: Vec<(Arc<Lane>, Valve)> = (0..n)
            .map(|i| (make(&format!("rsync {i}")), Valve::closed()))
            .collect();
        let downstream = make("refreshCDN");
        downstream.order_after(upstream.iter().map(|(l, _)| l.clone()).collect(), rule);
        for (lane, valve) in &upstream {
            lane.start(
                vec![Box::new(Upstream {
                    name: lane.name().to_string(),
                    valve: valve.clone(),
                    ledger: ledger.clone(),
                })],
                Mode::Deliver,
                &pool,
            );
        }
        downstream.start(
            vec![Box::new(Downstream {
                quorum: check_quorum,
                ledger: ledger.clone(),
            })],
            Mode::Deliver,
            &pool,
        );
        Setup {
            upstream,
            downstream,
            ledger,
        }
    }

    /// Pushes `paths` as the router does: every lane, upstream first.
    fn route(&self, paths: &[&str]) {
        let (tx, rx) = crossbeam_channel::unbounded();
        for path in paths {
            tx.send(vec![write(path)]).unwrap();
        }
        drop(tx);
        let mut lanes: Vec<Arc<Lane>> = self.upstream.iter().map(|(l, _)| l.clone()).collect();
        lanes.push(self.downstream.clone());
        route(rx, &lanes);
    }

    fn open(&self, i: usize) {
        self.upstream[i].1.set(true, false);
    }

    fn violations(&self) -> Vec<String> {
        self.ledger.violations.lock().unwrap().clone()
    }
}

fn rule(quorum: Quorum) -> OrderRule {
    OrderRule {
        quorum,
        max_wait: Duration::from_secs(3600),
        on_timeout: OnTimeout::Send,
    }
}

fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Nothing reaches the downstream lane for a while (long next to its 1 ms settle time).
fn stays_quiet(setup: &Setup, expected: usize, what: &str) {
    std::thread::sleep(Duration::from_millis(150));
    assert_eq!(setup.ledger.downstream(), expected, "{what}");
}

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("f{i}")).collect()
}

#[test]
fn with_quorum_all_nothing_goes_downstream_before_every_upstream_lane_delivered_it() {
    let setup = Setup::new(2, rule(Quorum::All), 2);
    let files = names(20);
    let files: Vec<&str> = files.iter().map(String::as_str).collect();
    setup.route(&files);
    setup.open(0);
    eventually("the first upstream lane delivers", || {
        setup.ledger.delivered_by("rsync 0") == 20
    });
    stays_quiet(&setup, 0, "the second upstream lane has delivered nothing");
    let status = setup.downstream.order_status().expect("an ordered lane");
    assert_eq!(status.waiting, 20);
    assert!(status.oldest_wait.is_some());
    setup.open(1);
    eventually("the downstream lane delivers all", || {
        setup.ledger.downstream() == 20
    });
    assert_eq!(setup.violations(), Vec::<String>::new());
    assert_eq!(setup.downstream.order_status().unwrap().waiting, 0);
}

#[test]
fn a_steady_stream_goes_downstream_only_behind_the_upstream_lanes() {
    // Both upstream lanes open, changes keep coming: the downstream lane keeps up, and
    // each of its deliveries checks both upstream lanes had delivered every path in it.
    let setup = Setup::new(2, rule(Quorum::All), 2);
    setup.open(0);
    setup.open(1);
    let files = names(300);
    for chunk in files.chunks(10) {
        let chunk: Vec<&str> = chunk.iter().map(String::as_str).collect();
        setup.route(&chunk);
        std::thread::sleep(Duration::from_millis(1));
    }
    eventually("everything goes downstream", || {
        setup.ledger.downstream.lock().unwrap().len() >= 300
    });
    assert_eq!(setup.violations(), Vec::<String>::new());
}

#[test]
fn with_quorum_any_one_upstream_lane_is_enough() {
    let setup = Setup::new(2, rule(Quorum::Any), 1);
    setup.route(&["a", "b", "c"]);
    stays_quiet(&setup, 0, "no upstream lane has delivered");
    setup.open(1);
    eventually("the downstream lane delivers", || {
        setup.ledger.downstream() == 3
    });
    assert_eq!(setup.violations(), Vec::<String>::new());
}

#[test]
fn with_quorum_two_of_three_the_second_upstream_lane_releases() {
    let setup = Setup::new(3, rule(Quorum::AtLeast(2)), 2);
    setup.route(&["a", "b"]);
    setup.open(2);
    eventually("one upstream lane delivers", || {
        setup.ledger.delivered_by("rsync 2") == 2
    });
    stays_quiet(&setup, 0, "one of three is not two");
    setup.open(0);
    eventually("the downstream lane delivers", || {
        setup.ledger.downstream() == 2
    });
    assert_eq!(setup.violations(), Vec::<String>::new());
}

#[test]
fn a_change_no_upstream_lane_was_given_is_not_held() {
    let setup = Setup::new(1, rule(Quorum::All), 0);
    setup.open(0);
    setup.route(&["both"]);
    eventually("a change both have goes through", || {
        setup.ledger.downstream() == 1
    });
    // Only the downstream lane is given this one (excluded upstream, or not theirs).
    setup.downstream.push_all([&write("mine")]);
    eventually("it goes out at once", || setup.ledger.downstream() == 2);
    // Another watch's lanes are no upstream lanes: an upstream lane stuck on its own
    // changes holds nothing of a lane it is not ordered before.
    let stuck = Setup::new(1, rule(Quorum::All), 0);
    stuck.route(&["held"]);
    let other = Lane::new(LaneId::new("other", "/w"), WatchId(0), timing(), 100, None);
    let ledger = Arc::new(Ledger::default());
    other.start(
        vec![Box::new(Downstream {
            quorum: 0,
            ledger: ledger.clone(),
        })],
        Mode::Deliver,
        &Pool::new(),
    );
    other.push_all([&write("free")]);
    eventually("an unordered lane delivers", || ledger.downstream() == 1);
    stays_quiet(&stuck, 0, "the stuck one's downstream lane waits");
}

#[test]
fn an_upstream_lane_failing_and_retrying_keeps_the_downstream_lane_waiting() {
    let setup = Setup::new(1, rule(Quorum::All), 1);
    setup.upstream[0].1.set(false, true);
    setup.route(&["a", "b"]);
    eventually("the upstream lane fails and retries", || {
        setup.upstream[0].0.stats().failures() >= 3
    });
    setup.route(&["c"]);
    stays_quiet(&setup, 0, "requeued changes are still owed");
    assert!(setup.upstream[0].0.stats().failures() >= 4);
    setup.open(0);
    eventually("the downstream lane delivers after the retry", || {
        setup.ledger.downstream() == 3
    });
    assert_eq!(setup.violations(), Vec::<String>::new());
}

#[test]
fn past_max_wait_a_held_change_is_sent_and_counted() {
    let setup = Setup::new(
        1,
        OrderRule {
            quorum: Quorum::All,
            max_wait: Duration::from_millis(300),
            on_timeout: OnTimeout::Send,
        },
        0,
    );
    let start = Instant::now();
    setup.route(&["late"]);
    eventually("sent after maxWait", || setup.ledger.downstream() == 1);
    assert!(start.elapsed() >= Duration::from_millis(300));
    let status = setup.downstream.order_status().unwrap();
    assert_eq!(status.timeouts, 1);
    assert_eq!(status.waiting, 0);
    assert_eq!(setup.ledger.delivered_by("rsync 0"), 0);
}

#[test]
fn in_wait_mode_a_held_change_waits_past_max_wait() {
    let setup = Setup::new(
        1,
        OrderRule {
            quorum: Quorum::All,
            max_wait: Duration::from_millis(50),
            on_timeout: OnTimeout::Wait,
        },
        1,
    );
    setup.route(&["held"]);
    stays_quiet(&setup, 0, "wait mode waits");
    std::thread::sleep(Duration::from_millis(150));
    let status = setup.downstream.order_status().unwrap();
    assert_eq!((status.waiting, status.timeouts), (1, 0));
    assert!(status.oldest_wait.unwrap() >= Duration::from_millis(250));
    setup.open(0);
    eventually("delivered once upstream has", || {
        setup.ledger.downstream() == 1
    });
    assert_eq!(setup.violations(), Vec::<String>::new());
}

#[test]
fn replayed_changes_wait_for_the_upstream_lanes_replayed_ones() {
    let dir = tempfile::tempdir().unwrap();
    let state = Arc::new(StateDir::open(&dir.path().join("state")).unwrap());
    let setup = Setup::with_journals(
        1,
        rule(Quorum::All),
        1,
        Some((&state, vec![write("replayed")])),
    );
    stays_quiet(
        &setup,
        0,
        "the upstream lane has not delivered its replayed change",
    );
    setup.open(0);
    eventually("delivered after upstream's replay", || {
        setup.ledger.downstream() == 1
    });
    assert_eq!(setup.violations(), Vec::<String>::new());
}

#[test]
fn a_lane_stopped_while_held_keeps_its_changes_instead_of_sending_them() {
    let setup = Setup::new(1, rule(Quorum::All), 1);
    setup.upstream[0].1.set(false, true);
    setup.route(&["owed"]);
    eventually("the upstream lane fails", || {
        setup.upstream[0].0.stats().failures() >= 1
    });
    setup.downstream.close();
    setup.upstream[0].0.close();
    let deadline = Instant::now() + PATIENCE;
    let up = setup.upstream[0]
        .0
        .wait_finished(deadline)
        .expect("finished");
    let down = setup.downstream.wait_finished(deadline).expect("finished");
    let paths =
        |events: &[Event]| -> Vec<String> { events.iter().map(|e| e.path.to_string()).collect() };
    assert_eq!(paths(&up), ["owed"]);
    assert_eq!(paths(&down), ["owed"]);
    assert_eq!(setup.ledger.downstream(), 0, "nothing sent early");
}
