//! Listed paths must lie below real directories, or rsync `-R` invents one.
//!
//! With `--relative`, rsync sends every implied directory of a listed path as a real
//! directory, even when that path element is a symlink on the sending side (rsync(1),
//! `--relative`). So if directory `b` was replaced by a symlink to `a` and a batch still lists
//! `b/x` (an event from before the replacement), rsync looks up `b/x` through the link and
//! creates a real directory `b` on the remote holding `a`'s `x`: the remote diverges, and a
//! later listing of `b` itself cannot always repair it within the same run.
//!
//! Just before a run, therefore, each listed path whose ancestor (inside the watch root) is
//! not a real directory — a symlink, a file, or gone — is replaced by that topmost such
//! ancestor. Listing the ancestor sends what it is now: a symlink as a link, a file as a
//! file (`--force` replaces a remote directory), a missing one as a delete.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use sersync_plugin_sdk::RelPath;

use super::plan::Run;

/// Replaces, in `run`, every path below a non-directory by that ancestor (see the module
/// docs); duplicates are dropped and the replaced paths are no longer sent as subtrees.
/// `root` is the watch root the paths are relative to.
pub fn list_below_real_directories(run: &mut Run, root: &Path) {
    let mut is_real_dir: HashMap<RelPath, bool> = HashMap::new();
    let mut seen = HashSet::new();
    let mut replaced = Vec::new();
    let paths = std::mem::take(&mut run.paths);
    for path in paths {
        let listed = match first_non_directory_ancestor(&path, root, &mut is_real_dir) {
            Some(ancestor) => {
                replaced.push(path);
                ancestor
            }
            None => path,
        };
        if seen.insert(listed.clone()) {
            run.paths.push(listed);
        }
    }
    if !replaced.is_empty() {
        run.subtrees.retain(|tree| !replaced.contains(tree));
    }
}

/// The runs that apply `deleted` (deleted paths and old names of moves), judged by what is
/// on disk now:
/// - **scopes**: the directories they were in, made to match one level deep and sending
///   nothing; a directory that is gone or no longer a real directory is taken up to its
///   nearest real ancestor;
/// - **present**: what stands at such a place now, sent as a change (a directory whole): a
///   deleted path that exists again (its delete began a replacement: a directory that
///   became a file), or a file or link where a directory of the path was.
pub fn deletes_at(deleted: &[RelPath], root: &Path) -> (Run, Run) {
    let mut is_real_dir: HashMap<RelPath, bool> = HashMap::new();
    let mut real = |dir: &RelPath| {
        *is_real_dir.entry(dir.clone()).or_insert_with(|| {
            std::fs::symlink_metadata(dir.absolute(root)).is_ok_and(|m| m.is_dir())
        })
    };
    let exists = |path: &RelPath| std::fs::symlink_metadata(path.absolute(root)).ok();
    let mut scopes = Run {
        one_level: true,
        ..Run::default()
    };
    let mut present = Run {
        ignore_times: true,
        ..Run::default()
    };
    let send = |path: RelPath, is_dir: bool, present: &mut Run| {
        if !present.paths.contains(&path) {
            if is_dir {
                present.subtrees.push(path.clone());
            }
            present.paths.push(path);
        }
    };
    for path in deleted {
        if let Some(meta) = exists(path) {
            send(path.clone(), meta.is_dir(), &mut present);
        }
        let mut scope = path.parent().unwrap_or(RelPath::ROOT);
        // The topmost ancestor that is not a real directory decides, as for listed paths.
        let lineage: Vec<RelPath> = scope
            .ancestors()
            .map(RelPath::new)
            .chain([scope.clone()])
            .collect();
        if let Some(not_real) = lineage.into_iter().find(|dir| !dir.is_root() && !real(dir)) {
            if let Some(meta) = exists(&not_real) {
                send(not_real.clone(), meta.is_dir(), &mut present);
            }
            scope = not_real.parent().unwrap_or(RelPath::ROOT);
        }
        if !scopes.paths.contains(&scope) {
            scopes.paths.push(scope);
        }
    }
    (scopes, present)
}

/// True when `dir` and every directory above it below `root` are real directories (not
/// symlinks): a path rsync may be given as its source operand, without `-R`, knowing it sends
/// what lies at that name.
pub fn is_real_directory(dir: &RelPath, root: &Path) -> bool {
    let mut seen = HashMap::new();
    first_non_directory_ancestor(dir, root, &mut seen).is_none()
        && std::fs::symlink_metadata(dir.absolute(root)).is_ok_and(|m| m.is_dir())
}

/// The topmost proper ancestor of `path` that is not a real directory below `root`, if any.
/// Results are cached in `is_real_dir` for the rest of the run.
fn first_non_directory_ancestor(
    path: &RelPath,
    root: &Path,
    is_real_dir: &mut HashMap<RelPath, bool>,
) -> Option<RelPath> {
    for ancestor in path.ancestors() {
        let ancestor = RelPath::new(ancestor);
        let real = *is_real_dir.entry(ancestor.clone()).or_insert_with(|| {
            std::fs::symlink_metadata(ancestor.absolute(root)).is_ok_and(|m| m.is_dir())
        });
        if !real {
            return Some(ancestor);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    fn run_of(paths: &[&str], subtrees: &[&str]) -> Run {
        Run {
            paths: paths.iter().map(|p| RelPath::from(*p)).collect(),
            subtrees: subtrees.iter().map(|p| RelPath::from(*p)).collect(),
            ignore_times: true,
            one_level: false,
            basis: None,
        }
    }

    fn listed(run: &Run) -> Vec<String> {
        run.paths.iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn paths_below_a_symlinked_directory_become_the_link_itself() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir_all(root.path().join("a/x")).unwrap();
        symlink("a", root.path().join("b")).unwrap();
        let mut run = run_of(&["b/x", "b/x/f", "a/x", "b"], &["b/x"]);
        list_below_real_directories(&mut run, root.path());
        assert_eq!(listed(&run), ["b", "a/x"]);
        assert!(run.subtrees.is_empty());
    }

    #[test]
    fn paths_below_a_file_or_a_missing_directory_become_that_ancestor() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir(root.path().join("d")).unwrap();
        fs::write(root.path().join("d/file"), b"").unwrap();
        let mut run = run_of(&["d/file/old", "gone/deep/f", "d/new"], &[]);
        list_below_real_directories(&mut run, root.path());
        assert_eq!(listed(&run), ["d/file", "gone", "d/new"]);
    }

    #[test]
    fn deletes_are_applied_in_the_directory_that_held_them_and_what_stands_there_is_sent() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir_all(root.path().join("d/sub")).unwrap();
        // A directory that became a file, and one that became a link.
        fs::write(root.path().join("d/was-a-dir"), b"now a file").unwrap();
        symlink("d", root.path().join("link")).unwrap();
        let deleted: Vec<RelPath> = ["d/gone", "d/was-a-dir", "link/x", "gone/deep/f", "d/sub"]
            .iter()
            .map(|p| RelPath::from(*p))
            .collect();
        let (scopes, present) = deletes_at(&deleted, root.path());
        // link/x and gone/deep/f: their directory is no real directory, so the root is.
        assert_eq!(listed(&scopes), ["d", "."]);
        assert!(scopes.one_level);
        assert_eq!(listed(&present), ["d/was-a-dir", "link", "d/sub"]);
        assert_eq!(present.subtrees, vec![RelPath::from("d/sub")]);
        assert!(present.ignore_times && !present.one_level);
    }

    #[test]
    fn paths_below_real_directories_are_left_alone() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir_all(root.path().join("p/q")).unwrap();
        let mut run = run_of(&["p/q/r", "p/q", "top", ""], &["p/q"]);
        list_below_real_directories(&mut run, root.path());
        assert_eq!(listed(&run), ["p/q/r", "p/q", "top", "."]);
        assert_eq!(run.subtrees, vec![RelPath::from("p/q")]);
    }
}
