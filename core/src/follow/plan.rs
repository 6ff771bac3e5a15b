//! What a group of changes read from the stream asks of the local tree.
//!
//! Every path a change names (a move's both names) is pulled from the source after the local
//! deletes and renames, so the end state of each path is the source's *now*, whatever order
//! the changes came in (a message sent again after newer ones cannot undo them): a delete
//! is applied locally and the pull brings the path back if the source has it again; a
//! rename is done locally (so a renamed tree is not sent again) and the new name pulled with
//! rsync's quick check; the directories around deleted and moved names are pruned to the
//! source's (a pull skips a name the source lacks, the prune removes it here).

use std::collections::BTreeSet;

use sersync_plugin_sdk::{Event, EventKind, RelPath};

use super::local::is_plain;

/// A change to the local tree, made before the pull.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LocalOp {
    /// Remove the path (and everything below it).
    Remove(RelPath),
    /// Rename the first path to the second.
    Rename(RelPath, RelPath),
}

/// The local operations and the two pulls of a group of changes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// In the order the changes came.
    pub local: Vec<LocalOp>,
    /// Pulled recursively with `--delete` and the quick check: new and moved directories,
    /// rescans, and the names of deletes and moves (in case they exist again).
    pub whole: BTreeSet<RelPath>,
    /// Pulled one by one with `--ignore-times`: files written, metadata changed.
    pub files: BTreeSet<RelPath>,
    /// Made to match the source one level deep, deleting only: the directories that held a
    /// deleted path or either name of a move. A name missing on the source is skipped by the
    /// pulls, so this is what takes away what the local operations of a message that came
    /// late (sent again after newer ones) left where the source has nothing.
    pub parents: BTreeSet<RelPath>,
    /// Paths left out because a component is `.`, `..` or empty (never written by sersync).
    pub refused: Vec<RelPath>,
}

impl Plan {
    /// The plan of `events`, in stream order.
    pub fn of<'e>(events: impl IntoIterator<Item = &'e Event>) -> Plan {
        let mut plan = Plan::default();
        for event in events {
            let named = std::iter::once(&event.path).chain(event.from.as_ref());
            if let Some(bad) = named.clone().find(|p| !p.is_root() && !is_plain(p)) {
                plan.refused.push(bad.clone());
                continue;
            }
            match event.kind {
                EventKind::Delete if !event.path.is_root() => {
                    plan.local.push(LocalOp::Remove(event.path.clone()));
                    plan.whole.insert(event.path.clone());
                    plan.parents.extend(event.path.parent());
                }
                EventKind::Move => {
                    if let Some(from) = &event.from {
                        if !from.is_root() && !event.path.is_root() {
                            plan.local
                                .push(LocalOp::Rename(from.clone(), event.path.clone()));
                        }
                        plan.whole.insert(from.clone());
                        plan.parents.extend(from.parent());
                    }
                    plan.whole.insert(event.path.clone());
                    plan.parents.extend(event.path.parent());
                }
                EventKind::Rescan | EventKind::Delete => {
                    plan.whole.insert(event.path.clone());
                }
                EventKind::Create if event.is_dir => {
                    plan.whole.insert(event.path.clone());
                }
                EventKind::Create
                | EventKind::Modify
                | EventKind::CloseWrite
                | EventKind::Attrib => {
                    plan.files.insert(event.path.clone());
                }
            }
        }
        plan
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sersync_plugin_sdk::WatchId;

    fn p(s: &[u8]) -> RelPath {
        RelPath::new(s)
    }

    #[test]
    fn deletes_and_moves_act_locally_and_are_pulled_again() {
        let events = vec![
            Event::now(EventKind::CloseWrite, p(b"a"), false, WatchId(0)),
            Event::now(EventKind::Delete, p(b"gone"), false, WatchId(0)),
            Event::moved(p(b"old"), p(b"new"), true, WatchId(0)),
            Event::now(EventKind::Create, p(b"dir"), true, WatchId(0)),
            Event::now(EventKind::Rescan, RelPath::ROOT, true, WatchId(0)),
            Event::now(EventKind::Modify, p(b"x/../../etc"), false, WatchId(0)),
        ];
        let plan = Plan::of(&events);
        assert_eq!(
            plan.local,
            vec![
                LocalOp::Remove(p(b"gone")),
                LocalOp::Rename(p(b"old"), p(b"new"))
            ]
        );
        let whole: Vec<&[u8]> = plan.whole.iter().map(|p| p.as_bytes()).collect();
        assert_eq!(whole, vec![&b""[..], b"dir", b"gone", b"new", b"old"]);
        assert_eq!(plan.files.iter().collect::<Vec<_>>(), vec![&p(b"a")]);
        assert_eq!(plan.refused, vec![p(b"x/../../etc")]);
        assert_eq!(
            plan.parents.iter().collect::<Vec<_>>(),
            vec![&RelPath::ROOT]
        );
    }
}
