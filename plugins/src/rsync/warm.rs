//! Warm transfers (`<engine warmTransfers>`): the next changes runs started before their
//! batches exist.
//!
//! An rsync client connects, authenticates and starts the other side before it reads its
//! `--files-from=-` list: with strace, rsync 3.2.7 pushing to a daemon does `connect`, the
//! `@RSYNCD` greeting, the module and its challenge, `@RSYNCD: OK`, the server arguments and
//! the checksum negotiation, and only then its first `read(0)`; over ssh the remote
//! `rsync --server` is running by then. On loopback that set-up is most of a small run
//! (11.1 ms fresh against 4.7 ms from the list to the exit of a connected one, one 30 KB
//! file; over ssh a session on the master connection is tens of milliseconds more). So each
//! sink instance keeps rsync processes with the arguments of the changes run (what nearly
//! every batch needs) waiting on their standard input; a run with exactly those arguments
//! writes its list into the oldest and closes it, and any other run is started fresh.
//!
//! How many wait: a small pool, as few as hand each batch one that has finished its
//! set-up. The replacement of a process is started as its run begins and is handed the
//! batch that comes as many runs later as the pool is long, so the pool must be about
//! set-up time ÷ batch interval; rather than estimate both, each batch looks at the process
//! it is handed: still connecting, the pool grows by one; ready with the one behind it ready
//! too, it shrinks by one ([`sizing`]). At least one, at most the bound the sink gives (two
//! for a daemon: each is one of its `max connections`; over ssh a share of the master
//! connection's sessions, see [`ssh::Share`](super::ssh::Share)). The oldest is always
//! handed out first: it has been connecting longest, so a batch never waits for a
//! connecting process when a fresh run would be sooner (that one would start its whole
//! set-up only then).
//!
//! A waiting process is a connection to the remote: it counts against the daemon's
//! `max connections` (or the sshd's `MaxSessions`), and a daemon's `timeout` ends it while
//! it waits. One found gone when a run wants it, or standing in another directory than the
//! watch root (the root was replaced), is not used: the next one is tried, else the run goes
//! fresh. One that fails once it has the list, for a reason a retry may cure and before the
//! I/O watchdog stopped it (the daemon cut it just then), is followed by one fresh run in
//! the same delivery, so a dead warm process never fails a batch. After [`MAX_MISSES`] warm
//! processes in a row were of no use, the instance stops warming for [`REST`]: a daemon that
//! refuses or cuts idle connections is not dialled for nothing after every batch. The pool
//! is topped up as a run of the warm kind begins (so they connect while that run transfers)
//! and again after the run (for one that died meanwhile); waiting ones are killed when the
//! instance ends, and each when nobody wanted it for [`IDLE`]: a waiting rsync has already
//! gone into the watch root (its working directory), so it would keep the root's file
//! system busy (`umount`: "target is busy") and hold one of the slave's connections for as
//! long as sersync is idle. So an instance has at most the running process and the pool's
//! bound of waiting ones at once.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Child;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use sizing::Sizing;

pub mod sizing;

/// Warm processes of no use in a row after which an instance stops warming for [`REST`].
pub const MAX_MISSES: u32 = 3;
/// How long an instance stops warming after [`MAX_MISSES`].
pub const REST: Duration = Duration::from_secs(60);
/// How long a process waits for a run before it is ended (not a miss: the next run starts
/// fresh and the one after it finds a process waiting again).
pub const IDLE: Duration = Duration::from_secs(5);

/// A started process, and the thread that ends it after [`IDLE`] unless it is taken first.
#[derive(Debug)]
struct Waiting {
    /// Emptied by whichever comes first: [`Warm::take`] or the idle deadline.
    child: Arc<Mutex<Option<Child>>>,
    /// Dropped when the process is taken, which ends the idle thread at once.
    _taken: Sender<()>,
}

impl Waiting {
    fn start(child: Child, idle: Duration) -> Waiting {
        let child = Arc::new(Mutex::new(Some(child)));
        let (taken, deadline) = mpsc::channel::<()>();
        let slot = child.clone();
        let watcher = thread::Builder::new()
            .name("warm rsync idle".into())
            .spawn(move || {
                if let Err(RecvTimeoutError::Timeout) = deadline.recv_timeout(idle) {
                    if let Some(child) = lock(&slot).take() {
                        end(child);
                    }
                }
            });
        if let Err(e) = watcher {
            // Kept without a deadline: it still ends at its run or with the instance.
            tracing::debug!(error = %e, "cannot start the idle deadline of a warm rsync");
        }
        Waiting {
            child,
            _taken: taken,
        }
    }

    /// The process, unless the idle deadline ended it.
    fn take(&self) -> Option<Child> {
        lock(&self.child).take()
    }

    /// True when the process has finished its set-up and waits for its list.
    fn ready(&self) -> bool {
        lock(&self.child)
            .as_ref()
            .is_some_and(|child| sizing::ready(child.id()))
    }

    /// True while the process waits (neither ended at its deadline nor gone by itself).
    fn alive(&self) -> bool {
        lock(&self.child)
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One sink instance's waiting rsync processes, oldest first; see the module docs.
#[derive(Debug)]
pub struct Warm {
    /// The arguments they are started with: the changes run's.
    args: Vec<OsString>,
    waiting: VecDeque<Waiting>,
    /// How long a process may wait for its run.
    idle: Duration,
    /// Warm processes of no use in a row (gone before their run, or failed in it).
    misses: u32,
    /// No warm process is started before this.
    resting_until: Option<Instant>,
    sizing: Sizing,
}

impl Warm {
    /// No process yet; the ones started later get `args`.
    pub fn new(args: Vec<OsString>) -> Warm {
        Warm::with_idle(args, IDLE)
    }

    /// [`Warm::new`] with processes ended after `idle` unused instead of [`IDLE`].
    pub fn with_idle(args: Vec<OsString>, idle: Duration) -> Warm {
        Warm {
            args,
            waiting: VecDeque::new(),
            idle,
            misses: 0,
            resting_until: None,
            sizing: Sizing::default(),
        }
    }

    /// True when a run with `args` is the kind this instance keeps processes waiting for.
    pub fn suits(&self, args: &[OsString]) -> bool {
        self.args == args
    }

    /// The oldest waiting process, for a run with `args` in `root`, that is still alive,
    /// waits with exactly these arguments and stands in `root` (the ones before it that are
    /// gone or stand elsewhere are reaped or killed). `None` when there is none: the run goes
    /// fresh. Whether it (and the one behind it) had finished its set-up sizes the pool,
    /// within `bound`.
    pub fn take(&mut self, args: &[OsString], root: &Path, bound: usize) -> Option<Child> {
        if !self.suits(args) {
            return None;
        }
        while let Some(waiting) = self.waiting.pop_front() {
            // Ended at its idle deadline: no miss.
            let Some(mut child) = waiting.take() else {
                continue;
            };
            match child.try_wait() {
                Ok(None) if stands_in(child.id(), root) => {
                    let next_ready = self.waiting.front().is_some_and(Waiting::ready);
                    self.sizing
                        .observed(sizing::ready(child.id()), next_ready, bound);
                    return Some(child);
                }
                Ok(None) => end(child),
                _ => {
                    let _ = child.wait();
                    self.missed();
                }
            }
        }
        None
    }

    /// What became of a process [`Warm::take`] handed out: `useful` when its run did not
    /// need a fresh one after it.
    pub fn used(&mut self, useful: bool) {
        if useful {
            self.misses = 0;
            self.resting_until = None;
        } else {
            self.missed();
        }
    }

    /// Tops the pool up with `spawn` to its size (see the module docs), at most `bound`
    /// processes waiting, unless the instance rests. One that cannot be started is not
    /// retried before the next run.
    pub fn refill<E>(
        &mut self,
        bound: usize,
        mut spawn: impl FnMut(&[OsString]) -> Result<Child, E>,
    ) {
        let mut gone = 0;
        self.waiting.retain(|waiting| {
            if waiting.alive() {
                return true;
            }
            // Gone by itself while nobody wanted it: reaped, and a miss. (Ended at its idle
            // deadline: nothing left to reap, and no miss.)
            if let Some(mut child) = waiting.take() {
                let _ = child.wait();
                gone += 1;
            }
            false
        });
        for _ in 0..gone {
            self.missed();
        }
        if self
            .resting_until
            .is_some_and(|until| Instant::now() < until)
        {
            return;
        }
        self.resting_until = None;
        while self.waiting.len() < self.sizing.target(bound) {
            match spawn(&self.args) {
                Ok(child) => self.waiting.push_back(Waiting::start(child, self.idle)),
                Err(_) => break,
            }
        }
    }

    fn missed(&mut self) {
        self.misses += 1;
        if self.misses >= MAX_MISSES {
            self.misses = 0;
            self.resting_until = Some(Instant::now() + REST);
            tracing::debug!(
                rest_s = REST.as_secs(),
                "warm rsync processes keep ending before their run; not warming for a while"
            );
        }
    }
}

impl Drop for Warm {
    fn drop(&mut self) {
        for waiting in self.waiting.drain(..) {
            if let Some(child) = waiting.take() {
                end(child);
            }
        }
    }
}

/// True when process `pid`'s working directory is the directory at `root` (same device and
/// inode): a root replaced since the process started would have it send from the old one.
fn stands_in(pid: u32, root: &Path) -> bool {
    let cwd = std::fs::metadata(format!("/proc/{pid}/cwd"));
    match (cwd, std::fs::metadata(root)) {
        (Ok(cwd), Ok(root)) => cwd.dev() == root.dev() && cwd.ino() == root.ino(),
        _ => false,
    }
}

/// Kills and reaps a process that will not be used (bounded: SIGKILL cannot be ignored).
fn end(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    fn sleeper(args: &[OsString], dir: &Path) -> std::io::Result<Child> {
        Command::new("sleep")
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::piped())
            .spawn()
    }

    #[test]
    fn a_waiting_process_is_handed_out_only_for_its_arguments_and_directory() {
        let dir = tempfile::tempdir().unwrap();
        let args = vec![OsString::from("30")];
        let mut warm = Warm::new(args.clone());
        assert!(
            warm.take(&args, dir.path(), 1).is_none(),
            "nothing started yet"
        );
        warm.refill(1, |a| sleeper(a, dir.path()));
        assert!(warm.take(&[OsString::from("31")], dir.path(), 1).is_none());
        let other = tempfile::tempdir().unwrap();
        assert!(
            warm.take(&args, other.path(), 1).is_none(),
            "a process in another directory was handed out"
        );
        warm.refill(1, |a| sleeper(a, dir.path()));
        let child = warm
            .take(&args, dir.path(), 1)
            .expect("the waiting process");
        end(child);
        assert!(
            warm.take(&args, dir.path(), 1).is_none(),
            "handed out twice"
        );
    }

    #[test]
    fn a_process_gone_before_its_run_is_not_handed_out_and_misses_make_it_rest() {
        let dir = tempfile::tempdir().unwrap();
        let args = vec![OsString::from("0")];
        let mut warm = Warm::new(args.clone());
        for _ in 0..MAX_MISSES {
            warm.refill(1, |a| sleeper(a, dir.path()));
            let pid = warm.waiting_pid().expect("started");
            // `sleep 0` exits at once.
            wait_gone(pid);
            assert!(warm.take(&args, dir.path(), 1).is_none());
        }
        let mut started = false;
        warm.refill(1, |a| {
            started = true;
            sleeper(a, dir.path())
        });
        assert!(!started, "a resting instance started a process");
        warm.used(true);
        warm.refill(1, |a| sleeper(a, dir.path()));
        assert_eq!(warm.waiting.len(), 1);
    }

    #[test]
    fn a_process_nobody_wants_is_ended_at_its_idle_deadline_without_a_miss() {
        let dir = tempfile::tempdir().unwrap();
        let args = vec![OsString::from("30")];
        let mut warm = Warm::with_idle(args.clone(), Duration::from_millis(100));
        for _ in 0..MAX_MISSES + 1 {
            warm.refill(1, |a| sleeper(a, dir.path()));
            let pid = warm.waiting_pid().expect("started");
            // `sleep 30` outlives the test unless the deadline ends it.
            wait_gone(pid);
            assert!(
                warm.take(&args, dir.path(), 1).is_none(),
                "an ended one handed out"
            );
        }
        assert_eq!(warm.misses, 0, "ending an idle process is no miss");
        warm.refill(1, |a| sleeper(a, dir.path()));
        let child = warm
            .take(&args, dir.path(), 1)
            .expect("taken before its deadline");
        std::thread::sleep(Duration::from_millis(300));
        let mut child = child;
        assert!(
            matches!(child.try_wait(), Ok(None)),
            "a process taken for its run was ended by its idle deadline"
        );
        end(child);
    }

    #[test]
    fn a_pool_grows_while_batches_find_their_process_connecting_within_its_bound_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let args = vec![OsString::from("30")];
        let mut warm = Warm::new(args.clone());
        // `sleep` never waits on its standard input: every one handed out "was connecting".
        for _ in 0..6 {
            warm.refill(3, |a| sleeper(a, dir.path()));
            end(warm.take(&args, dir.path(), 3).expect("one waits"));
        }
        warm.refill(3, |a| sleeper(a, dir.path()));
        assert_eq!(warm.waiting.len(), 3, "the pool at its bound");
        warm.refill(2, |a| sleeper(a, dir.path()));
        let pids = warm.waiting_pids();
        assert_eq!(pids.len(), 3, "a smaller bound starts none, ends none");
        // The oldest first; one killed while it waited is skipped for the next.
        // SAFETY: kill(2) on a child of this test.
        unsafe { libc::kill(pids[0] as libc::pid_t, libc::SIGKILL) };
        wait_gone(pids[0]);
        let child = warm.take(&args, dir.path(), 3).expect("the next one");
        assert_eq!(child.id(), pids[1]);
        end(child);
        assert_eq!(warm.misses, 1, "a killed one is a miss");
        warm.refill(0, |a| sleeper(a, dir.path()));
        assert_eq!(warm.waiting.len(), 1, "none started without a share");
    }

    impl Warm {
        fn waiting_pid(&self) -> Option<u32> {
            self.waiting_pids().first().copied()
        }

        fn waiting_pids(&self) -> Vec<u32> {
            self.waiting
                .iter()
                .filter_map(|waiting| lock(&waiting.child).as_ref().map(Child::id))
                .collect()
        }
    }

    /// Waits (at most 5 s) until `pid` has exited (a zombie counts).
    fn wait_gone(pid: u32) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            if state.is_empty() || state.contains(") Z ") {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!("process {pid} did not exit");
    }
}
