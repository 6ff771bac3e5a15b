//! The follower's own tree: deletes and renames applied in place, every path reached from the
//! root through directory descriptors opened with `O_NOFOLLOW`, so a name in the stream can
//! never reach outside the tree (a symlink in the tree, `..`), whatever its bytes.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use sersync_plugin_sdk::RelPath;

/// The local tree.
#[derive(Debug)]
pub struct LocalTree {
    root: PathBuf,
    fd: OwnedFd,
}

/// What stands at a path of the local tree, never following a symlink.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A real directory, reached through real directories.
    Directory,
    /// Something else: a file, a symlink (to anything), a device.
    Other,
    /// Nothing, or an ancestor that is not a real directory.
    Missing,
}

/// Whether the components of `path` are all plain names (no `.`, `..`, empty ones): the only
/// paths the follower acts on.
pub fn is_plain(path: &RelPath) -> bool {
    path.as_bytes()
        .split(|&b| b == b'/')
        .all(|c| !c.is_empty() && c != b"." && c != b"..")
}

impl LocalTree {
    /// Opens the tree (made if missing).
    pub fn open(root: &Path) -> io::Result<LocalTree> {
        std::fs::create_dir_all(root)?;
        let c = CString::new(root.as_os_str().as_bytes())?;
        // SAFETY: a plain open(2) of a NUL-terminated path.
        let fd = unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(LocalTree {
            root: root.to_path_buf(),
            // SAFETY: fd was just opened and is owned by nobody else.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// The tree's path.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory holding `path`'s last component, and that component; `None` when an
    /// ancestor is missing or not a real directory (then `path` is not in the tree either).
    fn parent(&self, path: &RelPath) -> io::Result<Option<(OwnedFd, CString)>> {
        let bytes = path.as_bytes();
        let mut parts = bytes.split(|&b| b == b'/').peekable();
        // SAFETY: dup of a descriptor we own.
        let mut dir = unsafe { OwnedFd::from_raw_fd(libc::dup(self.fd.as_raw_fd())) };
        while let Some(part) = parts.next() {
            let name = CString::new(part)?;
            if parts.peek().is_none() {
                return Ok(Some((dir, name)));
            }
            let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
            // SAFETY: openat relative to a directory descriptor we own.
            let fd = unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), flags) };
            if fd < 0 {
                let e = io::Error::last_os_error();
                return match e.raw_os_error() {
                    Some(libc::ENOENT | libc::ENOTDIR | libc::ELOOP) => Ok(None),
                    _ => Err(e),
                };
            }
            // SAFETY: just opened, ours.
            dir = unsafe { OwnedFd::from_raw_fd(fd) };
        }
        Ok(None)
    }

    /// What is at `path`, judged without following symlinks (the root is a directory).
    pub fn kind(&self, path: &RelPath) -> io::Result<Kind> {
        if path.is_root() {
            return Ok(Kind::Directory);
        }
        let Some((dir, name)) = self.parent(path)? else {
            return Ok(Kind::Missing);
        };
        // SAFETY: a zeroed stat buffer filled by fstatat relative to a descriptor we own.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        let r = unsafe {
            libc::fstatat(
                dir.as_raw_fd(),
                name.as_ptr(),
                &mut st,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        if r != 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::ENOENT | libc::ENOTDIR) => Ok(Kind::Missing),
                _ => Err(e),
            };
        }
        Ok(if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
            Kind::Directory
        } else {
            Kind::Other
        })
    }

    /// The outermost directory above `path` (not `path` itself) that is not a real directory
    /// here — a symlink, a file, or missing — if any. rsync given `path` would make that one
    /// a real directory (`--relative` sends every implied directory as one), so the pulls name
    /// it instead.
    pub fn first_non_directory_above(&self, path: &RelPath) -> io::Result<Option<RelPath>> {
        for ancestor in path.ancestors() {
            let ancestor = RelPath::new(ancestor);
            if self.kind(&ancestor)? != Kind::Directory {
                return Ok(Some(ancestor));
            }
        }
        Ok(None)
    }

    /// Removes `path` (a file, a link, or a directory with everything below it); `false`
    /// when it was not there.
    pub fn remove(&self, path: &RelPath) -> io::Result<bool> {
        if !is_plain(path) {
            return Ok(false);
        }
        let Some((dir, name)) = self.parent(path)? else {
            return Ok(false);
        };
        // SAFETY: unlinkat relative to a directory descriptor we own.
        if unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), 0) } == 0 {
            return Ok(true);
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::ENOENT) => Ok(false),
            // A directory: std's remove_dir_all does not follow a link at the name and opens
            // everything below it relative to its parent's descriptor.
            Some(libc::EISDIR | libc::EPERM) => {
                let through = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()))
                    .join(std::ffi::OsStr::from_bytes(name.as_bytes()));
                std::fs::remove_dir_all(through).map(|()| true)
            }
            _ => Err(e),
        }
    }

    /// Renames `from` to `to` in the tree (replacing what is at `to`); `false` when `from` is
    /// not there or `to`'s directory is missing (then `from` is removed: the pull brings `to`).
    pub fn rename(&self, from: &RelPath, to: &RelPath) -> io::Result<bool> {
        if !is_plain(from) || !is_plain(to) || to.is_within(from) {
            return self.remove(from);
        }
        let (Some((from_dir, from_name)), Some((to_dir, to_name))) =
            (self.parent(from)?, self.parent(to)?)
        else {
            return self.remove(from);
        };
        let rename = || {
            // SAFETY: renameat between directory descriptors we own.
            let r = unsafe {
                libc::renameat(
                    from_dir.as_raw_fd(),
                    from_name.as_ptr(),
                    to_dir.as_raw_fd(),
                    to_name.as_ptr(),
                )
            };
            if r == 0 {
                Ok(())
            } else {
                Err(io::Error::last_os_error())
            }
        };
        match rename() {
            Ok(()) => Ok(true),
            Err(e) => match e.raw_os_error() {
                Some(libc::ENOENT) => Ok(false),
                // Something of another kind, or a non-empty directory, holds the new name.
                Some(libc::ENOTEMPTY | libc::EEXIST | libc::EISDIR | libc::ENOTDIR) => {
                    self.remove(to)?;
                    match rename() {
                        Ok(()) => Ok(true),
                        // `from` was below `to` (a late rename of `a/b` to `a`): gone with it;
                        // the pull brings `to` as the source has it.
                        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
                        Err(e) => Err(e),
                    }
                }
                _ => Err(e),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_and_renames_stay_inside_the_tree() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("precious"), "x").unwrap();
        let root = dir.path().join("tree");
        let tree = LocalTree::open(&root).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("link")).unwrap();
        assert!(!tree.remove(&RelPath::new(&b"link/precious"[..])).unwrap());
        assert!(!tree
            .remove(&RelPath::new(&b"../outside/precious"[..]))
            .unwrap());
        assert!(outside.join("precious").exists());
        // The link itself goes, not what it points to.
        assert!(tree.remove(&RelPath::new(&b"link"[..])).unwrap());
        assert!(outside.join("precious").exists());

        let odd = b"new\nline \xff".to_vec();
        std::fs::create_dir_all(root.join("d/e")).unwrap();
        std::fs::write(root.join("d/e/f"), "f").unwrap();
        let odd_path = root.join(std::ffi::OsStr::from_bytes(&odd));
        assert!(tree
            .rename(&RelPath::new(&b"d"[..]), &RelPath::new(odd.clone()))
            .unwrap());
        assert_eq!(std::fs::read(odd_path.join("e/f")).unwrap(), b"f");
        assert!(tree.remove(&RelPath::new(odd)).unwrap());
        assert!(!odd_path.exists());
        assert!(!tree
            .rename(&RelPath::new(&b"gone"[..]), &RelPath::new(&b"x"[..]))
            .unwrap());
        // A name renamed onto a directory above it (a late message: `a/b` to `a`).
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::write(root.join("a/other"), "o").unwrap();
        assert!(!tree
            .rename(&RelPath::new(&b"a/b"[..]), &RelPath::new(&b"a"[..]))
            .unwrap());
        assert!(!root.join("a").exists());
    }

    #[test]
    fn kinds_are_judged_without_following_links() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("tree");
        let tree = LocalTree::open(&root).unwrap();
        std::fs::create_dir_all(root.join("d/e")).unwrap();
        std::fs::write(root.join("f"), "f").unwrap();
        std::os::unix::fs::symlink("d", root.join("l")).unwrap();
        let p = |s: &str| RelPath::from(s);
        assert_eq!(tree.kind(&RelPath::ROOT).unwrap(), Kind::Directory);
        assert_eq!(tree.kind(&p("d/e")).unwrap(), Kind::Directory);
        assert_eq!(tree.kind(&p("f")).unwrap(), Kind::Other);
        assert_eq!(
            tree.kind(&p("l")).unwrap(),
            Kind::Other,
            "a link to a directory"
        );
        assert_eq!(
            tree.kind(&p("l/e")).unwrap(),
            Kind::Missing,
            "not through the link"
        );
        assert_eq!(tree.kind(&p("f/x")).unwrap(), Kind::Missing);
        assert_eq!(tree.first_non_directory_above(&p("d/e/x")).unwrap(), None);
        assert_eq!(
            tree.first_non_directory_above(&p("l/e/x")).unwrap(),
            Some(p("l"))
        );
        assert_eq!(
            tree.first_non_directory_above(&p("f/x/y")).unwrap(),
            Some(p("f"))
        );
        assert_eq!(
            tree.first_non_directory_above(&p("d/gone/x/y")).unwrap(),
            Some(p("d/gone"))
        );
        assert_eq!(tree.first_non_directory_above(&p("top")).unwrap(), None);
    }
}
