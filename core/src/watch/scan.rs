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
use std::os::fd::{AsRawFd, RawFd};
use std::path::PathBuf;
use std::sync::Arc;

use sersync_plugin_sdk::{Event, EventKind, PathFilter, RelPath, WatchId};

use super::reader::Watcher;
use super::sys::{self, Dir, DirStat, WatchBy, Wd};
use super::tree::{DirKey, Placed};
use super::{limits, WatchError};
use crate::filter::Filter;

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
    /// Directories opened by walks so far.
    pub opened: u64,
}

impl WalkState {
    /// True when `dir` (`stat` once watched), at an absolute path of `path_len` bytes,
    /// has no subdirectory and no entry whose path is too long: listing it would find
    /// nothing to do.
    fn is_leaf(&mut self, dir: &Dir, stat: &DirStat, path_len: usize) -> bool {
        if stat.nlink != 2 {
            return false;
        }
        let dev = stat.key.dev;
        let name_max = match self.devices.iter().find(|(d, _)| *d == dev) {
            Some(&(_, rule)) => rule,
            None => {
                let rule = dir.file_system().ok().and_then(|(kind, name_max)| {
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
pub(super) struct Step {
    dir: RelPath,
    /// The descriptor of the directory it lies in; `None` for a root.
    parent: Option<Wd>,
    /// Its parent, open, once the walk is below its top.
    within: Option<Arc<Dir>>,
    /// For the top of a walk inside a parent: the identity that parent has in the table
    /// (`None` when the table has none), which the top's `..` must have.
    parent_key: Option<Option<DirKey>>,
    /// A rescan reported above it covers it already.
    covered: bool,
}

/// What a walk needs to visit a directory, shared by the threads of a parallel walk.
pub(super) struct WalkCtx {
    watch: WatchId,
    root: PathBuf,
    root_len: usize,
    inotify: RawFd,
    mask: u32,
    watch_by: WatchBy,
    filter: Arc<Filter>,
    /// Every entry is reported (`Report::Entries`), so every directory is listed.
    reporting: bool,
}

/// What a visit found: the system calls are done, the table is not touched yet.
pub(super) struct Visit {
    step: Step,
    found: io::Result<Found>,
}

/// A directory watched by a visit.
struct Found {
    wd: Wd,
    key: DirKey,
    /// `None`: a leaf, not listed.
    listed: Option<io::Result<Listed>>,
}

/// What the listing of a directory met.
#[derive(Default)]
struct Listed {
    /// The subdirectories to walk next.
    children: Vec<Step>,
    /// Their names, once the children were handed on to other threads.
    names: Vec<Box<[u8]>>,
    /// Every entry as a create (with `Report::Entries`).
    entries: Vec<Event>,
    /// Paths too long to watch or sync, to warn about.
    too_long: Vec<RelPath>,
}

impl Visit {
    /// Takes the subdirectories out to be walked by any thread, keeping their names.
    pub(super) fn hand_on(&mut self) -> Vec<Step> {
        let Ok(Found {
            listed: Some(Ok(listed)),
            ..
        }) = &mut self.found
        else {
            return Vec::new();
        };
        listed.names = listed
            .children
            .iter()
            .map(|c| c.dir.file_name().into())
            .collect();
        std::mem::take(&mut listed.children)
    }
}

impl WalkCtx {
    /// Opens, watches and (unless it is a leaf) lists the directory of `step`, with no
    /// access to the table: what it found is applied by [`Watcher::apply`].
    pub(super) fn visit(&self, state: &mut WalkState, step: Step) -> Visit {
        let found = self.watch_dir(state, &step).map(|(dir, wd, stat)| {
            let path_len = joined_len(self.root_len, &RelPath::ROOT, step.dir.as_bytes());
            let listed = (self.reporting || !state.is_leaf(&dir, &stat, path_len))
                .then(|| self.list(state, &step.dir, wd, Arc::new(dir)));
            Found {
                wd,
                key: stat.key,
                listed,
            }
        });
        Visit { step, found }
    }

    /// Opens the directory of `step` without following a symlink, checks that it is where
    /// the walk expects it, and watches it.
    fn watch_dir(&self, state: &mut WalkState, step: &Step) -> io::Result<(Dir, Wd, DirStat)> {
        let dir = match &step.within {
            Some(parent) => parent.open_at(step.dir.file_name())?,
            None => {
                let abs = step.dir.absolute(&self.root);
                if abs.as_os_str().len() >= PATH_MAX {
                    return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
                }
                let dir = Dir::open(&abs)?;
                // The path may lead through a directory renamed in since the event: then
                // this is not the directory the event named, which is elsewhere.
                if let Some(expected) = step.parent_key {
                    if expected != Some(dir.parent_key()?) {
                        return Err(io::Error::from_raw_os_error(libc::ENOENT));
                    }
                }
                dir
            }
        };
        state.opened += 1;
        let by_path = || step.dir.absolute(&self.root);
        let wd = sys::add_watch(self.inotify, &dir, by_path, self.watch_by, self.mask)?;
        // After the watch: a link count read now covers every subdirectory the watch
        // does not report (see the module's documentation). `fstat` of an open descriptor
        // fails only without memory; the watch then stays unrecorded and its events are
        // ignored until a walk records it (the kernel hands out the same descriptor for
        // the same directory).
        let stat = dir.stat()?;
        Ok((dir, wd, stat))
    }

    /// Lists the directory `dir` (at `rel`, watched as `wd`): its subdirectories as the
    /// next steps, and what else the walk must know of its entries.
    fn list(
        &self,
        state: &mut WalkState,
        rel: &RelPath,
        wd: Wd,
        dir: Arc<Dir>,
    ) -> io::Result<Listed> {
        let mut listed = Listed::default();
        let mut buffer = std::mem::take(&mut state.buffer);
        let read = dir.read_entries(&mut buffer, |name, is_dir| {
            let too_long = joined_len(self.root_len, rel, name) >= PATH_MAX;
            if !is_dir && !self.reporting && !too_long {
                return; // a file matters to this walk only when its path is too long
            }
            let child = rel.join(name);
            if self.filter.is_excluded(&child, is_dir) {
                return;
            }
            if too_long {
                listed.too_long.push(child);
                return;
            }
            if self.reporting {
                listed.entries.push(Event::now(
                    EventKind::Create,
                    child.clone(),
                    is_dir,
                    self.watch,
                ));
            }
            if is_dir {
                listed.children.push(Step {
                    dir: child,
                    parent: Some(wd),
                    within: Some(dir.clone()),
                    parent_key: None,
                    covered: false,
                });
            }
        });
        state.buffer = buffer;
        read.map(|()| listed)
    }
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
        let ctx = self.walk_ctx(watch, matches!(report, Report::Entries(_)));
        let mut state = std::mem::take(&mut self.walking);
        let mut stack = vec![self.top_step(rel, parent)];
        let mut outcome = Walked::Watched;
        let walked = loop {
            let Some(step) = stack.pop() else {
                break Ok(outcome);
            };
            let visit = ctx.visit(&mut state, step);
            match self.apply(watch, visit, &mut report, &mut outcome) {
                Ok(children) => stack.extend(children),
                Err(stop) => break Err(stop),
            }
        };
        self.walking = state;
        self.stats.set_directories(self.tree.len());
        walked
    }

    /// What visits of directories of `watch` need.
    pub(super) fn walk_ctx(&self, watch: WatchId, reporting: bool) -> WalkCtx {
        let root = self.root_path(watch).to_path_buf();
        WalkCtx {
            watch,
            root_len: root.as_os_str().len(),
            root,
            inotify: self.inotify.as_raw_fd(),
            mask: self.mask.bits(),
            watch_by: self.watch_by,
            filter: self.filter.clone(),
            reporting,
        }
    }

    /// The first step of a walk of `rel`, inside `parent` (`None`: a root).
    pub(super) fn top_step(&self, rel: RelPath, parent: Option<Wd>) -> Step {
        Step {
            parent_key: parent.map(|p| self.tree.key(&p)),
            dir: rel,
            parent,
            within: None,
            covered: false,
        }
    }

    /// Puts what a visit found into the table and reports it as `report` asks; returns the
    /// subdirectories to walk next. `outcome` is what became of the top of the walk.
    pub(super) fn apply(
        &mut self,
        watch: WatchId,
        visit: Visit,
        report: &mut Report<'_>,
        outcome: &mut Walked,
    ) -> Result<Vec<Step>, WatchError> {
        let Visit { step, found } = visit;
        let found = match found {
            Ok(found) => found,
            Err(error) => {
                let gone = is_gone(&error);
                self.refused(watch, &step.dir, step.parent.is_none(), error)?;
                if step.within.is_none() {
                    *outcome = if gone {
                        Walked::Missing
                    } else {
                        Walked::Skipped
                    };
                }
                return Ok(Vec::new());
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
        let placed = self
            .tree
            .place(found.wd, found.key, watch, parent, dir.file_name());
        let mut covered_here = covered;
        if let Report::Repairs(out) = report {
            if placed != Placed::Unchanged && !covered {
                out.push(Event::now(EventKind::Rescan, dir.clone(), true, watch));
                covered_here = true;
            }
        }
        if self.debug {
            tracing::debug!(watch = watch.0, path = %dir, "watch added");
        }
        // Watched subdirectories the listing does not have were deleted or renamed away:
        // homeless until the kernel says which. Looked for only when there are any (a
        // directory new to the table has none).
        let had_children = self.tree.has_children(&found.wd);
        let mut listed = match found.listed {
            None => Listed::default(),
            Some(Ok(listed)) => listed,
            Some(Err(error)) => {
                let root = self.root_path(watch);
                tracing::warn!(path = %dir.absolute(root).display(), %error, "cannot list directory");
                return Ok(Vec::new());
            }
        };
        for path in &listed.too_long {
            self.too_long(watch, path);
        }
        if let Report::Entries(out) = report {
            out.append(&mut listed.entries);
        }
        if had_children {
            let names: HashSet<&[u8]> = listed
                .children
                .iter()
                .map(|c| c.dir.file_name())
                .chain(listed.names.iter().map(|n| &n[..]))
                .collect();
            for (name, child) in self.tree.children(&found.wd) {
                if !names.contains(&name[..]) {
                    self.tree.make_homeless(&child);
                }
            }
        }
        for child in &mut listed.children {
            child.covered = covered_here;
        }
        Ok(listed.children)
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
