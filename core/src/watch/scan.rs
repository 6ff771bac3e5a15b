//! Adding a directory tree to the watch: watch first, then list, so nothing created in
//! between is missed (a file may be reported twice; the coalescer merges that).
//!
//! Each directory is opened once (`O_NOFOLLOW`, so a symlink is never followed), and the
//! watch is added and the listing read through that descriptor (`/proc/self/fd/N`): the
//! watch, the identity recorded for it and the listing are all of the same directory, even
//! when a rename swaps the path meanwhile. Where `/proc` is not mounted the path is used,
//! and a swap is caught later by the reader's checks instead.

use std::collections::HashSet;
use std::ffi::CString;
use std::fs::{self, File};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use inotify::{WatchDescriptor, WatchMask};
use sersync_plugin_sdk::{Event, EventKind, PathFilter, RelPath, WatchId};

use super::reader::Watcher;
use super::tree::{DirKey, Placed};
use super::{limits, WatchError};

/// The longest absolute path the kernel resolves (`PATH_MAX`, counting its NUL); rsync's
/// own limit (`MAXPATHLEN`) is the same. Anything longer is neither watched nor synced.
pub(super) const PATH_MAX: usize = libc::PATH_MAX as usize;

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

/// A directory the walk is about to watch.
struct Step {
    dir: RelPath,
    /// The descriptor of the directory it lies in; `None` for a root.
    parent: Option<WatchDescriptor>,
    /// Its parent, open, once the walk is below its top.
    within: Option<Rc<File>>,
    /// A rescan reported above it covers it already.
    covered: bool,
}

/// One directory being watched: the open directory, its descriptor and identity.
struct Opened {
    dir: File,
    wd: WatchDescriptor,
    key: DirKey,
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
        parent: Option<WatchDescriptor>,
        mut report: Report<'_>,
    ) -> Result<Walked, WatchError> {
        let root = self.root_path(watch).to_path_buf();
        let mut stack = vec![Step {
            dir: rel,
            parent,
            within: None,
            covered: false,
        }];
        let mut outcome = Walked::Watched;
        while let Some(step) = stack.pop() {
            let is_top = step.within.is_none();
            let abs = step.dir.absolute(&root);
            let opened = match self.watch_dir(&abs, &step) {
                Ok(opened) => opened,
                Err(e) => {
                    let gone = is_gone(&e);
                    self.refused(watch, &step.dir, step.parent.is_none(), e)?;
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
            let placed = self.tree.place(
                opened.wd.clone(),
                opened.key,
                watch,
                parent,
                dir.file_name(),
            );
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
            let entries = match fs::read_dir(listing_path(&opened, &abs, self.proc_fd)) {
                Ok(entries) => entries,
                Err(error) => {
                    tracing::warn!(path = %abs.display(), %error, "cannot list directory");
                    continue;
                }
            };
            let opened_dir = Rc::new(opened.dir);
            let mut listed_dirs: HashSet<Box<[u8]>> = HashSet::new();
            for entry in entries.flatten() {
                let name = entry.file_name();
                let child = dir.join(name.as_bytes());
                // Does not follow symlinks; falls back to lstat() where the file system
                // reports no type (XFS without ftype), whatever <fileSystem xfs> says.
                let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
                if self.filter.is_excluded(&child, is_dir) {
                    continue;
                }
                if self.too_long(watch, &child) {
                    continue;
                }
                if let Report::Entries(found) = &mut report {
                    found.push(Event::now(EventKind::Create, child.clone(), is_dir, watch));
                }
                if is_dir {
                    listed_dirs.insert(name.as_bytes().into());
                    stack.push(Step {
                        dir: child,
                        parent: Some(opened.wd.clone()),
                        within: Some(opened_dir.clone()),
                        covered: covered_here,
                    });
                }
            }
            // Watched subdirectories the listing no longer has were deleted or renamed
            // away: homeless until the kernel says which.
            for (name, wd) in self.tree.children(&opened.wd) {
                if !listed_dirs.contains(&name) {
                    self.tree.make_homeless(&wd);
                }
            }
        }
        self.stats.set_directories(self.tree.len());
        Ok(outcome)
    }

    /// Opens the directory of `step` without following a symlink, checks that it is where
    /// the walk expects it, and watches it.
    fn watch_dir(&mut self, abs: &Path, step: &Step) -> io::Result<Opened> {
        let dir = match &step.within {
            Some(parent) => open_dir_at(parent, step.dir.file_name())?,
            None => {
                if abs.as_os_str().len() >= PATH_MAX {
                    return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
                }
                let dir = File::options()
                    .read(true)
                    .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
                    .open(abs)?;
                // The path may lead through a directory renamed in since the event: then
                // this is not the directory the event named, which is elsewhere.
                if let Some(parent) = &step.parent {
                    if self.tree.key(parent) != Some(key_of_parent(&dir)?) {
                        return Err(io::Error::from_raw_os_error(libc::ENOENT));
                    }
                }
                dir
            }
        };
        let key = DirKey::of(&dir.metadata()?);
        let wd = if self.proc_fd {
            // The descriptor, not the path: whatever is at the path now, this is the
            // directory just opened. Followed on purpose: it is a link to the directory.
            let by_fd = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
            self.inotify
                .watches()
                .add(by_fd, self.mask & !WatchMask::DONT_FOLLOW)?
        } else {
            self.inotify.watches().add(abs, self.mask)?
        };
        Ok(Opened { dir, wd, key })
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

/// Where to list an opened directory: through its descriptor, so the listing is of the
/// directory watched.
fn listing_path(opened: &Opened, abs: &Path, proc_fd: bool) -> PathBuf {
    if proc_fd {
        PathBuf::from(format!("/proc/self/fd/{}", opened.dir.as_raw_fd()))
    } else {
        abs.to_path_buf()
    }
}

/// Opens the directory `name` inside the open directory `parent`, without following a
/// symlink.
fn open_dir_at(parent: &File, name: &[u8]) -> io::Result<File> {
    let name = CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: `parent` is an open descriptor and `name` a NUL-terminated string, both valid
    // for the call; the descriptor returned is owned by the `File` made of it.
    let fd = unsafe {
        libc::openat(
            parent.as_raw_fd(),
            name.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and nothing else owns it.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// The identity of the directory that contains the open directory `dir`.
fn key_of_parent(dir: &File) -> io::Result<DirKey> {
    let mut stat = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `dir` is an open descriptor, the path is a NUL-terminated literal and `stat`
    // is large enough for the result.
    let ret = unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            c"..".as_ptr(),
            stat.as_mut_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if ret != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fstatat succeeded, so it filled `stat`.
    let stat = unsafe { stat.assume_init() };
    Ok(DirKey {
        dev: stat.st_dev,
        ino: stat.st_ino,
    })
}
