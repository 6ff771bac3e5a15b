//! The `<failLog path>` script, for admins who relied on sersync 2.5.4's.
//!
//! It always shows what is failing now: one section per failing rsync lane, with the shell
//! command (every word single-quoted) that would apply its pending batch by hand. It is
//! rewritten atomically when a lane fails or recovers, so an entry that fails again stays and
//! one that went through disappears. It is created owner-only (0600), never world-writable,
//! and sersync never runs it: each lane retries on its own and keeps its work in its journal
//! (`timeToExecute` wakes failing lanes for an immediate retry).

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sersync_plugin_sdk::Batch;
use sersync_plugins::SinkSpec;

use crate::dispatch::FailureRecorder;

const HEADER: &[u8] = b"#!/bin/sh\n\
# sersync: rsync work that failed and is being retried by sersync itself (its journal keeps it\n\
# until delivered). Each section can be run by hand with: sh THIS_FILE. Rewritten on every change.\n";

/// The failLog script and the failing lanes' commands.
#[derive(Debug)]
pub struct FailLog {
    path: PathBuf,
    entries: Mutex<BTreeMap<String, Vec<u8>>>,
}

impl FailLog {
    /// The script at `path`, emptied (a previous run's failures are in the journals).
    pub fn new(path: &Path) -> FailLog {
        let log = FailLog {
            path: path.to_path_buf(),
            entries: Mutex::new(BTreeMap::new()),
        };
        log.write(&BTreeMap::new());
        log
    }

    /// Records that `lane` failed with `command` pending.
    pub fn failed(&self, lane: &str, command: Vec<u8>) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.insert(lane.to_string(), command);
        self.write(&entries);
    }

    /// Records that `lane` delivered again.
    pub fn recovered(&self, lane: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.remove(lane).is_some() {
            self.write(&entries);
        }
    }

    fn write(&self, entries: &BTreeMap<String, Vec<u8>>) {
        if let Err(error) = self.try_write(entries) {
            tracing::warn!(path = %self.path.display(), %error, "cannot write the failLog script; failed work is still retried and journaled");
        }
    }

    fn try_write(&self, entries: &BTreeMap<String, Vec<u8>>) -> io::Result<()> {
        let temp = self.path.with_extension("sh.new");
        let _ = fs::remove_file(&temp);
        // O_EXCL after the unlink: a link or file planted under the temporary name is never
        // written through (a link at the script's own path is replaced by the rename).
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&temp)?;
        file.write_all(HEADER)?;
        for (lane, command) in entries {
            // A comment ends at a newline: a lane name must not start a command.
            let name = sersync_plugin_sdk::text::one_line(lane);
            writeln!(file, "\n# {name}")?;
            file.write_all(command)?;
        }
        file.sync_all()?;
        fs::rename(&temp, &self.path)
    }
}

/// Feeds one rsync lane's failures into the failLog script.
pub struct SpecRecorder {
    /// The script.
    pub log: Arc<FailLog>,
    /// The lane's sink, which knows its command line.
    pub spec: Arc<dyn SinkSpec>,
}

impl FailureRecorder for SpecRecorder {
    fn failed(&self, lane: &str, batch: &Batch) {
        if let Some(command) = self.spec.replay_command(batch) {
            self.log.failed(lane, command);
        }
    }

    fn recovered(&self, lane: &str) {
        self.log.recovered(lane);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_script_lists_what_fails_now_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rsync_fail_log.sh");
        let log = FailLog::new(&path);
        log.failed("rsync a::m", b"cd '/w' && printf ...\n".to_vec());
        log.failed("rsync b::m", b"cd '/v' && printf ...\n".to_vec());
        let text = fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("#!/bin/sh\n")
                && text.contains("# rsync a::m\ncd '/w'")
                && text.contains("# rsync b::m")
        );
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        log.recovered("rsync a::m");
        let text = fs::read_to_string(&path).unwrap();
        assert!(!text.contains("rsync a::m") && text.contains("rsync b::m"));
    }

    #[test]
    fn planted_links_are_replaced_not_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("passwd");
        fs::write(&victim, b"root:x:0:0::/root:/bin/sh\n").unwrap();
        let path = dir.path().join("rsync_fail_log.sh");
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        std::os::unix::fs::symlink(&victim, path.with_extension("sh.new")).unwrap();
        let log = FailLog::new(&path);
        log.failed("rsync a::m", b"a\nevil::0:0:::\n".to_vec());
        assert_eq!(fs::read(&victim).unwrap(), b"root:x:0:0::/root:/bin/sh\n");
        assert!(fs::symlink_metadata(&path).unwrap().is_file());
        assert!(fs::read_to_string(&path).unwrap().contains("evil"));
    }
}
