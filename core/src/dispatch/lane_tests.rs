//! Lanes with several sink instances: disjoint batches overlap, overlapping ones never do,
//! and nothing is lost. Lanes on one pool: idle ones hold no thread, and a hanging one
//! holds up no other. Journals: a stuck disk under one lane's journal holds up neither the
//! router nor another lane, its writer's queue stays bounded, and what the lane holds
//! reaches the file once the disk comes back.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver, Sender};
use sersync_plugin_sdk::{Batch, Event, EventKind, RelPath, Sink, SinkError, WatchId};

use super::super::journal::{Journal, Stall};
use super::super::writer::MAX_QUEUED;
use super::{Lane, LaneId, LaneTiming, Mode, Pool};
use crate::state_dir::StateDir;

/// Long enough for any scheduling hiccup; only reached when the lane misbehaves.
const PATIENCE: Duration = Duration::from_secs(10);

fn timing() -> LaneTiming {
    LaneTiming {
        settle: Duration::from_millis(1),
        // Off: every batch waits out its settle window.
        idle_settle: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
        busy_max_delay: Duration::from_millis(5),
        retry_initial: Duration::from_millis(1),
        retry_max: Duration::from_millis(5),
    }
}

fn lane() -> Arc<Lane> {
    lane_with(timing())
}

fn lane_with(timing: LaneTiming) -> Arc<Lane> {
    Lane::new(LaneId::new("test", "/w"), WatchId(0), timing, 100_000, None)
}

use crate::dispatch::test_support::written as write;

fn paths(batch: &Batch) -> Vec<String> {
    batch.events.iter().map(|e| e.path.to_string()).collect()
}

/// Reports each delivery as it starts, then waits to be released.
struct Gated {
    started: Sender<Vec<String>>,
    release: Receiver<()>,
}

impl Sink for Gated {
    fn deliver(&mut self, batch: &Batch) -> Result<(), SinkError> {
        self.started.send(paths(batch)).unwrap();
        self.release
            .recv_timeout(PATIENCE)
            .map_err(|_| SinkError::fatal("never released"))
    }
}

fn gated_lane(workers: usize) -> (Arc<Lane>, Receiver<Vec<String>>, Sender<()>) {
    let lane = lane();
    let (started, starts) = unbounded();
    let (release, released) = unbounded();
    let sinks: Vec<Box<dyn Sink>> = (0..workers)
        .map(|_| {
            Box::new(Gated {
                started: started.clone(),
                release: released.clone(),
            }) as Box<dyn Sink>
        })
        .collect();
    lane.start(sinks, Mode::Deliver, &Pool::new());
    (lane, starts, release)
}

#[test]
fn a_batch_of_other_paths_starts_while_one_is_in_flight() {
    let (lane, starts, release) = gated_lane(2);
    lane.push_all([&write("a/f")]);
    assert_eq!(starts.recv_timeout(PATIENCE).unwrap(), ["a/f"]);
    lane.push_all([&write("b/g")]);
    assert_eq!(
        starts.recv_timeout(PATIENCE).unwrap(),
        ["b/g"],
        "the second worker should not wait for the first transfer"
    );
    release.send(()).unwrap();
    release.send(()).unwrap();
    lane.close();
}

#[test]
fn a_change_below_a_directory_in_flight_waits_for_it() {
    let (lane, starts, release) = gated_lane(2);
    lane.push_all([&Event::now(
        EventKind::Create,
        RelPath::from("d"),
        true,
        WatchId(0),
    )]);
    assert_eq!(starts.recv_timeout(PATIENCE).unwrap(), ["d"]);
    lane.push_all([&write("d/x"), &write("e")]);
    assert_eq!(starts.recv_timeout(PATIENCE).unwrap(), ["e"]);
    assert!(
        starts.recv_timeout(Duration::from_millis(300)).is_err(),
        "d/x must not start while d is in flight"
    );
    // Both deliveries wait on one release channel: which one a release ends is up to the
    // scheduler, so end both.
    release.send(()).unwrap();
    release.send(()).unwrap();
    assert_eq!(starts.recv_timeout(PATIENCE).unwrap(), ["d/x"]);
    release.send(()).unwrap();
    lane.close();
}

/// Records which paths are being delivered, and any two overlapping ones delivered side by
/// side (a panic here would only be a failed delivery); fails now and then.
struct Checking {
    active: Arc<Mutex<Vec<RelPath>>>,
    clashes: Arc<Mutex<Vec<String>>>,
    inject_failures: Arc<AtomicBool>,
    delivered: Arc<Mutex<HashSet<RelPath>>>,
    calls: u64,
}

impl Sink for Checking {
    fn deliver(&mut self, batch: &Batch) -> Result<(), SinkError> {
        let mine: Vec<RelPath> = batch
            .events
            .iter()
            .flat_map(|e| std::iter::once(e.path.clone()).chain(e.from.clone()))
            .collect();
        {
            let mut active = self.active.lock().unwrap();
            for path in &mine {
                if let Some(other) = active
                    .iter()
                    .find(|other| path.is_within(other) || other.is_within(path))
                {
                    self.clashes
                        .lock()
                        .unwrap()
                        .push(format!("{path} beside {other}"));
                }
            }
            active.extend(mine.iter().cloned());
        }
        std::thread::sleep(Duration::from_millis(2));
        self.calls += 1;
        let fail = self.calls % 7 == 0 && self.inject_failures.load(Ordering::Relaxed);
        let mut active = self.active.lock().unwrap();
        for path in &mine {
            let at = active.iter().position(|p| p == path).unwrap();
            active.swap_remove(at);
        }
        if fail {
            return Err(SinkError::retryable("injected failure"));
        }
        self.delivered
            .lock()
            .unwrap()
            .extend(batch.events.iter().map(|e| e.path.clone()));
        Ok(())
    }
}

#[test]
fn overlapping_changes_are_never_delivered_side_by_side_and_all_arrive() {
    let lane = lane();
    let active = Arc::new(Mutex::new(Vec::new()));
    let delivered = Arc::new(Mutex::new(HashSet::new()));
    let clashes = Arc::new(Mutex::new(Vec::new()));
    let inject_failures = Arc::new(AtomicBool::new(true));
    let sinks: Vec<Box<dyn Sink>> = (0..3)
        .map(|_| {
            Box::new(Checking {
                active: active.clone(),
                clashes: clashes.clone(),
                inject_failures: inject_failures.clone(),
                delivered: delivered.clone(),
                calls: 0,
            }) as Box<dyn Sink>
        })
        .collect();
    lane.start(sinks, Mode::Deliver, &Pool::new());
    let names = ["a", "a/b", "a/b/c", "a/c", "b", "b/a", "c"];
    let mut expected = HashSet::new();
    for round in 0..400 {
        let path = RelPath::from(names[(round * 5 + round / 7) % names.len()]);
        // Mostly new files, sometimes a change of a directory above others.
        let changed = if round % 3 == 0 {
            path
        } else {
            path.join(format!("f{round}").as_bytes())
        };
        lane.push_all([&write(&changed.to_string())]);
        expected.insert(changed);
        if round % 4 == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    // Injected failures are retried. A failure while closing would leave its batch for the
    // next start, so failures stop before the lane is closed.
    let deadline = std::time::Instant::now() + PATIENCE * 3;
    let missing = loop {
        let missing: Vec<RelPath> = expected
            .difference(&delivered.lock().unwrap())
            .cloned()
            .collect();
        if missing.is_empty() || std::time::Instant::now() > deadline {
            break missing;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    assert!(missing.is_empty(), "never delivered: {missing:?}");
    assert_eq!(*clashes.lock().unwrap(), Vec::<String>::new());
    inject_failures.store(false, Ordering::Relaxed);
    lane.close();
    let left = lane
        .wait_finished(Instant::now() + PATIENCE)
        .expect("the lane stops");
    assert!(left.is_empty(), "undelivered at close: {left:?}");
}

/// Counts its deliveries; fails them all when told to.
struct Counting {
    delivered: Sender<()>,
    fail: bool,
}

impl Sink for Counting {
    fn deliver(&mut self, _: &Batch) -> Result<(), SinkError> {
        self.delivered.send(()).unwrap();
        if self.fail {
            return Err(SinkError::retryable("down"));
        }
        Ok(())
    }
}

fn counting(delivered: &Sender<()>, fail: bool) -> Box<dyn Sink> {
    Box::new(Counting {
        delivered: delivered.clone(),
        fail,
    })
}

/// Threads of this process now.
fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

/// Waits for `count` messages on `rx`, failing after [`PATIENCE`].
fn expect(rx: &Receiver<()>, count: usize, what: &str) {
    for n in 0..count {
        rx.recv_timeout(PATIENCE)
            .unwrap_or_else(|_| panic!("{what}: only {n} of {count}"));
    }
}

#[test]
fn a_thousand_idle_lanes_hold_no_thread_and_all_deliver() {
    let pool = Pool::new();
    let (delivered, deliveries) = unbounded();
    let before = threads();
    let lanes: Vec<Arc<Lane>> = (0..1000)
        .map(|_| {
            let lane = lane();
            lane.start(
                vec![counting(&delivered, false), counting(&delivered, false)],
                Mode::Deliver,
                &pool,
            );
            lane
        })
        .collect();
    assert_eq!(pool.threads(), 0, "idle lanes hold no pool thread");
    // Other tests run beside this one; their threads are well within the margin.
    let started = threads();
    assert!(
        started < before + 100,
        "1,000 idle lanes took {} threads",
        started.saturating_sub(before)
    );
    for lane in &lanes {
        lane.push_all([&write("f")]);
    }
    expect(&deliveries, 1000, "deliveries");
    for lane in &lanes {
        lane.close();
    }
    let deadline = Instant::now() + PATIENCE;
    for lane in &lanes {
        assert_eq!(lane.wait_finished(deadline), Some(Vec::new()));
    }
}

#[test]
fn a_lane_that_hangs_does_not_delay_fifty_others() {
    let pool = Pool::new();
    let (started, starts) = unbounded();
    let (release, released) = unbounded::<()>();
    let hanging = lane();
    hanging.start(
        vec![Box::new(Gated {
            started,
            release: released,
        })],
        Mode::Deliver,
        &pool,
    );
    hanging.push_all([&write("stuck")]);
    assert_eq!(starts.recv_timeout(PATIENCE).unwrap(), ["stuck"]);
    let (delivered, deliveries) = unbounded();
    let others: Vec<Arc<Lane>> = (0..50)
        .map(|_| {
            let lane = lane();
            lane.start(vec![counting(&delivered, false)], Mode::Deliver, &pool);
            lane
        })
        .collect();
    let begun = Instant::now();
    for lane in &others {
        lane.push_all([&write("f")]);
    }
    expect(&deliveries, 50, "deliveries beside the hanging lane");
    assert!(
        begun.elapsed() < Duration::from_secs(2),
        "took {:?}",
        begun.elapsed()
    );
    release.send(()).unwrap();
}

#[test]
fn a_lane_in_backoff_holds_no_thread_and_retries_when_asked() {
    let pool = Pool::new();
    let lane = lane_with(LaneTiming {
        retry_initial: Duration::from_secs(3600),
        retry_max: Duration::from_secs(3600),
        ..timing()
    });
    let (delivered, deliveries) = unbounded();
    lane.start(vec![counting(&delivered, true)], Mode::Deliver, &pool);
    lane.push_all([&write("f")]);
    expect(&deliveries, 1, "the first attempt");
    let deadline = Instant::now() + PATIENCE;
    while pool.busy() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(pool.busy(), 0, "a thread is held by the lane in backoff");
    assert_eq!(lane.pending(), 1, "the failed change is kept");
    assert!(
        deliveries.recv_timeout(Duration::from_millis(100)).is_err(),
        "no retry before the backoff ends"
    );
    lane.retry_now();
    expect(&deliveries, 1, "the retry asked for");
}

/// Records the paths it delivered.
struct Recording(Arc<Mutex<HashSet<String>>>);

impl Sink for Recording {
    fn deliver(&mut self, batch: &Batch) -> Result<(), SinkError> {
        self.0.lock().unwrap().extend(paths(batch));
        Ok(())
    }
}

/// A journal named `name` in a state directory below `dir`, whose writes wait while
/// `stall` is held; with where its file is.
fn stalled_journal(
    dir: &tempfile::TempDir,
    name: &str,
    stall: &Stall,
) -> ((Journal, Vec<Event>), std::path::PathBuf) {
    let state = Arc::new(StateDir::open(&dir.path().join("state")).unwrap());
    let (mut journal, replayed) = Journal::open(&state, name, WatchId(0)).unwrap();
    journal.stall_with(stall.clone());
    ((journal, replayed), state.file_path(name))
}

/// What a new start would replay from the journal at `path` as it is on disk now (as after
/// `kill -9`), read from a copy so that the lane's file is not touched.
fn replayed_from(path: &std::path::Path) -> HashSet<String> {
    let copy = tempfile::tempdir().unwrap();
    let state = Arc::new(StateDir::open(&copy.path().join("state")).unwrap());
    std::fs::copy(path, state.file_path("copy.journal")).unwrap();
    let (_, events) = Journal::open(&state, "copy.journal", WatchId(0)).unwrap();
    events.iter().map(|e| e.path.to_string()).collect()
}

/// Polls `done` until it holds, failing with `what` after [`PATIENCE`].
fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn a_stuck_journal_delays_neither_the_router_nor_another_lane_of_the_watch() {
    let dir = tempfile::tempdir().unwrap();
    let stall = Stall::default();
    stall.hold();
    let (journal, path) = stalled_journal(&dir, "stuck.journal", &stall);
    let pool = Pool::new();
    let stuck = Lane::new(
        LaneId::new("stuck", "/w"),
        WatchId(0),
        timing(),
        100_000,
        Some(journal),
    );
    let stuck_got = Arc::new(Mutex::new(HashSet::new()));
    stuck.start(
        vec![Box::new(Recording(stuck_got.clone()))],
        Mode::Deliver,
        &pool,
    );
    let other = lane();
    let other_got = Arc::new(Mutex::new(HashSet::new()));
    other.start(
        vec![Box::new(Recording(other_got.clone()))],
        Mode::Deliver,
        &pool,
    );
    // The reader's channel, small so that a stalled router shows at once.
    let (tx, rx) = crossbeam_channel::bounded::<Vec<Event>>(4);
    let lanes = vec![stuck.clone(), other.clone()];
    let router = std::thread::spawn(move || super::super::route(rx, &lanes));

    tx.send(vec![write("first")]).unwrap();
    eventually("the stuck lane's writer never reached the disk", || {
        stall.waiting() == 1
    });
    let expected: HashSet<String> = std::iter::once("first".to_string())
        .chain((0..200).map(|n| format!("f{n}")))
        .collect();
    for n in 0..200 {
        tx.send_timeout(vec![write(&format!("f{n}"))], Duration::from_secs(2))
            .expect("the router stopped taking messages while one lane's journal is stuck");
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    while *other_got.lock().unwrap() != expected {
        assert!(
            Instant::now() < deadline,
            "the other lane was held up by the stuck journal: {} of {} delivered",
            other_got.lock().unwrap().len(),
            expected.len()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    // The stuck lane itself delivers too: its sink does not wait for its disk.
    eventually(
        "the stuck lane's own deliveries waited for its disk",
        || *stuck_got.lock().unwrap() == expected,
    );
    assert_eq!(stall.passed(), 0, "the stall held every write");
    assert!(
        stuck.lock().journal.as_ref().unwrap().queued() <= MAX_QUEUED,
        "the writer's queue is bounded"
    );

    drop(tx);
    router.join().unwrap();
    stuck.close();
    other.close();
    assert_eq!(
        stuck.wait_finished(Instant::now() + Duration::from_millis(200)),
        None,
        "the lane has not finished before its journal says so"
    );
    assert_eq!(
        other.wait_finished(Instant::now() + PATIENCE),
        Some(Vec::new())
    );
    stall.release();
    assert_eq!(
        stuck.wait_finished(Instant::now() + PATIENCE),
        Some(Vec::new())
    );
    assert!(
        !path.exists(),
        "everything was delivered: the journal is removed"
    );
    assert_eq!(stuck.journal_bytes(), 0);
}

#[test]
fn what_a_lane_holds_reaches_its_journal_once_a_stuck_disk_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let stall = Stall::default();
    let (journal, path) = stalled_journal(&dir, "lane.journal", &stall);
    let lane = Lane::new(
        LaneId::new("lane", "/w"),
        WatchId(0),
        LaneTiming {
            retry_initial: Duration::from_secs(3600),
            retry_max: Duration::from_secs(3600),
            ..timing()
        },
        100_000,
        Some(journal),
    );
    let (delivered, deliveries) = unbounded();
    lane.start(
        vec![counting(&delivered, true)],
        Mode::Deliver,
        &Pool::new(),
    );
    lane.push_all([&write("early")]);
    expect(&deliveries, 1, "the first attempt");
    eventually("the failed batch is journaled", || {
        replayed_from(&path) == HashSet::from(["early".to_string()])
    });

    // The disk sticks; far more changes come than the writer may queue.
    stall.hold();
    lane.push_all([&write("first")]);
    eventually("the writer reached the disk", || stall.waiting() == 1);
    let mut expected = HashSet::from(["early".to_string(), "first".to_string()]);
    for n in 0..MAX_QUEUED * 3 {
        let name = format!("f{n}");
        lane.push_all([&write(&name)]);
        expected.insert(name);
        let queued = lane.lock().journal.as_ref().unwrap().queued();
        assert!(queued <= MAX_QUEUED, "{queued} events queued");
    }
    assert_eq!(lane.pending(), expected.len());
    stall.release();
    // As after `kill -9` now: every change the lane was handed is on disk.
    eventually("the journal caught up with the lane", || {
        replayed_from(&path) == expected
    });
}

/// Reports each delivery as it starts, waits to be released, then fails.
struct GatedFailure(Gated);

impl Sink for GatedFailure {
    fn deliver(&mut self, batch: &Batch) -> Result<(), SinkError> {
        self.0.deliver(batch)?;
        Err(SinkError::retryable("the remote is down"))
    }
}

/// What a failure recorder was last told.
#[derive(Default)]
struct LastFailure(Mutex<Option<Vec<String>>>);

impl super::FailureRecorder for LastFailure {
    fn failed(&self, _: &str, undelivered: &Batch) {
        let mut got = paths(undelivered);
        got.sort();
        *self.0.lock().unwrap() = Some(got);
    }

    fn recovered(&self, _: &str) {
        *self.0.lock().unwrap() = None;
    }
}

#[test]
fn a_failure_reports_everything_the_lane_owes_not_only_the_batch_that_failed() {
    let lane = lane_with(LaneTiming {
        retry_initial: PATIENCE,
        retry_max: PATIENCE,
        ..timing()
    });
    let recorder = Arc::new(LastFailure::default());
    lane.record_failures(recorder.clone());
    let (started, starts) = unbounded();
    let (release, released) = unbounded();
    let sinks: Vec<Box<dyn Sink>> = (0..2)
        .map(|_| {
            Box::new(GatedFailure(Gated {
                started: started.clone(),
                release: released.clone(),
            })) as Box<dyn Sink>
        })
        .collect();
    lane.start(sinks, Mode::Deliver, &Pool::new());
    lane.push_all([&write("a/f")]);
    assert_eq!(starts.recv_timeout(PATIENCE).unwrap(), ["a/f"]);
    lane.push_all([&write("b/g")]);
    assert_eq!(starts.recv_timeout(PATIENCE).unwrap(), ["b/g"]);
    // Both fail, one after the other: the second report must still name the first's path.
    release.send(()).unwrap();
    release.send(()).unwrap();
    eventually("both failures reported", || lane.stats().failures() == 2);
    assert_eq!(
        recorder.0.lock().unwrap().clone(),
        Some(vec!["a/f".to_string(), "b/g".to_string()])
    );
}

/// What a lane delivers for a directory made (with a file in it) and renamed before its
/// batch left: each event's kind, path and old name.
fn made_then_renamed(tells_every_delete: bool) -> Vec<String> {
    let lane = lane();
    if tells_every_delete {
        lane.tell_every_delete();
    }
    let w = WatchId(0);
    let p = |s: &str| RelPath::new(s.as_bytes());
    lane.push_all(&[
        Event::now(EventKind::Create, p("d/.tmp"), true, w),
        Event::now(EventKind::CloseWrite, p("d/.tmp/f"), false, w),
        Event::moved(p("d/.tmp"), p("d/final"), true, w),
    ]);
    let (tx, rx) = unbounded();
    struct Recording(Sender<Vec<String>>);
    impl Sink for Recording {
        fn deliver(&mut self, batch: &Batch) -> Result<(), SinkError> {
            let told = batch
                .events
                .iter()
                .map(|e| match &e.from {
                    Some(from) => format!("{:?} {from} -> {}", e.kind, e.path),
                    None => format!("{:?} {}", e.kind, e.path),
                })
                .collect();
            self.0.send(told).unwrap();
            Ok(())
        }
    }
    lane.start(vec![Box::new(Recording(tx))], Mode::Deliver, &Pool::new());
    let told = rx.recv_timeout(PATIENCE).unwrap();
    lane.close();
    told
}

#[test]
fn a_lane_whose_consumers_read_the_tree_tells_the_old_name_of_a_new_directory_renamed() {
    // Nobody was told of `d/.tmp`, so by default nobody hears of it.
    let plain = made_then_renamed(false);
    assert!(plain.iter().all(|e| !e.contains(".tmp")), "{plain:?}");
    // A follower may have pulled `d` whole while `.tmp` was there: it must hear it is gone
    // (a create the destination may have is no longer renamed as new, but deleted).
    let told = made_then_renamed(true);
    assert!(told.iter().any(|e| e == "Delete d/.tmp"), "{told:?}");
    assert!(told.iter().any(|e| e == "Create d/final"), "{told:?}");
}
