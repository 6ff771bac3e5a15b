//! The root guard: whether each watch root is still the directory that was watched.
//!
//! A root deleted, renamed away, or whose file system is unmounted (`IN_DELETE_SELF`,
//! `IN_MOVE_SELF`, `IN_UNMOUNT` on the root's own watch), or found by the periodic check
//! (every [`ROOT_CHECK`]) to be missing or another directory (a different `st_dev`/inode
//! from the one recorded when it was watched: a mount point whose file system is gone shows
//! the empty directory below it, on another device) is *lost*: its watches are released,
//! the [`RootGuard`] says so (`/status`, `/metrics`), and its listener (the engine) pauses
//! the lanes of that watch. When the check finds it back on the recorded device, it is
//! watched again and the listener resumes the lanes with a rescan of the whole root. A root
//! back on another device waits for a reload (SIGHUP), which records it anew.
//!
//! This is the reader's half; the rsync sink checks the root's device itself before every
//! run, so no delete reaches a remote in the moment before the reader has noticed.

use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use sersync_plugin_sdk::{RelPath, WatchId};

use super::reader::Watcher;
use super::scan::Report;
use super::tree::DirKey;
use super::WatchError;

/// How often the reader looks at every root's identity.
pub const ROOT_CHECK: Duration = Duration::from_secs(2);

/// Called with a watch and why its root is lost (`Some`), or that it is back (`None`).
pub type RootListener = Box<dyn Fn(WatchId, Option<&str>) + Send + Sync>;

/// Which watch roots are lost, shared by the reader (which decides) and the engine and
/// control endpoint (which act on it and show it).
pub struct RootGuard {
    lost: Mutex<Vec<Option<String>>>,
    listener: OnceLock<RootListener>,
}

impl std::fmt::Debug for RootGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RootGuard")
            .field("lost", &self.all())
            .finish()
    }
}

impl RootGuard {
    /// `roots` roots, none lost.
    pub fn new(roots: usize) -> RootGuard {
        RootGuard {
            lost: Mutex::new(vec![None; roots]),
            listener: OnceLock::new(),
        }
    }

    /// Why the root of `watch` is lost, or `None` when it is watched.
    pub fn lost(&self, watch: WatchId) -> Option<String> {
        self.all().get(watch.0 as usize).cloned().flatten()
    }

    /// Every root's state, in id order.
    pub fn all(&self) -> Vec<Option<String>> {
        self.lost.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Tells `listener` of every change from now on, and at once of every root lost
    /// already. Only the first listener is kept.
    pub fn listen(&self, listener: RootListener) {
        if self.listener.set(listener).is_err() {
            return;
        }
        for (i, reason) in self.all().iter().enumerate() {
            if let Some(reason) = reason {
                self.tell(WatchId(i as u32), Some(reason));
            }
        }
    }

    fn tell(&self, watch: WatchId, reason: Option<&str>) {
        if let Some(listener) = self.listener.get() {
            listener(watch, reason);
        }
    }

    /// Marks the root lost; true when it was not already.
    fn lose(&self, watch: WatchId, reason: &str) -> bool {
        {
            let mut lost = self.lost.lock().unwrap_or_else(|e| e.into_inner());
            match lost.get_mut(watch.0 as usize) {
                Some(slot @ None) => *slot = Some(reason.to_string()),
                _ => return false,
            }
        }
        self.tell(watch, Some(reason));
        true
    }

    /// Marks the root watched again.
    fn back(&self, watch: WatchId) {
        {
            let mut lost = self.lost.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(slot) = lost.get_mut(watch.0 as usize) {
                *slot = None;
            }
        }
        self.tell(watch, None);
    }
}

impl Watcher {
    /// The root of `watch` is lost (`reason` says how): its watches are released and the
    /// guard told, once.
    pub(super) fn root_lost(&mut self, watch: WatchId, reason: &str) {
        if let Some(wd) = self.tree.root_of(watch) {
            self.release(&wd);
        }
        if self.guard.lose(watch, reason) {
            tracing::error!(
                root = %self.root_path(watch).display(),
                reason,
                "watch root lost: its lanes are paused and nothing is sent to its remotes, deletes least of all; it is watched again and rescanned when it is back on its file system (checked every {} s), or after a reload (SIGHUP)",
                ROOT_CHECK.as_secs()
            );
        }
    }

    /// True when the root of `watch` is lost: nothing below it may be walked.
    pub(super) fn is_lost(&self, watch: WatchId) -> bool {
        self.guard.lost(watch).is_some()
    }

    /// Every [`ROOT_CHECK`]: a watched root that is no longer the directory recorded is lost;
    /// a lost one back on its recorded device is watched again.
    pub(super) fn check_roots(&mut self) -> Result<(), WatchError> {
        if Instant::now() < self.next_root_check {
            return Ok(());
        }
        self.next_root_check = Instant::now() + ROOT_CHECK;
        for root in self.roots().clone() {
            let watch = root.watch;
            let recorded = self.root_keys[watch.0 as usize];
            let now = self.dir_key_at(watch, &RelPath::ROOT);
            if !self.is_lost(watch) {
                if now == recorded || recorded.is_none() {
                    continue;
                }
                let reason = match now {
                    None => "it is missing (deleted or renamed away)",
                    Some(key) if recorded.is_some_and(|r| r.dev != key.dev) => {
                        "another file system is there now (unmounted?)"
                    }
                    Some(_) => "another directory is there now",
                };
                self.root_lost(watch, reason);
            }
            match (now, recorded) {
                (Some(key), Some(recorded)) if key.dev != recorded.dev => {
                    if !self.other_device_warned[watch.0 as usize] {
                        self.other_device_warned[watch.0 as usize] = true;
                        tracing::warn!(
                            root = %root.path.display(),
                            device = key.dev,
                            recorded = recorded.dev,
                            "watch root is there again, but on another file system than the one watched: not watched until a reload (SIGHUP) accepts it"
                        );
                    }
                }
                (Some(_), _) => self.root_back(watch)?,
                (None, _) => {}
            }
        }
        Ok(())
    }

    /// Watches the root of `watch` again; the guard's listener rescans it.
    fn root_back(&mut self, watch: WatchId) -> Result<(), WatchError> {
        match self.add_tree(watch, RelPath::ROOT, None, Report::Nothing) {
            Ok(_) => {}
            // Gone again, or not readable yet: the next check tries again.
            Err(WatchError::Io { path, error }) => {
                tracing::debug!(path = %path.display(), %error, "watch root not watchable yet");
                return Ok(());
            }
            Err(limit) => return Err(limit),
        }
        let key = self.tree.root_of(watch).and_then(|wd| self.tree.key(&wd));
        self.root_keys[watch.0 as usize] = key;
        self.other_device_warned[watch.0 as usize] = false;
        tracing::warn!(
            root = %self.root_path(watch).display(),
            "watch root is back: watched again; its lanes resume with a rescan of the whole root"
        );
        self.guard.back(watch);
        Ok(())
    }
}

/// The identity recorded for a root: what the walk that watched it saw.
pub(super) fn recorded_key(watcher: &Watcher, watch: WatchId) -> Option<DirKey> {
    watcher
        .tree
        .root_of(watch)
        .and_then(|wd| watcher.tree.key(&wd))
}
