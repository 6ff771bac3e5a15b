//! The rsync program: found, and able to do what sersync asks of it.
//!
//! Checked once per program when the first lane starts, so that a missing or too old rsync
//! is one clear error at start-up rather than a failure on every batch.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

/// rsync's version, from the first line of `rsync --version`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u32, pub u32, pub u32);

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// `--delete-missing-args`, `--ignore-missing-args` and `--info=progress2` appeared in 3.1.0.
pub const MINIMUM: Version = Version(3, 1, 0);

/// The release whose receiver rejects `--delete-missing-args` entries (RsyncProject/rsync#910).
const BROKEN_MISSING_ARGS: Version = Version(3, 4, 3);

/// Reads `rsync  version 3.5.0  protocol version 32` (suffixes such as `3.4.3-67-g680b8494`
/// or `3.2.7dev` are ignored).
pub fn parse(first_line: &str) -> Option<Version> {
    let mut words = first_line.split_whitespace();
    if words.next()? != "rsync" || words.next()? != "version" {
        return None;
    }
    let mut numbers = words.next()?.split('.').map(|part| {
        let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
        digits.parse::<u32>().ok()
    });
    let major = numbers.next()??;
    let minor = numbers.next()??;
    let patch = numbers.next().flatten().unwrap_or(0);
    Some(Version(major, minor, patch))
}

/// Runs `program --version` (once per program for the life of the process) and checks it.
/// The error says what was run and what to do.
pub fn check(program: &Path) -> Result<Version, String> {
    static CHECKED: OnceLock<Mutex<HashMap<PathBuf, Result<Version, String>>>> = OnceLock::new();
    let mut checked = CHECKED
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    checked
        .entry(program.to_path_buf())
        .or_insert_with(|| probe(program))
        .clone()
}

fn probe(program: &Path) -> Result<Version, String> {
    let shown = program.display();
    let output = Command::new(program).arg("--version").output().map_err(|e| {
        format!("cannot run {shown} --version: {e}; install rsync (3.1.0 or later) or name it in <rsync><program path=\"…\"/>")
    })?;
    let text = String::from_utf8_lossy(&output.stdout);
    let first_line = text.lines().next().unwrap_or_default();
    let version = parse(first_line).ok_or_else(|| {
        format!("{shown} --version printed {first_line:?}, not an rsync version line; is {shown} rsync?")
    })?;
    if version < MINIMUM {
        return Err(format!(
            "{shown} is rsync {version}; sersync needs {MINIMUM} or later (--delete-missing-args, --ignore-missing-args)"
        ));
    }
    if version == BROKEN_MISSING_ARGS {
        tracing::warn!(rsync = %shown, "rsync {version} rejects the deletes sersync sends when it is the receiving side (RsyncProject/rsync#910, fixed in 3.4.4); if the remotes run it too, upgrade them or deletes will fail");
    } else {
        tracing::debug!(rsync = %shown, %version, "rsync found");
    }
    Ok(version)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn version_lines_of_releases_and_builds_are_read() {
        assert_eq!(
            parse("rsync  version 3.5.0  protocol version 32"),
            Some(Version(3, 5, 0))
        );
        assert_eq!(
            parse("rsync  version 3.4.3-67-g680b8494  protocol version 32"),
            Some(Version(3, 4, 3))
        );
        assert_eq!(
            parse("rsync  version 3.2.7dev  protocol version 31"),
            Some(Version(3, 2, 7))
        );
        assert_eq!(parse("openrsync: protocol version 29"), None);
        assert_eq!(parse(""), None);
    }

    #[test]
    fn the_installed_rsync_passes() {
        assert!(check(Path::new("rsync")).unwrap() >= MINIMUM);
    }

    #[test]
    fn a_missing_or_too_old_program_is_a_clear_error() {
        let missing = check(Path::new("/nonexistent/rsync")).unwrap_err();
        assert!(
            missing.starts_with("cannot run /nonexistent/rsync --version"),
            "{missing}"
        );
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("rsync");
        std::fs::write(
            &old,
            "#!/bin/sh\necho 'rsync  version 3.0.9  protocol version 30'\n",
        )
        .unwrap();
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o755)).unwrap();
        let too_old = check(&old).unwrap_err();
        assert!(
            too_old.ends_with("is rsync 3.0.9; sersync needs 3.1.0 or later (--delete-missing-args, --ignore-missing-args)"),
            "{too_old}"
        );
    }
}
