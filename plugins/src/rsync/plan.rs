//! From a batch of events to the list of paths one rsync run sends.

use sersync_plugin_sdk::{Batch, EventKind, RelPath};

/// What one rsync run has to do for a batch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TransferPlan {
    /// Paths to list, in the order rsync reads them. A path that no longer exists becomes a
    /// delete on the remote (when deletes are on).
    pub paths: Vec<RelPath>,
    /// Directories among `paths` whose whole subtree must be made to match; when non-empty,
    /// the run is recursive.
    pub subtrees: Vec<RelPath>,
}

impl TransferPlan {
    /// Builds the plan. `delete` is `<inotify><delete start>`: when off, deletes (and the old
    /// names of moves) are left out, so nothing is ever removed on the remote.
    pub fn for_batch(batch: &Batch, delete: bool) -> TransferPlan {
        let mut plan = TransferPlan::default();
        for event in &batch.events {
            match event.kind {
                EventKind::Delete => {
                    if delete {
                        plan.paths.push(event.path.clone());
                    }
                }
                EventKind::Move => {
                    if let (Some(from), true) = (&event.from, delete) {
                        plan.paths.push(from.clone());
                    }
                    plan.add_change(&event.path, event.is_dir);
                }
                EventKind::Create => plan.add_change(&event.path, event.is_dir),
                EventKind::Rescan => plan.add_subtree(&event.path),
                EventKind::Modify | EventKind::CloseWrite | EventKind::Attrib => {
                    plan.paths.push(event.path.clone())
                }
            }
        }
        plan.drop_paths_inside_subtrees();
        plan
    }

    /// True when the run must recurse into directories.
    pub fn is_recursive(&self) -> bool {
        !self.subtrees.is_empty()
    }

    fn add_change(&mut self, path: &RelPath, is_dir: bool) {
        if is_dir {
            self.add_subtree(path);
        } else {
            self.paths.push(path.clone());
        }
    }

    fn add_subtree(&mut self, path: &RelPath) {
        self.paths.push(path.clone());
        self.subtrees.push(path.clone());
    }

    /// A path below a directory that is sent whole is already covered by it.
    fn drop_paths_inside_subtrees(&mut self) {
        if self.subtrees.is_empty() {
            return;
        }
        let mut subtrees = self.subtrees.clone();
        subtrees.sort();
        subtrees.dedup();
        // Keep only the outermost subtrees.
        let mut outer: Vec<RelPath> = Vec::new();
        for dir in subtrees {
            if !outer.iter().any(|o| dir.is_within(o)) {
                outer.push(dir);
            }
        }
        let mut seen = std::collections::HashSet::new();
        self.paths.retain(|p| {
            let covered = outer.iter().any(|dir| p.is_within(dir) && p != dir);
            !covered && seen.insert(p.clone())
        });
        self.subtrees = outer;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sersync_plugin_sdk::{Event, WatchId};
    use std::path::PathBuf;

    fn batch(events: Vec<Event>) -> Batch {
        Batch {
            watch: WatchId(0),
            root: PathBuf::from("/w"),
            events,
        }
    }

    fn ev(kind: EventKind, path: &str, is_dir: bool) -> Event {
        Event::now(kind, RelPath::from(path), is_dir, WatchId(0))
    }

    #[test]
    fn files_are_listed_and_nothing_recurses() {
        let plan = TransferPlan::for_batch(
            &batch(vec![
                ev(EventKind::CloseWrite, "a/f", false),
                ev(EventKind::Delete, "b", false),
            ]),
            true,
        );
        assert_eq!(plan.paths, vec![RelPath::from("a/f"), RelPath::from("b")]);
        assert!(!plan.is_recursive());
    }

    #[test]
    fn move_lists_old_and_new_names_and_a_moved_dir_is_sent_whole() {
        let mut mv = ev(EventKind::Move, "new", true);
        mv.from = Some(RelPath::from("old"));
        let plan = TransferPlan::for_batch(&batch(vec![mv]), true);
        assert_eq!(plan.paths, vec![RelPath::from("old"), RelPath::from("new")]);
        assert_eq!(plan.subtrees, vec![RelPath::from("new")]);
    }

    #[test]
    fn without_delete_nothing_is_removed() {
        let mut mv = ev(EventKind::Move, "new", false);
        mv.from = Some(RelPath::from("old"));
        let plan =
            TransferPlan::for_batch(&batch(vec![mv, ev(EventKind::Delete, "x", false)]), false);
        assert_eq!(plan.paths, vec![RelPath::from("new")]);
    }

    #[test]
    fn paths_inside_a_subtree_are_covered_by_it() {
        let plan = TransferPlan::for_batch(
            &batch(vec![
                ev(EventKind::Create, "d", true),
                ev(EventKind::Create, "d/e", true),
                ev(EventKind::CloseWrite, "d/e/f", false),
                ev(EventKind::CloseWrite, "dx", false),
            ]),
            true,
        );
        assert_eq!(plan.paths, vec![RelPath::from("d"), RelPath::from("dx")]);
        assert_eq!(plan.subtrees, vec![RelPath::from("d")]);
    }
}
