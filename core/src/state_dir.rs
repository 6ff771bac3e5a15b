//! The state directory: where lane journals and the heartbeat live, kept out of other users'
//! reach.
//!
//! sersync usually runs as root and writes file names from watched trees (which other users
//! write into) into these files. A directory someone else can write to would let them plant
//! a symbolic link where sersync is about to write and make it overwrite any file with lines
//! of their choosing. So:
//!
//! - the default is a directory only sersync's user can create: `$STATE_DIRECTORY` (set by
//!   systemd's `StateDirectory=`), else `/var/lib/sersync` for root, else
//!   `$XDG_STATE_HOME/sersync` or `~/.local/state/sersync` ([`default_path`]);
//! - [`StateDir::open`] creates it mode 0700 (with its parents), and refuses one that is a
//!   symbolic link, not a directory, not owned by the effective user, or writable by group or
//!   others ([`StateDirError`]);
//! - the verified directory is held open and every file in it is reached relative to that
//!   descriptor (`openat`, `renameat`, `unlinkat`) with `O_NOFOLLOW`: renaming a parent
//!   directory afterwards changes nothing, and a link inside is never followed. Files are
//!   created 0600 (they hold file names); temporary files are created with `O_EXCL` after
//!   the stale one is unlinked.
//!
//! What a refusal means for the daemon is decided by the engine: it syncs on without
//! journals and heartbeat, saying why at ERROR level (see `docs/operations.md`, *Security*).

use std::ffi::{CString, OsStr};
use std::fmt;
use std::fs::{self, DirBuilder, File, Metadata};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Mode of the directory when sersync creates it, and of every file it creates in it.
const DIR_MODE: u32 = 0o700;
const FILE_MODE: u32 = 0o600;

/// The state directory used when `<engine stateDir>` is not set, from the environment and
/// the effective user: see [`default_path_for`].
pub fn default_path() -> PathBuf {
    default_path_for(
        std::env::var_os("STATE_DIRECTORY").as_deref(),
        effective_uid() == 0,
        std::env::var_os("XDG_STATE_HOME").as_deref(),
        std::env::var_os("HOME").as_deref(),
    )
}

/// The default state directory: the first absolute path in `state_directory` (systemd's
/// `$STATE_DIRECTORY`, `:`-separated); else `/var/lib/sersync` for root; else
/// `$XDG_STATE_HOME/sersync` or `$HOME/.local/state/sersync` (relative values are ignored,
/// as the XDG specification asks); else `/var/lib/sersync`, which a user who is not root
/// cannot create, so the start-up error says to set `<engine stateDir>`. Never a directory
/// that others can write to, such as `/tmp`.
pub fn default_path_for(
    state_directory: Option<&OsStr>,
    root: bool,
    xdg_state_home: Option<&OsStr>,
    home: Option<&OsStr>,
) -> PathBuf {
    let absolute = |value: Option<&OsStr>| {
        value
            .map(Path::new)
            .filter(|p| p.is_absolute())
            .map(Path::to_path_buf)
    };
    let systemd = state_directory.and_then(|dirs| {
        dirs.as_bytes()
            .split(|&b| b == b':')
            .map(|dir| Path::new(OsStr::from_bytes(dir)))
            .find(|dir| dir.is_absolute())
            .map(Path::to_path_buf)
    });
    if let Some(dir) = systemd {
        return dir;
    }
    let system = PathBuf::from("/var/lib/sersync");
    if root {
        return system;
    }
    if let Some(state_home) = absolute(xdg_state_home) {
        return state_home.join("sersync");
    }
    absolute(home).map_or(system, |home| home.join(".local/state/sersync"))
}

fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Why a state directory was not used.
#[derive(Debug)]
pub enum StateDirError {
    /// It exists but is not safe to write into.
    Unsafe {
        /// The directory.
        path: PathBuf,
        /// What is wrong with it.
        problem: Problem,
    },
    /// It could not be created or opened.
    Io {
        /// The directory.
        path: PathBuf,
        /// What sersync was doing: "create", "open".
        action: &'static str,
        /// The system's error.
        error: io::Error,
    },
}

/// What makes an existing state directory unsafe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Problem {
    /// A symbolic link: whoever made it chooses where sersync writes.
    Symlink,
    /// Not a directory at all.
    NotDirectory,
    /// Owned by another user (`owner`), not by the daemon's effective user (`euid`).
    Owner {
        /// The directory's owner.
        owner: u32,
        /// The daemon's effective user id.
        euid: u32,
    },
    /// Writable by its group or by everyone (`mode`, the permission bits).
    Writable {
        /// The directory's permission bits.
        mode: u32,
    },
}

impl fmt::Display for StateDirError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateDirError::Io {
                path,
                action,
                error,
            } => write!(
                f,
                "cannot {action} the state directory {}: {error}; set <engine stateDir> to a \
                 directory sersync's user can create",
                path.display()
            ),
            StateDirError::Unsafe { path, problem } => {
                let p = path.display();
                match problem {
                    Problem::Symlink => write!(
                        f,
                        "the state directory {p} is a symbolic link, which sersync does not \
                         follow (whoever made the link would choose where sersync writes); set \
                         <engine stateDir> to the real directory"
                    ),
                    Problem::NotDirectory => write!(
                        f,
                        "the state directory {p} is not a directory; remove it (sersync creates \
                         the directory, mode 0700) or set <engine stateDir> elsewhere"
                    ),
                    Problem::Owner { owner, euid } => write!(
                        f,
                        "the state directory {p} belongs to uid {owner}, not to sersync's user \
                         (uid {euid}): its owner could make sersync overwrite other files \
                         through it; remove it (sersync creates it again, mode 0700), or if it \
                         is yours `chown {euid} {p}`, or set <engine stateDir>"
                    ),
                    Problem::Writable { mode } => write!(
                        f,
                        "the state directory {p} is writable by its group or by others (mode \
                         {mode:04o}): anyone who can write there could make sersync overwrite \
                         other files; `chmod 700 {p}` or set <engine stateDir>"
                    ),
                }
            }
        }
    }
}

impl std::error::Error for StateDirError {}

/// What is wrong with a directory described by `meta` (from `lstat` or `fstat`), for a
/// daemon running as `euid`; `None` when it is safe.
fn judge(meta: &Metadata, euid: u32) -> Option<Problem> {
    let kind = meta.file_type();
    if kind.is_symlink() {
        Some(Problem::Symlink)
    } else if !kind.is_dir() {
        Some(Problem::NotDirectory)
    } else if meta.uid() != euid {
        Some(Problem::Owner {
            owner: meta.uid(),
            euid,
        })
    } else if meta.mode() & 0o022 != 0 {
        Some(Problem::Writable {
            mode: meta.mode() & 0o7777,
        })
    } else {
        None
    }
}

/// What `--check` can say about `path` without creating anything: `Ok(true)` when it exists
/// and is safe, `Ok(false)` when it does not exist yet (it is created at start), else why
/// it would be refused.
pub fn inspect(path: &Path) -> Result<bool, StateDirError> {
    match fs::symlink_metadata(path) {
        Ok(meta) => match judge(&meta, effective_uid()) {
            None => Ok(true),
            Some(problem) => Err(StateDirError::Unsafe {
                path: path.to_path_buf(),
                problem,
            }),
        },
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(error) => Err(StateDirError::Io {
            path: path.to_path_buf(),
            action: "inspect",
            error,
        }),
    }
}

/// A verified state directory, held open; every file operation is relative to it and never
/// follows a symbolic link.
#[derive(Debug)]
pub struct StateDir {
    path: PathBuf,
    dir: File,
}

impl StateDir {
    /// Opens the state directory at `path`, creating it (and missing parents) mode 0700 when
    /// it does not exist; refuses it when it is unsafe (see [`StateDirError`]).
    pub fn open(path: &Path) -> Result<StateDir, StateDirError> {
        let io_error = |action, error| StateDirError::Io {
            path: path.to_path_buf(),
            action,
            error,
        };
        let unsafe_dir = |problem| StateDirError::Unsafe {
            path: path.to_path_buf(),
            problem,
        };
        if !inspect(path)? {
            DirBuilder::new()
                .recursive(true)
                .mode(DIR_MODE)
                .create(path)
                .map_err(|e| io_error("create", e))?;
        }
        let dir = File::options()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| match e.raw_os_error() {
                // Replaced by a link or a file since it was looked at.
                Some(libc::ELOOP) => unsafe_dir(Problem::Symlink),
                Some(libc::ENOTDIR) => unsafe_dir(Problem::NotDirectory),
                _ => io_error("open", e),
            })?;
        // Judged again on what was opened: that is the directory used from now on.
        let meta = dir.metadata().map_err(|e| io_error("open", e))?;
        if let Some(problem) = judge(&meta, effective_uid()) {
            return Err(unsafe_dir(problem));
        }
        Ok(StateDir {
            path: path.to_path_buf(),
            dir,
        })
    }

    /// The directory's path, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path of `name` in it, for messages.
    pub fn file_path(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Opens `name` for reading and appending, creating it 0600 when `create`. Refuses a
    /// symbolic link or anything but a regular file; a file readable by others (from an
    /// older sersync, which made journals 0644) is made owner-only.
    pub fn open_file(&self, name: &str, create: bool) -> io::Result<File> {
        let create_flag = if create { libc::O_CREAT } else { 0 };
        let file = self.open_at(name, libc::O_RDWR | libc::O_APPEND | create_flag)?;
        let meta = file.metadata().map_err(|e| self.context(name, e))?;
        if !meta.is_file() {
            return Err(self.context(
                name,
                io::Error::new(io::ErrorKind::InvalidData, "not a regular file"),
            ));
        }
        if meta.mode() & 0o077 != 0 {
            file.set_permissions(fs::Permissions::from_mode(FILE_MODE))
                .map_err(|e| self.context(name, e))?;
        }
        Ok(file)
    }

    /// Creates `name` afresh for writing, 0600: a stale one (a file or a link) is unlinked
    /// first, and the file is created with `O_EXCL`, so nothing that was there is written.
    pub fn create_new(&self, name: &str) -> io::Result<File> {
        match self.remove(name) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        self.open_at(name, libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL)
    }

    /// Renames `from` to `to`, both in this directory (atomic; a link at `to` is replaced,
    /// not followed).
    pub fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let (c_from, c_to) = (self.c_name(from)?, self.c_name(to)?);
        let fd = self.dir.as_raw_fd();
        // SAFETY: both names are NUL-terminated and outlive the call; `fd` is open.
        let rc = unsafe { libc::renameat(fd, c_from.as_ptr(), fd, c_to.as_ptr()) };
        if rc == -1 {
            return Err(self.context(to, io::Error::last_os_error()));
        }
        Ok(())
    }

    /// Removes `name` (a link is removed itself, never its target).
    pub fn remove(&self, name: &str) -> io::Result<()> {
        let c_name = self.c_name(name)?;
        // SAFETY: the name is NUL-terminated and outlives the call; the descriptor is open.
        if unsafe { libc::unlinkat(self.dir.as_raw_fd(), c_name.as_ptr(), 0) } == -1 {
            return Err(self.context(name, io::Error::last_os_error()));
        }
        Ok(())
    }

    /// When the regular file `name` was last modified; `None` when it does not exist or is
    /// anything else (a link included).
    pub fn modified(&self, name: &str) -> Option<SystemTime> {
        let file = self.open_at(name, libc::O_RDONLY | libc::O_NONBLOCK).ok()?;
        let meta = file.metadata().ok()?;
        meta.is_file().then(|| meta.modified().ok()).flatten()
    }

    /// `openat` relative to the directory with `O_NOFOLLOW | O_CLOEXEC` added, mode 0600
    /// for a created file.
    fn open_at(&self, name: &str, flags: libc::c_int) -> io::Result<File> {
        let c_name = self.c_name(name)?;
        let flags = flags | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        // SAFETY: the name is NUL-terminated and outlives the call; the descriptor is open.
        let fd = unsafe {
            libc::openat(
                self.dir.as_raw_fd(),
                c_name.as_ptr(),
                flags,
                FILE_MODE as libc::c_uint,
            )
        };
        if fd == -1 {
            let error = io::Error::last_os_error();
            if error.raw_os_error() == Some(libc::ELOOP) {
                return Err(self.context(
                    name,
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        "a symbolic link, which sersync does not follow in its state directory; remove it",
                    ),
                ));
            }
            return Err(self.context(name, error));
        }
        // SAFETY: `fd` was just opened and is owned by nothing else.
        Ok(unsafe { File::from_raw_fd(fd) })
    }

    /// `name` as a C string; only plain names of this directory's entries are accepted.
    fn c_name(&self, name: &str) -> io::Result<CString> {
        if name.is_empty() || name == "." || name == ".." || name.contains('/') {
            return Err(self.context(
                name,
                io::Error::new(io::ErrorKind::InvalidInput, "not a plain file name"),
            ));
        }
        CString::new(name).map_err(|e| self.context(name, io::Error::other(e)))
    }

    /// `error` with the file's path in front.
    fn context(&self, name: &str, error: io::Error) -> io::Error {
        io::Error::new(
            error.kind(),
            format!("{}: {error}", self.file_path(name).display()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn mode(path: &Path) -> u32 {
        fs::symlink_metadata(path).unwrap().mode() & 0o7777
    }

    #[test]
    fn the_default_never_is_a_shared_temporary_directory() {
        let os = |s: &'static str| Some(OsStr::new(s));
        assert_eq!(
            default_path_for(os("/var/lib/sersync:/var/lib/other"), true, None, None),
            Path::new("/var/lib/sersync"),
            "systemd's first StateDirectory"
        );
        assert_eq!(
            default_path_for(os("/srv/state"), false, os("/x"), os("/home/u")),
            Path::new("/srv/state")
        );
        assert_eq!(
            default_path_for(None, true, os("/root/.state"), os("/root")),
            Path::new("/var/lib/sersync")
        );
        assert_eq!(
            default_path_for(None, false, os("/home/u/.st"), os("/home/u")),
            Path::new("/home/u/.st/sersync")
        );
        assert_eq!(
            default_path_for(os("relative"), false, os("rel"), os("/home/u")),
            Path::new("/home/u/.local/state/sersync"),
            "relative values are ignored"
        );
        assert_eq!(
            default_path_for(None, false, None, None),
            Path::new("/var/lib/sersync")
        );
    }

    #[test]
    fn a_missing_directory_is_created_owner_only_with_its_parents() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/state");
        assert!(!inspect(&path).unwrap(), "not there yet");
        let state = StateDir::open(&path).unwrap();
        assert_eq!(mode(&path), 0o700);
        assert_eq!(mode(&dir.path().join("a")), 0o700);
        assert!(inspect(&path).unwrap());
        let file = state.open_file("j", true).unwrap();
        drop(file);
        assert_eq!(mode(&path.join("j")), 0o600);
    }

    #[test]
    fn an_unsafe_directory_is_refused_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let open_err = |path: &Path| StateDir::open(path).unwrap_err();

        let open = dir.path().join("world-writable");
        fs::create_dir(&open).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o1777)).unwrap();
        let e = open_err(&open);
        assert!(
            matches!(
                e,
                StateDirError::Unsafe {
                    problem: Problem::Writable { mode: 0o1777 },
                    ..
                }
            ),
            "{e}"
        );
        let text = e.to_string();
        assert!(
            text.contains(&*open.to_string_lossy()) && text.contains("chmod 700"),
            "{text}"
        );

        let group = dir.path().join("group-writable");
        fs::create_dir(&group).unwrap();
        fs::set_permissions(&group, fs::Permissions::from_mode(0o770)).unwrap();
        assert!(matches!(
            open_err(&group),
            StateDirError::Unsafe {
                problem: Problem::Writable { .. },
                ..
            }
        ));

        let link = dir.path().join("link");
        let real = dir.path().join("real");
        fs::create_dir(&real).unwrap();
        fs::set_permissions(&real, fs::Permissions::from_mode(0o700)).unwrap();
        symlink(&real, &link).unwrap();
        let e = open_err(&link);
        assert!(
            matches!(
                e,
                StateDirError::Unsafe {
                    problem: Problem::Symlink,
                    ..
                }
            ),
            "{e}"
        );
        assert!(
            StateDir::open(&real).is_ok(),
            "the link's target itself is fine"
        );

        let file = dir.path().join("file");
        fs::write(&file, b"").unwrap();
        assert!(matches!(
            open_err(&file),
            StateDirError::Unsafe {
                problem: Problem::NotDirectory,
                ..
            }
        ));
        let e = open_err(&file.join("below"));
        assert!(
            matches!(
                e,
                StateDirError::Io {
                    action: "inspect" | "create",
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("<engine stateDir>"), "{e}");
    }

    #[test]
    fn a_directory_owned_by_someone_else_is_refused() {
        let euid = effective_uid();
        if euid != 0 {
            eprintln!("skipped: needs root to give a directory away");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let theirs = dir.path().join("theirs");
        fs::create_dir(&theirs).unwrap();
        fs::set_permissions(&theirs, fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
        let e = StateDir::open(&theirs).unwrap_err();
        assert!(
            matches!(
                e,
                StateDirError::Unsafe {
                    problem: Problem::Owner {
                        owner: 65534,
                        euid: 0
                    },
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("belongs to uid 65534"), "{e}");
        assert!(matches!(
            inspect(&theirs),
            Err(StateDirError::Unsafe { .. })
        ));
    }

    #[test]
    fn files_are_never_reached_through_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(&dir.path().join("state")).unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, b"precious\n").unwrap();
        symlink(&victim, state.file_path("link")).unwrap();

        let e = state.open_file("link", true).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert_eq!(state.modified("link"), None, "a link has no heartbeat");
        // A temporary file replaces the link instead of writing through it.
        let mut temp = state.create_new("link").unwrap();
        io::Write::write_all(&mut temp, b"new").unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"precious\n");
        assert!(fs::symlink_metadata(state.file_path("link"))
            .unwrap()
            .is_file());
        assert_eq!(mode(&state.file_path("link")), 0o600);

        state.rename("link", "moved").unwrap();
        assert!(state.modified("moved").is_some());
        state.remove("moved").unwrap();
        assert!(state.open_file("../escape", true).is_err());
    }

    #[test]
    fn an_older_readable_file_is_made_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(&dir.path().join("state")).unwrap();
        fs::write(state.file_path("old.journal"), b"x").unwrap();
        fs::set_permissions(
            state.file_path("old.journal"),
            fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        state.open_file("old.journal", false).unwrap();
        assert_eq!(mode(&state.file_path("old.journal")), 0o600);
    }
}
