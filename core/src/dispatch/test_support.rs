//! What the dispatcher's tests share.

use sersync_plugin_sdk::{Event, EventKind, RelPath, WatchId};

/// A file at `path` (relative to the root of watch 0) written and closed now.
pub(super) fn written(path: &str) -> Event {
    Event::now(
        EventKind::CloseWrite,
        RelPath::from(path),
        false,
        WatchId(0),
    )
}
