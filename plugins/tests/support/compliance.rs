//! The sink compliance suite: what every sink must do, whatever its peer.
//!
//! A sink's test file provides a [`SinkUnderTest`] (how to start the sink against a live peer
//! that records what it got, and against a dead one) and a [`Probe`] (what the peer was told,
//! decoded back to relative path bytes), then expands the suite:
//!
//! ```ignore
//! mod support;
//! struct MySut;
//! impl support::compliance::SinkUnderTest for MySut { … }
//! support::compliance::suite!(MySut);
//! ```
//!
//! Each check is then a `#[test]` of its own in a `compliance` module.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::peers::poll;

use sersync_plugin_sdk::{Batch, Event, EventKind, RelPath, Sink, WatchId};

/// How long a live peer may take to show a delivery (deliver() has returned by then; this only
/// covers the peer's reader thread).
pub const SHOW_LIMIT: Duration = Duration::from_secs(10);
/// How long a delivery to a dead peer may take to fail.
pub const DEAD_LIMIT: Duration = Duration::from_secs(15);

/// What a live peer was told, decoded.
pub trait Probe {
    /// Every relative path (raw bytes) the peer has been told about so far, once per time it
    /// was told; for a move, both names.
    fn delivered(&self) -> Vec<Vec<u8>>;
}

/// A sink and its peers, as the suite needs them.
pub trait SinkUnderTest {
    /// A sink serving the watch rooted at `root`, delivering to a fresh live peer, and a probe
    /// into that peer.
    fn live(&self, root: &Path) -> (Box<dyn Sink>, Box<dyn Probe>);
    /// A sink serving `root` whose peer is unreachable (a closed port on 127.0.0.1) or never
    /// answers.
    fn dead(&self, root: &Path) -> Box<dyn Sink>;
}

/// A watch root in a temporary directory.
pub struct Lane {
    _dir: tempfile::TempDir,
    /// The root (a directory `root` inside the temporary directory).
    pub root: PathBuf,
}

impl Lane {
    /// A fresh, empty root.
    pub fn new() -> Lane {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        Lane { _dir: dir, root }
    }

    /// A batch of `events` for this root.
    pub fn batch(&self, events: Vec<Event>) -> Batch {
        Batch {
            watch: WatchId(0),
            root: self.root.clone(),
            events,
        }
    }

    /// Creates `path` (a file, or a directory when `is_dir`) with its parents, and returns a
    /// `kind` event for it.
    pub fn touch(&self, kind: EventKind, path: &[u8], is_dir: bool) -> Event {
        let rel = RelPath::new(path);
        let abs = rel.absolute(&self.root);
        if is_dir {
            std::fs::create_dir_all(&abs).unwrap();
        } else {
            std::fs::create_dir_all(abs.parent().unwrap()).unwrap();
            std::fs::write(&abs, b"x").unwrap();
        }
        Event::now(kind, rel, is_dir, WatchId(0))
    }

    /// A move event from `from` to `to` (created on disk).
    pub fn moved(&self, from: &[u8], to: &[u8], is_dir: bool) -> Event {
        let mut event = self.touch(EventKind::Move, to, is_dir);
        event.from = Some(RelPath::new(from));
        event
    }

    /// A path beside the root (in the same temporary directory, outside the watch).
    pub fn beside(&self, name: &str) -> PathBuf {
        beside(&self.root, name)
    }

    /// Panics if a file called `PWNED` appeared where a shell run by the sink would have made it.
    pub fn assert_nothing_executed(&self) {
        for dir in [self.root.clone(), std::env::current_dir().unwrap()] {
            assert!(
                !dir.join("PWNED").exists(),
                "a file name was executed: {}/PWNED exists",
                dir.display()
            );
        }
    }
}

impl Default for Lane {
    fn default() -> Self {
        Lane::new()
    }
}

/// `name` beside the watch `root`: in the lane's temporary directory, outside the watch.
pub fn beside(root: &Path, name: &str) -> PathBuf {
    root.parent().unwrap().join(name)
}

/// Names that break anything that pastes paths into a shell or a protocol line.
pub fn weird_names() -> Vec<Vec<u8>> {
    [
        &b"new\nline"[..],
        b"double\"quote",
        b"single'quote",
        b"$(touch PWNED)",
        b"`touch PWNED`",
        b"semi;touch PWNED",
        b"-leading-dash",
        b"--help",
        b"bad\xff\xfeutf8",
        b"space & amp=1?#%41",
        b"caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac",
        b"dir with space/inner\tfile",
    ]
    .iter()
    .map(|n| n.to_vec())
    .collect()
}

/// Waits until every path of `expected` has been delivered at least `times` times.
pub fn wait_delivered(probe: &dyn Probe, expected: &[Vec<u8>], times: usize) {
    let mut missing = Vec::new();
    let ok = poll(SHOW_LIMIT, || {
        let got = probe.delivered();
        missing = expected
            .iter()
            .filter(|p| got.iter().filter(|g| g == p).count() < times)
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect();
        missing.is_empty()
    });
    if !ok {
        let got: Vec<String> = probe
            .delivered()
            .iter()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect();
        panic!("not delivered {times}x within {SHOW_LIMIT:?}: {missing:?}\npeer got: {got:?}");
    }
}

/// Weird names arrive intact and nothing they contain is executed.
pub fn weird_names_delivered_intact(sut: &dyn SinkUnderTest) {
    let lane = Lane::new();
    let (mut sink, probe) = sut.live(&lane.root);
    let names = weird_names();
    let events = names
        .iter()
        .map(|n| lane.touch(EventKind::CloseWrite, n, false))
        .collect();
    sink.deliver(&lane.batch(events))
        .expect("delivery to a live peer");
    wait_delivered(probe.as_ref(), &names, 1);
    lane.assert_nothing_executed();
}

/// Every event kind of a batch is delivered; a move names both its paths.
pub fn every_kind_delivered(sut: &dyn SinkUnderTest) {
    let lane = Lane::new();
    let (mut sink, probe) = sut.live(&lane.root);
    let moved = lane.moved(b"moved-old", b"moved-new", false);
    let events = vec![
        lane.touch(EventKind::Create, b"created-dir", true),
        lane.touch(EventKind::Modify, b"created-dir/modified", false),
        lane.touch(EventKind::CloseWrite, b"written", false),
        lane.touch(EventKind::Attrib, b"chmodded", false),
        Event::now(
            EventKind::Delete,
            RelPath::from("deleted"),
            false,
            WatchId(0),
        ),
        moved,
        lane.touch(EventKind::Rescan, b"rescanned-dir", true),
    ];
    sink.deliver(&lane.batch(events))
        .expect("delivery to a live peer");
    let expected: Vec<Vec<u8>> = [
        "created-dir",
        "created-dir/modified",
        "written",
        "chmodded",
        "deleted",
        "moved-old",
        "moved-new",
        "rescanned-dir",
    ]
    .iter()
    .map(|p| p.as_bytes().to_vec())
    .collect();
    wait_delivered(probe.as_ref(), &expected, 1);
}

/// A dead peer gives a retryable error, soon, without a panic.
pub fn dead_peer_is_retryable(sut: &dyn SinkUnderTest) {
    let lane = Lane::new();
    let mut sink = sut.dead(&lane.root);
    let batch = lane.batch(vec![lane.touch(EventKind::CloseWrite, b"file", false)]);
    let started = Instant::now();
    let err = sink
        .deliver(&batch)
        .expect_err("a dead peer cannot succeed");
    assert!(err.is_retryable(), "a dead peer must be retryable: {err}");
    assert!(
        started.elapsed() < DEAD_LIMIT,
        "took {:?} to fail",
        started.elapsed()
    );
    assert!(!err.message.is_empty());
    // The same instance keeps working (failing) on the next try.
    assert!(sink.deliver(&batch).unwrap_err().is_retryable());
}

/// Delivering the same batch twice succeeds twice and the peer sees it twice.
pub fn same_batch_twice_is_harmless(sut: &dyn SinkUnderTest) {
    let lane = Lane::new();
    let (mut sink, probe) = sut.live(&lane.root);
    let batch = lane.batch(vec![
        lane.touch(EventKind::CloseWrite, b"twice", false),
        lane.touch(EventKind::Create, b"twice-dir", true),
    ]);
    sink.deliver(&batch).expect("first delivery");
    sink.deliver(&batch).expect("second delivery");
    wait_delivered(
        probe.as_ref(),
        &[b"twice".to_vec(), b"twice-dir".to_vec()],
        2,
    );
}

/// An empty batch succeeds and sends nothing: a batch delivered after it is all the peer sees.
pub fn empty_batch_is_harmless(sut: &dyn SinkUnderTest) {
    let lane = Lane::new();
    let (mut sink, probe) = sut.live(&lane.root);
    sink.deliver(&lane.batch(Vec::new()))
        .expect("an empty batch");
    let marker = lane.batch(vec![lane.touch(EventKind::CloseWrite, b"marker", false)]);
    sink.deliver(&marker)
        .expect("delivery after an empty batch");
    wait_delivered(probe.as_ref(), &[b"marker".to_vec()], 1);
    assert_eq!(probe.delivered(), vec![b"marker".to_vec()]);
}

/// `describe` says something about each path and sends nothing: a batch delivered after it is
/// the only thing the peer sees.
pub fn describe_has_no_side_effects(sut: &dyn SinkUnderTest) {
    let lane = Lane::new();
    let (mut sink, probe) = sut.live(&lane.root);
    let names = weird_names();
    let described = lane.batch(
        names
            .iter()
            .map(|n| lane.touch(EventKind::CloseWrite, n, false))
            .collect(),
    );
    let lines = sink.describe(&described);
    assert!(!lines.is_empty(), "describe said nothing");
    assert!(
        lines.iter().all(|l| !l.contains('\n')),
        "describe lines must be one line each: {lines:?}"
    );
    let marker = lane.batch(vec![lane.touch(EventKind::CloseWrite, b"marker", false)]);
    sink.deliver(&marker).expect("delivery after describe");
    wait_delivered(probe.as_ref(), &[b"marker".to_vec()], 1);
    let got = probe.delivered();
    assert_eq!(got, vec![b"marker".to_vec()], "describe must not deliver");
    lane.assert_nothing_executed();
}

/// Strips `root/` from an absolute path the peer received.
pub fn relative(root: &Path, absolute: &[u8]) -> Vec<u8> {
    let root = root.as_os_str().as_bytes();
    absolute
        .strip_prefix(root)
        .and_then(|r| r.strip_prefix(b"/"))
        .unwrap_or_else(|| {
            panic!(
                "{} is not below {}",
                String::from_utf8_lossy(absolute),
                String::from_utf8_lossy(root)
            )
        })
        .to_vec()
}

/// Expands to a `sink_compliance` module with one `#[test]` per check, run against `$sut` (an
/// expression whose value implements [`SinkUnderTest`]).
#[allow(unused_macros)] // not every test binary runs the suite
macro_rules! suite {
    ($sut:expr) => {
        mod sink_compliance {
            use super::*;
            use $crate::support::compliance as c;

            #[test]
            fn weird_names_delivered_intact() {
                c::weird_names_delivered_intact(&$sut);
            }
            #[test]
            fn every_kind_delivered() {
                c::every_kind_delivered(&$sut);
            }
            #[test]
            fn dead_peer_is_retryable() {
                c::dead_peer_is_retryable(&$sut);
            }
            #[test]
            fn same_batch_twice_is_harmless() {
                c::same_batch_twice_is_harmless(&$sut);
            }
            #[test]
            fn empty_batch_is_harmless() {
                c::empty_batch_is_harmless(&$sut);
            }
            #[test]
            fn describe_has_no_side_effects() {
                c::describe_has_no_side_effects(&$sut);
            }
        }
    };
}
#[allow(unused_imports)]
pub(crate) use suite;
