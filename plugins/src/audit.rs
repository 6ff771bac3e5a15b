//! Drift audits: asking a destination what differs from the source.
//!
//! A correct engine leaves nothing to find. Something found means that something outside
//! sersync touched the destination, or that an event was lost; the engine logs each
//! difference, counts it and sends the paths again (see `<engine auditSeconds>`).

use sersync_plugin_sdk::{Event, EventKind, RelPath, SinkError, WatchId};

/// One path where the destination differs from the source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Drift {
    /// The path, relative to the watch root.
    pub path: RelPath,
    /// True for a directory.
    pub is_dir: bool,
    /// How it differs.
    pub kind: DriftKind,
}

/// How a path differs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DriftKind {
    /// The destination lacks it, or holds other contents or attributes.
    Differs,
    /// The destination holds it and the source does not.
    Extra,
}

impl Drift {
    /// The event that makes the destination match again.
    pub fn heal(&self, watch: WatchId) -> Event {
        let kind = match self.kind {
            DriftKind::Extra => EventKind::Delete,
            DriftKind::Differs if self.is_dir => EventKind::Rescan,
            DriftKind::Differs => EventKind::Modify,
        };
        Event::now(kind, self.path.clone(), self.is_dir, watch)
    }
}

/// Something that can compare a destination with the source without changing either.
pub trait Auditor: Send {
    /// The paths where the destination differs from the source now.
    fn audit(&mut self) -> Result<Vec<Drift>, SinkError>;
}
