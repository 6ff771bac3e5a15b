//! The `/status` document: what the server sends and `sersync status` reads.
//!
//! Times are whole seconds since the Unix epoch (UTC); `time` is the daemon's clock when the
//! document was made, so ages computed as `time - t` do not depend on the reader's clock.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::latency::quantile;
use super::{DaemonState, LaneStatus, StatusSnapshot};

/// The whole `/status` reply.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    /// `starting` until every watch is established, then `running`.
    #[serde(default = "running")]
    pub state: DaemonState,
    /// sersync's version.
    pub version: String,
    /// The daemon's process id.
    pub pid: u32,
    /// The daemon's clock when this was made, Unix seconds.
    pub time: u64,
    /// Seconds since the daemon started.
    pub uptime_seconds: u64,
    /// Kernel queue overflows seen.
    pub overflows: u64,
    /// Directories watched, all watches together.
    pub directories: u64,
    /// Raw kernel events read, all watches together.
    pub events_seen: u64,
    /// Every watch root.
    pub watches: Vec<WatchReport>,
    /// Every lane.
    pub lanes: Vec<LaneReport>,
}

/// One watch root.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WatchReport {
    /// Its absolute path (bytes that are not UTF-8 shown as U+FFFD).
    pub root: String,
    /// Why the root is lost (deleted, renamed away, unmounted); `null` while it is watched.
    #[serde(default)]
    pub lost: Option<String>,
}

/// One lane.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LaneReport {
    /// Its name, e.g. `rsync backup@10.0.0.2::www`.
    pub name: String,
    /// The watch root it serves.
    pub root: String,
    /// Paths waiting for the next batch.
    pub pending: u64,
    /// Events in the batch being delivered now.
    pub in_flight: u64,
    /// Batches delivered.
    pub batches: u64,
    /// Events delivered.
    pub events: u64,
    /// Failed deliveries.
    pub failures: u64,
    /// Consecutive failures of the current retry streak (0 when healthy).
    pub retry_streak: u32,
    /// When a batch was last delivered, Unix seconds; `null` if never.
    pub last_success: Option<u64>,
    /// When the oldest change the lane still owes happened, Unix seconds; `null` when it
    /// owes nothing (and from a daemon that does not say). `time` minus it is the lag.
    #[serde(default)]
    pub oldest_pending: Option<u64>,
    /// The last error; `null` if none.
    pub last_error: Option<ErrorReport>,
    /// Bytes in the lane's durable journal.
    pub journal_bytes: u64,
    /// From an event's arrival to its batch being delivered.
    pub latency: LatencyReport,
    /// For a lane ordered after other sinks of its watch (`after=`); absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<OrderReport>,
    /// Why the lane is held (its watch root is lost); `null` when it is not.
    #[serde(default)]
    pub held: Option<String>,
}

/// What an ordered lane waits for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OrderReport {
    /// The lanes it runs after.
    pub after: Vec<String>,
    /// How many of them must have delivered a change: `all`, `any` or a count.
    pub quorum: String,
    /// The longest a change waits for them, in seconds.
    pub max_wait_seconds: f64,
    /// What a change held that long does: `send` or `wait`.
    pub on_timeout: String,
    /// Pending changes they have not delivered yet.
    pub waiting: u64,
    /// How long the oldest of them has waited, in seconds; `null` when none waits.
    pub oldest_wait_seconds: Option<f64>,
    /// Changes sent past `maxWait` before they had delivered them.
    pub timeouts: u64,
}

impl OrderReport {
    fn new(order: &crate::dispatch::OrderStatus) -> OrderReport {
        OrderReport {
            after: order.after.clone(),
            quorum: order.rule.quorum.to_string(),
            max_wait_seconds: order.rule.max_wait.as_secs_f64(),
            on_timeout: match order.rule.on_timeout {
                crate::dispatch::OnTimeout::Send => "send".into(),
                crate::dispatch::OnTimeout::Wait => "wait".into(),
            },
            waiting: order.waiting,
            oldest_wait_seconds: order.oldest_wait.map(|d| d.as_secs_f64()),
            timeouts: order.timeouts,
        }
    }
}

/// A lane's last error.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorReport {
    /// When, Unix seconds.
    pub time: u64,
    /// What went wrong.
    pub message: String,
}

/// A lane's delivery latency.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LatencyReport {
    /// Median estimate in seconds, from the histogram buckets; `null` without observations.
    pub p50: Option<f64>,
    /// 99th percentile estimate in seconds; `null` without observations.
    pub p99: Option<f64>,
    /// Observations.
    pub count: u64,
    /// Their sum in seconds.
    pub sum: f64,
}

impl StatusReport {
    /// The report of `snapshot`, taken at `now`.
    pub fn new(snapshot: &StatusSnapshot, now: SystemTime) -> StatusReport {
        StatusReport {
            state: snapshot.state,
            version: snapshot.version.clone(),
            pid: snapshot.pid,
            time: unix_seconds(now),
            uptime_seconds: snapshot.uptime.as_secs(),
            overflows: snapshot.overflows,
            directories: snapshot.directories,
            events_seen: snapshot.events_seen,
            watches: snapshot
                .watches
                .iter()
                .map(|w| WatchReport {
                    root: w.root.to_string_lossy().into_owned(),
                    lost: w.lost.clone(),
                })
                .collect(),
            lanes: snapshot.lanes.iter().map(LaneReport::new).collect(),
        }
    }
}

impl LaneReport {
    fn new(lane: &LaneStatus) -> LaneReport {
        LaneReport {
            name: lane.name.clone(),
            root: lane.root.to_string_lossy().into_owned(),
            pending: lane.pending,
            in_flight: lane.in_flight,
            batches: lane.batches,
            events: lane.events,
            failures: lane.failures,
            retry_streak: lane.retry_streak,
            last_success: lane.last_success.map(unix_seconds),
            oldest_pending: lane.oldest_pending.map(unix_seconds),
            last_error: lane.last_error.as_ref().map(|(time, message)| ErrorReport {
                time: unix_seconds(*time),
                message: message.clone(),
            }),
            journal_bytes: lane.journal_bytes,
            latency: LatencyReport {
                p50: quantile(&lane.latency, 0.5),
                p99: quantile(&lane.latency, 0.99),
                count: lane.latency.count,
                sum: lane.latency.sum_seconds,
            },
            order: lane.order.as_ref().map(OrderReport::new),
            held: lane.held.clone(),
        }
    }
}

/// The state a report without one (from an older daemon) describes: it only answered once
/// it ran.
fn running() -> DaemonState {
    DaemonState::Running
}

/// Whole seconds since the Unix epoch; 0 for a time before it.
fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
