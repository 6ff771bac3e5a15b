//! The master connection sersync keeps per ssh host (see [`ssh`](super)).
//!
//! Before each rsync over ssh, [`keep_master`] connects to the master's socket (a Unix
//! socket `connect`, no process): when nothing answers it starts `ssh -o ControlMaster=yes
//! -o ControlPersist=60 -N -f HOST` in the state directory, never in the watch root, with no
//! terminal and `BatchMode` (a daemon cannot answer a prompt). `-f` puts it in the
//! background once authenticated; a thread reaps the foreground process. Runs started
//! before it is up connect directly (`ControlMaster=no` falls back to that), so none waits
//! for it. A socket left by a master that was killed (the connection refused) is removed
//! first: ssh would not bind over it. At most one start per socket every [`RETRY`], so a
//! host that is down or refuses is not dialled twice for every run.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use super::{socket, PERSIST_SECS};
use crate::rsync::RsyncOptions;

/// The shortest time between two starts of a master for one socket.
pub const RETRY: Duration = Duration::from_secs(10);

/// When a master was last started, per socket.
static STARTED: Mutex<BTreeMap<PathBuf, Instant>> = Mutex::new(BTreeMap::new());

/// Makes sure a master connection to `host` is up or being set up, when rsync's `-e` word
/// uses one (see the module docs).
pub fn keep_master(options: &RsyncOptions, host: &str) {
    if options.params_set("-e") || options.params_set("--rsh") {
        return;
    }
    let (Some(socket), Some(dir)) = (socket(options, host), options.ssh_control_dir.as_ref())
    else {
        return;
    };
    match UnixStream::connect(&socket) {
        Ok(_) => return,
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
            // Nobody listens: left by a master that was killed.
            let _ = std::fs::remove_file(&socket);
        }
        Err(_) => {}
    }
    {
        let mut started = STARTED.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        if started
            .get(&socket)
            .is_some_and(|at| now.saturating_duration_since(*at) < RETRY)
        {
            return;
        }
        started.insert(socket.clone(), now);
    }
    let control_path = format!("ControlPath={}", socket.display());
    let persist = format!("ControlPersist={PERSIST_SECS}");
    let spawned = Command::new("ssh")
        .args([
            "-o",
            "ControlMaster=yes",
            "-o",
            &control_path,
            "-o",
            &persist,
        ])
        .args(["-o", "BatchMode=yes", "-N", "-f", "-T", "--", host])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    match spawned {
        Ok(mut child) => {
            let reaper = thread::Builder::new()
                .name("ssh master start".into())
                .spawn(move || child.wait());
            if let Err(e) = reaper {
                tracing::debug!(error = %e, "cannot reap the ssh master's start");
            }
        }
        Err(e) => {
            tracing::debug!(host, error = %e, "cannot start an ssh master connection; runs connect directly");
        }
    }
}
