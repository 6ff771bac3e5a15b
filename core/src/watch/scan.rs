//! Adding a directory tree to the watch: watch first, then list, so nothing created in
//! between is missed (a file may be reported twice; the coalescer merges that).
//!
//! Each directory is opened once (`O_NOFOLLOW`, so a symlink is never followed), watched
//! through that descriptor (`sys`: `.` in the walking thread's own working directory), and
//! listed through it: the watch, the identity recorded for it and the listing are all of
//! the same directory, even when a rename swaps the path meanwhile. Below the top of a walk
//! every directory is opened with `openat` on its parent's descriptor.
//!
//! **A leaf is not listed when nothing in it is to be reported.** A walk that reports no
//! files (the start-up walk, repairs) lists a directory only to find its subdirectories.
//! Where a directory's link count is 2 + its subdirectories (ext2/3/4, XFS, tmpfs: asked of
//! each device once, with `fstatfs`), a count of 2 read *after* its watch was added means it
//! has none: one made or moved in after that is reported by the watch (`IN_CREATE`,
//! `IN_MOVED_TO`), and one there before raises the count. Other file systems (btrfs counts
//! 1, NFS, CIFS and overlayfs need not count) are always listed, and so is a directory
//! whose entries' paths could be too long to sync (they are warned about at once).

use std::collections::HashSet;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::rc::Rc;

use sersync_plugin_sdk::{Event, EventKind, PathFilter, RelPath, WatchId};

use super::reader::Watcher;
use super::sys::{self, Dir, DirStat, Wd};
use super::tree::Placed;
use super::{limits, WatchError};

/// The longest absolute path the kernel resolves (`PATH_MAX`, counting its NUL); rsync's
/// own limit (`MAXPATHLEN`) is the same. Anything longer is neither watched nor synced.
pub(super) const PATH_MAX: usize = libc::PATH_MAX as usize;

/// File systems whose directories' link count is 2 + their subdirectories.
const COUNTS_SUBDIRECTORIES: [libc::__fsword_t; 3] = [
    libc::EXT4_SUPER_MAGIC,
    libc::XFS_SUPER_MAGIC,
    libc::TMPFS_MAGIC,
];

/// What a walk reports as it meets things.
pub(super) enum Report<'a> {
    /// Nothing: the start-up walk (sinks are told by a full sync or the catch-up).
    Nothing,
    /// Every entry below the top, as a create: the tree is new to the sinks.
    Entries(&'a mut Vec<Event>),
    /// Every directory whose watch was missing or in the wrong place, as a rescan: the
    /// sinks knew the tree, but what they were told of it may be wrong.
    Repairs(&'a mut Vec<Event>),
}

/// What became of the top directory of a walk.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Walked {
    /// Watched (and everything below it that could be).
    Watched,
    /// Not there: gone, renamed, or replaced by something that is not a directory since
    /// the event that named it. The events that follow say which.
    Missing,
    /// There, but it cannot be watched (unreadable, path too long); warned about.
    Skipped,
}

/// What walks keep between them: the listing buffer, and what each device's file system
/// says about its directories' link counts.
#[derive(Debug, Default)]
pub(super) struct WalkState {
    buffer: Vec<u8>,
    /// By `st_dev`: the longest name its file system takes, when its link counts count
    /// subdirectories.
    devices: Vec<(u64, Option<usize>)>,
    /// Directories opened by walks so far (what the tests count).
    #[cfg(test)]
    pub opened: u64,
}

impl WalkState {
    /// True when `opened`, at an absolute path of `path_len` bytes, has no subdirectory
    /// and no entry whose path is too long: listing it would find nothing to do.
    fn is_leaf(&mut self, opened: &Opened, path_len: usize) -> bool {
        if opened.stat.nlink != 2 {
            return false;
        }
        let dev = opened.stat.key.dev;
        let name_max = match self.devices.iter().find(|(d, _)| *d == dev) {
            Some(&(_, rule)) => rule,
            None => {
                let rule = opened.dir.file_system().ok().and_then(|(kind, name_max)| {
                    COUNTS_SUBDIRECTORIES
                        .contains(&kind)
                        .then_some(name_max as usize)
                });
                self.devices.push((dev, rule));
                rule
            }
        };
        name_max.is_some_and(|name_max| path_len + 1 + name_max < PATH_MAX)
    }
}

/// A directory the walk is about to watch.
struct Step {
    dir: RelPath,
    /// The descriptor of the directory it lies in; `None` for a root.
    parent: Option<Wd>,
    /// Its parent, open, once the walk is below its top.
    within: Option<Rc<Dir>>,
    /// A rescan reported above it covers it already.
    covered: bool,
}

/// One directory being watched: the open directory, its descriptor and what `fstat` said
/// of it once it was watched.
struct Opened {
    dir: Dir,
    wd: Wd,
    stat: DirStat,
}

impl Watcher {
    /// Watches the directory `rel` of `watch` (inside `parent`, or a root when `None`) and
    /// every directory below it that the filter keeps, putting every descriptor where the
    /// walk found it; what no longer is where the table says becomes homeless. What it
    /// meets is reported as `report` asks.
    ///
    /// The top is opened by its path, which may lead somewhere else by now (an ancestor
    /// renamed since the event); it is taken only if it lies in `parent`'s directory.
    /// Everything below is opened relative to its parent's open descriptor, so the walk
    /// never strays from the tree it lists.
    pub(super) fn add_tree(
        &mut self,
        watch: WatchId,
        rel: RelPath,
        parent: Option<Wd>,
        mut report: Report<'_>,
    ) -> Result<Walked, WatchError> {
        let _cwd = sys::WalkCwd;
        let root = self.root_path(watch).to_path_buf();
        let root_len = root.as_os_str().len();
        let reporting = matches!(report, Report::Entries(_));
        let mut buffer = std::mem::take(&mut self.walking.buffer);
        let mut stack = vec![Step {
            dir: rel,
            parent,
            within: None,
            covered: false,
        }];
        let mut outcome = Walked::Watched;
        while let Some(step) = stack.pop() {
            let is_top = step.within.is_none();
            let opened = match self.watch_dir(&root, &step) {
                Ok(opened) => opened,
                Err(e) => {
                    let gone = is_gone(&e);
                    if let Err(stop) = self.refused(watch, &step.dir, step.parent.is_none(), e) {
                        self.walking.buffer = buffer;
                        return Err(stop);
                    }
                    if is_top {
                        outcome = if gone {
                            Walked::Missing
                        } else {
                            Walked::Skipped
                        };
                    }
                    continue;
                }
            };
            let Step {
                dir,
                parent,
                covered,
                ..
            } = step;
            // What held the place is homeless now: found again by a walk, or released once
            // the kernel says it is gone.
            let placed =
                self.tree
                    .place(opened.wd, opened.stat.key, watch, parent, dir.file_name());
            let mut covered_here = covered;
            if let Report::Repairs(out) = &mut report {
                if placed != Placed::Unchanged && !covered {
                    out.push(Event::now(EventKind::Rescan, dir.clone(), true, watch));
                    covered_here = true;
                }
            }
            if self.debug {
                tracing::debug!(watch = watch.0, path = %dir, "watch added");
            }
            // Watched subdirectories the listing does not have are looked for only when
            // there are any (a directory new to the table has none).
            let had_children = self.tree.has_children(&opened.wd);
            let path_len = joined_len(root_len, &RelPath::ROOT, dir.as_bytes());
            if !reporting && self.walking.is_leaf(&opened, path_len) {
                for (_, wd) in self.tree.children(&opened.wd) {
                    self.tree.make_homeless(&wd);
                }
                continue;
            }
            let Opened {
                dir: opened_dir,
                wd,
                ..
            } = opened;
            let opened_dir = Rc::new(opened_dir);
            let mut listed_dirs: HashSet<Box<[u8]>> = HashSet::new();
            let listing = opened_dir.read_entries(&mut buffer, |name, is_dir| {
                if !is_dir && !reporting {
                    // A file matters to this walk only when its path is too long (warned).
                    if joined_len(root_len, &dir, name) >= PATH_MAX {
                        let child = dir.join(name);
                        if !self.filter.is_excluded(&child, false) {
                            self.too_long(watch, &child);
                        }
                    }
                    return;
                }
                let child = dir.join(name);
                if self.filter.is_excluded(&child, is_dir) || self.too_long(watch, &child) {
                    return;
                }
                if let Report::Entries(found) = &mut report {
                    found.push(Event::now(EventKind::Create, child.clone(), is_dir, watch));
                }
                if is_dir {
                    if had_children {
                        listed_dirs.insert(name.into());
                    }
                    stack.push(Step {
                        dir: child,
                        parent: Some(wd),
                        within: Some(opened_dir.clone()),
                        covered: covered_here,
                    });
                }
            });
            if let Err(error) = listing {
                tracing::warn!(path = %dir.absolute(&root).display(), %error, "cannot list directory");
                continue;
            }
            // Watched subdirectories the listing no longer has were deleted or renamed
            // away: homeless until the kernel says which.
            if had_children {
                for (name, child) in self.tree.children(&wd) {
                    if !listed_dirs.contains(&name) {
                        self.tree.make_homeless(&child);
                    }
                }
            }
        }
        self.walking.buffer = buffer;
        self.stats.set_directories(self.tree.len());
        Ok(outcome)
    }

    /// Opens the directory of `step` without following a symlink, checks that it is where
    /// the walk expects it, and watches it.
    fn watch_dir(&mut self, root: &Path, step: &Step) -> io::Result<Opened> {
        let dir = match &step.within {
            Some(parent) => parent.open_at(step.dir.file_name())?,
            None => {
                let abs = step.dir.absolute(root);
                if abs.as_os_str().len() >= PATH_MAX {
                    return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
                }
                let dir = Dir::open(&abs)?;
                // The path may lead through a directory renamed in since the event: then
                // this is not the directory the event named, which is elsewhere.
                if let Some(parent) = &step.parent {
                    if self.tree.key(parent) != Some(dir.parent_key()?) {
                        return Err(io::Error::from_raw_os_error(libc::ENOENT));
                    }
                }
                dir
            }
        };
        #[cfg(test)]
        {
            self.walking.opened += 1;
        }
        let inotify = self.inotify.as_raw_fd();
        let by_path = || step.dir.absolute(root);
        let wd = sys::add_watch(inotify, &dir, by_path, self.watch_by, self.mask.bits())?;
        // After the watch: a link count read now covers every subdirectory the watch
        // does not report (see the module's documentation).
        match dir.stat() {
            Ok(stat) => Ok(Opened { dir, wd, stat }),
            Err(error) => {
                if self.tree.key(&wd).is_none() {
                    sys::remove_watch(inotify, wd);
                }
                Err(error)
            }
        }
    }

    /// Decides what a failure to watch the directory `rel` means: the limit of watches and
    /// a root that cannot be watched stop the watcher; anything else below a root is
    /// skipped (once warned about) so that the rest of the tree goes on syncing.
    fn refused(
        &mut self,
        watch: WatchId,
        rel: &RelPath,
        is_root: bool,
        error: io::Error,
    ) -> Result<(), WatchError> {
        let abs = rel.absolute(self.root_path(watch));
        match error.raw_os_error() {
            Some(libc::ENOSPC) => {
                let limit = limits::InotifyLimits::read()
                    .map(|l| l.max_user_watches)
                    .unwrap_or(0);
                Err(WatchError::Limit {
                    advice: limits::watch_limit_advice(limit, self.tree.len() as u64 + 1),
                })
            }
            // The process is out of descriptors or memory: nothing about this directory.
            Some(libc::EMFILE | libc::ENFILE | libc::ENOMEM) => {
                Err(WatchError::Io { path: abs, error })
            }
            _ if is_root => Err(WatchError::Io { path: abs, error }),
            // Gone again, or replaced by a file or symlink: its events say so.
            _ if is_gone(&error) => Ok(()),
            _ => {
                self.skip(watch, rel, &error.to_string());
                Ok(())
            }
        }
    }
}

/// True when the error means nothing (or no directory) is at the path any more.
fn is_gone(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::ENOENT | libc::ENOTDIR | libc::ELOOP)
    )
}

/// The length of the absolute path of `name` in `dir`, below a root of `root_len` bytes.
fn joined_len(root_len: usize, dir: &RelPath, name: &[u8]) -> usize {
    let dir_len = if dir.is_root() {
        0
    } else {
        1 + dir.as_bytes().len()
    };
    let name_len = if name.is_empty() { 0 } else { 1 + name.len() };
    root_len + dir_len + name_len
}
