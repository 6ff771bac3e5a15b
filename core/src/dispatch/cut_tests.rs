//! When a lane cuts a batch: an idle lane sends a finished file without waiting for the
//! settle window, a busy one waits for it; each batch goes to the instance free the longest;
//! a lane behind waits for a bigger batch while another delivery runs.

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{unbounded, Receiver, Sender};
use sersync_plugin_sdk::{Batch, Event, EventKind, RelPath, Sink, SinkError, WatchId};

use super::{Lane, LaneId, LaneTiming, Mode, Pool};
use crate::dispatch::test_support::written;

/// Long enough for any scheduling hiccup; only reached when the lane misbehaves.
const PATIENCE: Duration = Duration::from_secs(10);
/// How long a batch that must not start yet is watched for.
const A_WHILE: Duration = Duration::from_millis(200);
/// Longer than any test runs: a window this long never passes.
const NEVER: Duration = Duration::from_secs(3600);

/// Sends which instance delivered which paths as each delivery starts, then waits for a
/// release when `held`.
struct Tagged {
    id: usize,
    started: Sender<(usize, Vec<String>)>,
    release: Option<Receiver<()>>,
}

impl Sink for Tagged {
    fn deliver(&mut self, batch: &Batch) -> Result<(), SinkError> {
        let paths = batch.events.iter().map(|e| e.path.to_string()).collect();
        self.started.send((self.id, paths)).unwrap();
        match &self.release {
            Some(release) => release
                .recv_timeout(PATIENCE)
                .map_err(|_| SinkError::fatal("never released")),
            None => Ok(()),
        }
    }
}

/// Which instance started delivering which paths.
type Starts = Receiver<(usize, Vec<String>)>;

/// A started lane with `instances` tagged sink instances; with `held`, each delivery waits
/// for a release on the returned sender.
fn started(timing: LaneTiming, instances: usize, held: bool) -> (Arc<Lane>, Starts, Sender<()>) {
    let lane = Lane::new(LaneId::new("cut", "/w"), WatchId(0), timing, 1000, None);
    let (started, starts) = unbounded();
    let (release, released) = unbounded();
    let sinks = (0..instances)
        .map(|id| {
            Box::new(Tagged {
                id,
                started: started.clone(),
                release: held.then(|| released.clone()),
            }) as Box<dyn Sink>
        })
        .collect();
    lane.start(sinks, Mode::Deliver, &Pool::new());
    (lane, starts, release)
}

fn file(kind: EventKind, path: &str) -> Event {
    Event::now(kind, RelPath::from(path), false, WatchId(0))
}

fn timing(settle: Duration, idle_settle: Duration, busy_max_delay: Duration) -> LaneTiming {
    // As `<engine>` allows: the maximum delay is never less than the settle window.
    LaneTiming {
        settle,
        idle_settle,
        max_delay: settle.max(Duration::from_millis(5)),
        busy_max_delay,
        retry_initial: Duration::from_millis(1),
        retry_max: Duration::from_millis(5),
    }
}

#[test]
fn an_idle_lane_hands_a_single_closed_file_to_a_free_instance_without_waiting_for_the_settle_window(
) {
    let (lane, starts, _release) = started(timing(NEVER, Duration::ZERO, NEVER), 1, false);
    lane.push_all([&file(EventKind::Create, "f")]);
    lane.push_all([&file(EventKind::Modify, "f")]);
    assert!(
        starts.recv_timeout(A_WHILE).is_err(),
        "a file still being written waits for the settle window"
    );
    lane.push_all([&file(EventKind::CloseWrite, "f")]);
    assert_eq!(starts.recv_timeout(PATIENCE).unwrap().1, ["f"]);
    lane.push_all([&written("g")]);
    assert!(
        starts.recv_timeout(A_WHILE).is_err(),
        "changes keep coming (g came less than the settle window after f): g waits for it"
    );
    lane.close();
    assert_eq!(starts.recv_timeout(PATIENCE).unwrap().1, ["g"]);
}

#[test]
fn a_directory_waits_for_the_settle_window_even_in_an_idle_lane() {
    let (lane, starts, _release) = started(timing(NEVER, Duration::ZERO, NEVER), 1, false);
    lane.push_all([&Event::now(
        EventKind::Create,
        RelPath::from("d"),
        true,
        WatchId(0),
    )]);
    assert!(
        starts.recv_timeout(A_WHILE).is_err(),
        "what it holds comes next"
    );
    lane.close();
    assert_eq!(starts.recv_timeout(PATIENCE).unwrap().1, ["d"]);
}

#[test]
fn each_batch_goes_to_the_instance_free_the_longest() {
    let settle = Duration::from_millis(1);
    let (lane, starts, _release) = started(timing(settle, settle, settle), 3, false);
    let mut order = Vec::new();
    for i in 0..6 {
        lane.push_all([&written(&format!("f{i}"))]);
        order.push(starts.recv_timeout(PATIENCE).unwrap().0);
    }
    assert_eq!(order, [0, 1, 2, 0, 1, 2]);
    lane.close();
}

#[test]
fn a_lane_behind_waits_for_a_bigger_batch_while_another_delivery_runs() {
    // No settle window ever passes (a steady stream): only the maximum delay cuts.
    let steady = LaneTiming {
        idle_settle: NEVER,
        max_delay: Duration::from_millis(5),
        ..timing(NEVER, NEVER, NEVER)
    };
    let (lane, starts, release) = started(steady, 2, true);
    // A slow delivery: the lane's last one took this long.
    lane.push_all([&written("slow")]);
    assert_eq!(starts.recv_timeout(PATIENCE).unwrap().1, ["slow"]);
    std::thread::sleep(Duration::from_millis(500));
    release.send(()).unwrap();
    // Nothing else runs: the next batch goes at the usual delay.
    lane.push_all([&written("a")]);
    assert_eq!(starts.recv_timeout(PATIENCE).unwrap().1, ["a"]);
    // While `a` is delivered, the free instance waits (as long as the last delivery took)
    // rather than take each change as it comes.
    lane.push_all([&written("b")]);
    std::thread::sleep(Duration::from_millis(20));
    lane.push_all([&written("c")]);
    assert!(
        starts.recv_timeout(Duration::from_millis(100)).is_err(),
        "b went alone while a was delivered"
    );
    // Once no other delivery runs, it takes everything at once.
    release.send(()).unwrap();
    let (_, batch) = starts.recv_timeout(PATIENCE).unwrap();
    assert_eq!(batch, ["b", "c"]);
    release.send(()).unwrap();
    lane.close();
}
