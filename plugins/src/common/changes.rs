//! A batch read as "these paths changed", the view every path-per-request sink needs.

use std::path::{Path, PathBuf};

use sersync_plugin_sdk::{Batch, Event, EventKind, RelPath};

/// Which name of an event a [`Changed`] stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// The event's own path (for a move: the new name).
    Path,
    /// The old name of a move: it no longer exists.
    MovedFrom,
}

/// One changed path of a batch.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Changed<'a> {
    /// The event the path comes from.
    pub event: &'a Event,
    /// The path, relative to the watch root.
    pub path: &'a RelPath,
    /// Which of the event's names `path` is.
    pub role: Role,
}

impl Changed<'_> {
    /// The path below `root`.
    pub fn absolute(&self, root: &Path) -> PathBuf {
        self.path.absolute(root)
    }

    /// The event's kind as the sinks name it: `move_from` for the old name of a move.
    pub fn kind_name(&self) -> &'static str {
        match self.role {
            Role::Path => self.event.kind.as_str(),
            Role::MovedFrom => "move_from",
        }
    }
}

/// Every path the batch says changed, in batch order. A move yields its old name first (gone)
/// and then its new name (to refresh); every other kind, a rescan included, yields its path.
pub(crate) fn changed_paths(batch: &Batch) -> impl Iterator<Item = Changed<'_>> {
    batch.events.iter().flat_map(|event| {
        let from = match (event.kind, &event.from) {
            (EventKind::Move, Some(from)) => Some(Changed {
                event,
                path: from,
                role: Role::MovedFrom,
            }),
            _ => None,
        };
        from.into_iter().chain(std::iter::once(Changed {
            event,
            path: &event.path,
            role: Role::Path,
        }))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sersync_plugin_sdk::WatchId;

    #[test]
    fn a_move_yields_both_names_old_first() {
        let mv = Event::moved("old".into(), "new".into(), false, WatchId(0));
        let batch = Batch {
            watch: WatchId(0),
            root: "/r".into(),
            events: vec![
                Event::now(EventKind::Delete, RelPath::from("gone"), false, WatchId(0)),
                mv,
            ],
        };
        let seen: Vec<_> = changed_paths(&batch)
            .map(|c| (c.path.to_string(), c.kind_name()))
            .collect();
        assert_eq!(
            seen,
            [
                ("gone".into(), "delete"),
                ("old".into(), "move_from"),
                ("new".into(), "move")
            ]
            .map(|(p, k): (String, &str)| (p, k))
        );
    }
}
