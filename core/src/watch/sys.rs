//! The system calls of a walk, all on open descriptors: open a directory inside another,
//! its identity and link count, its listing, and a watch on exactly that directory.
//!
//! **Watching a descriptor.** inotify takes a path, never a descriptor. The walking thread
//! therefore has a working directory of its own (`unshare(CLONE_FS)`, once per thread) and
//! watches `.` after `fchdir` into the open directory: `.` is the directory the descriptor
//! holds, whatever has been renamed meanwhile, and resolving it costs one lookup, where
//! `/proc/self/fd/N` is four lookups through procfs and a magic link (half of a walk's
//! system time, measured). The thread's working directory is put back when the walk ends
//! ([`WalkCwd`]), so it never keeps a watched file system busy. Where the thread cannot
//! have its own (a seccomp filter without `unshare`), or `fchdir` is refused (a directory
//! that can be read but not searched), `/proc/self/fd/N` is used, and without `/proc` too
//! the path (a swap is then caught by the reader's checks).

use std::cell::{Cell, RefCell};
use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::tree::DirKey;

/// A kernel watch descriptor: the number `inotify_add_watch` returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct Wd(pub i32);

/// An open directory (`O_DIRECTORY | O_NOFOLLOW`).
#[derive(Debug)]
pub(super) struct Dir(OwnedFd);

/// What [`Dir::stat`] reports.
pub(super) struct DirStat {
    pub key: DirKey,
    /// `st_nlink`: on file systems that count them, 2 + its subdirectories.
    pub nlink: u64,
}

const OPEN_DIR: libc::c_int =
    libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;

impl Dir {
    /// Opens the directory at `path` without following a symlink at its last component.
    pub fn open(path: &Path) -> io::Result<Dir> {
        let path = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        open_at(libc::AT_FDCWD, &path)
    }

    /// Opens the directory `name` inside this one, without following a symlink.
    pub fn open_at(&self, name: &[u8]) -> io::Result<Dir> {
        let name = CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        open_at(self.fd(), &name)
    }

    fn fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }

    /// Its identity and link count.
    pub fn stat(&self) -> io::Result<DirStat> {
        let stat = fstatat(self.fd(), c"", libc::AT_EMPTY_PATH)?;
        Ok(DirStat {
            key: DirKey {
                dev: stat.st_dev,
                ino: stat.st_ino,
            },
            nlink: stat.st_nlink,
        })
    }

    /// The identity of the directory that contains it.
    pub fn parent_key(&self) -> io::Result<DirKey> {
        let stat = fstatat(self.fd(), c"..", libc::AT_SYMLINK_NOFOLLOW)?;
        Ok(DirKey {
            dev: stat.st_dev,
            ino: stat.st_ino,
        })
    }

    /// The type of its file system and the longest name it takes (`fstatfs`).
    pub fn file_system(&self) -> io::Result<(libc::__fsword_t, u64)> {
        let mut fs = std::mem::MaybeUninit::<libc::statfs>::uninit();
        // SAFETY: an open descriptor and a buffer large enough for the result.
        if unsafe { libc::fstatfs(self.fd(), fs.as_mut_ptr()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fstatfs succeeded, so it filled `fs`.
        let fs = unsafe { fs.assume_init() };
        Ok((fs.f_type, fs.f_namelen as u64))
    }

    /// Calls `entry(name, is_dir)` for every entry but `.` and `..`, read through this
    /// descriptor into `buffer`. A type the file system does not report is looked up
    /// without following a symlink.
    pub fn read_entries(
        &self,
        buffer: &mut Vec<u8>,
        mut entry: impl FnMut(&[u8], bool),
    ) -> io::Result<()> {
        const BUFFER: usize = 32 * 1024;
        buffer.resize(BUFFER, 0);
        loop {
            // SAFETY: an open descriptor and a writable buffer of the length given.
            let read = unsafe {
                libc::syscall(
                    libc::SYS_getdents64,
                    self.fd(),
                    buffer.as_mut_ptr(),
                    buffer.len(),
                )
            };
            if read < 0 {
                return Err(io::Error::last_os_error());
            }
            if read == 0 {
                return Ok(());
            }
            let mut records = &buffer[..read as usize];
            // Each record: d_ino (8), d_off (8), d_reclen (2), d_type (1), NUL-terminated name.
            while records.len() >= 19 {
                let reclen = u16::from_ne_bytes([records[16], records[17]]) as usize;
                let (record, rest) = records.split_at(reclen.clamp(19, records.len()));
                records = rest;
                let name = CStr::from_bytes_until_nul(&record[19..])
                    .map_err(|_| io::Error::from_raw_os_error(libc::EIO))?
                    .to_bytes();
                if name == b"." || name == b".." {
                    continue;
                }
                let is_dir = match record[18] {
                    libc::DT_DIR => true,
                    libc::DT_UNKNOWN => self.is_dir_at(name),
                    _ => false,
                };
                entry(name, is_dir);
            }
        }
    }

    /// True when `name` inside this directory is a directory (a symlink is not followed).
    fn is_dir_at(&self, name: &[u8]) -> bool {
        let Ok(name) = CString::new(name) else {
            return false;
        };
        fstatat(self.fd(), &name, libc::AT_SYMLINK_NOFOLLOW)
            .is_ok_and(|s| s.st_mode & libc::S_IFMT == libc::S_IFDIR)
    }
}

fn open_at(at: RawFd, name: &CStr) -> io::Result<Dir> {
    // SAFETY: `at` is an open descriptor (or AT_FDCWD) and `name` NUL-terminated.
    let fd = unsafe { libc::openat(at, name.as_ptr(), OPEN_DIR) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and nothing else owns it.
    Ok(Dir(unsafe { OwnedFd::from_raw_fd(fd) }))
}

fn fstatat(at: RawFd, name: &CStr, flags: libc::c_int) -> io::Result<libc::stat> {
    let mut stat = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: an open descriptor, a NUL-terminated name and a buffer for the result.
    if unsafe { libc::fstatat(at, name.as_ptr(), stat.as_mut_ptr(), flags) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fstatat succeeded, so it filled `stat`.
    Ok(unsafe { stat.assume_init() })
}

/// How a directory is named to `inotify_add_watch` where the walking thread cannot watch
/// `.` in a working directory of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum WatchBy {
    /// `/proc/self/fd/N`.
    ProcFd,
    /// The path: `/proc` is not mounted.
    Path,
}

impl WatchBy {
    /// What this system allows.
    pub fn detect() -> WatchBy {
        if Path::new("/proc/self/fd").is_dir() {
            WatchBy::ProcFd
        } else {
            WatchBy::Path
        }
    }
}

thread_local! {
    /// The thread's working directory before a walk moved it, once the thread has one of
    /// its own; `Some(None)` when it cannot have one.
    static OWN_CWD: RefCell<Option<Option<OwnedFd>>> = const { RefCell::new(None) };
    /// A walk on this thread has moved its working directory.
    static MOVED: Cell<bool> = const { Cell::new(false) };
}

/// Gives the thread a working directory of its own (once); false when it cannot have one.
fn own_cwd() -> bool {
    OWN_CWD.with(|own| {
        own.borrow_mut()
            .get_or_insert_with(|| {
                // SAFETY: plain system calls; the descriptor returned is owned by the OwnedFd.
                unsafe {
                    if libc::unshare(libc::CLONE_FS) != 0 {
                        tracing::debug!(error = %io::Error::last_os_error(), "no working directory of its own for the walk; watching through /proc/self/fd (or by path)");
                        return None;
                    }
                    let fd = libc::open(
                        c".".as_ptr(),
                        libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
                    );
                    (fd >= 0).then(|| OwnedFd::from_raw_fd(fd))
                }
            })
            .is_some()
    })
}

/// Puts the thread's working directory back where it was when dropped, if a walk moved it.
pub(super) struct WalkCwd;

impl Drop for WalkCwd {
    fn drop(&mut self) {
        if !MOVED.replace(false) {
            return;
        }
        OWN_CWD.with(|own| {
            if let Some(Some(before)) = own.borrow().as_ref() {
                // SAFETY: `before` is an open descriptor. Failing leaves the thread's own
                // (unshared) working directory in the tree, which affects no other thread.
                unsafe { libc::fchdir(before.as_raw_fd()) };
            }
        });
    }
}

/// Adds a watch with `mask` on exactly the directory `dir`: as `.` in the thread's own
/// working directory, else as `fallback` says (`path()` is asked only for
/// [`WatchBy::Path`]).
pub(super) fn add_watch(
    inotify: RawFd,
    dir: &Dir,
    path: impl FnOnce() -> PathBuf,
    fallback: WatchBy,
    mask: u32,
) -> io::Result<Wd> {
    // SAFETY: `dir` is an open descriptor.
    if own_cwd() && unsafe { libc::fchdir(dir.fd()) } == 0 {
        MOVED.set(true);
        return inotify_add_watch(inotify, c".", mask);
    }
    match fallback {
        WatchBy::ProcFd => {
            // Followed on purpose: the magic link leads to the directory open.
            let by_fd =
                CString::new(format!("/proc/self/fd/{}", dir.fd())).expect("no NUL in digits");
            inotify_add_watch(inotify, &by_fd, mask & !libc::IN_DONT_FOLLOW)
        }
        WatchBy::Path => {
            let path = CString::new(path().as_os_str().as_bytes())
                .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
            inotify_add_watch(inotify, &path, mask)
        }
    }
}

fn inotify_add_watch(inotify: RawFd, path: &CStr, mask: u32) -> io::Result<Wd> {
    // SAFETY: an inotify descriptor and a NUL-terminated path.
    let wd = unsafe { libc::inotify_add_watch(inotify, path.as_ptr(), mask) };
    if wd < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Wd(wd))
}

/// Removes the watch `wd`; fails harmlessly when the kernel released it already.
pub(super) fn remove_watch(inotify: RawFd, wd: Wd) {
    // SAFETY: plain system call on an inotify descriptor.
    unsafe { libc::inotify_rm_watch(inotify, wd.0) };
}
