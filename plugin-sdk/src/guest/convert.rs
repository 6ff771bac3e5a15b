//! WIT records to the SDK's event model.

use super::bindings::sersync::plugin::types as wit;
use crate::abi::{path_from_bytes, time_from_unix_nanos};
use crate::{Batch, Event, EventKind, RelPath, WatchId};

/// The SDK [`EventKind`] of a WIT `event-kind`.
fn kind(kind: wit::EventKind) -> EventKind {
    match kind {
        wit::EventKind::Create => EventKind::Create,
        wit::EventKind::Modify => EventKind::Modify,
        wit::EventKind::CloseWrite => EventKind::CloseWrite,
        wit::EventKind::Attrib => EventKind::Attrib,
        wit::EventKind::Delete => EventKind::Delete,
        wit::EventKind::Move => EventKind::Move,
        wit::EventKind::Rescan => EventKind::Rescan,
    }
}

/// The SDK [`Batch`] of a WIT `batch`.
pub(super) fn batch(batch: wit::Batch) -> Batch {
    let watch = WatchId(batch.watch);
    Batch {
        watch,
        root: path_from_bytes(&batch.root),
        events: batch
            .events
            .into_iter()
            .map(|e| Event {
                kind: kind(e.kind),
                path: RelPath::new(e.path),
                from: e.old_path.map(RelPath::new),
                is_dir: e.is_dir,
                watch,
                time: time_from_unix_nanos(e.time_unix_nanos),
            })
            .collect(),
    }
}
