//! Running as a daemon: detaching from the terminal, the pid file, signals.

use crossbeam_channel::Sender;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::supervisor::Notice;

/// Detaches from the terminal: fork (the parent exits 0), new session, working directory
/// `/`, standard input and output to `/dev/null` (standard error too unless `keep_stderr`).
/// Call before any thread is started.
pub fn detach(keep_stderr: bool) -> io::Result<()> {
    // SAFETY: called while the process is single-threaded; the child only continues with
    // async-signal-safe work until it returns to ordinary Rust code in a fresh process.
    match unsafe { libc::fork() } {
        -1 => return Err(io::Error::last_os_error()),
        0 => {}
        _ => std::process::exit(0),
    }
    // SAFETY: plain system call without pointers.
    if unsafe { libc::setsid() } == -1 {
        return Err(io::Error::last_os_error());
    }
    std::env::set_current_dir("/")?;
    let null = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    let targets: &[i32] = if keep_stderr { &[0, 1] } else { &[0, 1, 2] };
    for &fd in targets {
        // SAFETY: both descriptors are valid; dup2 replaces `fd` atomically.
        if unsafe { libc::dup2(null.as_raw_fd(), fd) } == -1 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The pid file used with `-d` when `--pid-file` is not given: one per configuration file,
/// in `/run` for root, else in `$XDG_RUNTIME_DIR` or the temporary directory. A second
/// daemon on the same configuration is therefore refused.
pub fn default_pid_file(config: &Path) -> PathBuf {
    let dir = if is_root() {
        PathBuf::from("/run")
    } else {
        std::env::var_os("XDG_RUNTIME_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir)
    };
    let hash = sersync::naming::stable_hash([config.as_os_str().as_encoded_bytes()]);
    dir.join(format!("sersync-{hash:016x}.pid"))
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A pid file held locked for the life of the process and removed when dropped.
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
    _file: File,
}

impl PidFile {
    /// Creates (or takes over) `path`, locks it and writes this process's id. Fails when
    /// another live process holds the lock: a second instance on the same pid file.
    ///
    /// The file is opened with `O_NOFOLLOW` (mode 0644) and used only when it is a regular
    /// file of this user with one link, so a link or a file planted in a shared directory
    /// (`/tmp`) never makes sersync truncate and write another file.
    pub fn acquire(path: &Path) -> io::Result<PidFile> {
        let refuse = |why: String| {
            io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "pid file {}: {why}; sersync does not write through it: remove it or use another --pid-file",
                    path.display()
                ),
            )
        };
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| {
                // ELOOP, or EACCES for a link in a sticky directory.
                if fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
                    refuse("is a symbolic link".into())
                } else {
                    io::Error::new(e.kind(), format!("pid file {}: {e}", path.display()))
                }
            })?;
        let meta = file.metadata()?;
        // SAFETY: geteuid has no preconditions.
        let euid = unsafe { libc::geteuid() };
        if !meta.is_file() {
            return Err(refuse("is not a regular file".into()));
        }
        if meta.uid() != euid {
            return Err(refuse(format!(
                "belongs to uid {}, not to sersync's user (uid {euid})",
                meta.uid()
            )));
        }
        if meta.nlink() != 1 {
            return Err(refuse(format!(
                "has {} hard links (another name for some other file)",
                meta.nlink()
            )));
        }
        // SAFETY: the descriptor is valid for the duration of the call.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == -1 {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!(
                    "{} is held by a running sersync (pid {}); stop it first or use another --pid-file",
                    path.display(),
                    holder.trim()
                ),
            ));
        }
        file.set_len(0)?;
        writeln!(file, "{}", std::process::id())?;
        file.sync_all()?;
        Ok(PidFile {
            path: path.to_path_buf(),
            _file: file,
        })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Turns SIGTERM and SIGINT into [`Notice::Stop`] (a second one exits at once) and SIGHUP
/// into [`Notice::Reload`].
pub fn handle_signals(notices: Sender<Notice>) -> io::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])?;
    std::thread::Builder::new().name("signals".into()).spawn(move || {
        let mut stopping = false;
        for signal in signals.forever() {
            if signal == SIGHUP {
                let _ = notices.send(Notice::Reload);
            } else if stopping {
                tracing::warn!("second stop signal: exiting at once; undelivered changes stay in the journals");
                std::process::exit(130);
            } else {
                stopping = true;
                tracing::info!(signal, "stopping: delivering what is pending");
                let _ = notices.send(Notice::Stop);
            }
        }
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn a_pid_file_is_locked_and_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.pid");
        let held = PidFile::acquire(&path).unwrap();
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            format!("{}\n", std::process::id())
        );
        let e = PidFile::acquire(&path).unwrap_err();
        assert!(e.to_string().contains("held by a running sersync"), "{e}");
        drop(held);
        assert!(!path.exists(), "removed when dropped");
    }

    #[test]
    fn a_planted_link_or_second_name_is_never_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("passwd");
        fs::write(&victim, b"root:x:0:0::/root:/bin/sh\n").unwrap();
        let link = dir.path().join("link.pid");
        symlink(&victim, &link).unwrap();
        let e = PidFile::acquire(&link).unwrap_err();
        assert!(e.to_string().contains("is a symbolic link"), "{e}");
        let hard = dir.path().join("hard.pid");
        fs::hard_link(&victim, &hard).unwrap();
        let e = PidFile::acquire(&hard).unwrap_err();
        assert!(e.to_string().contains("hard links"), "{e}");
        assert_eq!(fs::read(&victim).unwrap(), b"root:x:0:0::/root:/bin/sh\n");
        assert!(
            link.exists() && hard.exists(),
            "a refused file is left alone"
        );
    }

    #[test]
    fn a_pid_file_of_another_user_is_refused() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: needs root to give a file away");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let theirs = dir.path().join("theirs.pid");
        fs::write(&theirs, b"1\n").unwrap();
        std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
        let e = PidFile::acquire(&theirs).unwrap_err();
        assert!(e.to_string().contains("belongs to uid 65534"), "{e}");
        assert_eq!(fs::read(&theirs).unwrap(), b"1\n");
    }
}
