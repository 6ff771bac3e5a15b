//! The entry points: from a file (or text) to a checked [`Config`].

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use sersync_plugin_sdk::ConfigError;

use super::{checks, parse, xml, Config};

/// Reads and parses `path`, then checks what the configuration names on the file system:
/// every watched directory exists and can be listed, and what the sinks `<sersync>`
/// configures name on disk (rsync's password file, when `<auth start="true">`: exists, is
/// readable and is neither other-accessible nor, when running as root, owned by another
/// user). Relative paths are made absolute against the
/// current directory, as in [`read`].
///
/// This is what the daemon runs. It does not require a `<localpath>`: see
/// [`Config::require_watches`].
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let mut config = read(path)?;
    checks::watch_dirs(&config.watches).map_err(|e| e.in_file(path))?;
    checks::resolve_roots(&mut config.watches).map_err(|e| e.in_file(path))?;
    config
        .sersync_sinks
        .check_files()
        .map_err(|e| e.in_file(path))?;
    config.control.access().map_err(|e| e.in_file(path))?;
    Ok(config)
}

/// Reads and parses `path` without looking at anything else on the file system (for `-m`,
/// where only a plugin's own section matters). Relative paths in the file (watch roots, the
/// password file, the failLog script, `stateDir`, an rsync `program` with a `/`) are made
/// absolute against the current directory, the one 2.5.4 resolved them against.
pub fn read(path: &Path) -> Result<Config, ConfigError> {
    let bytes = fs::read(path).map_err(|e| unreadable(path, &e))?;
    let mut config = parse_bytes(&bytes, path)?;
    absolute_paths(&mut config).map_err(|e| {
        ConfigError::new(format!("cannot resolve relative paths: {e}"))
            .with_hint("start sersync from an existing directory, or write absolute paths")
            .in_file(path)
    })?;
    Ok(config)
}

/// Parses the bytes of a configuration file named `file` (used in messages only): UTF-8 when
/// valid, else Latin-1. Touches no file.
pub fn parse_bytes(bytes: &[u8], file: &Path) -> Result<Config, ConfigError> {
    parse_str(&xml::decode(bytes), file)
}

/// Parses configuration text named `file` (used in messages only). Touches no file; paths
/// stay as written.
pub fn parse_str(text: &str, file: &Path) -> Result<Config, ConfigError> {
    let head = xml::parse_tree(text).map_err(|e| e.in_file(file))?;
    parse::config(&head, file).map_err(|e| e.in_file(file))
}

fn unreadable(path: &Path, error: &io::Error) -> ConfigError {
    let hint = match error.kind() {
        io::ErrorKind::NotFound => {
            "give the configuration file with -o FILE (default: confxml.xml in the current directory)"
        }
        io::ErrorKind::PermissionDenied => "sersync must be able to read its configuration file",
        _ => "check the path given with -o",
    };
    ConfigError::new(format!("cannot read the configuration file: {error}"))
        .with_hint(hint)
        .in_file(path)
}

/// Makes every path the daemon opens absolute, so that no later change of directory (or
/// rsync running inside a watch root) changes what it names.
fn absolute_paths(config: &mut Config) -> io::Result<()> {
    for watch in &mut config.watches {
        absolute(&mut watch.root)?;
    }
    config.sersync_sinks.absolute_paths()?;
    if let Some(file) = &mut config.control.token_file {
        absolute(file)?;
    }
    absolute(&mut config.fail_log.path)?;
    absolute(&mut config.engine.state_dir)
}

fn absolute(path: &mut PathBuf) -> io::Result<()> {
    if path.is_relative() {
        *path = std::path::absolute(&*path)?;
    }
    Ok(())
}
