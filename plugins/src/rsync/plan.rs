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
//! Before all of them come the **moves** ([`TransferPlan::moves`]), which send what a
//! rename put at a new name built from what the remote still holds at the old one, so that
//! the data is not sent again: a renamed directory is sent whole on its own, rsync building
//! each file from the same file below the old name on the remote (`--copy-dest`); files
//! renamed within their directory are sent in one run where rsync looks in that directory
//! on the remote for a file of the same size and mtime (`--fuzzy`), the old name, which the
//! deletes remove only afterwards; files moved into another directory are sent from that
//! directory, one run per directory, rsync looking for each in their old directories
//! (`--copy-dest`, `--fuzzy --fuzzy`). A basis only spares data: every file is still compared
//! (`--ignore-times`, so by checksums, never by size and mtime alone) and what differs or has
//! no basis is sent. The sink first sends the renamed directories' new names alone, so that
//! they are real directories on the remote before a run writes into them. A move run that
//! succeeds takes its paths out of the changes run; one
//! that fails leaves them there, sent as if there were no move run.
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
    /// Where rsync finds a basis for the files it sends: a move run.
    pub basis: Option<Basis>,
}

/// The basis a move run gives rsync on the remote for the files it sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Basis {
    /// `--fuzzy`: a listed file missing on the remote is built from a file of its directory
    /// there of the same size and mtime (or a similar name): files renamed in their directory.
    Fuzzy,
    /// `--copy-dest`: the run's one path, a renamed directory, is sent whole without `-R`
    /// into its place on the remote, each file built from the same file below `from` there.
    Tree {
        /// The directory's old name.
        from: RelPath,
    },
    /// `--copy-dest` with `--fuzzy --fuzzy`: the run's paths, files moved into `dir` from
    /// other directories, are sent from `dir` into its place on the remote, each built from a
    /// file of the same size and mtime (or a similar name) in one of `from` there: their old
    /// directories, at most [`MAX_BASIS_DIRS`].
    Into {
        /// The directory the files are in now.
        dir: RelPath,
        /// The directories they were in.
        from: Vec<RelPath>,
    },
}

/// At most this many directory moves of one batch get a run of their own (each is one rsync
/// process); the others are sent by the changes run.
pub const MAX_TREE_MOVES: usize = 8;

/// At most this many directories that files were moved into from others get a run of their
/// own per batch; the other files are sent by the changes run.
pub const MAX_INTO_MOVES: usize = 8;

/// rsync takes at most 20 basis directories (`--copy-dest`) a run.
pub const MAX_BASIS_DIRS: usize = 20;

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
    /// The move runs, tried before `runs`; each one's paths are in the changes run too, to
    /// be taken out of it by [`TransferPlan::moved`] once the move run succeeded.
    pub moves: Vec<Run>,
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
        let moves = move_runs(batch, &changes);
        TransferPlan {
            runs: [rescans, changes]
                .into_iter()
                .filter(|r| !r.paths.is_empty())
                .collect(),
            deleted: deletes.paths,
            moves,
        }
    }

    /// `run`, a move run, succeeded: what it sent is taken out of the other runs.
    pub fn moved(&mut self, run: &Run) {
        for other in &mut self.runs {
            other.paths.retain(|p| !run.paths.contains(p));
            other.subtrees.retain(|p| !run.paths.contains(p));
        }
        self.runs.retain(|r| !r.paths.is_empty());
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

/// The move runs for the moves of `batch` whose new name `changes` (the changes run, its
/// covered paths left out) still sends itself: a directory (one run each, up to
/// [`MAX_TREE_MOVES`]) whose old and new names do not contain each other, files renamed
/// within their directory (one run for all), and files moved into another directory (one run
/// per directory they went into, up to [`MAX_INTO_MOVES`], each from up to
/// [`MAX_BASIS_DIRS`] old directories).
fn move_runs(batch: &Batch, changes: &Run) -> Vec<Run> {
    let mut trees = Vec::new();
    let mut renamed = Vec::new();
    let mut into: Vec<Run> = Vec::new();
    for event in &batch.events {
        let (EventKind::Move, Some(from)) = (event.kind, &event.from) else {
            continue;
        };
        let to = &event.path;
        if to.is_root() || from.is_root() || to.is_within(from) || from.is_within(to) {
            continue;
        }
        if event.is_dir {
            if changes.subtrees.contains(to) && trees.len() < MAX_TREE_MOVES {
                trees.push(Run {
                    paths: vec![to.clone()],
                    subtrees: vec![to.clone()],
                    ignore_times: true,
                    one_level: false,
                    basis: Some(Basis::Tree { from: from.clone() }),
                });
            }
        } else if !changes.paths.contains(to)
            || changes.subtrees.contains(to)
            || renamed.contains(to)
            || into.iter().any(|run| run.paths.contains(to))
        {
            continue;
        } else if from.parent() == to.parent() {
            renamed.push(to.clone());
        } else if let (Some(old), Some(new)) = (from.parent(), to.parent()) {
            add_into(&mut into, to, new, old);
        }
    }
    trees.append(&mut into);
    if !renamed.is_empty() {
        trees.push(Run {
            paths: renamed,
            ignore_times: true,
            basis: Some(Basis::Fuzzy),
            ..Run::default()
        });
    }
    trees
}

/// Adds the file `to`, moved into `dir` from `old`, to the run for `dir` (made when there are
/// fewer than [`MAX_INTO_MOVES`]); left out when the run has [`MAX_BASIS_DIRS`] others.
fn add_into(into: &mut Vec<Run>, to: &RelPath, dir: RelPath, old: RelPath) {
    let at = into
        .iter()
        .position(|run| matches!(&run.basis, Some(Basis::Into { dir: d, .. }) if *d == dir));
    let run = match at {
        Some(at) => &mut into[at],
        None if into.len() < MAX_INTO_MOVES => {
            into.push(Run {
                ignore_times: true,
                basis: Some(Basis::Into {
                    dir,
                    from: Vec::new(),
                }),
                ..Run::default()
            });
            into.last_mut().expect("just pushed")
        }
        None => return,
    };
    let Some(Basis::Into { from, .. }) = &mut run.basis else {
        unreachable!("an Into run")
    };
    if !from.contains(&old) {
        if from.len() == MAX_BASIS_DIRS {
            return;
        }
        from.push(old);
    }
    run.paths.push(to.clone());
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

    fn moved(from: &[u8], to: &[u8], is_dir: bool) -> Event {
        Event::moved(RelPath::new(from), RelPath::new(to), is_dir, WatchId(0))
    }

    #[test]
    fn a_renamed_directory_gets_a_run_of_its_own_built_from_its_old_name() {
        let mut p = plan(
            vec![
                moved(b"release", b"release-2", true),
                ev(EventKind::CloseWrite, "other", false),
            ],
            true,
        );
        assert_eq!(p.moves.len(), 1);
        let run = &p.moves[0];
        assert_eq!(paths(run), ["release-2"]);
        assert_eq!(run.subtrees, vec![RelPath::from("release-2")]);
        assert!(run.ignore_times && run.is_recursive() && !run.one_level);
        assert_eq!(
            run.basis,
            Some(Basis::Tree {
                from: RelPath::from("release")
            })
        );
        // The plain plan is whole until the move run succeeded; the old name is deleted last.
        assert_eq!(paths(&p.runs[0]), ["release-2", "other"]);
        assert_eq!(p.deleted, vec![RelPath::from("release")]);
        let run = run.clone();
        p.moved(&run);
        assert_eq!(paths(&p.runs[0]), ["other"]);
        assert!(p.runs[0].subtrees.is_empty());
        assert_eq!(p.deleted, vec![RelPath::from("release")]);
        // What --dry-run and the failLog show stays the plain plan.
        let p = plan(vec![moved(b"release", b"release-2", true)], true);
        assert!(p.runs_by_name().iter().all(|r| r.basis.is_none()));
    }

    #[test]
    fn a_moved_directory_sent_by_another_run_or_containing_its_old_name_gets_none() {
        let p = plan(
            vec![
                // Inside a new directory: sent whole with it.
                ev(EventKind::Create, "d", true),
                moved(b"x", b"d/x", true),
                // Inside a rescan.
                ev(EventKind::Rescan, "r", true),
                moved(b"y", b"r/y", true),
                // Old and new names inside one another (a name it passed through).
                moved(b"a/b", b"a", true),
            ],
            true,
        );
        assert!(p.moves.is_empty(), "{:?}", p.moves);
    }

    #[test]
    fn at_most_a_bound_of_directory_moves_get_runs_the_rest_go_plain() {
        let events = (0..MAX_TREE_MOVES + 3)
            .map(|i| moved(format!("o{i}").as_bytes(), format!("n{i}").as_bytes(), true))
            .collect();
        let p = plan(events, true);
        assert_eq!(p.moves.len(), MAX_TREE_MOVES);
        assert_eq!(p.runs[0].subtrees.len(), MAX_TREE_MOVES + 3);
    }

    #[test]
    fn files_renamed_in_their_directory_share_one_fuzzy_run() {
        let mut p = plan(
            vec![
                moved(b"big.iso", b"big2.iso", false),
                moved(b"d/a", b"d/b", false),
                // Another directory: a run of its own (below).
                moved(b"d/c", b"e/c", false),
                ev(EventKind::CloseWrite, "f", false),
            ],
            false,
        );
        assert_eq!(p.moves.len(), 2);
        let run = p.moves[1].clone();
        assert_eq!(paths(&run), ["big2.iso", "d/b"]);
        assert_eq!(run.basis, Some(Basis::Fuzzy));
        assert!(run.ignore_times && !run.is_recursive());
        p.moved(&run);
        assert_eq!(paths(&p.runs[0]), ["e/c", "f"]);
    }

    #[test]
    fn files_moved_into_another_directory_are_grouped_by_where_they_went() {
        let mut events = vec![
            moved(b"a/x", b"b/x", false),
            moved(b"c/y", b"b/y2", false),
            moved(b"a/z", b"b/z", false),
            moved(b"b/w", b"w", false),
            // Into a directory made in the batch: sent whole with it.
            ev(EventKind::Create, "new", true),
            moved(b"a/v", b"new/v", false),
        ];
        // More old directories than rsync takes basis directories: the rest go plain.
        for i in 0..=MAX_BASIS_DIRS {
            events.push(moved(
                format!("o{i}/f").as_bytes(),
                format!("many/f{i}").as_bytes(),
                false,
            ));
        }
        // More target directories than the bound: the rest go plain.
        for i in 0..MAX_INTO_MOVES {
            events.push(moved(b"a/t", format!("t{i}/t").as_bytes(), false));
        }
        let mut p = plan(events, true);
        assert_eq!(p.moves.len(), MAX_INTO_MOVES);
        assert_eq!(paths(&p.moves[0]), ["b/x", "b/y2", "b/z"]);
        assert_eq!(
            p.moves[0].basis,
            Some(Basis::Into {
                dir: RelPath::from("b"),
                from: vec![RelPath::from("a"), RelPath::from("c")],
            })
        );
        assert_eq!(paths(&p.moves[1]), ["w"]);
        assert_eq!(
            p.moves[1].basis,
            Some(Basis::Into {
                dir: RelPath::ROOT,
                from: vec![RelPath::from("b")],
            })
        );
        assert_eq!(p.moves[2].paths.len(), MAX_BASIS_DIRS);
        for run in p.moves.clone() {
            assert!(run.ignore_times && !run.is_recursive());
            p.moved(&run);
        }
        let left = paths(&p.runs[0]);
        assert!(left.contains(&"new".to_string()) && left.contains(&"many/f20".to_string()));
        assert!(left.iter().any(|p| p.starts_with("t")), "{left:?}");
        assert!(!left.contains(&"b/x".to_string()));
    }

    #[test]
    fn hostile_names_are_kept_as_they_are() {
        let names: [&[u8]; 4] = [b"with space", b"-leading", b"new\nline", b"bad\xff\xfeutf8"];
        for name in names {
            let mut to = name.to_vec();
            to.extend_from_slice(b".new");
            let p = plan(vec![moved(name, &to, true)], true);
            assert_eq!(p.moves[0].paths, vec![RelPath::new(to.clone())]);
            assert_eq!(
                p.moves[0].basis,
                Some(Basis::Tree {
                    from: RelPath::new(name)
                })
            );
        }
    }
}
