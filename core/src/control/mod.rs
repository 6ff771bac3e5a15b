//! The control endpoint on `<host hostip port>`: status, metrics, on-demand full syncs, and
//! the release of deliveries held by the delete budget.
//!
//! The engine implements [`Control`]; the HTTP side only reads [`StatusSnapshot`]s and asks
//! for full syncs through it.

mod auth;
pub mod client;
mod deadline;
mod http;
mod latency;
mod metrics;
mod process;
mod report;
mod response;
mod routes;
mod server;
mod snapshot;

pub use auth::{Access, Token};
pub use report::{ErrorReport, LaneReport, LatencyReport, StatusReport, WatchReport};
pub use server::{
    serve, serve_with, ServerHandle, MAX_CONNECTIONS, MAX_RECEIVING, REQUEST_DEADLINE,
};
pub use snapshot::{DaemonState, LaneStatus, StatusSnapshot, WatchStatus};

/// What the control endpoint may ask of the running engine.
pub trait Control: Send + Sync {
    /// The state of every watch and lane now.
    fn snapshot(&self) -> StatusSnapshot;

    /// Queues a full sync of the rsync lanes, optionally only those of the watch whose root
    /// is `watch` and/or whose lane name contains `remote`. Returns how many lanes were asked.
    fn request_full_sync(&self, watch: Option<&str>, remote: Option<&str>) -> usize;

    /// Releases the next delivery the delete budget would hold on the lanes whose name
    /// contains `remote` (all when `None`), and retries them now. Returns how many lanes
    /// were released.
    fn approve_deletes(&self, remote: Option<&str>) -> usize {
        let _ = remote;
        0
    }
}
