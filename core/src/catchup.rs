//! Catching up with what changed while sersync was not running.
//!
//! The journal covers what sersync saw before it stopped; changes made while it was down
//! were never seen. A heartbeat file in the state directory records, every second and at a
//! clean stop, that sersync was alive. At the next start everything whose inode changed
//! since then (`ctime`, which no user can set back) is sent: a changed file as itself, a
//! changed directory (entries added, removed or renamed) as a rescan, which also covers
//! deletes. This is a local walk with one `lstat` per entry, not a re-send of the tree.
//!
//! It is not folded into the watch walk: that walk makes no `lstat` of files (it reads
//! entry types from the listing, and does not list directories without subdirectories at
//! all), so doing this inside it would put one `lstat` per file before the first event is
//! handled. Run on a thread of its own once the engine is running, it delays neither the
//! watches nor the first delivery, and whatever changes while it runs is seen by the
//! watches already in place.
//!
//! The heartbeat file is reached through the verified [`StateDir`]: created 0600, never
//! through a symbolic link (a link there is an error, and is not taken as a heartbeat).

use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, SystemTime};

use sersync_plugin_sdk::{Event, EventKind, PathFilter, RelPath, WatchId};

use crate::naming::stable_hash;
use crate::state_dir::StateDir;

/// Slack subtracted from the last heartbeat: a change in the second before the last beat
/// is caught too.
const SLACK: Duration = Duration::from_secs(2);
const BEAT: Duration = Duration::from_secs(1);

/// The heartbeat of one configuration (its set of watch roots) in a state directory.
pub struct Heartbeat {
    dir: Arc<StateDir>,
    name: String,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Heartbeat {
    /// The heartbeat file's name for `roots`.
    pub fn file_name(roots: &[PathBuf]) -> String {
        let hash = stable_hash(roots.iter().map(|r| r.as_os_str().as_bytes()));
        format!("heartbeat-{hash:016x}")
    }

    /// When the previous run was last known alive, if it ever ran (with the heartbeat
    /// `name` in `dir`).
    pub fn last_alive(dir: &StateDir, name: &str) -> Option<SystemTime> {
        dir.modified(name)
    }

    /// Starts beating: touches `name` in `dir` now and every second until stopped.
    pub fn start(dir: Arc<StateDir>, name: String) -> io::Result<Heartbeat> {
        touch(&dir, &name)?;
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, beat_dir, beat_name) = (stop.clone(), dir.clone(), name.clone());
        let thread = thread::Builder::new()
            .name("heartbeat".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    thread::sleep(BEAT);
                    let _ = touch(&beat_dir, &beat_name);
                }
            })?;
        Ok(Heartbeat {
            dir,
            name,
            stop,
            thread: Some(thread),
        })
    }

    /// Stops beating after a last beat: the next start catches up from now.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = touch(&self.dir, &self.name);
    }
}

fn touch(dir: &StateDir, name: &str) -> io::Result<()> {
    dir.open_file(name, true)?.set_modified(SystemTime::now())
}

/// Everything below `root` (watch `watch`) whose inode changed at or after `since`, as
/// events: files as [`EventKind::CloseWrite`], directories as [`EventKind::Rescan`] (the
/// contents of a rescanned directory are not listed again). Excluded entries are skipped.
pub fn changed_since(
    root: &Path,
    watch: WatchId,
    filter: &dyn PathFilter,
    since: SystemTime,
) -> Vec<Event> {
    let since = since.checked_sub(SLACK).unwrap_or(SystemTime::UNIX_EPOCH);
    let changed = |meta: &fs::Metadata| {
        let ctime = SystemTime::UNIX_EPOCH
            + Duration::new(
                meta.ctime().max(0) as u64,
                meta.ctime_nsec().clamp(0, 999_999_999) as u32,
            );
        ctime >= since
    };
    let mut events = Vec::new();
    if fs::symlink_metadata(root).is_ok_and(|m| changed(&m)) {
        events.push(Event::now(EventKind::Rescan, RelPath::ROOT, true, watch));
        return events;
    }
    let mut stack = vec![RelPath::ROOT];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(dir.absolute(root)) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = dir.join(entry.file_name().as_bytes());
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            let is_dir = meta.is_dir();
            if filter.is_excluded(&path, is_dir) {
                continue;
            }
            match (is_dir, changed(&meta)) {
                (true, true) => events.push(Event::now(EventKind::Rescan, path, true, watch)),
                (true, false) => stack.push(path),
                (false, true) => events.push(Event::now(EventKind::CloseWrite, path, false, watch)),
                (false, false) => {}
            }
        }
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;
    use sersync_plugin_sdk::sink::NoFilter;
    use std::fs::File;

    #[test]
    fn only_what_changed_since_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("old/deep")).unwrap();
        fs::write(root.join("old/deep/f"), b"old").unwrap();
        fs::create_dir(root.join("quiet")).unwrap();
        fs::write(root.join("quiet/untouched"), b"u").unwrap();
        // Make everything look a minute old by measuring from a later "since".
        std::thread::sleep(Duration::from_millis(20));
        let since = SystemTime::now() + SLACK;
        std::thread::sleep(Duration::from_millis(20));
        fs::write(root.join("old/deep/f"), b"changed while down").unwrap();
        fs::write(root.join("quiet/new"), b"created while down").unwrap();
        let mut got: Vec<String> = changed_since(root, WatchId(0), &NoFilter, since)
            .into_iter()
            .map(|e| format!("{} {}", e.kind, e.path))
            .collect();
        got.sort();
        // quiet/ gained an entry: rescanned whole (covers deletes too); old/deep/f changed.
        assert_eq!(got, ["close_write old/deep/f", "rescan quiet"]);
    }

    #[test]
    fn heartbeat_records_the_last_moment_alive() {
        let dir = tempfile::tempdir().unwrap();
        let state = Arc::new(StateDir::open(&dir.path().join("state")).unwrap());
        let name = Heartbeat::file_name(&[PathBuf::from("/w")]);
        assert_eq!(Heartbeat::last_alive(&state, &name), None);
        let before = SystemTime::now() - Duration::from_secs(1);
        Heartbeat::start(state.clone(), name.clone())
            .unwrap()
            .stop();
        assert!(Heartbeat::last_alive(&state, &name).unwrap() >= before);
        let mode = fs::metadata(state.file_path(&name)).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn a_linked_heartbeat_is_neither_followed_nor_believed() {
        let dir = tempfile::tempdir().unwrap();
        let state = Arc::new(StateDir::open(&dir.path().join("state")).unwrap());
        let victim = dir.path().join("victim");
        fs::write(&victim, b"intact").unwrap();
        let old = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        File::options()
            .write(true)
            .open(&victim)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let name = Heartbeat::file_name(&[PathBuf::from("/w")]);
        std::os::unix::fs::symlink(&victim, state.file_path(&name)).unwrap();
        assert_eq!(Heartbeat::last_alive(&state, &name), None);
        assert!(Heartbeat::start(state, name).is_err());
        assert_eq!(fs::metadata(&victim).unwrap().modified().unwrap(), old);
    }
}
