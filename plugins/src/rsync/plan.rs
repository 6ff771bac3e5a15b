//! From a batch of events to the rsync runs that apply it.
//!
//! A batch asks rsync for up to four runs, which the sink runs in this order:
//! - **rescans**: directories whose whole subtree may have changed (overflow, a full sync,
//!   collapsed pending paths). Sent recursively with the quick check, since most of what
//!   they hold is usually unchanged.
//! - **changes**: every path an event names other than deletes (changed files, new and
//!   moved-in directories). These are known to have changed, so rsync's quick check (size
//!   and whole-second mtime) is skipped with `--ignore-times`: a file rewritten to the same
//!   size within the same second is still sent. The run recurses only when a new directory
//!   has to be sent whole.
//! - **replacements**: a deleted path that exists again by the time the batch goes out (its
//!   delete began a replacement: a directory that became a file), sent as it is now.
//! - **deletes**: the directories that held deleted paths and the old names of moves, each
//!   made to match one level deep (`--dirs --delete`): what the source no longer has there
//!   is deleted on the remote, and nothing is sent (`--existing --ignore-existing`: what
//!   it sees of the other entries may be newer than what the lane knows). While it runs the
//!   lane holds the whole directory (`coalesce::footprint`), so nothing else there is
//!   delivered beside it. Last, because what such a directory is on the remote may only be
//!   right once the changes are there.
//!
//! rsync's `--delete-missing-args`, which would delete listed paths directly, is not used:
//! receivers built with the fix for CVE-2024-12087 (Debian 12's 3.2.7-1+deb12u5, rsync
//! 3.4.3) reject its entries ("invalid file mode 00").

use sersync_plugin_sdk::{Batch, EventKind, RelPath};

/// One rsync run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Run {
    /// Paths to list, in the order rsync reads them. One that no longer exists is skipped
    /// (its delete comes as an event of its own).
    pub paths: Vec<RelPath>,
    /// Directories among `paths` to send whole; when non-empty the run recurses.
    pub subtrees: Vec<RelPath>,
    /// Send listed files even when size and mtime match.
    pub ignore_times: bool,
    /// Every path is a directory whose entries are made to match, one level deep, deleting
    /// what the source no longer has there.
    pub one_level: bool,
}

impl Run {
    /// True when the run must recurse into directories.
    pub fn is_recursive(&self) -> bool {
        !self.subtrees.is_empty()
    }
}

/// What one batch asks of rsync: the runs (rescans, changes; empty ones left out) and the
/// deleted paths, which the sink turns into runs when it delivers, once it has looked at
/// what is where ([`super::ancestry::deletes_at`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TransferPlan {
    /// The runs, in order.
    pub runs: Vec<Run>,
    /// Deleted paths and the old names of moves, outside every rescan.
    pub deleted: Vec<RelPath>,
}

impl TransferPlan {
    /// Builds the plan. `delete` is `<inotify><delete start>`: when off, deletes (and the old
    /// names of moves) are left out, so nothing is ever removed on the remote.
    pub fn for_batch(batch: &Batch, delete: bool) -> TransferPlan {
        let mut rescans = Run::default();
        let mut deleted: Vec<RelPath> = Vec::new();
        let mut changes = Run {
            ignore_times: true,
            ..Run::default()
        };
        for event in &batch.events {
            match event.kind {
                EventKind::Delete if delete => deleted.push(event.path.clone()),
                EventKind::Delete => {}
                EventKind::Move => {
                    if let (Some(from), true) = (&event.from, delete) {
                        deleted.push(from.clone());
                    }
                    add_change(&mut changes, &event.path, event.is_dir);
                }
                EventKind::Create => add_change(&mut changes, &event.path, event.is_dir),
                EventKind::Rescan => {
                    rescans.paths.push(event.path.clone());
                    rescans.subtrees.push(event.path.clone());
                }
                EventKind::Modify | EventKind::CloseWrite | EventKind::Attrib => {
                    changes.paths.push(event.path.clone())
                }
            }
        }
        let rescanned = outermost(&rescans.subtrees);
        keep_uncovered(&mut rescans, &rescanned, true);
        keep_uncovered(&mut changes, &rescanned, false);
        let created = outermost(&changes.subtrees);
        keep_uncovered(&mut changes, &created, true);
        // A rescan sends its subtree whole, deletes included.
        let mut deletes = Run {
            paths: deleted,
            ..Run::default()
        };
        keep_uncovered(&mut deletes, &rescanned, false);
        TransferPlan {
            runs: [rescans, changes]
                .into_iter()
                .filter(|r| !r.paths.is_empty())
                .collect(),
            deleted: deletes.paths,
        }
    }

    /// Every run, the deletes judged by names alone: what `--dry-run` shows and what the
    /// `<failLog>` script writes, commands read or run later rather than now.
    pub fn runs_by_name(&self) -> Vec<Run> {
        self.runs
            .iter()
            .cloned()
            .chain(self.deletes_by_name())
            .collect()
    }

    /// The deletes as one run, judged by names alone (the directory each deleted path was
    /// in), for a command written now and run later: the `<failLog>` script.
    fn deletes_by_name(&self) -> Option<Run> {
        let mut scopes: Vec<RelPath> = Vec::new();
        for dir in self.deleted.iter().filter_map(RelPath::parent) {
            if !scopes.contains(&dir) {
                scopes.push(dir);
            }
        }
        (!scopes.is_empty()).then(|| Run {
            paths: scopes,
            one_level: true,
            ..Run::default()
        })
    }
}

fn add_change(run: &mut Run, path: &RelPath, is_dir: bool) {
    run.paths.push(path.clone());
    if is_dir {
        run.subtrees.push(path.clone());
    }
}

/// The directories of `dirs` that lie inside no other one of them.
fn outermost(dirs: &[RelPath]) -> Vec<RelPath> {
    let mut sorted = dirs.to_vec();
    sorted.sort();
    sorted.dedup();
    let mut outer: Vec<RelPath> = Vec::new();
    for dir in sorted {
        if !outer.iter().any(|o| dir.is_within(o)) {
            outer.push(dir);
        }
    }
    outer
}

/// Drops paths that a directory of `covering` sends already (the directory itself stays
/// when `keep_covering`), and duplicates; restricts the run's subtrees to `covering` when
/// it is the run's own.
fn keep_uncovered(run: &mut Run, covering: &[RelPath], keep_covering: bool) {
    let mut seen = std::collections::HashSet::new();
    run.paths.retain(|p| {
        let covered = covering
            .iter()
            .any(|dir| p.is_within(dir) && !(keep_covering && p == dir));
        !covered && seen.insert(p.clone())
    });
    if keep_covering {
        run.subtrees = covering.to_vec();
    } else {
        run.subtrees
            .retain(|d| !covering.iter().any(|c| d.is_within(c)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sersync_plugin_sdk::{Event, WatchId};
    use std::path::PathBuf;

    fn plan(events: Vec<Event>, delete: bool) -> TransferPlan {
        TransferPlan::for_batch(
            &Batch {
                watch: WatchId(0),
                root: PathBuf::from("/w"),
                events,
            },
            delete,
        )
    }

    fn ev(kind: EventKind, path: &str, is_dir: bool) -> Event {
        Event::now(kind, RelPath::from(path), is_dir, WatchId(0))
    }

    fn paths(run: &Run) -> Vec<String> {
        run.paths.iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn changed_files_are_one_run_that_skips_the_quick_check() {
        let p = plan(
            vec![
                ev(EventKind::CloseWrite, "a/f", false),
                ev(EventKind::CloseWrite, "b", false),
            ],
            true,
        );
        assert_eq!(p.runs.len(), 1);
        assert_eq!(paths(&p.runs[0]), ["a/f", "b"]);
        assert!(p.runs[0].ignore_times);
        assert!(!p.runs[0].is_recursive() && !p.runs[0].one_level);
    }

    #[test]
    fn deletes_are_kept_apart_and_judged_by_name_they_are_their_directories() {
        let p = plan(
            vec![
                ev(EventKind::Delete, "a/b/gone", false),
                ev(EventKind::Delete, "a/b/also", true),
                ev(EventKind::Delete, "top", false),
                ev(EventKind::CloseWrite, "a/f", false),
            ],
            true,
        );
        assert_eq!(p.runs.len(), 1);
        assert_eq!(paths(&p.runs[0]), ["a/f"]);
        assert_eq!(p.deleted.len(), 3);
        let by_name = p.deletes_by_name().unwrap();
        assert_eq!(paths(&by_name), ["a/b", "."]);
        assert!(by_name.one_level && !by_name.is_recursive());
    }

    #[test]
    fn move_deletes_the_old_name_and_a_moved_dir_is_sent_whole() {
        let p = plan(
            vec![Event::moved("d/old".into(), "new".into(), true, WatchId(0))],
            true,
        );
        assert_eq!(p.deleted, vec![RelPath::from("d/old")]);
        assert_eq!(paths(&p.runs[0]), ["new"]);
        assert_eq!(p.runs[0].subtrees, vec![RelPath::from("new")]);
    }

    #[test]
    fn without_delete_nothing_is_removed() {
        let p = plan(
            vec![
                Event::moved("old".into(), "new".into(), false, WatchId(0)),
                ev(EventKind::Delete, "x", false),
            ],
            false,
        );
        assert_eq!(paths(&p.runs[0]), ["new"]);
        assert!(p.deleted.is_empty());
    }

    #[test]
    fn paths_inside_a_new_directory_are_covered_by_it() {
        let p = plan(
            vec![
                ev(EventKind::Create, "d", true),
                ev(EventKind::Create, "d/e", true),
                ev(EventKind::CloseWrite, "d/e/f", false),
                ev(EventKind::CloseWrite, "dx", false),
            ],
            true,
        );
        assert_eq!(paths(&p.runs[0]), ["d", "dx"]);
        assert_eq!(p.runs[0].subtrees, vec![RelPath::from("d")]);
    }

    #[test]
    fn rescans_are_a_separate_quick_check_run_that_covers_changes_below() {
        let p = plan(
            vec![
                ev(EventKind::Rescan, "r", true),
                ev(EventKind::CloseWrite, "r/inside", false),
                ev(EventKind::CloseWrite, "outside", false),
            ],
            true,
        );
        assert_eq!(p.runs.len(), 2);
        assert_eq!(paths(&p.runs[0]), ["r"]);
        assert!(!p.runs[0].ignore_times && p.runs[0].is_recursive());
        assert_eq!(paths(&p.runs[1]), ["outside"]);
        assert!(p.runs[1].ignore_times && !p.runs[1].is_recursive());
    }
}
