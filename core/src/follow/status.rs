//! What the follower shows on the control endpoint: the daemon's `/status` and `/metrics`
//! shapes, with one lane (`follow CONSUMER`: the stream into the local tree) and its own
//! counters (full pulls). `POST /sync` asks for a full pull.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use sersync::control::{Control, DaemonState, LaneStatus, StatusSnapshot, WatchStatus};
use sersync::dispatch::Histogram;
use sersync_plugins::SinkCounter;

/// The follower's state, shared with the control endpoint.
pub struct Board {
    name: String,
    local: PathBuf,
    started: Instant,
    ready: AtomicBool,
    full_requested: AtomicBool,
    full_pulls: AtomicU64,
    messages: AtomicU64,
    latency: Histogram,
    lane: Mutex<LaneStatus>,
}

impl Board {
    /// The board of the follower `name` keeping `local`.
    pub fn new(name: String, local: PathBuf) -> Board {
        Board {
            lane: Mutex::new(LaneStatus {
                name: name.clone(),
                root: local.clone(),
                ..LaneStatus::default()
            }),
            name,
            local,
            started: Instant::now(),
            ready: AtomicBool::new(false),
            full_requested: AtomicBool::new(false),
            full_pulls: AtomicU64::new(0),
            messages: AtomicU64::new(0),
            latency: Histogram::default(),
        }
    }

    /// The follower reads the stream: `/status` says `running`.
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::SeqCst);
    }

    /// Whether it reads the stream yet.
    #[cfg(test)]
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    /// A full pull ran.
    pub fn full_pull_done(&self) {
        self.full_pulls.fetch_add(1, Ordering::SeqCst);
    }

    /// Takes a pending `POST /sync` request.
    pub fn take_full_request(&self) -> bool {
        self.full_requested.swap(false, Ordering::SeqCst)
    }

    /// A group of `events` changes from messages published at `oldest` is being applied.
    pub fn applying(&self, events: usize, oldest: SystemTime) {
        let mut lane = self.lane.lock().unwrap();
        lane.in_flight = events as u64;
        lane.oldest_pending = Some(oldest);
    }

    /// The group was applied and acked; `published` are its messages' publish times.
    pub fn applied(&self, events: usize, published: &[SystemTime], pending: u64) {
        let now = SystemTime::now();
        for t in published {
            self.latency
                .observe(now.duration_since(*t).unwrap_or(Duration::ZERO));
        }
        self.messages
            .fetch_add(published.len() as u64, Ordering::Relaxed);
        let mut lane = self.lane.lock().unwrap();
        lane.batches += 1;
        lane.events += events as u64;
        lane.in_flight = 0;
        lane.oldest_pending = None;
        lane.retry_streak = 0;
        lane.last_success = Some(now);
        lane.pending = pending;
    }

    /// The group (or a full pull, or the connection) failed with `error`.
    pub fn failed(&self, error: &str) {
        let mut lane = self.lane.lock().unwrap();
        lane.failures += 1;
        lane.retry_streak += 1;
        lane.in_flight = 0;
        lane.last_error = Some((SystemTime::now(), error.to_string()));
    }

    /// Messages still to read, as the server counts them.
    pub fn set_pending(&self, pending: u64) {
        self.lane.lock().unwrap().pending = pending;
    }

    /// The follower's name (`follow CONSUMER`).
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Control for Board {
    fn snapshot(&self) -> StatusSnapshot {
        let mut lane = self.lane.lock().unwrap().clone();
        lane.latency = self.latency.snapshot();
        StatusSnapshot {
            state: if self.ready.load(Ordering::SeqCst) {
                DaemonState::Running
            } else {
                DaemonState::Starting
            },
            version: env!("CARGO_PKG_VERSION").to_string(),
            pid: std::process::id(),
            uptime: self.started.elapsed(),
            watches: vec![WatchStatus {
                root: self.local.clone(),
                lost: None,
            }],
            lanes: vec![lane],
            counters: vec![
                SinkCounter {
                    name: "sersync_follow_full_pulls_total",
                    help: "Times the follower pulled the whole tree (first start, changes gone from the stream, POST /sync).",
                    value: self.full_pulls.load(Ordering::SeqCst),
                },
                SinkCounter {
                    name: "sersync_follow_messages_total",
                    help: "Stream messages the follower applied and acked.",
                    value: self.messages.load(Ordering::Relaxed),
                },
            ],
            ..StatusSnapshot::default()
        }
    }

    fn request_full_sync(&self, _watch: Option<&str>, _remote: Option<&str>) -> usize {
        self.full_requested.store(true, Ordering::SeqCst);
        1
    }
}
