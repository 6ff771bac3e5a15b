//! The I/O inactivity timeout, kept by sersync instead of rsync.
//!
//! rsync's own `--timeout` makes every run against a daemon with default socket options
//! ~40 ms slower: with a timeout set, the two sides exchange keep-alive messages, and one of
//! them waits out a delayed ACK (measured on loopback: 59 ms per single-file run with
//! `--timeout`, 16 ms without). Most runs are that small, so the timeout is kept here: a
//! thread watches the rsync process's I/O counters (`/proc/PID/io`, `rchar` + `wchar`, which
//! count socket and pipe traffic too) and kills it when they have not moved for the timeout.
//! Where `/proc/PID/io` cannot be read, rsync is given `--timeout` as before.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sersync_plugin_sdk::SinkError;

use super::command::io_timeout_secs;
use super::RsyncOptions;

/// How long a run may move no data before the watchdog stops it. `None` when the watchdog
/// does not run: rsync keeps the timeout (`<commonParams>` sets `--timeout`, or `/proc/PID/io`
/// is unreadable here) or there is none (`<timeout time="0">`).
pub fn limit(options: &RsyncOptions) -> Option<Duration> {
    let secs = io_timeout_secs(options);
    (secs > 0 && !options.params_set("--timeout") && available())
        .then(|| Duration::from_secs(secs.into()))
}

/// The error of a run the watchdog stopped after `limit` without I/O.
pub fn stalled(remote: &str, limit: Duration) -> SinkError {
    SinkError::retryable(format!(
        "rsync to {remote} {STALLED} for {} s and was stopped (<timeout>)",
        limit.as_secs()
    ))
}

/// True when `error` is a run the watchdog stopped ([`stalled`]).
pub fn stopped(error: &SinkError) -> bool {
    error.message.contains(STALLED)
}

const STALLED: &str = "moved no data";

/// True when this process can read I/O counters from `/proc` (checked once).
fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| io_counters(std::process::id()).is_some())
}

/// `rchar + wchar` of process `pid`: every byte it moved through read/write-like calls.
fn io_counters(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    let field = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|value| value.trim().parse::<u64>().ok())
    };
    Some(field("rchar:")? + field("wchar:")?)
}

/// Watches one child process; see the module docs.
pub struct Watchdog {
    stop: SyncSender<()>,
    fired: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Watchdog {
    /// Starts watching `pid`, which must stay unreaped until [`Watchdog::stop`] returns (so
    /// that the id cannot be reused meanwhile): it is killed once its I/O counters have not
    /// moved for `idle_limit`.
    pub fn start(pid: u32, idle_limit: Duration) -> Watchdog {
        let (stop, stopped) = sync_channel::<()>(1);
        let fired = Arc::new(AtomicBool::new(false));
        let flag = fired.clone();
        let poll = (idle_limit / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
        let thread = std::thread::spawn(move || {
            let mut last = io_counters(pid);
            let mut moved_at = Instant::now();
            while stopped.recv_timeout(poll).is_err() {
                let now = io_counters(pid);
                if now != last {
                    last = now;
                    moved_at = Instant::now();
                } else if moved_at.elapsed() >= idle_limit {
                    flag.store(true, Ordering::SeqCst);
                    // SAFETY: kill(2) with a pid the caller keeps unreaped; no memory involved.
                    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
                    return;
                }
            }
        });
        Watchdog {
            stop,
            fired,
            thread,
        }
    }

    /// Stops watching; true when the process was killed for inactivity.
    pub fn stop(self) -> bool {
        let _ = self.stop.try_send(());
        let _ = self.thread.join();
        self.fired.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    #[test]
    fn this_machine_exposes_io_counters() {
        assert!(available(), "/proc/self/io is not readable here");
    }

    #[test]
    fn the_limit_is_the_configured_timeout_unless_rsync_keeps_it_or_there_is_none() {
        let default = RsyncOptions::default();
        assert_eq!(limit(&default), Some(Duration::from_secs(120)));
        let configured = RsyncOptions {
            timeout: Some(30),
            ..RsyncOptions::default()
        };
        assert_eq!(limit(&configured), Some(Duration::from_secs(30)));
        let none = RsyncOptions {
            timeout: Some(0),
            ..RsyncOptions::default()
        };
        assert_eq!(limit(&none), None);
        let users_own = RsyncOptions {
            common_params: vec!["-a".into(), "--timeout=30".into()],
            ..RsyncOptions::default()
        };
        assert_eq!(limit(&users_own), None);
    }

    #[test]
    fn a_silent_process_is_killed_and_a_busy_one_is_not() {
        let mut silent = Command::new("sleep").arg("30").spawn().unwrap();
        let watchdog = Watchdog::start(silent.id(), Duration::from_millis(200));
        let status = silent.wait().unwrap();
        assert!(watchdog.stop(), "the watchdog did not fire");
        assert!(!status.success());

        // Writes continuously for about a second, longer than the idle limit.
        let mut busy = Command::new("sh")
            .args([
                "-c",
                "i=0; while [ $i -lt 100 ]; do echo x; sleep 0.01; i=$((i+1)); done",
            ])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let watchdog = Watchdog::start(busy.id(), Duration::from_millis(300));
        let status = busy.wait().unwrap();
        assert!(!watchdog.stop(), "a process doing I/O was killed");
        assert!(status.success());
    }
}
