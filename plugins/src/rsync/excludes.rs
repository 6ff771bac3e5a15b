//! The engine's excludes as literal rsync rules, for runs that recurse into directories.
//!
//! The engine's `<filter>` rules are regexes, which rsync cannot read. Before a recursive run
//! the sink walks the directories it is about to send, asks the engine's filter about each
//! entry, and writes every excluded one as an anchored literal rule. Excluded entries are
//! neither sent nor deleted on the remote.

use std::fs;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use sersync_plugin_sdk::{PathFilter, RelPath};

/// Walks `subtrees` below `root` and returns the rules for every excluded entry, one per
/// excluded directory (its contents are not visited).
pub fn collect(
    root: &Path,
    subtrees: &[RelPath],
    filter: &dyn PathFilter,
) -> io::Result<Vec<Vec<u8>>> {
    let mut rules = Vec::new();
    let mut stack: Vec<RelPath> = subtrees.to_vec();
    while let Some(dir) = stack.pop() {
        let entries = match fs::read_dir(dir.absolute(root)) {
            Ok(entries) => entries,
            // Gone or not a directory: rsync turns the listed path into a delete or a file.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                continue
            }
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
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
/// make directories match one level deep). A directory gone or unreadable has none.
pub fn collect_one_level(root: &Path, dirs: &[RelPath], filter: &dyn PathFilter) -> Vec<Vec<u8>> {
    let mut rules = Vec::new();
    for dir in dirs {
        let Ok(entries) = fs::read_dir(dir.absolute(root)) else {
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
}
