//! What a group of changes read from the stream asks of the local tree.
//!
//! **The rule**: every name whose state may have changed ends equal to the source's *now*.
//! Each name a change mentions (a move's both names) is pulled from the source after the
//! local deletes and renames, so what a name ends as is what the source has when the pull
//! runs, whatever order the changes came in: a message delivered again after newer ones
//! (a failed group retried later, an ack lost) cannot undo them, only be undone by its own
//! pulls. A local operation is never the last word on a name: a delete is applied here and
//! the name pulled again in case the source has it again; a rename is done here (so that a
//! renamed tree is not sent again) and both names pulled whole; and the directories around
//! deleted and moved names are pruned to the source's one level deep, since a pull skips a
//! name the source lacks (`--ignore-missing-args`) and the prune removes it here.
//!
//! **What the master sends** (its `coalesce` merges the changes of a path before a batch
//! leaves; these are the kinds a message can hold, and why each ends equal):
//!
//! | the change, as merged | what the source did | here |
//! | --- | --- | --- |
//! | `create` of a directory | `mkdir`; a tree moved in from outside; a delete and a new directory at the name (`delete` + `create`) | pulled whole (`-r --delete`): the name and everything below it as the source has them, a non-directory here replaced |
//! | `create` of a non-directory | a file (with `createFile`), a link; a directory deleted and a file or link made at its name | pulled alone with `--force`: a directory here, full or not, is replaced |
//! | `close_write`, `modify` | a file written; also a directory deleted and a file written at its name (`delete` + `close_write` is a `close_write`: a type change can come without a delete) | pulled alone, `--ignore-times --force` |
//! | `attrib` | a mode or owner changed | pulled alone (without contents) |
//! | `delete` | a name removed, or moved out of the watch; a pending move superseded leaves its old name as one | removed here, pulled whole (back if the source has it again), its directory pruned |
//! | `move` | a rename inside the watch (the first name kept over renames in a row) | renamed here, both names pulled whole, both directories pruned |
//! | `rescan` | too many paths pending (collapsed), or a queue overflow | pulled whole |
//!
//! Then [`Plan::pulls`] makes sure rsync does what each row says, whatever the local tree
//! holds: no listed name below something that is not a real directory here, one-by-one
//! names below other one-by-one names in a later run, nothing whole inside a whole pull;
//! `pull.rs` runs a deleting pull again without the names that made rsync skip its
//! deletions; `heal.rs` prunes again what was pulled whole, for the names the master merged
//! away (made and removed before a batch left) that a recursive pull copied meanwhile.

use std::collections::BTreeSet;

use sersync_plugin_sdk::{Event, EventKind, RelPath};

use super::local::{is_plain, Kind};

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
    /// Every operation and every pulled name, for the debug log (names escaped as
    /// [`RelPath`]'s `Display` does, so one plan is one line).
    pub fn describe(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        for op in &self.local {
            match op {
                LocalOp::Remove(p) => write!(out, "remove {p:?}; "),
                LocalOp::Rename(f, t) => write!(out, "rename {f:?} {t:?}; "),
            }
            .expect("a String");
        }
        for (what, set) in [
            ("prune", &self.parents),
            ("whole", &self.whole),
            ("files", &self.files),
        ] {
            if !set.is_empty() {
                let names: Vec<String> = set.iter().map(|p| format!("{p:?}")).collect();
                write!(out, "{what} {}; ", names.join(" ")).expect("a String");
            }
        }
        out.trim_end_matches("; ").to_string()
    }

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

/// What the local tree says about a path, for [`Plan::pulls`]: the outermost directory above
/// it that is not a real directory here (a symlink, a file, missing), and what the path
/// itself is.
pub trait Lookup {
    /// [`super::local::LocalTree::first_non_directory_above`].
    fn first_non_directory_above(&mut self, path: &RelPath) -> Result<Option<RelPath>, String>;
    /// [`super::local::LocalTree::kind`].
    fn kind(&mut self, path: &RelPath) -> Result<Kind, String>;
}

/// The pulls of a plan as they are run, after its local operations, decided from what the
/// local tree holds then (see [`Plan::pulls`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pulls {
    /// Pruned first (one level, deleting only).
    pub prune: BTreeSet<RelPath>,
    /// Then pulled recursively with `--delete`; none below another.
    pub whole: BTreeSet<RelPath>,
    /// Then pulled one by one, in levels: a name below another of these comes in a later
    /// level, each level's list checked again just before it runs ([`Pulls::still_listable`]).
    pub files: Vec<BTreeSet<RelPath>>,
}

impl Plan {
    /// The pulls that make every name of the plan equal to the source, given the local tree
    /// after the local operations (`tree`).
    ///
    /// rsync `--relative` sends every directory above a listed name *as a directory*, even
    /// where the source has a symlink (rsync(1), `--relative`; it looks the name up through
    /// the link), and an I/O error of one listed name makes it skip every deletion of the run.
    /// So a listed name must lie below directories that are real ones here *and* are as the
    /// source has them, or the pull turns a link into a directory:
    ///
    /// - A name below something that is not a real directory here (a link, a file, nothing:
    ///   a change applied already, or a late message) is replaced by that outermost thing,
    ///   pulled whole (what it is now on the source: a link stays a link), its directory
    ///   pruned (gone there, gone here).
    /// - A directory to prune that is not a real directory here is pulled whole instead (or
    ///   left alone when missing).
    /// - Names pulled one by one (`files`) are pulled after the whole ones, level by level: a
    ///   name below another one-by-one name waits for the next level, so that when that other
    ///   name became a link or a file on the source, the link or file is here before the
    ///   names below it are looked at again (and dropped: gone on the source).
    /// - Nothing is pulled whole below another whole pull (it covers it; listing both would
    ///   have rsync send the directory above the inner name as a directory), nor pruned
    ///   within one.
    pub fn pulls(&self, tree: &mut impl Lookup) -> Result<Pulls, String> {
        let mut whole = BTreeSet::new();
        let mut prune = BTreeSet::new();
        let mut files = BTreeSet::new();
        // The outermost thing above `path` that is not a real directory here, pulled whole
        // and its directory pruned instead of `path`; false when there is none.
        fn replaced(
            tree: &mut impl Lookup,
            path: &RelPath,
            whole: &mut BTreeSet<RelPath>,
            prune: &mut BTreeSet<RelPath>,
        ) -> Result<bool, String> {
            Ok(match tree.first_non_directory_above(path)? {
                Some(outer) => {
                    prune.insert(outer.parent().unwrap_or(RelPath::ROOT));
                    whole.insert(outer);
                    true
                }
                None => false,
            })
        }
        for path in &self.whole {
            if !replaced(tree, path, &mut whole, &mut prune)? {
                whole.insert(path.clone());
            }
        }
        for path in &self.files {
            if !replaced(tree, path, &mut whole, &mut prune)? {
                files.insert(path.clone());
            }
        }
        for dir in &self.parents {
            if replaced(tree, dir, &mut whole, &mut prune)? {
                continue;
            }
            match tree.kind(dir)? {
                Kind::Directory => {
                    prune.insert(dir.clone());
                }
                Kind::Other => {
                    prune.insert(dir.parent().unwrap_or(RelPath::ROOT));
                    whole.insert(dir.clone());
                }
                Kind::Missing => {}
            }
        }
        // None below another: the outer one covers it.
        let outer = whole.clone();
        whole.retain(|p| !below_one_of(p, &outer));
        prune.retain(|d| !whole.contains(d) && !below_one_of(d, &whole));
        Ok(Pulls {
            prune,
            whole,
            files: levels(files),
        })
    }
}

impl Pulls {
    /// Whether a name of a later one-by-one level may still be listed: nothing above it is
    /// anything but a real directory here now (what the earlier pulls brought is the
    /// source's, so a link or file above it means the name is gone there).
    pub fn still_listable(tree: &mut impl Lookup, path: &RelPath) -> Result<bool, String> {
        Ok(tree.first_non_directory_above(path)?.is_none())
    }

    /// Every name, for the debug log.
    pub fn describe(&self) -> String {
        let names = |set: &BTreeSet<RelPath>| {
            set.iter()
                .map(|p| format!("{p:?}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let mut parts = Vec::new();
        if !self.prune.is_empty() {
            parts.push(format!("prune {}", names(&self.prune)));
        }
        if !self.whole.is_empty() {
            parts.push(format!("whole {}", names(&self.whole)));
        }
        for (i, level) in self.files.iter().enumerate() {
            parts.push(format!("files[{i}] {}", names(level)));
        }
        parts.join("; ")
    }
}

/// Whether a directory strictly above `path` (the root included) is one of `set`.
pub fn below_one_of(path: &RelPath, set: &BTreeSet<RelPath>) -> bool {
    !path.is_root()
        && (set.contains(&RelPath::ROOT)
            || path.ancestors().any(|a| set.contains(&RelPath::new(a))))
}

/// `names` in levels: a name goes one level after the deepest of the others above it.
fn levels(names: BTreeSet<RelPath>) -> Vec<BTreeSet<RelPath>> {
    let mut out: Vec<BTreeSet<RelPath>> = Vec::new();
    // BTreeSet order puts a directory before the names below it ("a" < "a/b"), so the
    // level of everything above a name is known when it comes... except where a sibling
    // sorts between ("a" < "a b" < "a/b"): look at every ancestor, not the previous name.
    let mut level_of: std::collections::HashMap<RelPath, usize> = Default::default();
    for name in names {
        let level = name
            .ancestors()
            .filter_map(|a| level_of.get(&RelPath::new(a)).map(|l| l + 1))
            .max()
            .unwrap_or(0);
        level_of.insert(name.clone(), level);
        if out.len() <= level {
            out.resize_with(level + 1, BTreeSet::new);
        }
        out[level].insert(name);
    }
    out
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

    /// A local tree described by what stands where (anything not listed is missing).
    struct Fake(std::collections::HashMap<RelPath, Kind>);

    impl Fake {
        fn of(entries: &[(&str, Kind)]) -> Fake {
            Fake(
                entries
                    .iter()
                    .map(|(p, k)| (RelPath::from(*p), *k))
                    .collect(),
            )
        }
    }

    impl Lookup for Fake {
        fn first_non_directory_above(&mut self, path: &RelPath) -> Result<Option<RelPath>, String> {
            Ok(path
                .ancestors()
                .map(RelPath::new)
                .find(|a| self.kind(a).unwrap() != Kind::Directory))
        }

        fn kind(&mut self, path: &RelPath) -> Result<Kind, String> {
            if path.is_root() {
                return Ok(Kind::Directory);
            }
            Ok(self.0.get(path).copied().unwrap_or(Kind::Missing))
        }
    }

    fn names(set: &BTreeSet<RelPath>) -> Vec<String> {
        set.iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn names_below_a_link_or_file_here_become_that_link_or_file_pulled_whole() {
        let events = vec![
            // Late: `l` is a link here now (its change was applied), `f` a file.
            Event::now(EventKind::CloseWrite, p(b"l/x"), false, WatchId(0)),
            Event::now(EventKind::Create, p(b"f/sub/deep"), true, WatchId(0)),
            Event::now(EventKind::Delete, p(b"l/y/z"), false, WatchId(0)),
            // Below a directory missing here: the outermost missing one is pulled.
            Event::now(EventKind::CloseWrite, p(b"gone/a/b"), false, WatchId(0)),
            // Below real directories: as they are.
            Event::now(EventKind::CloseWrite, p(b"d/e/g"), false, WatchId(0)),
            Event::now(EventKind::Delete, p(b"d/old"), false, WatchId(0)),
        ];
        let mut tree = Fake::of(&[
            ("l", Kind::Other),
            ("f", Kind::Other),
            ("d", Kind::Directory),
            ("d/e", Kind::Directory),
        ]);
        let pulls = Plan::of(&events).pulls(&mut tree).unwrap();
        assert_eq!(names(&pulls.whole), ["d/old", "f", "gone", "l"]);
        assert_eq!(names(&pulls.prune), [".", "d"]);
        assert_eq!(pulls.files.len(), 1);
        assert_eq!(names(&pulls.files[0]), ["d/e/g"]);
    }

    #[test]
    fn a_name_below_another_name_pulled_alone_waits_for_the_next_level() {
        // `a` became a link on the source (a create of a non-directory), and a change below
        // it from before is in the same group: `a` is pulled first, `a/x` looked at after.
        let events = vec![
            Event::now(EventKind::CloseWrite, p(b"a/x"), false, WatchId(0)),
            Event::now(EventKind::CloseWrite, p(b"a b"), false, WatchId(0)),
            Event::now(EventKind::Create, p(b"a"), false, WatchId(0)),
            Event::now(EventKind::Attrib, p(b"a/x/y"), false, WatchId(0)),
        ];
        let mut tree = Fake::of(&[("a", Kind::Directory), ("a/x", Kind::Directory)]);
        let pulls = Plan::of(&events).pulls(&mut tree).unwrap();
        let levels: Vec<Vec<String>> = pulls.files.iter().map(names).collect();
        assert_eq!(levels, [vec!["a", "a b"], vec!["a/x"], vec!["a/x/y"]]);
        // After the first level `a` is a link here: what was below it is not listed.
        let mut after = Fake::of(&[("a", Kind::Other)]);
        assert!(!Pulls::still_listable(&mut after, &p(b"a/x")).unwrap());
        assert!(Pulls::still_listable(&mut after, &p(b"a b")).unwrap());
    }

    #[test]
    fn nothing_is_pulled_whole_or_pruned_inside_a_whole_pull() {
        let events = vec![
            Event::now(EventKind::Create, p(b"d"), true, WatchId(0)),
            Event::now(EventKind::Create, p(b"d/sub"), true, WatchId(0)),
            Event::now(EventKind::Delete, p(b"d/sub/gone"), false, WatchId(0)),
            Event::moved(p(b"d/sub/a"), p(b"e/b"), false, WatchId(0)),
        ];
        let mut tree = Fake::of(&[
            ("d", Kind::Directory),
            ("d/sub", Kind::Directory),
            ("e", Kind::Directory),
        ]);
        let pulls = Plan::of(&events).pulls(&mut tree).unwrap();
        assert_eq!(names(&pulls.whole), ["d", "e/b"]);
        assert_eq!(names(&pulls.prune), ["e"]);
    }

    #[test]
    fn a_directory_to_prune_that_is_a_link_or_file_here_is_pulled_whole_instead() {
        let events = vec![
            Event::now(EventKind::Delete, p(b"l/x"), false, WatchId(0)),
            Event::now(EventKind::Delete, p(b"gone/x"), false, WatchId(0)),
        ];
        let mut tree = Fake::of(&[("l", Kind::Other)]);
        let pulls = Plan::of(&events).pulls(&mut tree).unwrap();
        // `gone/x` itself is pulled whole (in case it is back); `gone`, missing here, neither
        // needs pruning nor can be.
        assert_eq!(names(&pulls.whole), ["gone", "l"]);
        assert_eq!(names(&pulls.prune), ["."]);
    }
}
