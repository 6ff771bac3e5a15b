//! Adding a directory tree to the watch: watch first, then list, so nothing created in
//! between is missed (a file may be reported twice; the coalescer merges that).

use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;

use inotify::WatchDescriptor;
use sersync_plugin_sdk::{Event, EventKind, PathFilter, RelPath, WatchId};

use super::reader::Watcher;
use super::{limits, WatchError};

impl Watcher {
    /// Watches the directory `rel` of `watch` (inside `parent`, or a root when `None`) and
    /// every directory below it that the filter keeps. When `found` is given, every entry met
    /// below `rel` is reported into it as a [`EventKind::Create`], so that files made before
    /// their directory's watch existed are not missed.
    pub(super) fn add_tree(
        &mut self,
        watch: WatchId,
        rel: RelPath,
        parent: Option<WatchDescriptor>,
        mut found: Option<&mut Vec<Event>>,
    ) -> Result<(), WatchError> {
        let root = self.root_path(watch).to_path_buf();
        let mut stack = vec![(rel, parent)];
        while let Some((dir, parent)) = stack.pop() {
            let abs = dir.absolute(&root);
            let wd = match self.inotify.watches().add(&abs, self.mask) {
                Ok(wd) => wd,
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => {
                    let limit = limits::InotifyLimits::read()
                        .map(|l| l.max_user_watches)
                        .unwrap_or(0);
                    return Err(WatchError::Limit {
                        advice: limits::watch_limit_advice(limit, self.tree.len() as u64 + 1),
                    });
                }
                // Gone again, or replaced by a file: its delete event says so.
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR)) => {
                    continue
                }
                Err(e) if parent.is_some() && e.kind() == io::ErrorKind::PermissionDenied => {
                    tracing::warn!(path = %abs.display(), "not watched: permission denied");
                    continue;
                }
                Err(error) => return Err(WatchError::Io { path: abs, error }),
            };
            self.tree.insert(wd.clone(), watch, parent, dir.file_name());
            if self.debug {
                tracing::debug!(watch = watch.0, path = %dir, "watch added");
            }
            let entries = match fs::read_dir(&abs) {
                Ok(entries) => entries,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(error) => {
                    tracing::warn!(path = %abs.display(), %error, "cannot list directory");
                    continue;
                }
            };
            for entry in entries.flatten() {
                let child = dir.join(entry.file_name().as_bytes());
                // Does not follow symlinks; falls back to lstat() where the file system
                // reports no type (XFS without ftype), whatever <fileSystem xfs> says.
                let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
                if self.filter.is_excluded(&child, is_dir) {
                    continue;
                }
                if let Some(found) = found.as_deref_mut() {
                    found.push(Event::now(EventKind::Create, child.clone(), is_dir, watch));
                }
                if is_dir {
                    stack.push((child, Some(wd.clone())));
                }
            }
        }
        self.stats.set_directories(self.tree.len());
        Ok(())
    }
}
