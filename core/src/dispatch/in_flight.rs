//! The batches a lane is delivering right now, and which pending changes must wait for them.
//!
//! A lane may deliver several batches at once (several rsync processes to one remote), but
//! only batches that cannot interfere: a change waits while any batch in flight touches the
//! same path, a directory above it, or anything below it. So changes to one path are
//! delivered in order, and a directory delete never races a re-creation beneath it.

use std::collections::BTreeMap;
use std::sync::Arc;

use sersync_plugin_sdk::{Batch, Event, RelPath};

use crate::coalesce::footprint;

/// Identifies one batch in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ticket(u64);

/// The batches in flight of one lane.
#[derive(Debug, Default)]
pub struct InFlight {
    next: u64,
    /// Each batch, oldest first, shared with the worker delivering it (not copied): the
    /// journal keeps its events until they are delivered.
    batches: Vec<(Ticket, Arc<Batch>)>,
    /// Every path the batches name (new and old names), counted, as raw bytes so that a
    /// range query finds everything below a directory.
    paths: BTreeMap<Vec<u8>, usize>,
}

impl InFlight {
    /// Records `batch` as in flight.
    pub fn begin(&mut self, batch: Arc<Batch>) -> Ticket {
        let ticket = Ticket(self.next);
        self.next += 1;
        for path in batch.events.iter().flat_map(touched) {
            *self.paths.entry(path.as_bytes().to_vec()).or_default() += 1;
        }
        self.batches.push((ticket, batch));
        ticket
    }

    /// The batch `ticket` is over (delivered, or put back to pending).
    pub fn end(&mut self, ticket: Ticket) {
        let Some(index) = self.batches.iter().position(|(t, _)| *t == ticket) else {
            return;
        };
        let (_, batch) = self.batches.remove(index);
        for path in batch.events.iter().flat_map(touched) {
            if let Some(count) = self.paths.get_mut(path.as_bytes()) {
                *count -= 1;
                if *count == 0 {
                    self.paths.remove(path.as_bytes());
                }
            }
        }
    }

    /// The events of every batch in flight, oldest batch first.
    pub fn events(&self) -> impl Iterator<Item = &Event> {
        self.batches.iter().flat_map(|(_, batch)| &batch.events)
    }

    /// True when `path` is in flight, lies below a directory in flight, or has something in
    /// flight below it.
    pub fn blocks(&self, path: &RelPath) -> bool {
        if self.paths.is_empty() {
            return false;
        }
        if path.is_root() {
            return true;
        }
        // The path itself, its ancestors and the root (the empty prefix), as slices of its
        // bytes: this runs for every pending path at every cut, so nothing is copied.
        let mut lineage = std::iter::once(path.as_bytes())
            .chain(path.ancestors())
            .chain(std::iter::once(&b""[..]));
        if lineage.any(|prefix| self.paths.contains_key(prefix)) {
            return true;
        }
        // Everything below `path` sorts between "path/" and "path0" ('0' follows '/').
        let mut below = path.as_bytes().to_vec();
        below.push(b'/');
        let mut past = path.as_bytes().to_vec();
        past.push(b'0');
        self.paths.range(below..past).next().is_some()
    }
}

/// The paths an event occupies while in flight (see [`footprint`]).
fn touched(event: &Event) -> Vec<RelPath> {
    footprint(event.kind, &event.path, event.from.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sersync_plugin_sdk::{EventKind, WatchId};

    use crate::dispatch::test_support::written as ev;

    fn batch(events: Vec<Event>) -> Arc<Batch> {
        Arc::new(Batch {
            watch: WatchId(0),
            root: "/w".into(),
            events,
        })
    }

    #[test]
    fn the_same_path_an_ancestor_or_a_descendant_is_blocked() {
        let mut in_flight = InFlight::default();
        in_flight.begin(batch(vec![ev("a/b")]));
        for blocked in ["a/b", "a", "a/b/c", ""] {
            assert!(in_flight.blocks(&RelPath::from(blocked)), "{blocked}");
        }
        for free in ["a/c", "a/b c", "a/b-", "a/b0", "ab", "b"] {
            assert!(!in_flight.blocks(&RelPath::from(free)), "{free}");
        }
    }

    #[test]
    fn a_moves_old_name_is_in_flight_too_and_ending_releases_every_path() {
        let mut in_flight = InFlight::default();
        let moved = Event::moved("d/old".into(), "new".into(), true, WatchId(0));
        let first = in_flight.begin(batch(vec![moved]));
        let second = in_flight.begin(batch(vec![ev("new/x")]));
        assert!(in_flight.blocks(&RelPath::from("d/old/f")));
        in_flight.end(first);
        assert!(!in_flight.blocks(&RelPath::from("d/old/f")));
        assert!(
            in_flight.blocks(&RelPath::from("new")),
            "still held by the second"
        );
        in_flight.end(second);
        assert!(in_flight.events().next().is_none() && !in_flight.blocks(&RelPath::ROOT));
    }

    #[test]
    fn a_delete_holds_the_directory_it_was_in_so_nothing_else_there_goes_beside_it() {
        let mut in_flight = InFlight::default();
        let delete = Event::now(
            EventKind::Delete,
            RelPath::from("d/gone"),
            false,
            WatchId(0),
        );
        in_flight.begin(batch(vec![delete]));
        for blocked in ["d/other", "d", "d/sub/x", ""] {
            assert!(in_flight.blocks(&RelPath::from(blocked)), "{blocked}");
        }
        assert!(!in_flight.blocks(&RelPath::from("e/x")));
        assert_eq!(
            footprint(
                EventKind::Move,
                &RelPath::from("n"),
                Some(&RelPath::from("a/o"))
            ),
            vec![RelPath::from("n"), RelPath::from("a")]
        );
    }

    #[test]
    fn a_rescan_of_the_root_blocks_everything() {
        let mut in_flight = InFlight::default();
        in_flight.begin(batch(vec![Event::now(
            EventKind::Rescan,
            RelPath::ROOT,
            true,
            WatchId(0),
        )]));
        assert!(in_flight.blocks(&RelPath::from("any/where")));
        assert_eq!(in_flight.events().count(), 1);
    }
}
