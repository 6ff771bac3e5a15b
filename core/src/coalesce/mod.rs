//! The "filter queue", done properly: per-path state, not an event log.
//!
//! A [`Coalescer`] holds what one lane still has to deliver. Pushing an event merges it into
//! the state of its path:
//! - create + modify + close_write of one file is one `Create`; many writes are one event;
//! - a file created and deleted again before delivery is nothing at all;
//! - a rename is one `Move { from, to }`; renaming again keeps the original `from`; a
//!   directory rename carries the pending changes below it to the new name;
//! - a delete or a rescan of a directory swallows every pending change beneath it;
//! - whenever a `Move` is superseded, its old name is kept as a `Delete`, so the remote
//!   never keeps a stale copy.
//!
//! Memory is bounded: past `max_pending` paths, pending paths collapse into rescans of their
//! parent directories, level by level, up to the watch root at worst.
//!
//! **Stamps** (the ordering between the sinks of a watch, `dispatch::order`): every entry
//! carries the [`Stamp`] of the changes merged into it — the sequence number of the oldest
//! (`first`) and of the newest (`last`), and when the newest arrived. Whatever an entry
//! absorbs (a path's earlier change, the pending changes below a deleted or rescanned
//! directory, a moved entry, everything a collapse turns into rescans) lowers its `first`
//! and raises its `last`, so an entry never claims to be newer, nor older, than a change it
//! stands for. A lane ordered after others cuts only entries whose `last` they have
//! delivered; an upstream lane's low watermark is its smallest `first` minus one.
//!
//! **Finished** (`finished.rs`): whether what is pending began after a quiet spell and holds
//! only files their writers are done with, so that the lane may cut it without its whole
//! settle window ([`Coalescer::is_finished`]).

mod finished;
#[cfg(test)]
mod model_tests;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant, SystemTime};

use sersync_plugin_sdk::{Event, EventKind, RelPath, WatchId};

use finished::Finished;

#[derive(Clone, Debug)]
struct Entry {
    kind: EventKind,
    from: Option<RelPath>,
    is_dir: bool,
    /// Order of first touch.
    seq: u64,
    time: SystemTime,
    /// The path did not exist when the pending state began (so a delete cancels it).
    new: bool,
    /// The sequence numbers of the changes it stands for (see the module's doc).
    stamp: Stamp,
}

/// Which changes a pending entry stands for, in the sequence a lane's pushes are numbered
/// by (`dispatch::order::Sequence`): the oldest and the newest, and when the newest arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    /// The sequence number of the oldest change merged in.
    pub first: u64,
    /// The sequence number of the newest change merged in.
    pub last: u64,
    /// When the newest change arrived (in this run: a replayed change arrives at the start).
    pub at: Instant,
}

impl Stamp {
    /// The stamp of one change numbered `seq`, arriving now.
    pub fn new(seq: u64) -> Stamp {
        Stamp {
            first: seq,
            last: seq,
            at: Instant::now(),
        }
    }

    /// A stamp standing for both.
    fn merge(self, other: Stamp) -> Stamp {
        Stamp {
            first: self.first.min(other.first),
            last: self.last.max(other.last),
            at: self.at.max(other.at),
        }
    }
}

/// The paths a change occupies while it is delivered: a changed or created path itself; for
/// a delete, and for the old name of a move, the directory that held it, since a sink may
/// apply a delete by making that directory match (rsync's one-level deletes run). Two
/// changes may be delivered side by side only when no path of one is, or lies above or
/// below, a path of the other.
pub fn footprint(kind: EventKind, path: &RelPath, from: Option<&RelPath>) -> Vec<RelPath> {
    let held = |p: &RelPath| p.parent().unwrap_or(RelPath::ROOT);
    let mut paths = Vec::with_capacity(2);
    paths.push(if kind == EventKind::Delete {
        held(path)
    } else {
        path.clone()
    });
    paths.extend(from.map(held));
    paths
}

/// The pending changes of one lane.
#[derive(Debug)]
pub struct Coalescer {
    watch: WatchId,
    entries: HashMap<RelPath, Entry>,
    rescans: HashSet<RelPath>,
    /// Old names of pending moves: the remote still has something there, so a create at
    /// such a name replaces it and is not "new".
    vacated: HashSet<RelPath>,
    next_seq: u64,
    max_pending: usize,
    first_at: Option<Instant>,
    last_at: Option<Instant>,
    /// The stamp of the changes pushed next ([`Coalescer::stamp`]).
    incoming: Stamp,
    /// While one change is merged: its stamp, merged with every entry it absorbs.
    absorbed: Stamp,
    /// At most the smallest `first` of the entries (exact after each cut).
    low: Option<u64>,
    /// When the oldest change still pending happened (its event's time), for the lag a
    /// monitor sees; see [`Coalescer::oldest`].
    oldest: Option<SystemTime>,
    /// Whether what is pending is finished ([`Coalescer::is_finished`]).
    finished: Finished,
}

impl Coalescer {
    /// An empty state for `watch` that collapses past `max_pending` paths.
    pub fn new(watch: WatchId, max_pending: usize) -> Self {
        Coalescer {
            watch,
            entries: HashMap::new(),
            rescans: HashSet::new(),
            vacated: HashSet::new(),
            next_seq: 0,
            max_pending: max_pending.max(1),
            first_at: None,
            last_at: None,
            incoming: Stamp::new(0),
            absorbed: Stamp::new(0),
            low: None,
            oldest: None,
            finished: Finished::default(),
        }
    }

    /// From now on, a pending state that begins at least `quiet` after the previous change
    /// is watched for being finished ([`Coalescer::is_finished`]); without this call it
    /// never is.
    pub fn track_finished_after(&mut self, quiet: Duration) {
        self.finished.track_after(quiet);
    }

    /// True when something is pending, it began at least the quiet time given to
    /// [`Coalescer::track_finished_after`] after the change before it, and every change in
    /// it is a file its writer is done with: closed after writing, renamed (not while open),
    /// or only its attributes changed. Any directory, delete or rescan, a failed batch put
    /// back, a collapse or a partial cut makes it unfinished until the state is empty again.
    pub fn is_finished(&self) -> bool {
        !self.entries.is_empty() && self.finished.is_finished()
    }

    /// The changes pushed from now on are stamped `stamp`.
    pub fn stamp(&mut self, stamp: Stamp) {
        self.incoming = stamp;
    }

    /// The smallest sequence number an entry stands for: everything numbered below it that
    /// reached this state has been taken out of it. `None` when nothing is pending.
    pub fn min_first(&self) -> Option<u64> {
        if self.entries.is_empty() {
            None
        } else {
            self.low
        }
    }

    /// The stamps of the pending entries, in no order.
    pub fn stamps(&self) -> impl Iterator<Item = &Stamp> {
        self.entries.values().map(|e| &e.stamp)
    }

    /// Makes [`Coalescer::min_first`] exact again.
    fn recompute_low(&mut self) {
        self.low = self.entries.values().map(|e| e.stamp.first).min();
    }

    /// Number of pending paths.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// When the oldest and the newest pending change arrived.
    pub fn arrival_window(&self) -> Option<(Instant, Instant)> {
        Some((self.first_at?, self.last_at?))
    }

    /// When the oldest pending change happened: the earliest event time merged since the
    /// state was last empty (a failed batch put back counts with its own times). Kept as the
    /// changes come, not looked up, so it costs nothing. It may be older than what is left —
    /// when a later event cancelled the oldest change (a file created and deleted again), or
    /// a batch went out while changes it holds back stayed (they keep the older time until
    /// the state empties) — but never younger than the oldest change still owed. `None`
    /// when nothing is pending.
    pub fn oldest(&self) -> Option<SystemTime> {
        self.oldest.filter(|_| !self.entries.is_empty())
    }

    fn note_time(&mut self, time: SystemTime) {
        self.oldest = Some(self.oldest.map_or(time, |t| t.min(time)));
    }

    /// Merges one event into the pending state. Returns whether it changed what is pending
    /// other than in its times and stamps: a write or close of a file already pending as
    /// created, moved or rescanned (or as the same kind of change), or anything below a
    /// pending rescan, changes nothing a replay of the journal would restore, so the lane
    /// need not record it again.
    pub fn push(&mut self, event: Event) -> bool {
        self.merge(event, true)
    }

    /// Merges `event` as [`Coalescer::push`] does, but as a change the remote may already
    /// have: a batch in flight that sends the directory it lies in can carry it there, so a
    /// create is not taken as "did not exist before" (a delete after it must still be sent).
    pub fn push_maybe_sent(&mut self, event: Event) -> bool {
        self.merge(event, false)
    }

    fn merge(&mut self, event: Event, fresh: bool) -> bool {
        let now = Instant::now();
        self.first_at.get_or_insert(now);
        self.last_at = Some(now);
        let began = self.entries.is_empty();
        if began {
            self.oldest = None;
        }
        self.finished.merge(&event, began, now);
        self.note_time(event.time);
        let changed = self.apply(event, fresh, self.incoming);
        if self.entries.len() > self.max_pending {
            self.collapse();
        }
        changed
    }

    /// A copy of everything pending, in the order paths were first touched.
    pub fn snapshot(&self) -> Vec<Event> {
        let mut entries: Vec<(&RelPath, &Entry)> = self.entries.iter().collect();
        entries.sort_by_key(|(_, e)| e.seq);
        entries
            .into_iter()
            .map(|(path, e)| self.event(path.clone(), e.clone()))
            .collect()
    }

    fn event(&self, path: RelPath, e: Entry) -> Event {
        Event {
            kind: e.kind,
            path,
            from: e.from,
            is_dir: e.is_dir,
            watch: self.watch,
            time: e.time,
        }
    }

    /// Takes everything pending, in the order paths were first touched.
    pub fn take(&mut self) -> Vec<Event> {
        self.first_at = None;
        self.last_at = None;
        self.oldest = None;
        self.rescans.clear();
        self.vacated.clear();
        self.low = None;
        let mut entries: Vec<(RelPath, Entry)> = self.entries.drain().collect();
        entries.sort_by_key(|(_, e)| e.seq);
        entries
            .into_iter()
            .map(|(path, e)| self.event(path, e))
            .collect()
    }

    /// Takes the pending changes none of whose paths (new or old name) `blocked` holds back,
    /// in the order paths were first touched; the others stay pending as they were. When
    /// some stay, their arrival window restarts now, so they go out one settle time after
    /// they are released.
    pub fn take_unblocked(&mut self, blocked: impl Fn(&RelPath) -> bool) -> Vec<Event> {
        self.take_admitted(blocked, |_| true).0
    }

    /// As [`Coalescer::take_unblocked`], taking only the entries whose stamp `admit` lets
    /// go; returns their stamps too, in the same order (for [`Coalescer::requeue_stamped`]).
    pub fn take_admitted(
        &mut self,
        blocked: impl Fn(&RelPath) -> bool,
        admit: impl Fn(&Stamp) -> bool,
    ) -> (Vec<Event>, Vec<Stamp>) {
        let held = |path: &RelPath, e: &Entry| {
            !admit(&e.stamp)
                || footprint(e.kind, path, e.from.as_ref())
                    .iter()
                    .any(&blocked)
        };
        if !self.entries.iter().any(|(path, e)| held(path, e)) {
            let stamps = self.sorted_stamps();
            return (self.take(), stamps);
        }
        let free: Vec<RelPath> = self
            .entries
            .iter()
            .filter(|(path, e)| !held(path, e))
            .map(|(path, _)| path.clone())
            .collect();
        let mut taken: Vec<(RelPath, Entry)> = free
            .into_iter()
            .filter_map(|path| self.remove(&path).map(|e| (path, e)))
            .collect();
        taken.sort_by_key(|(_, e)| e.seq);
        let moved_from: HashSet<&RelPath> = self
            .entries
            .values()
            .filter_map(|e| e.from.as_ref())
            .collect();
        self.vacated.retain(|p| moved_from.contains(p));
        if !taken.is_empty() {
            let now = Instant::now();
            self.first_at = Some(now);
            self.last_at = Some(now);
        }
        self.finished.spoil();
        self.recompute_low();
        let stamps = taken.iter().map(|(_, e)| e.stamp).collect();
        let events = taken
            .into_iter()
            .map(|(path, e)| self.event(path, e))
            .collect();
        (events, stamps)
    }

    /// The entries' stamps, in the order [`Coalescer::take`] returns them.
    fn sorted_stamps(&self) -> Vec<Stamp> {
        let mut entries: Vec<&Entry> = self.entries.values().collect();
        entries.sort_by_key(|e| e.seq);
        entries.into_iter().map(|e| e.stamp).collect()
    }

    /// Puts back a batch that could not be delivered. Its events happened before everything
    /// pending now; since part of it may have reached the remote, none of its paths is
    /// assumed absent there any more.
    pub fn requeue(&mut self, failed: Vec<Event>) {
        let stamps = vec![self.incoming; failed.len()];
        self.requeue_stamped(failed, stamps);
    }

    /// As [`Coalescer::requeue`], each event keeping the stamp it was taken with (a change
    /// still owed keeps its place in the sequence).
    pub fn requeue_stamped(&mut self, failed: Vec<Event>, stamps: Vec<Stamp>) {
        debug_assert_eq!(failed.len(), stamps.len());
        self.finished.spoil();
        let (first_at, last_at) = (self.first_at, self.last_at);
        if self.entries.is_empty() {
            self.oldest = None;
        }
        if let Some(time) = failed.iter().map(|e| e.time).min() {
            self.note_time(time);
        }
        let mut current: Vec<(RelPath, Entry)> = self.entries.drain().collect();
        current.sort_by_key(|(_, e)| e.seq);
        self.rescans.clear();
        self.vacated.clear();
        for (event, stamp) in failed.into_iter().zip(stamps) {
            self.apply(event, false, stamp);
        }
        for (path, e) in current {
            let new = e.new;
            let stamp = e.stamp;
            self.apply(
                Event {
                    kind: e.kind,
                    path,
                    from: e.from,
                    is_dir: e.is_dir,
                    watch: self.watch,
                    time: e.time,
                },
                new,
                stamp,
            );
        }
        self.recompute_low();
        let now = Instant::now();
        self.first_at = first_at.or(Some(now));
        self.last_at = last_at.or(Some(now));
        if self.entries.len() > self.max_pending {
            self.collapse();
        }
    }

    /// Merges `event`, stamped `stamp`; `fresh` says a `Create` may be taken as "did not
    /// exist before". Returns whether it changed more than times and stamps (see
    /// [`Coalescer::push`]).
    fn apply(&mut self, event: Event, fresh: bool, stamp: Stamp) -> bool {
        self.absorbed = stamp;
        let Event {
            kind,
            path,
            from,
            is_dir,
            time,
            ..
        } = event;
        if self.covered_by_rescan(&path) {
            self.stamp_covering_rescan(&path);
            let Some(from) = from else {
                return false;
            };
            self.keep_delete(from, is_dir, time);
            return true;
        }
        match kind {
            EventKind::Create => {
                let new = match self.entries.get(&path) {
                    None => fresh && !self.vacated.contains(&path),
                    Some(e) => e.new && fresh,
                };
                self.set(path, EventKind::Create, None, is_dir, time, new);
            }
            EventKind::Modify | EventKind::CloseWrite | EventKind::Attrib => {
                match self.entries.get_mut(&path) {
                    Some(e)
                        if matches!(
                            e.kind,
                            EventKind::Create | EventKind::Move | EventKind::Rescan
                        ) =>
                    {
                        e.time = time;
                        return false;
                    }
                    Some(e) if e.kind != EventKind::Delete => {
                        let kind = stronger(e.kind, kind);
                        let changed = kind != e.kind;
                        e.kind = kind;
                        e.time = time;
                        return changed;
                    }
                    _ => self.set(path, kind, None, is_dir, time, false),
                }
            }
            EventKind::Delete => {
                let existing = self.entries.get(&path).cloned();
                if is_dir || existing.as_ref().is_some_and(|e| e.is_dir) {
                    self.drop_below(&path, time);
                }
                match existing {
                    Some(e) if e.new => {
                        self.remove(&path);
                    }
                    _ => self.set(path, EventKind::Delete, None, is_dir, time, false),
                }
            }
            EventKind::Move => {
                let Some(from) = from else {
                    self.set(path, EventKind::Create, None, is_dir, time, false);
                    return true;
                };
                let moved = self.remove(&from);
                self.vacated.insert(from.clone());
                let carried = if is_dir {
                    self.take_below(&from)
                } else {
                    Vec::new()
                };
                // Where the moved thing came from, for the remote: a pending create stays a
                // create, a pending move keeps its first name. Any name it passed through
                // that may exist on the remote (overwritten there, or replaced locally) is
                // deleted explicitly.
                let (kind, origin) = match moved {
                    Some(e) if e.kind == EventKind::Create => {
                        if !e.new {
                            self.keep_delete(from.clone(), is_dir, time);
                        }
                        (EventKind::Create, None)
                    }
                    Some(Entry {
                        kind: EventKind::Move,
                        from: Some(origin),
                        ..
                    }) => {
                        self.keep_delete(from.clone(), is_dir, time);
                        (EventKind::Move, Some(origin))
                    }
                    _ => (EventKind::Move, Some(from.clone())),
                };
                // Renamed back to where it started: a change of that path, nothing moved.
                let (kind, origin) = match origin {
                    Some(o) if o == path => (EventKind::Create, None),
                    other => (kind, other),
                };
                self.set(path.clone(), kind, origin, is_dir, time, false);
                self.carry(carried, &from, &path);
            }
            EventKind::Rescan => {
                self.drop_below(&path, time);
                self.set(path.clone(), EventKind::Rescan, None, true, time, false);
                self.rescans.insert(path);
            }
        }
        true
    }

    /// Replaces the state of `path`. A superseded `Move` leaves its old name as a delete.
    fn set(
        &mut self,
        path: RelPath,
        kind: EventKind,
        from: Option<RelPath>,
        is_dir: bool,
        time: SystemTime,
        new: bool,
    ) {
        let seq = match self.entries.get(&path) {
            Some(old) if !matches!(kind, EventKind::Move | EventKind::Rescan) => old.seq,
            _ => self.bump(),
        };
        let stamp = match self.entries.get(&path) {
            Some(old) => self.absorbed.merge(old.stamp),
            None => self.absorbed,
        };
        // What else this merge writes (the old name of a superseded move) stands for it too.
        self.absorbed = stamp;
        self.low = Some(self.low.map_or(stamp.first, |low| low.min(stamp.first)));
        let previous = self.entries.insert(
            path.clone(),
            Entry {
                kind,
                from,
                is_dir,
                seq,
                time,
                new,
                stamp,
            },
        );
        if let Some(Entry {
            kind: EventKind::Move,
            from: Some(old_from),
            is_dir,
            ..
        }) = previous
        {
            let still_moved = self.entries[&path].from.as_ref() == Some(&old_from);
            if !still_moved {
                self.keep_delete(old_from, is_dir, time);
            }
        }
        if kind != EventKind::Rescan {
            self.rescans.remove(&path);
        }
    }

    /// Removes the entry of `path`; what is merged next stands for it too (see
    /// [`Stamp`]).
    fn remove(&mut self, path: &RelPath) -> Option<Entry> {
        self.rescans.remove(path);
        let removed = self.entries.remove(path);
        if let Some(e) = &removed {
            self.absorbed = self.absorbed.merge(e.stamp);
        }
        removed
    }

    fn bump(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    /// Records that `path` must disappear on the remote, unless something newer is pending
    /// for it or a rescan covers it.
    fn keep_delete(&mut self, path: RelPath, is_dir: bool, time: SystemTime) {
        if let Some(e) = self.entries.get_mut(&path) {
            e.stamp = e.stamp.merge(self.absorbed);
        } else if self.covered_by_rescan(&path) {
            self.stamp_covering_rescan(&path);
        } else {
            let seq = self.bump();
            let stamp = self.absorbed;
            self.low = Some(self.low.map_or(stamp.first, |low| low.min(stamp.first)));
            self.entries.insert(
                path,
                Entry {
                    kind: EventKind::Delete,
                    from: None,
                    is_dir,
                    seq,
                    time,
                    new: false,
                    stamp,
                },
            );
        }
    }

    /// The rescan covering `path` (see [`Coalescer::covered_by_rescan`]) now stands for the
    /// change being merged too.
    fn stamp_covering_rescan(&mut self, path: &RelPath) {
        let mut cursor = path.parent();
        while let Some(dir) = cursor {
            if self.rescans.contains(&dir) {
                if let Some(e) = self.entries.get_mut(&dir) {
                    e.stamp = e.stamp.merge(self.absorbed);
                }
                return;
            }
            cursor = dir.parent();
        }
    }

    /// True when a pending rescan of a strict ancestor of `path` already covers it.
    fn covered_by_rescan(&self, path: &RelPath) -> bool {
        if self.rescans.is_empty() {
            return false;
        }
        let mut cursor = path.parent();
        while let Some(dir) = cursor {
            if self.rescans.contains(&dir) {
                return true;
            }
            cursor = dir.parent();
        }
        false
    }

    fn paths_below(&self, dir: &RelPath) -> Vec<RelPath> {
        self.entries
            .keys()
            .filter(|p| *p != dir && p.is_within(dir))
            .cloned()
            .collect()
    }

    /// Forgets the pending changes strictly below `dir` (deleted or rescanned whole),
    /// keeping deletes for moves whose old name lies outside it.
    fn drop_below(&mut self, dir: &RelPath, time: SystemTime) {
        for path in self.paths_below(dir) {
            if let Some(Entry {
                kind: EventKind::Move,
                from: Some(from),
                is_dir,
                ..
            }) = self.remove(&path)
            {
                if !from.is_within(dir) {
                    self.keep_delete(from, is_dir, time);
                }
            }
        }
    }

    /// Removes and returns the pending changes strictly below `dir`, oldest first.
    fn take_below(&mut self, dir: &RelPath) -> Vec<(RelPath, Entry)> {
        let mut taken: Vec<(RelPath, Entry)> = self
            .paths_below(dir)
            .into_iter()
            .filter_map(|p| self.remove(&p).map(|e| (p, e)))
            .collect();
        taken.sort_by_key(|(_, e)| e.seq);
        taken
    }

    /// A directory was renamed from `from` to `to`: the pending changes taken from below it
    /// now live under the new name, ordered after the rename itself.
    fn carry(&mut self, carried: Vec<(RelPath, Entry)>, from: &RelPath, to: &RelPath) {
        for (path, mut entry) in carried {
            let moved = path
                .rebase(from, to)
                .expect("path is below the moved directory");
            entry.seq = self.bump();
            if entry.kind == EventKind::Rescan {
                self.rescans.insert(moved.clone());
            }
            let first = entry.stamp.first;
            self.low = Some(self.low.map_or(first, |low| low.min(first)));
            self.entries.insert(moved, entry);
        }
    }

    /// Too many pending paths: replace them by rescans of their parent directories (and of
    /// the parents of moves' old names), one level up at a time, until few enough remain.
    fn collapse(&mut self) {
        self.finished.spoil();
        while self.entries.len() > self.max_pending {
            let time = SystemTime::now();
            let mut dirs: HashSet<RelPath> = HashSet::new();
            // Each rescan stands for every change collapsed (conservative, and simple).
            let mut stamp: Option<Stamp> = None;
            for (path, e) in self.entries.drain() {
                stamp = Some(stamp.map_or(e.stamp, |s| s.merge(e.stamp)));
                dirs.insert(path.parent().unwrap_or(RelPath::ROOT));
                if let Some(from) = e.from {
                    dirs.insert(from.parent().unwrap_or(RelPath::ROOT));
                }
            }
            self.rescans.clear();
            let mut dirs: Vec<RelPath> = dirs.into_iter().collect();
            dirs.sort();
            tracing::info!(
                watch = self.watch.0,
                directories = dirs.len(),
                "too many pending paths; collapsing into directory rescans"
            );
            for dir in dirs {
                if !self.covered_by_rescan(&dir) && !self.rescans.contains(&dir) {
                    let seq = self.bump();
                    self.entries.insert(
                        dir.clone(),
                        Entry {
                            kind: EventKind::Rescan,
                            from: None,
                            is_dir: true,
                            seq,
                            time,
                            new: false,
                            stamp: stamp.unwrap_or(self.incoming),
                        },
                    );
                    self.rescans.insert(dir);
                }
            }
        }
        self.recompute_low();
    }
}

/// The stronger of two content/metadata changes: a finished write covers a write in
/// progress, which covers a metadata change.
fn stronger(a: EventKind, b: EventKind) -> EventKind {
    let rank = |k| match k {
        EventKind::CloseWrite => 2,
        EventKind::Modify => 1,
        _ => 0,
    };
    if rank(b) > rank(a) {
        b
    } else {
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: EventKind, path: &str, is_dir: bool) -> Event {
        Event::now(kind, RelPath::from(path), is_dir, WatchId(0))
    }

    fn summary(c: &mut Coalescer) -> Vec<String> {
        c.take()
            .into_iter()
            .map(|e| match e.from {
                Some(f) => format!("{} {}->{}", e.kind, f, e.path),
                None => format!("{} {}", e.kind, e.path),
            })
            .collect()
    }

    fn coalescer() -> Coalescer {
        Coalescer::new(WatchId(0), 1000)
    }

    #[test]
    fn a_create_a_batch_in_flight_may_have_sent_is_not_cancelled_by_its_delete() {
        let mut c = coalescer();
        c.push(ev(EventKind::Create, "new", true));
        c.push(ev(EventKind::Delete, "new", true));
        assert!(
            summary(&mut c).is_empty(),
            "created and deleted meanwhile: nothing"
        );
        c.push_maybe_sent(ev(EventKind::Create, "d/sub", true));
        c.push(ev(EventKind::Delete, "d/sub", true));
        assert_eq!(summary(&mut c), ["delete d/sub"]);
    }

    #[test]
    fn the_oldest_pending_time_survives_merges_and_requeues_and_clears_when_taken() {
        use std::time::Duration;
        let at = |secs: u64, path: &str| Event {
            time: SystemTime::UNIX_EPOCH + Duration::from_secs(secs),
            ..ev(EventKind::CloseWrite, path, false)
        };
        let mut c = coalescer();
        assert_eq!(c.oldest(), None);
        c.push(at(100, "a"));
        c.push(at(200, "a"));
        c.push(at(150, "b"));
        assert_eq!(
            c.oldest(),
            Some(at(100, "a").time),
            "the first change, not the entry's latest"
        );
        let batch = c.take();
        assert_eq!(c.oldest(), None);
        c.push(at(300, "c"));
        c.requeue(batch);
        assert_eq!(
            c.oldest(),
            Some(at(150, "b").time),
            "a failed batch is older than what came since"
        );
        c.take();
        c.push(Event {
            time: at(400, "").time,
            ..ev(EventKind::Create, "new", false)
        });
        c.push(Event {
            time: at(500, "").time,
            ..ev(EventKind::Delete, "new", false)
        });
        assert_eq!(c.oldest(), None, "nothing pending, nothing old");
        c.push(at(600, "d"));
        assert_eq!(c.oldest(), Some(at(600, "d").time));
    }

    #[test]
    fn one_file_written_many_times_is_one_event() {
        let mut c = coalescer();
        c.push(ev(EventKind::Create, "f", false));
        for _ in 0..20 {
            c.push(ev(EventKind::Modify, "f", false));
            c.push(ev(EventKind::CloseWrite, "f", false));
        }
        assert_eq!(summary(&mut c), ["create f"]);
    }

    #[test]
    fn a_partial_take_leaves_blocked_paths_and_old_names_pending_as_they_were() {
        let mut c = coalescer();
        c.push(ev(EventKind::CloseWrite, "busy/f", false));
        c.push(Event::moved(
            "busy/g".into(),
            "free/g".into(),
            false,
            WatchId(0),
        ));
        c.push(ev(EventKind::Rescan, "busy/r", true));
        c.push(ev(EventKind::Create, "free/h", false));
        let taken = c.take_unblocked(|p| p.is_within(&RelPath::from("busy")));
        let taken: Vec<String> = taken
            .iter()
            .map(|e| format!("{} {}", e.kind, e.path))
            .collect();
        assert_eq!(taken, ["create free/h"]);
        // The rescan still swallows what happens below it.
        c.push(ev(EventKind::CloseWrite, "busy/r/x", false));
        assert_eq!(
            summary(&mut c),
            ["close_write busy/f", "move busy/g->free/g", "rescan busy/r"]
        );
        assert!(c.take_unblocked(|_| false).is_empty());
    }

    #[test]
    fn a_temporary_file_is_nothing_but_a_replaced_one_is_a_delete() {
        let mut c = coalescer();
        c.push(ev(EventKind::Create, "tmp", false));
        c.push(ev(EventKind::Delete, "tmp", false));
        assert!(c.take().is_empty());
        c.push(ev(EventKind::Delete, "old", false));
        c.push(ev(EventKind::Create, "old", false));
        c.push(ev(EventKind::Delete, "old", false));
        assert_eq!(summary(&mut c), ["delete old"]);
    }

    #[test]
    fn a_directory_delete_swallows_pending_changes_below_it() {
        let mut c = coalescer();
        c.push(ev(EventKind::CloseWrite, "d/a", false));
        c.push(ev(EventKind::CloseWrite, "d/e/b", false));
        c.push(ev(EventKind::CloseWrite, "dx", false));
        c.push(ev(EventKind::Delete, "d", true));
        assert_eq!(summary(&mut c), ["close_write dx", "delete d"]);
    }

    #[test]
    fn renaming_several_times_keeps_the_first_name_and_deletes_the_names_passed_through() {
        let mut c = coalescer();
        c.push(Event::moved("a".into(), "b".into(), false, WatchId(0)));
        c.push(Event::moved("b".into(), "c".into(), false, WatchId(0)));
        c.push(Event::moved("c".into(), "d".into(), false, WatchId(0)));
        let mut s = summary(&mut c);
        s.sort();
        // b and c may have existed on the remote (a rename overwrites): deleted explicitly.
        assert_eq!(s, ["delete b", "delete c", "move a->d"]);
    }

    #[test]
    fn a_create_at_a_name_a_move_vacated_is_a_replacement_not_a_temporary() {
        let mut c = coalescer();
        c.push(Event::moved("b".into(), "a".into(), true, WatchId(0)));
        c.push(ev(EventKind::Create, "b", true));
        c.push(ev(EventKind::Delete, "b", true));
        let mut s = summary(&mut c);
        s.sort();
        assert_eq!(s, ["delete b", "move b->a"]);
    }

    #[test]
    fn a_directory_rename_carries_pending_changes_below_it() {
        let mut c = coalescer();
        c.push(ev(EventKind::CloseWrite, "d/f", false));
        c.push(Event::moved("d".into(), "e".into(), true, WatchId(0)));
        assert_eq!(summary(&mut c), ["move d->e", "close_write e/f"]);
    }

    #[test]
    fn a_superseded_move_leaves_a_delete_of_its_old_name() {
        let mut c = coalescer();
        c.push(Event::moved("a".into(), "b".into(), false, WatchId(0)));
        c.push(ev(EventKind::Delete, "b", false));
        let mut s = summary(&mut c);
        s.sort();
        assert_eq!(s, ["delete a", "delete b"]);
    }

    #[test]
    fn a_rescan_covers_later_changes_below_it() {
        let mut c = coalescer();
        c.push(ev(EventKind::Rescan, "", true));
        c.push(ev(EventKind::CloseWrite, "x", false));
        c.push(Event::moved("a".into(), "b".into(), false, WatchId(0)));
        assert_eq!(summary(&mut c), ["rescan ."]);
    }

    #[test]
    fn requeued_creates_are_no_longer_assumed_new() {
        let mut c = coalescer();
        c.push(ev(EventKind::Create, "f", false));
        let failed = c.take();
        c.push(ev(EventKind::Delete, "f", false));
        c.requeue(failed);
        assert_eq!(summary(&mut c), ["delete f"]);
    }

    #[test]
    fn too_many_paths_collapse_into_directory_rescans() {
        let mut c = Coalescer::new(WatchId(0), 10);
        for i in 0..50 {
            c.push(ev(EventKind::CloseWrite, &format!("d/f{i}"), false));
        }
        c.push(ev(EventKind::CloseWrite, "e/x", false));
        assert!(c.len() <= 10);
        let mut s = summary(&mut c);
        s.sort();
        assert_eq!(s, ["close_write e/x", "rescan d"]);
    }
}
