//! The delivery threads every lane shares, and the one timer that wakes lanes when a batch
//! settles or a backoff ends.
//!
//! No thread exists for an idle lane: a thread is started when a delivery is handed over
//! and no pool thread is free, and a thread with nothing to do for [`IDLE_EXIT`] ends. So
//! there are never more threads than deliveries running at once (plus a few about to end),
//! and a delivery that hangs holds only its own thread: the next one gets a new thread
//! rather than waiting behind it (invariant 4). The timer thread likewise exists only while
//! some lane waits for an instant.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long a pool thread (or the timer) waits for work before it ends.
const IDLE_EXIT: Duration = Duration::from_secs(5);

type Job = Box<dyn FnOnce() + Send>;

/// Shared delivery threads and timer.
#[derive(Default)]
pub struct Pool {
    workers: Mutex<Workers>,
    work: Condvar,
    timers: Mutex<Timers>,
    tick: Condvar,
}

#[derive(Default)]
struct Workers {
    queue: VecDeque<Job>,
    /// Threads alive.
    threads: usize,
    /// Threads waiting for a job.
    idle: usize,
}

#[derive(Default)]
struct Timers {
    /// Wake-ups by instant (then by the order they were asked for).
    due: BinaryHeap<Reverse<Timer>>,
    next_seq: u64,
    /// The timer thread is alive.
    running: bool,
}

struct Timer {
    at: Instant,
    seq: u64,
    job: Job,
}

impl PartialEq for Timer {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Timer {}

impl PartialOrd for Timer {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Timer {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Pool {
    /// A pool with no threads yet.
    pub fn new() -> Arc<Pool> {
        Arc::new(Pool::default())
    }

    /// Threads alive now (delivering, or idle and about to end), the timer not counted.
    #[cfg(test)]
    pub fn threads(&self) -> usize {
        lock(&self.workers).threads
    }

    /// Threads running a job now.
    #[cfg(test)]
    pub fn busy(&self) -> usize {
        let workers = lock(&self.workers);
        workers.threads - workers.idle
    }

    /// Runs `job` on a pool thread: a free one, or a new one when none is free.
    pub fn run(self: &Arc<Self>, job: impl FnOnce() + Send + 'static) {
        let mut workers = lock(&self.workers);
        workers.queue.push_back(Box::new(job));
        if workers.queue.len() <= workers.idle {
            drop(workers);
            self.work.notify_one();
            return;
        }
        workers.threads += 1;
        drop(workers);
        let pool = self.clone();
        let spawned = std::thread::Builder::new()
            .name("delivery".into())
            .spawn(move || pool.serve());
        if let Err(error) = spawned {
            // The job stays queued for the next thread that frees up.
            lock(&self.workers).threads -= 1;
            tracing::error!(%error, "cannot start a delivery thread; the delivery waits for a busy one");
        }
    }

    /// A pool thread: runs queued jobs until none comes for [`IDLE_EXIT`].
    fn serve(&self) {
        let mut workers = lock(&self.workers);
        loop {
            if let Some(job) = workers.queue.pop_front() {
                drop(workers);
                // A job handles its own failures; a panic must not take the thread's count.
                if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_err() {
                    tracing::error!("a delivery job panicked");
                }
                workers = lock(&self.workers);
                continue;
            }
            workers.idle += 1;
            let (guard, timeout) = self
                .work
                .wait_timeout(workers, IDLE_EXIT)
                .unwrap_or_else(|e| e.into_inner());
            workers = guard;
            workers.idle -= 1;
            if timeout.timed_out() && workers.queue.is_empty() {
                workers.threads -= 1;
                return;
            }
        }
    }

    /// Runs `job` on the timer thread at `at` (at once when it has passed). Jobs must be
    /// short: they only decide what to hand to [`Pool::run`].
    pub fn at(self: &Arc<Self>, at: Instant, job: impl FnOnce() + Send + 'static) {
        let mut timers = lock(&self.timers);
        let seq = timers.next_seq;
        timers.next_seq += 1;
        let earliest = timers.due.peek().is_none_or(|Reverse(t)| at < t.at);
        timers.due.push(Reverse(Timer {
            at,
            seq,
            job: Box::new(job),
        }));
        if timers.running {
            drop(timers);
            if earliest {
                self.tick.notify_one();
            }
            return;
        }
        timers.running = true;
        drop(timers);
        let pool = self.clone();
        let spawned = std::thread::Builder::new()
            .name("lane timer".into())
            .spawn(move || pool.time());
        if let Err(error) = spawned {
            lock(&self.timers).running = false;
            tracing::error!(%error, "cannot start the lane timer; waiting lanes wake with the next change");
        }
    }

    /// The timer thread: runs each wake-up when due, until none is asked for [`IDLE_EXIT`].
    fn time(&self) {
        let mut timers = lock(&self.timers);
        loop {
            let now = Instant::now();
            let mut ready = Vec::new();
            while timers.due.peek().is_some_and(|Reverse(t)| t.at <= now) {
                ready.extend(timers.due.pop().map(|Reverse(t)| t.job));
            }
            if !ready.is_empty() {
                drop(timers);
                for job in ready {
                    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_err() {
                        tracing::error!("a lane wake-up panicked");
                    }
                }
                timers = lock(&self.timers);
                continue;
            }
            let wait = match timers.due.peek() {
                Some(Reverse(t)) => t.at - now,
                None => IDLE_EXIT,
            };
            let (guard, timeout) = self
                .tick
                .wait_timeout(timers, wait)
                .unwrap_or_else(|e| e.into_inner());
            timers = guard;
            if timeout.timed_out() && timers.due.is_empty() {
                timers.running = false;
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossbeam_channel::unbounded;

    #[test]
    fn a_blocked_job_does_not_hold_up_the_next_and_timers_fire_in_order() {
        let pool = Pool::new();
        let (hold, held) = unbounded::<()>();
        pool.run(move || {
            let _ = held.recv();
        });
        let (done, finished) = unbounded();
        let d = done.clone();
        pool.run(move || d.send("job").unwrap());
        assert_eq!(
            finished.recv_timeout(Duration::from_secs(10)).unwrap(),
            "job"
        );
        assert_eq!(pool.threads(), 2);
        let now = Instant::now();
        let d = done.clone();
        pool.at(now + Duration::from_millis(40), move || {
            d.send("late").unwrap()
        });
        pool.at(now + Duration::from_millis(10), move || {
            done.send("early").unwrap()
        });
        assert_eq!(
            finished.recv_timeout(Duration::from_secs(10)).unwrap(),
            "early"
        );
        assert_eq!(
            finished.recv_timeout(Duration::from_secs(10)).unwrap(),
            "late"
        );
        assert!(now.elapsed() >= Duration::from_millis(40));
        drop(hold);
    }
}
