//! Running as a daemon: detaching from the terminal, the pid file, signals.

use crossbeam_channel::Sender;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
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
    let hash = crate::naming::stable_hash([config.as_os_str().as_encoded_bytes()]);
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
    pub fn acquire(path: &Path) -> io::Result<PidFile> {
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)?;
        // SAFETY: the descriptor is valid for the duration of the call.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == -1 {
            let holder = fs::read_to_string(path).unwrap_or_default();
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
