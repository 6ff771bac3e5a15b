//! Whether what a lane holds is *finished*: it began after a quiet spell, and every change
//! in it is a file its writer is done with (closed after writing, renamed into place, its
//! attributes changed). Such a batch need not wait out the whole settle window
//! (`<engine idleSettleMs>`): nothing more is coming for it, and the lane was idle, so no
//! burst is under way whose next events it should wait for.
//!
//! Only tracked after a quiet spell, and only while the pending state holds nothing but file
//! changes: a steady stream never pays for it (a pending state that began less than the
//! quiet time after the previous change is not looked at again until it is empty).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use sersync_plugin_sdk::{Event, EventKind, RelPath};

/// The tracking of one [`Coalescer`](super::Coalescer); see the module docs.
#[derive(Debug, Default)]
pub(super) struct Finished {
    /// How long nothing must have been merged before a pending state begins for it to be
    /// looked at; `None`: never (the lane cuts every batch after its settle window).
    quiet: Option<Duration>,
    /// When the last change was merged, whether or not it is still pending.
    last_merge: Option<Instant>,
    /// The pending state began after a quiet spell and has held only file changes since.
    eligible: bool,
    /// Files of this pending state created or written and not closed since.
    open: HashSet<RelPath>,
}

impl Finished {
    /// A pending state that begins at least `quiet` after the previous change may be
    /// finished.
    pub(super) fn track_after(&mut self, quiet: Duration) {
        self.quiet = Some(quiet);
    }

    /// `event` is merged now; `began` when nothing was pending before it.
    pub(super) fn merge(&mut self, event: &Event, began: bool, now: Instant) {
        let previous = self.last_merge.replace(now);
        if began {
            self.open.clear();
            self.eligible = self.quiet.is_some_and(|quiet| {
                previous.is_none_or(|at| now.saturating_duration_since(at) >= quiet)
            });
        }
        if !self.eligible {
            return;
        }
        match (event.kind, event.is_dir) {
            (EventKind::Create | EventKind::Modify, false) => {
                self.open.insert(event.path.clone());
            }
            (EventKind::CloseWrite, false) => {
                self.open.remove(&event.path);
            }
            (EventKind::Attrib, false) => {}
            // Renamed while still open for writing: still open under its new name.
            (EventKind::Move, false) => {
                if event
                    .from
                    .as_ref()
                    .is_some_and(|from| self.open.remove(from))
                {
                    self.open.insert(event.path.clone());
                }
            }
            // Directories (their contents follow), deletes (they come in bursts: `rm -r`),
            // rescans: the whole window.
            _ => self.spoil(),
        }
    }

    /// What is pending is no longer only what was merged since it began (a failed batch put
    /// back, a collapse, a partial cut): it waits for the whole settle window.
    pub(super) fn spoil(&mut self) {
        self.eligible = false;
        self.open = HashSet::new();
    }

    /// True when the pending state is finished (see the module docs).
    pub(super) fn is_finished(&self) -> bool {
        self.eligible && self.open.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use sersync_plugin_sdk::{Event, EventKind, RelPath, WatchId};

    use super::super::Coalescer;

    fn ev(kind: EventKind, path: &str, is_dir: bool) -> Event {
        Event::now(kind, RelPath::from(path), is_dir, WatchId(0))
    }

    fn tracking(quiet: Duration) -> Coalescer {
        let mut c = Coalescer::new(WatchId(0), 1000);
        c.track_finished_after(quiet);
        c
    }

    #[test]
    fn a_file_is_finished_once_closed_and_only_after_a_quiet_spell() {
        let mut c = tracking(Duration::from_secs(3600));
        c.push(ev(EventKind::Create, "f", false));
        c.push(ev(EventKind::Modify, "f", false));
        assert!(!c.is_finished(), "still being written");
        c.push(ev(EventKind::CloseWrite, "f", false));
        c.push(ev(EventKind::Attrib, "f", false));
        assert!(c.is_finished());
        c.push(ev(EventKind::Modify, "f", false));
        assert!(!c.is_finished(), "opened and written again");
        c.push(ev(EventKind::CloseWrite, "f", false));
        assert!(c.is_finished());
        c.take();
        assert!(!c.is_finished(), "nothing pending");
        c.push(ev(EventKind::CloseWrite, "g", false));
        assert!(
            !c.is_finished(),
            "changes keep coming: the next state began less than the quiet time after"
        );
        let mut never = Coalescer::new(WatchId(0), 1000);
        never.push(ev(EventKind::CloseWrite, "f", false));
        assert!(!never.is_finished(), "not tracked");
    }

    #[test]
    fn directories_deletes_rescans_requeues_and_partial_cuts_are_never_finished() {
        let mut c = tracking(Duration::ZERO);
        for (kind, is_dir) in [
            (EventKind::Create, true),
            (EventKind::Attrib, true),
            (EventKind::Delete, false),
            (EventKind::Rescan, true),
        ] {
            c.push(ev(kind, "x", is_dir));
            assert!(!c.is_finished(), "{kind} {is_dir}");
            c.take();
        }
        c.push(Event::moved("a".into(), "b".into(), false, WatchId(0)));
        assert!(c.is_finished(), "a file renamed into place");
        c.take();
        c.push(ev(EventKind::Create, "tmp", false));
        c.push(Event::moved("tmp".into(), "f".into(), false, WatchId(0)));
        assert!(!c.is_finished(), "renamed while open");
        c.push(ev(EventKind::CloseWrite, "f", false));
        assert!(c.is_finished());
        let failed = c.take();
        c.push(ev(EventKind::CloseWrite, "g", false));
        c.requeue(failed);
        assert!(!c.is_finished(), "a failed batch put back");
        c.take();
        c.push(ev(EventKind::CloseWrite, "busy/f", false));
        c.push(ev(EventKind::CloseWrite, "free/g", false));
        c.take_unblocked(|p| p.is_within(&RelPath::from("busy")));
        assert!(!c.is_finished(), "what a partial cut left");
    }
}
