//! Checks that look at the file system: the watched directories and rsync's password file.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use sersync_plugin_sdk::{ConfigError, Position};
use sersync_plugins::rsync::RsyncAuth;

use crate::config::WatchConfig;

const READ_WATCH_HINT: &str = "sersync must be able to read every directory it watches";

/// Every watch root exists, is a directory and can be listed.
pub fn watch_dirs(watches: &[WatchConfig]) -> Result<(), ConfigError> {
    watches.iter().try_for_each(watch_dir)
}

fn watch_dir(watch: &WatchConfig) -> Result<(), ConfigError> {
    let root = watch.root.display();
    let fail = |message: String, hint: String| {
        Err(ConfigError::at(watch.position, message).with_hint(hint))
    };
    match fs::metadata(&watch.root) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => fail(
            format!("the watched directory {root} does not exist"),
            format!("create it (mkdir -p {root}) or correct <localpath watch=\"…\">"),
        ),
        Err(e) => fail(
            format!("the watched directory {root} cannot be accessed: {e}"),
            READ_WATCH_HINT.into(),
        ),
        Ok(meta) if !meta.is_dir() => fail(
            format!("the watch path {root} is not a directory"),
            "<localpath watch=\"…\"> names the root directory of the tree to sync".into(),
        ),
        Ok(_) => fs::read_dir(&watch.root).map(drop).or_else(|e| {
            fail(
                format!("the watched directory {root} cannot be listed: {e}"),
                READ_WATCH_HINT.into(),
            )
        }),
    }
}

/// Replaces every watch root by the real directory it names (a symlinked root is followed
/// once, here: the kernel watches directories, not the links to them), and refuses two
/// roots that turn out to be the same directory.
pub fn resolve_roots(watches: &mut [WatchConfig]) -> Result<(), ConfigError> {
    for i in 0..watches.len() {
        let real = fs::canonicalize(&watches[i].root).map_err(|e| {
            ConfigError::at(
                watches[i].position,
                format!(
                    "the watched directory {} cannot be resolved: {e}",
                    watches[i].root.display()
                ),
            )
            .with_hint(READ_WATCH_HINT)
        })?;
        if real != watches[i].root {
            watches[i].configured_as = Some(std::mem::replace(&mut watches[i].root, real));
        }
        if let Some(first) = watches[..i].iter().find(|w| w.root == watches[i].root) {
            let named = |w: &WatchConfig| {
                w.configured_as
                    .as_ref()
                    .unwrap_or(&w.root)
                    .display()
                    .to_string()
            };
            return Err(ConfigError::at(
                watches[i].position,
                format!(
                    "{} and {} (at {}) are the same directory, {}",
                    named(&watches[i]),
                    named(first),
                    first.position,
                    watches[i].root.display()
                ),
            )
            .with_hint("put all its <remote>s under one <localpath>"));
        }
    }
    Ok(())
}

/// rsync's password file exists, can be read, and passes rsync's own checks: not accessible
/// by others (`mode & 0o006`), and owned by root when we run as root. `at` is where
/// `passwordfile` is written.
pub fn password_file(auth: &RsyncAuth, at: Option<Position>) -> Result<(), ConfigError> {
    let file = auth.password_file.display();
    let fail = |message: String, hint: String| {
        let error = ConfigError::new(message).with_hint(hint);
        Err(ConfigError {
            position: at,
            ..error
        })
    };
    let meta = match fs::metadata(&auth.password_file) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return fail(
                format!("the rsync password file {file} does not exist"),
                format!(
                    "write the rsync password of user {} as its only line, then chmod 600 {file}",
                    auth.user
                ),
            )
        }
        Err(e) => {
            return fail(
                format!("the rsync password file {file} cannot be accessed: {e}"),
                readable_hint(),
            )
        }
        Ok(meta) => meta,
    };
    if !meta.is_file() {
        return fail(
            format!("the rsync password file {file} is not a regular file"),
            "passwordfile names a file holding the rsync password".into(),
        );
    }
    if meta.mode() & 0o006 != 0 {
        return fail(
            format!(
                "the rsync password file {file} is accessible by other users (mode {:04o}); rsync refuses it",
                meta.mode() & 0o7777
            ),
            format!("chmod 600 {file}"),
        );
    }
    if running_as_root() && meta.uid() != 0 {
        return fail(
            format!(
                "the rsync password file {file} is not owned by root; rsync run as root refuses it"
            ),
            format!("chown root {file}"),
        );
    }
    readable(&auth.password_file).or_else(|e| {
        fail(
            format!("the rsync password file {file} cannot be read: {e}"),
            readable_hint(),
        )
    })
}

fn readable(file: &Path) -> io::Result<()> {
    fs::File::open(file).map(drop)
}

fn readable_hint() -> String {
    "sersync runs rsync as its own user, which must be able to read the file".into()
}

fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}
