//! The engine's excludes as literal rsync rules, for runs that recurse into directories.
//!
//! The engine's `<filter>` rules are regexes, which rsync cannot read. Before a recursive run
//! the sink walks the directories it is about to send, asks the engine's filter about each
//! entry, and writes every excluded one as an anchored literal rule. Excluded entries are
//! neither sent nor deleted on the remote.
//!
//! A directory sersync's user cannot list or enter is excluded the same way, with one
//! warning per path for the life of the process ([`note_unreadable`]): rsync would fail on
//! it and, having met an I/O error while building its file list, skip every delete of the
//! run. Its copy on the remote is left as it is until it is readable again.

use std::collections::HashSet;
use std::ffi::CString;
use std::fs;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use sersync_plugin_sdk::{PathFilter, RelPath};

/// Walks `subtrees` below `root` and returns the rules for every excluded entry, one per
/// excluded directory (its contents are not visited). An error names the directory that
/// could not be read.
pub fn collect(
    root: &Path,
    subtrees: &[RelPath],
    filter: &dyn PathFilter,
) -> io::Result<Vec<Vec<u8>>> {
    collect_with(root, subtrees, filter, &rule_for)
}

/// [`collect`] for a run whose transfer root is `dir` itself (a move run sending `./dir/`
/// without `-R`): the rules are anchored there.
pub fn collect_within(
    root: &Path,
    dir: &RelPath,
    filter: &dyn PathFilter,
) -> io::Result<Vec<Vec<u8>>> {
    let within = |path: &RelPath| {
        let inner = path.rebase(dir, &RelPath::ROOT).unwrap_or_default();
        rule_for(&inner)
    };
    collect_with(root, std::slice::from_ref(dir), filter, &within)
}

fn collect_with(
    root: &Path,
    subtrees: &[RelPath],
    filter: &dyn PathFilter,
    rule_for: &dyn Fn(&RelPath) -> Vec<u8>,
) -> io::Result<Vec<Vec<u8>>> {
    let mut rules = Vec::new();
    let mut stack: Vec<RelPath> = subtrees.to_vec();
    while let Some(dir) = stack.pop() {
        let Some(entries) = listing(root, &dir, &mut rules, rule_for)? else {
            continue;
        };
        for entry in entries {
            let entry = entry.map_err(|e| named(&dir.absolute(root), e))?;
            let path = dir.join(entry.file_name().as_bytes());
            // file_type() does not follow symlinks: a link to a directory is not walked.
            let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
            if filter.is_excluded(&path, is_dir) {
                rules.push(rule_for(&path));
            } else if is_dir {
                stack.push(path);
            }
        }
    }
    Ok(rules)
}

/// The rules for the excluded entries directly inside `dirs` below `root` (for runs that
/// make directories match one level deep). A directory gone has none; one sersync's user
/// cannot list is excluded itself, as in [`collect`].
pub fn collect_one_level(root: &Path, dirs: &[RelPath], filter: &dyn PathFilter) -> Vec<Vec<u8>> {
    let mut rules = Vec::new();
    for dir in dirs {
        let Ok(Some(entries)) = listing(root, dir, &mut rules, &rule_for) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = dir.join(entry.file_name().as_bytes());
            let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
            if filter.is_excluded(&path, is_dir) {
                rules.push(rule_for(&path));
            }
        }
    }
    rules
}

/// The entries of `dir`, or `None` when there is nothing to walk: gone or not a directory
/// (rsync turns the listed path into a delete or a file), or unreadable for sersync's user or
/// too long a path to open (then noted, and a rule excluding `dir` itself added to `rules`:
/// the root excepted, which is no per-path problem). Any other error names the directory.
fn listing(
    root: &Path,
    dir: &RelPath,
    rules: &mut Vec<Vec<u8>>,
    rule_for: &dyn Fn(&RelPath) -> Vec<u8>,
) -> io::Result<Option<fs::ReadDir>> {
    let absolute = dir.absolute(root);
    // Listed first: a path that is no directory (any more) must not look unreadable.
    match fs::read_dir(&absolute).and_then(|entries| searchable(&absolute).map(|()| entries)) {
        Ok(entries) => Ok(Some(entries)),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
        {
            Ok(None)
        }
        // Unreadable, or too deep for a path (PATH_MAX): rsync could not send it either.
        Err(e) if skippable(&e) && !dir.is_root() => {
            note_unreadable(&absolute.display().to_string(), &e.to_string());
            rules.push(rule_for(dir));
            Ok(None)
        }
        Err(e) => Err(named(&absolute, e)),
    }
}

/// Errors that are the entry's own, permanent until someone changes it.
fn skippable(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::PermissionDenied || e.raw_os_error() == Some(libc::ENAMETOOLONG)
}

/// `e`, its message naming `path`.
fn named(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// `Ok` when this process may reach the entries of the directory `dir` (search permission, as
/// the effective user): one that can be listed but not entered fails rsync too.
fn searchable(dir: &Path) -> io::Result<()> {
    let Ok(path) = CString::new(dir.as_os_str().as_bytes()) else {
        return Err(io::ErrorKind::InvalidInput.into());
    };
    // SAFETY: `path` is a valid NUL-terminated string for the duration of the call.
    let rc =
        unsafe { libc::faccessat(libc::AT_FDCWD, path.as_ptr(), libc::X_OK, libc::AT_EACCESS) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// How many distinct paths are remembered as warned about; past it, further ones are skipped
/// just the same but neither logged nor counted (one warning says so).
const REMEMBERED: usize = 65_536;

/// Local paths skipped because sersync's user cannot read them, each warned about once.
#[derive(Default)]
struct Unreadable {
    warned: HashSet<String>,
    full: bool,
}

static UNREADABLE: OnceLock<Mutex<Unreadable>> = OnceLock::new();
static UNREADABLE_COUNT: AtomicU64 = AtomicU64::new(0);

/// Records that `path` (as it is shown to the user) was skipped as unreadable because of
/// `reason`: the first time, one warning naming it and one more in the count; later times,
/// nothing. Shared by every rsync lane, so a path is warned about once per process however
/// many remotes and retries meet it.
pub fn note_unreadable(path: &str, reason: &str) {
    let mut state = UNREADABLE
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if state.full || state.warned.contains(path) {
        return;
    }
    if state.warned.len() == REMEMBERED {
        state.full = true;
        tracing::warn!(
            "{REMEMBERED} unreadable paths skipped so far; further ones are skipped without a warning"
        );
        return;
    }
    state.warned.insert(path.to_string());
    UNREADABLE_COUNT.fetch_add(1, Ordering::Relaxed);
    tracing::warn!(
        path,
        "skipping a path sersync's user cannot read ({reason}); runs that cover it send it again once it is readable"
    );
}

/// Distinct local paths the rsync sink skipped so far because sersync's user cannot read
/// them (`sersync_rsync_unreadable_paths_total`).
pub fn unreadable_paths() -> u64 {
    UNREADABLE_COUNT.load(Ordering::Relaxed)
}

/// An anchored rule matching exactly `path`. rsync compares a rule without `*`, `?` or `[`
/// literally; one with any of them is a wildcard pattern, in which `\` escapes.
pub fn rule_for(path: &RelPath) -> Vec<u8> {
    let bytes = path.as_bytes();
    let mut rule = Vec::with_capacity(bytes.len() + 2);
    rule.push(b'/');
    if bytes.iter().any(|b| matches!(b, b'*' | b'?' | b'[')) {
        for &b in bytes {
            if matches!(b, b'*' | b'?' | b'[' | b'\\') {
                rule.push(b'\\');
            }
            rule.push(b);
        }
    } else {
        rule.extend_from_slice(bytes);
    }
    rule
}

/// Writes `rules` NUL-separated (rsync reads them so with `--from0`) to a new temporary file.
pub fn write_rules(rules: &[Vec<u8>]) -> io::Result<tempfile::NamedTempFile> {
    let mut file = tempfile::Builder::new()
        .prefix("sersync-excludes-")
        .tempfile()?;
    for rule in rules {
        file.write_all(rule)?;
        file.write_all(b"\0")?;
    }
    file.flush()?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct ExcludeNamed(&'static [u8]);
    impl PathFilter for ExcludeNamed {
        fn is_excluded(&self, path: &RelPath, _is_dir: bool) -> bool {
            path.file_name() == self.0
        }
    }

    #[test]
    fn literal_rules_escape_only_when_rsync_would_see_a_wildcard() {
        assert_eq!(rule_for(&RelPath::from("a/b c")), b"/a/b c");
        assert_eq!(rule_for(&RelPath::from("a/x*y\\z")), b"/a/x\\*y\\\\z");
    }

    #[test]
    fn walk_names_excluded_entries_and_skips_their_contents() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("d/skip/inner")).unwrap();
        fs::write(dir.path().join("d/keep"), b"").unwrap();
        fs::write(dir.path().join("d/skip/inner/skip"), b"").unwrap();
        let rules = collect(dir.path(), &[RelPath::from("d")], &ExcludeNamed(b"skip")).unwrap();
        assert_eq!(rules, vec![b"/d/skip".to_vec()]);
    }

    #[test]
    fn rules_of_a_move_run_are_anchored_at_its_directory() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("p/new/skip")).unwrap();
        fs::create_dir_all(dir.path().join("p/new/e")).unwrap();
        fs::write(dir.path().join("p/new/e/skip"), b"").unwrap();
        let mut rules =
            collect_within(dir.path(), &RelPath::from("p/new"), &ExcludeNamed(b"skip")).unwrap();
        rules.sort();
        assert_eq!(rules, vec![b"/e/skip".to_vec(), b"/skip".to_vec()]);
    }
}
