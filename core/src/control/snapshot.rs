//! A point-in-time copy of the engine's state, for `/status`, `/metrics` and `sersync status`.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use crate::dispatch::HistogramSnapshot;

/// Everything the control endpoint reports.
#[derive(Clone, Debug, Default)]
pub struct StatusSnapshot {
    /// Whether the daemon syncs yet.
    pub state: DaemonState,
    /// sersync's version.
    pub version: String,
    /// The daemon's process id.
    pub pid: u32,
    /// Time since start.
    pub uptime: Duration,
    /// Kernel queue overflows seen.
    pub overflows: u64,
    /// Raw kernel events read, all watches together.
    pub events_seen: u64,
    /// Directories watched, all watches together.
    pub directories: u64,
    /// Paths neither watched nor synced because they cannot be (too long, unreadable).
    pub watch_skipped: u64,
    /// Times a watch root was walked again because the kernel's events did not explain
    /// where a directory went.
    pub watch_rewalks: u64,
    /// Every watch root.
    pub watches: Vec<WatchStatus>,
    /// Every lane.
    pub lanes: Vec<LaneStatus>,
    /// Counters of the process's own (the follower's full pulls, say), for `/metrics`; the
    /// daemon has none.
    pub counters: Vec<sersync_plugins::SinkCounter>,
}

/// Whether changes are being watched and delivered yet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DaemonState {
    /// The endpoint is up but the watches are still being established: a change made now
    /// may not be seen. `/status` answers `503` in this state.
    #[default]
    Starting,
    /// Every watch is established and the lanes deliver.
    Running,
}

/// One watch root.
#[derive(Clone, Debug, Default)]
pub struct WatchStatus {
    /// Its absolute path.
    pub root: PathBuf,
    /// Why the root is lost (deleted, renamed away, unmounted), `None` while it is watched.
    pub lost: Option<String>,
}

/// One lane (a sink for one watch).
#[derive(Clone, Debug, Default)]
pub struct LaneStatus {
    /// Its name, e.g. `rsync backup@10.0.0.2::www` or `refreshCDN`.
    pub name: String,
    /// The watch root it serves.
    pub root: PathBuf,
    /// Paths waiting for the next batch.
    pub pending: u64,
    /// Events in the batch being delivered now (0 when idle).
    pub in_flight: u64,
    /// Batches delivered.
    pub batches: u64,
    /// Events delivered.
    pub events: u64,
    /// Failed deliveries.
    pub failures: u64,
    /// Consecutive failures of the current retry streak (0 when healthy).
    pub retry_streak: u32,
    /// When a batch was last delivered.
    pub last_success: Option<SystemTime>,
    /// When the oldest change the lane still owes happened (pending or in flight); `None`
    /// when it owes nothing. Its age is the lane's lag.
    pub oldest_pending: Option<SystemTime>,
    /// The last error and when it happened.
    pub last_error: Option<(SystemTime, String)>,
    /// Bytes in the lane's durable journal.
    pub journal_bytes: u64,
    /// From an event's arrival to its batch being delivered.
    pub latency: HistogramSnapshot,
    /// Drift audits run (`<engine auditSeconds>`).
    pub audit_runs: u64,
    /// Paths the audits found different on the remote (and sent again).
    pub audit_differences: u64,
    /// For a lane ordered after others (`after=`): what it waits for.
    pub order: Option<crate::dispatch::OrderStatus>,
    /// Why the lane is held (its watch root is lost), `None` when it is not.
    pub held: Option<String>,
}
