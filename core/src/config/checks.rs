//! Checks that look at the file system: the watched directories (the sinks check what they
//! name themselves, `SersyncSinks::check_files`).

use std::fs;
use std::io;

use sersync_plugin_sdk::ConfigError;

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
