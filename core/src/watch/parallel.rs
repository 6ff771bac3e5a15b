//! The start-up walk on several threads.
//!
//! The system calls of a walk (open, watch, `fstat`, list: `WalkCtx::visit`) are nearly all
//! of its time and touch no table, so the walk of a root at start-up spreads them over up
//! to [`THREADS`] threads (no more than the machine has cores) taking directories from one
//! stack. The table is changed by the walk's own thread only (`Watcher::apply`), and always
//! a directory before anything inside it: a thread sends what it found in a directory
//! before it hands that directory's subdirectories on, and the walk's thread takes in
//! everything sent before it applies a visit of its own (the channel keeps the order in
//! which things were sent).
//!
//! Nothing else differs from a walk on one thread: each directory is opened once, relative
//! to its parent's descriptor, watched through its own descriptor and recorded with its
//! identity. No event is read until the walk is done (the reader starts after it), so a
//! visit applied a moment after its system calls changes nothing the reader sees: the
//! kernel queues what happens meanwhile, as it does during a walk on one thread.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use sersync_plugin_sdk::{RelPath, WatchId};

use super::reader::Watcher;
use super::scan::{Report, Step, Visit, WalkCtx, WalkState, Walked};
use super::sys;
use super::WatchError;

/// The most threads a walk uses (the kernel serialises adding watches to one inotify
/// instance, so more would mostly wait).
const THREADS: usize = 4;
/// Visits sent and not yet applied, at most: bounds the memory a fast helper can hold.
const IN_FLIGHT: usize = 1024;
/// How long the walk's thread waits for a helper's visit when it has nothing to visit.
const IDLE_WAIT: Duration = Duration::from_millis(1);

/// The directories waiting to be visited, shared by the threads of a walk.
struct Shared {
    stack: Vec<Step>,
    /// Directories being visited now: until it is 0, more may come.
    busy: usize,
    /// The walk has stopped (a limit was reached).
    stop: bool,
}

/// The shared stack and the condition helpers wait on for work.
type Work = (Mutex<Shared>, Condvar);

/// Ends one step of the walk: its subdirectories go on the shared stack, and the others are
/// woken when there is more to do or nothing is left (then they end).
fn step_done(work: &Work, children: Vec<Step>) {
    let more = !children.is_empty();
    let mut shared = lock(work);
    shared.stack.extend(children);
    shared.busy -= 1;
    let done = shared.busy == 0 && shared.stack.is_empty();
    drop(shared);
    if more || done {
        work.1.notify_all();
    }
}

fn lock(work: &Work) -> MutexGuard<'_, Shared> {
    work.0.lock().unwrap_or_else(|e| e.into_inner())
}

/// What the walk's thread does next.
enum Next {
    Visit(Step),
    Wait,
    Done,
}

impl Watcher {
    /// Watches the root of `watch` and everything below it, as
    /// `add_tree(watch, ROOT, None, Report::Nothing)` does, on several threads.
    pub(super) fn add_root_in_parallel(&mut self, watch: WatchId) -> Result<Walked, WatchError> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let helpers = threads.min(THREADS) - 1;
        if helpers == 0 {
            return self.add_tree(watch, RelPath::ROOT, None, Report::Nothing);
        }
        let _cwd = sys::WalkCwd;
        let ctx = self.walk_ctx(watch, false);
        let work: Work = (
            Mutex::new(Shared {
                stack: vec![self.top_step(RelPath::ROOT, None)],
                busy: 0,
                stop: false,
            }),
            Condvar::new(),
        );
        let mut state = std::mem::take(&mut self.walking);
        let mut outcome = Walked::Watched;
        let walked = std::thread::scope(|scope| {
            let (tx, rx) = crossbeam_channel::bounded::<Visit>(IN_FLIGHT);
            let (ctx, work) = (&ctx, &work);
            // A helper that cannot be started leaves its share to the others.
            let helpers: Vec<_> = (0..helpers)
                .filter_map(|_| {
                    let tx = tx.clone();
                    std::thread::Builder::new()
                        .name("watch walk".into())
                        .spawn_scoped(scope, move || help(ctx, work, tx))
                        .ok()
                })
                .collect();
            drop(tx);
            let walked = self.coordinate(watch, ctx, work, &rx, &mut state, &mut outcome);
            if walked.is_err() {
                lock(work).stop = true;
                work.1.notify_all();
            }
            // A helper waiting to send sees the channel closed and stops.
            drop(rx);
            for helper in helpers {
                match helper.join() {
                    Ok(opened) => state.opened += opened,
                    Err(panic) => std::panic::resume_unwind(panic),
                }
            }
            walked
        });
        self.walking = state;
        self.stats.set_directories(self.tree.len());
        walked.map(|()| outcome)
    }

    /// The walk's own thread: visits directories like the helpers, and applies every
    /// visit to the table, each directory before anything inside it.
    fn coordinate(
        &mut self,
        watch: WatchId,
        ctx: &WalkCtx,
        work: &Work,
        rx: &Receiver<Visit>,
        state: &mut WalkState,
        outcome: &mut Walked,
    ) -> Result<(), WatchError> {
        loop {
            let next = {
                let mut shared = lock(work);
                match shared.stack.pop() {
                    Some(step) => {
                        shared.busy += 1;
                        Next::Visit(step)
                    }
                    // Stopped by a helper that panicked (its panic is raised on join).
                    None if shared.busy == 0 || shared.stop => Next::Done,
                    None => Next::Wait,
                }
            };
            match next {
                Next::Visit(step) => {
                    let visit = ctx.visit(state, step);
                    // Whatever was sent before is about this directory's ancestors, or
                    // about directories elsewhere: in first.
                    self.apply_sent(watch, rx, outcome)?;
                    let children = self.apply(watch, visit, &mut Report::Nothing, outcome)?;
                    step_done(work, children);
                }
                Next::Wait => {
                    if let Ok(visit) = rx.recv_timeout(IDLE_WAIT) {
                        self.apply(watch, visit, &mut Report::Nothing, outcome)?;
                    }
                }
                // Every helper sent what it found before it stopped being busy.
                Next::Done => return self.apply_sent(watch, rx, outcome),
            }
        }
    }

    /// Applies every visit a helper has sent so far.
    fn apply_sent(
        &mut self,
        watch: WatchId,
        rx: &Receiver<Visit>,
        outcome: &mut Walked,
    ) -> Result<(), WatchError> {
        for visit in rx.try_iter() {
            // A helper's visit hands its subdirectories on itself.
            self.apply(watch, visit, &mut Report::Nothing, outcome)?;
        }
        Ok(())
    }
}

/// A helper: visits directories from the shared stack, sends each visit to the walk's
/// thread, then hands the subdirectories it found on. Returns how many it opened.
fn help(ctx: &WalkCtx, work: &Work, tx: Sender<Visit>) -> u64 {
    let _cwd = sys::WalkCwd;
    let _stop_on_panic = StopOnPanic(work);
    let mut state = WalkState::default();
    loop {
        let step = {
            let mut shared = lock(work);
            loop {
                if shared.stop {
                    return state.opened;
                }
                if let Some(step) = shared.stack.pop() {
                    shared.busy += 1;
                    break step;
                }
                if shared.busy == 0 {
                    return state.opened;
                }
                shared = work.1.wait(shared).unwrap_or_else(|e| e.into_inner());
            }
        };
        let mut visit = ctx.visit(&mut state, step);
        let children = visit.hand_on();
        let sent = tx.send(visit).is_ok();
        step_done(work, if sent { children } else { Vec::new() });
        if !sent {
            return state.opened;
        }
    }
}

/// Stops the walk when a helper panics, so that the others do not wait for its share.
struct StopOnPanic<'a>(&'a Work);

impl Drop for StopOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            lock(self.0).stop = true;
            self.0 .1.notify_all();
        }
    }
}
