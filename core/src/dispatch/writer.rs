//! What a lane's journal writer has still to write: the in-memory half of the journal.
//!
//! The router and the deliveries never touch the journal's file: they record here, under
//! the lane's lock, what the file must become (append these events; rewrite it as what is
//! undelivered now; at the end, remove it or keep exactly what is left), and the lane's
//! writer (a job on the delivery [`Pool`](super::Pool), one at a time per lane, started
//! when work is queued and none runs) takes each step here and does the I/O outside the
//! lock. So one lane's slow or stuck disk holds up only its own writer: not the router, not
//! the reader behind it, not another lane, not even its own deliveries.
//!
//! **Why a writer per lane, on the pool, and not one journal thread with group commit:**
//! a single thread would put every lane's appends behind one lane's rewrite (an `fsync`),
//! which is the coupling this removes; a dedicated thread per lane would cost an idle lane
//! a thread (1,000 remotes, 1,000 threads), which the pool exists to avoid. A writer job
//! holds a pool thread only while it has something to write.
//!
//! **Order.** Steps are queued under the lane's lock in the order the lane's state changed,
//! and taken in that order by the one writer, so the file always holds a state the lane was
//! in, followed by changes made since. A rewrite is *lazy*: it is only marked due, and the
//! writer takes its snapshot (batches in flight, then pending) under the lane's lock when it
//! gets to it, at the same moment dropping the appends queued before — the snapshot holds
//! each of them that is still undelivered. Anything pushed after that moment is queued
//! after the rewrite, so a rewrite never drops a later append.
//!
//! **Bounded.** While a rewrite is due nothing more is queued (the snapshot will hold it),
//! and when more than [`MAX_QUEUED`] events wait to be appended (the disk is behind) they
//! are dropped for a due rewrite. So a stuck disk costs at most [`MAX_QUEUED`] queued
//! events per lane plus one snapshot, which is bounded by the lane's own state
//! (`maxPending`); when the disk comes back, one rewrite brings the file up to date.
//!
//! **Durability.** As before, an event reaches the file with a plain `write()` (the page
//! cache outlives `kill -9`) and a rewrite is atomic and fsynced; what changed is only that
//! the write happens on the writer's thread a moment after the router merged the event,
//! like the moment it spent in the reader's channel before — and nothing else waits for it.
//! An append starts the writer 5 ms later (`JOURNAL_LINGER` in `lane.rs`), so that under a
//! stream of changes the appends of that moment are one `write()` and one wake-up of a pool
//! thread, not one per push; what a `kill -9` in that moment loses, the next start's
//! catch-up finds (it walks from 2 s before the last heartbeat).

use sersync_plugin_sdk::Event;

/// The most events queued for appending before the writer is told to rewrite instead.
pub(super) const MAX_QUEUED: usize = 4096;

/// One step for the writer, taken by [`JournalQueue::next`].
#[derive(Debug)]
pub(super) enum Step {
    /// Append these events.
    Append(Vec<Event>),
    /// Replace the contents with exactly these events; `last` when it is the lane's final
    /// state (the lane finished and waits for it).
    Rewrite { events: Vec<Event>, last: bool },
    /// Remove the file: the lane finished with nothing left.
    Remove,
}

/// What the lane did at its end, for the writer to write last.
#[derive(Debug)]
enum End {
    Keep(Vec<Event>),
    Remove,
}

/// The queue of one lane's journal writer (kept in the lane's state, under its lock).
#[derive(Debug, Default)]
pub(super) struct JournalQueue {
    /// Events merged since the last step was taken, to append in order.
    appends: Vec<Event>,
    /// The file must become what is undelivered when the writer gets to it.
    rewrite: bool,
    /// The lane finished: write this before anything queued after it.
    end: Option<End>,
    /// A writer is running (or about to be started).
    running: bool,
}

impl JournalQueue {
    /// Queues `events` (just merged into the pending set) for appending. Returns whether a
    /// writer must be started.
    pub(super) fn append(&mut self, events: &[&Event]) -> bool {
        if self.rewrite {
            // The rewrite's snapshot, taken later, holds them.
        } else if self.appends.len() + events.len() > MAX_QUEUED {
            self.appends = Vec::new();
            self.rewrite = true;
        } else {
            self.appends.extend(events.iter().copied().cloned());
        }
        self.kick()
    }

    /// The undelivered set changed other than by a push (a batch delivered, or one put
    /// back): the file must be rewritten as it. Returns whether a writer must be started.
    pub(super) fn rewrite(&mut self) -> bool {
        self.appends = Vec::new();
        self.rewrite = true;
        self.kick()
    }

    /// The lane finished with `left` undelivered. Returns `None` when the file already
    /// holds it (nothing queued, no writer running: the last rewrite and the appends since),
    /// else whether a writer must be started; the lane then waits for the
    /// [`Step::Rewrite`] with `last` or the [`Step::Remove`] to be written.
    pub(super) fn finish(&mut self, left: &[Event]) -> Option<bool> {
        let idle = !self.running && !self.rewrite && self.appends.is_empty();
        if idle && !left.is_empty() {
            return None;
        }
        self.appends = Vec::new();
        self.rewrite = false;
        self.end = Some(if left.is_empty() {
            End::Remove
        } else {
            End::Keep(left.to_vec())
        });
        Some(self.kick())
    }

    /// Marks a writer running when there is work and none runs; true when the caller must
    /// start it.
    pub(super) fn kick(&mut self) -> bool {
        let start = !self.running && self.has_work();
        self.running |= start;
        start
    }

    fn has_work(&self) -> bool {
        self.end.is_some() || self.rewrite || !self.appends.is_empty()
    }

    /// The writer is not started after all (no pool yet): the next kick starts it.
    pub(super) fn not_started(&mut self) {
        self.running = false;
    }

    /// The writer's next step, with `undelivered` the lane's undelivered set now (for a
    /// due rewrite); `None` when there is nothing left, and the writer stops.
    pub(super) fn next(&mut self, undelivered: impl FnOnce() -> Vec<Event>) -> Option<Step> {
        if let Some(end) = self.end.take() {
            return Some(match end {
                End::Keep(events) => Step::Rewrite { events, last: true },
                End::Remove => Step::Remove,
            });
        }
        if std::mem::take(&mut self.rewrite) {
            self.appends = Vec::new();
            return Some(Step::Rewrite {
                events: undelivered(),
                last: false,
            });
        }
        if !self.appends.is_empty() {
            return Some(Step::Append(std::mem::take(&mut self.appends)));
        }
        self.running = false;
        None
    }

    /// Events queued for appending now (for tests: the bound).
    #[cfg(test)]
    pub(super) fn queued(&self) -> usize {
        self.appends.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::dispatch::test_support::written as ev;

    fn names(events: &[Event]) -> Vec<String> {
        events.iter().map(|e| e.path.to_string()).collect()
    }

    #[test]
    fn one_writer_is_started_and_it_stops_when_nothing_is_left() {
        let mut queue = JournalQueue::default();
        assert!(
            queue.append(&[&ev("a")]),
            "the first append starts a writer"
        );
        assert!(!queue.append(&[&ev("b")]), "one runs already");
        match queue.next(Vec::new) {
            Some(Step::Append(events)) => assert_eq!(names(&events), ["a", "b"]),
            other => panic!("{other:?}"),
        }
        assert!(queue.next(Vec::new).is_none());
        assert!(
            queue.append(&[&ev("c")]),
            "the writer stopped: a new one starts"
        );
    }

    #[test]
    fn a_rewrite_takes_its_snapshot_when_written_and_later_appends_follow_it() {
        let mut queue = JournalQueue::default();
        queue.append(&[&ev("a")]);
        queue.rewrite();
        queue.append(&[&ev("b")]);
        // The snapshot is taken now: it holds a and b (both undelivered), so neither is
        // appended again.
        match queue.next(|| vec![ev("a"), ev("b")]) {
            Some(Step::Rewrite { events, last }) => {
                assert_eq!(
                    (names(&events), last),
                    (vec!["a".into(), "b".into()], false)
                );
            }
            other => panic!("{other:?}"),
        }
        queue.append(&[&ev("c")]);
        match queue.next(Vec::new) {
            Some(Step::Append(events)) => assert_eq!(names(&events), ["c"]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_writer_far_behind_rewrites_instead_of_queuing_without_bound() {
        let mut queue = JournalQueue::default();
        let event = ev("f");
        for _ in 0..MAX_QUEUED * 3 {
            queue.append(&[&event]);
            assert!(queue.queued() <= MAX_QUEUED);
        }
        let mut burst = JournalQueue::default();
        burst.append(&vec![&event; MAX_QUEUED + 1]);
        assert_eq!(burst.queued(), 0, "a burst too big is not copied");
        assert!(matches!(
            queue.next(Vec::new),
            Some(Step::Rewrite { last: false, .. })
        ));
    }

    #[test]
    fn the_end_is_written_before_what_comes_after_it() {
        let mut queue = JournalQueue::default();
        queue.append(&[&ev("a")]);
        assert_eq!(
            queue.finish(&[ev("a")]),
            Some(false),
            "a writer runs already"
        );
        queue.append(&[&ev("late")]);
        match queue.next(Vec::new) {
            Some(Step::Rewrite { events, last }) => {
                assert_eq!((names(&events), last), (vec!["a".into()], true));
            }
            other => panic!("{other:?}"),
        }
        match queue.next(Vec::new) {
            Some(Step::Append(events)) => assert_eq!(names(&events), ["late"]),
            other => panic!("{other:?}"),
        }
        let mut idle = JournalQueue::default();
        assert_eq!(
            idle.finish(&[ev("kept")]),
            None,
            "the file holds it already"
        );
        assert_eq!(
            idle.finish(&[]),
            Some(true),
            "nothing left: a writer removes it"
        );
        assert!(matches!(idle.next(Vec::new), Some(Step::Remove)));
    }
}
