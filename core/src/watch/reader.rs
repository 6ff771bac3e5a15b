//! The reader thread: read the kernel queue, keep the watch tree right, translate raw
//! events into typed [`Event`]s, pair moves, hand them on. It never waits on a sink.

use std::collections::HashSet;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use inotify::{EventMask, Inotify, WatchMask};
use sersync_plugin_sdk::{Event, EventKind, PathFilter, RelPath, WatchId};

use super::doubts::{DoubtKind, Pending};
use super::guard::{recorded_key, RootGuard};
use super::scan::{Report, WalkState, Walked, PATH_MAX};
use super::sys::{self, WatchBy, Wd};
use super::tree::{DirKey, WatchTree};
use super::{Roots, WatchError};
use crate::config::EventSwitches;
use crate::filter::Filter;

/// One read drains up to this many bytes of events (~16,000 events without names).
const READ_BUFFER: usize = 256 * 1024;
/// How long the reader waits for the second half of a rename split across two reads.
const MOVE_PAIR_WAIT: Duration = Duration::from_millis(2);
/// Reads of what is already queued when stopping.
const STOP_DRAIN_READS: usize = 64;
/// How often a blocked reader looks at the shutdown flag.
const SHUTDOWN_POLL: Duration = Duration::from_millis(200);
/// Paths warned about as not watched, at most (each warned once).
const WARNED_PATHS: usize = 10_000;

/// Counters the control endpoint and the logs read.
#[derive(Debug, Default)]
pub struct WatcherStats {
    directories: AtomicU64,
    events: AtomicU64,
    overflows: AtomicU64,
    skipped: AtomicU64,
    rewalks: AtomicU64,
}

impl WatcherStats {
    /// Directories watched now.
    pub fn directories(&self) -> u64 {
        self.directories.load(Ordering::Relaxed)
    }

    /// Raw kernel events read so far.
    pub fn events(&self) -> u64 {
        self.events.load(Ordering::Relaxed)
    }

    /// Kernel queue overflows seen so far.
    pub fn overflows(&self) -> u64 {
        self.overflows.load(Ordering::Relaxed)
    }

    /// Paths neither watched nor reported because they cannot be (unreadable, too long).
    pub fn skipped(&self) -> u64 {
        self.skipped.load(Ordering::Relaxed)
    }

    /// Times a watch root was walked again because the kernel's events did not explain
    /// where a directory went. A correct reader keeps this near zero.
    pub fn rewalks(&self) -> u64 {
        self.rewalks.load(Ordering::Relaxed)
    }

    pub(super) fn count_rewalk(&self) {
        self.rewalks.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn set_directories(&self, n: usize) {
        self.directories.store(n as u64, Ordering::Relaxed);
    }
}

/// A raw event, copied out of the read buffer.
struct Raw {
    wd: Wd,
    mask: EventMask,
    cookie: u32,
    name: Vec<u8>,
}

/// The first half of a rename, waiting for its `IN_MOVED_TO`.
struct MoveOut {
    cookie: u32,
    watch: WatchId,
    path: RelPath,
    is_dir: bool,
    /// The moved directory's own watch, if it is one, with its generation then: if the
    /// directory is found again before the rename is given up on, it is not released.
    dir_wd: Option<(Wd, Option<u16>)>,
    /// Where in the round's events the rename was read.
    position: usize,
}

/// Watches every root recursively and turns kernel events into [`Event`]s.
pub struct Watcher {
    pub(super) inotify: Inotify,
    pub(super) tree: WatchTree<Wd>,
    pub(super) filter: Arc<Filter>,
    pub(super) mask: WatchMask,
    pub(super) stats: Arc<WatcherStats>,
    pub(super) debug: bool,
    /// How walks name a directory to the kernel where `.` cannot be watched.
    pub(super) watch_by: WatchBy,
    /// What walks keep between them.
    pub(super) walking: WalkState,
    pub(super) doubts: Vec<Pending>,
    /// Emptied queues seen while some descriptor was homeless.
    pub(super) homeless_drains: u8,
    roots: Roots,
    switches: EventSwitches,
    move_outs: Vec<MoveOut>,
    warned: HashSet<RelPath>,
    /// Which roots are lost (see [`super::guard`]).
    pub(super) guard: Arc<RootGuard>,
    /// Each root's identity when it was watched, by watch id.
    pub(super) root_keys: Vec<Option<DirKey>>,
    /// When the roots are checked next.
    pub(super) next_root_check: Instant,
    /// A lost root back on another device was warned about.
    pub(super) other_device_warned: Vec<bool>,
}

impl Watcher {
    /// Watches every root and the directories below them that the filter keeps.
    pub fn new(
        roots: impl Into<Roots>,
        filter: Arc<Filter>,
        switches: EventSwitches,
        debug: bool,
    ) -> Result<Self, WatchError> {
        let inotify = Inotify::init().map_err(|error| WatchError::Io {
            path: "inotify_init".into(),
            error,
        })?;
        let mut mask = WatchMask::CREATE
            | WatchMask::DELETE
            | WatchMask::CLOSE_WRITE
            | WatchMask::MOVED_FROM
            | WatchMask::MOVED_TO
            | WatchMask::DELETE_SELF
            | WatchMask::MOVE_SELF
            | WatchMask::ONLYDIR
            | WatchMask::DONT_FOLLOW
            | WatchMask::EXCL_UNLINK;
        if switches.modify {
            mask |= WatchMask::MODIFY;
        }
        if switches.attrib {
            mask |= WatchMask::ATTRIB;
        }
        let roots: Roots = roots.into();
        let count = roots.len();
        let mut watcher = Watcher {
            inotify,
            tree: WatchTree::default(),
            filter,
            mask,
            stats: Arc::new(WatcherStats::default()),
            debug,
            watch_by: WatchBy::detect(),
            walking: WalkState::default(),
            doubts: Vec::new(),
            homeless_drains: 0,
            roots,
            switches,
            move_outs: Vec::new(),
            warned: HashSet::new(),
            guard: Arc::new(RootGuard::new(count)),
            root_keys: vec![None; count],
            next_root_check: Instant::now() + super::guard::ROOT_CHECK,
            other_device_warned: vec![false; count],
        };
        // On a thread of its own, whose working directory the walk may move (see `sys`).
        std::thread::scope(|scope| {
            std::thread::Builder::new()
                .name("watch walk".into())
                .spawn_scoped(scope, || watcher.watch_roots())
                .map_err(|error| WatchError::Io {
                    path: "the watch walk's thread".into(),
                    error,
                })?
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })?;
        Ok(watcher)
    }

    /// Watches every root, recording the identity each had.
    fn watch_roots(&mut self) -> Result<(), WatchError> {
        for root in self.roots.clone() {
            self.add_root_in_parallel(root.watch)?;
            self.root_keys[root.watch.0 as usize] = recorded_key(self, root.watch);
        }
        Ok(())
    }

    /// The counters of this watcher.
    pub fn stats(&self) -> Arc<WatcherStats> {
        self.stats.clone()
    }

    /// Which of its roots are lost (deleted, renamed away, unmounted), shared.
    pub fn root_guard(&self) -> Arc<RootGuard> {
        self.guard.clone()
    }

    pub(super) fn roots(&self) -> &Roots {
        &self.roots
    }

    pub(super) fn root_path(&self, watch: WatchId) -> &Path {
        self.roots.path(watch)
    }

    /// Reads until `shutdown` is set, sending each read's events as one message. Returns
    /// when the receiver is gone too.
    pub fn run(
        mut self,
        tx: Sender<Vec<Event>>,
        shutdown: Arc<AtomicBool>,
    ) -> Result<(), WatchError> {
        let mut buffer = vec![0u8; READ_BUFFER];
        while !shutdown.load(Ordering::Relaxed) {
            let mut out = Vec::new();
            if wait_readable(&self.inotify, SHUTDOWN_POLL) {
                self.round(&mut buffer, &mut out)?;
            } else {
                // Idle: the queue is empty, so doubts can be judged.
                self.settle_doubts(true, &mut out)?;
            }
            self.check_roots()?;
            if !out.is_empty() && tx.send(out).is_err() {
                return Ok(());
            }
        }
        // Stopping: what the kernel has already queued is still read and handed on, so that
        // the lanes deliver it before exit. Bounded, so a writer that never stops cannot hold
        // shutdown open (what it writes later is found by the next start's catch-up).
        let mut out = Vec::new();
        for _ in 0..STOP_DRAIN_READS {
            if !wait_readable(&self.inotify, Duration::ZERO) {
                break;
            }
            self.read_once(&mut buffer, &mut out)?;
        }
        self.finish_move_outs(&mut out);
        if !out.is_empty() {
            let _ = tx.send(out);
        }
        Ok(())
    }

    /// One turn of the loop, without blocking: reads what is queued, pairs the renames in
    /// it, and looks at the doubts again with those events applied.
    pub(super) fn round(
        &mut self,
        buffer: &mut [u8],
        out: &mut Vec<Event>,
    ) -> Result<(), WatchError> {
        self.read_once(buffer, out)?;
        // A rename can be split across two reads: give its second half a moment.
        if !self.move_outs.is_empty() && wait_readable(&self.inotify, MOVE_PAIR_WAIT) {
            self.read_once(buffer, out)?;
        }
        self.finish_move_outs(out);
        let drained = !wait_readable(&self.inotify, Duration::ZERO);
        self.settle_doubts(drained, out)
    }

    fn read_once(&mut self, buffer: &mut [u8], out: &mut Vec<Event>) -> Result<(), WatchError> {
        let raws: Vec<Raw> = match self.inotify.read_events(buffer) {
            Ok(events) => events
                .map(|e| Raw {
                    wd: Wd(e.wd.get_watch_descriptor_id()),
                    mask: e.mask,
                    cookie: e.cookie,
                    name: e
                        .name
                        .map(|n| std::os::unix::ffi::OsStrExt::as_bytes(n).to_vec())
                        .unwrap_or_default(),
                })
                .collect(),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(error) => {
                return Err(WatchError::Io {
                    path: "inotify read".into(),
                    error,
                })
            }
        };
        self.stats
            .events
            .fetch_add(raws.len() as u64, Ordering::Relaxed);
        for raw in raws {
            self.translate(raw, out)?;
        }
        Ok(())
    }

    fn translate(&mut self, raw: Raw, out: &mut Vec<Event>) -> Result<(), WatchError> {
        if raw.mask.contains(EventMask::Q_OVERFLOW) {
            return self.recover_from_overflow(out);
        }
        if raw.mask.contains(EventMask::IGNORED) {
            // The directory is gone (or its watch was released): so is anything the table
            // still holds below it.
            self.release(&raw.wd);
            return Ok(());
        }
        let Some((watch, dir)) = self.tree.path_of(&raw.wd) else {
            return Ok(()); // a watch released a moment ago
        };
        let own = EventMask::DELETE_SELF | EventMask::MOVE_SELF | EventMask::UNMOUNT;
        if raw.mask.intersects(own) {
            if dir.is_root() {
                let reason = if raw.mask.contains(EventMask::DELETE_SELF) {
                    "it was deleted"
                } else if raw.mask.contains(EventMask::MOVE_SELF) {
                    "it was renamed away"
                } else {
                    "its file system was unmounted"
                };
                self.root_lost(watch, reason);
            }
            return Ok(());
        }
        if raw.name.is_empty() {
            return Ok(());
        }
        let path = dir.join(&raw.name);
        let is_dir = raw.mask.contains(EventMask::ISDIR);
        if self.debug {
            tracing::debug!(watch = watch.0, %path, mask = ?raw.mask, cookie = raw.cookie, "inotify event");
        }
        if self.too_long(watch, &path) {
            return Ok(());
        }
        let excluded = self.filter.is_excluded(&path, is_dir);
        if raw.mask.contains(EventMask::MOVED_FROM) {
            let dir_wd = if is_dir {
                self.dismiss_doubts(&raw.wd, &raw.name);
                self.moved_directory(&raw.wd, &raw.name, watch, &path)
                    .map(|wd| (wd, self.tree.generation(&wd)))
            } else {
                None
            };
            if excluded {
                return Ok(());
            }
            self.move_outs.push(MoveOut {
                cookie: raw.cookie,
                watch,
                path,
                is_dir,
                dir_wd,
                position: out.len(),
            });
            return Ok(());
        }
        if raw.mask.contains(EventMask::MOVED_TO) {
            return self.moved_in(raw, watch, path, is_dir, excluded, out);
        }
        if excluded {
            return Ok(());
        }
        if raw.mask.contains(EventMask::CREATE) {
            if is_dir {
                let mut found = Vec::new();
                self.new_directory(watch, &path, raw.wd, &mut found)?;
                if self.switches.create_folder {
                    out.push(Event::now(EventKind::Create, path, true, watch));
                }
                out.extend(found);
            } else if self.switches.create_file
                || !will_report_close_write(&self.root_path(watch).join(path.as_path()))
            {
                out.push(Event::now(EventKind::Create, path, false, watch));
            }
        } else if raw.mask.contains(EventMask::DELETE) {
            if is_dir {
                self.dismiss_doubts(&raw.wd, &raw.name);
                // Its watch, if it had one, is released by the kernel's IN_IGNORED for it:
                // what the table holds under this name now may be a newer directory.
            }
            if self.switches.delete {
                out.push(Event::now(EventKind::Delete, path, is_dir, watch));
            }
        } else if raw.mask.contains(EventMask::CLOSE_WRITE) {
            if self.switches.close_write {
                out.push(Event::now(EventKind::CloseWrite, path, false, watch));
            }
        } else if raw.mask.contains(EventMask::MODIFY) {
            out.push(Event::now(EventKind::Modify, path, is_dir, watch));
        } else if raw.mask.contains(EventMask::ATTRIB) {
            out.push(Event::now(EventKind::Attrib, path, is_dir, watch));
        }
        Ok(())
    }

    /// A directory the kernel reported at `path` inside `parent`: watch it and everything
    /// below it, each entry reported into `found`. When it cannot be opened any more (a
    /// rename of it or of an ancestor came first), that is a doubt to settle after the read.
    fn new_directory(
        &mut self,
        watch: WatchId,
        path: &RelPath,
        parent: Wd,
        found: &mut Vec<Event>,
    ) -> Result<(), WatchError> {
        let walked = self.add_tree(watch, path.clone(), Some(parent), Report::Entries(found))?;
        if walked == Walked::Missing {
            self.doubt(parent, path.file_name(), DoubtKind::Unwatched);
        }
        Ok(())
    }

    /// The second half of a rename, or something moved in from outside the watch.
    fn moved_in(
        &mut self,
        raw: Raw,
        watch: WatchId,
        path: RelPath,
        is_dir: bool,
        excluded: bool,
        out: &mut Vec<Event>,
    ) -> Result<(), WatchError> {
        let paired = self
            .move_outs
            .iter()
            .position(|m| m.cookie == raw.cookie)
            .map(|i| self.move_outs.remove(i));
        match paired {
            Some(from) if !excluded && from.watch == watch => {
                let mut found = Vec::new();
                match &from.dir_wd {
                    Some((wd, _)) => {
                        self.tree.relink(wd, raw.wd, &raw.name);
                        // Checked after the read, with the renames queued meanwhile applied.
                        self.doubt(raw.wd, &raw.name, DoubtKind::Unconfirmed);
                    }
                    // A directory that was never watched (renamed before its create was
                    // read, or moved while its parent was being watched): watch it now.
                    None if is_dir => self.new_directory(watch, &path, raw.wd, &mut found)?,
                    None => {}
                }
                match (self.switches.move_from, self.switches.move_to) {
                    (true, true) => out.push(Event::moved(from.path, path, is_dir, watch)),
                    (false, true) => out.push(Event::now(EventKind::Create, path, is_dir, watch)),
                    (true, false) => {
                        out.push(Event::now(EventKind::Delete, from.path, is_dir, watch))
                    }
                    (false, false) => {}
                }
                if self.switches.move_to {
                    out.extend(found);
                }
                Ok(())
            }
            Some(from) => {
                // Renamed into another watch, or onto an excluded name: out of here, into there.
                self.moved_out(from, out);
                for later in &mut self.move_outs {
                    later.position += 1;
                }
                if excluded {
                    Ok(())
                } else {
                    self.arrived(raw, watch, path, is_dir, out)
                }
            }
            None if excluded => Ok(()),
            None => self.arrived(raw, watch, path, is_dir, out),
        }
    }

    /// Something appeared by rename from outside the watch: a create, with its tree watched
    /// and reported.
    fn arrived(
        &mut self,
        raw: Raw,
        watch: WatchId,
        path: RelPath,
        is_dir: bool,
        out: &mut Vec<Event>,
    ) -> Result<(), WatchError> {
        if is_dir {
            let mut found = Vec::new();
            self.new_directory(watch, &path, raw.wd, &mut found)?;
            if self.switches.move_to {
                out.push(Event::now(EventKind::Create, path, true, watch));
                out.extend(found);
            }
        } else if self.switches.move_to {
            out.push(Event::now(EventKind::Create, path, false, watch));
        }
        Ok(())
    }

    /// Every rename whose second half did not come: moved out of the watch.
    fn finish_move_outs(&mut self, out: &mut Vec<Event>) {
        let mut move_outs = std::mem::take(&mut self.move_outs);
        // Last first, so that each delete goes in where its rename was read.
        move_outs.sort_by_key(|m| std::cmp::Reverse(m.position));
        for m in move_outs {
            self.moved_out(m, out);
        }
    }

    /// A rename away with no second half here: a delete, placed in the stream where the
    /// rename was read (before anything that came later under the same name).
    fn moved_out(&mut self, m: MoveOut, out: &mut Vec<Event>) {
        if let Some((wd, generation)) = &m.dir_wd {
            // Found again since (moved straight back in, under a rename of its own): the
            // descriptor stands for where it is now, and stays.
            if self.tree.generation(wd) == *generation {
                self.release(wd);
            }
        }
        if self.switches.move_from {
            let delete = Event::now(EventKind::Delete, m.path, m.is_dir, m.watch);
            out.insert(m.position.min(out.len()), delete);
        }
    }

    /// The watched directory a rename of `name` away from `parent` moves: the one the table
    /// holds under that name, unless that one is still there (then the rename was of an
    /// older directory of that name, which a walk has pushed out of its place). Never one
    /// that an earlier rename in this read already moves.
    fn moved_directory(
        &self,
        parent: &Wd,
        name: &[u8],
        watch: WatchId,
        path: &RelPath,
    ) -> Option<Wd> {
        let moving = |wd: &Wd| {
            self.move_outs
                .iter()
                .any(|m| m.dir_wd.as_ref().is_some_and(|(w, _)| w == wd))
        };
        self.tree
            .child(parent, name)
            .filter(|wd| !self.still_at(wd, watch, path))
            .or_else(|| self.tree.homeless_at(parent, name))
            .filter(|wd| !moving(wd))
    }

    /// True when the directory `wd` stands for is at `path` now: a rename away from `path`
    /// was about another directory that had the name before.
    fn still_at(&self, wd: &Wd, watch: WatchId, path: &RelPath) -> bool {
        self.tree
            .key(wd)
            .is_some_and(|key| self.dir_key_at(watch, path) == Some(key))
    }

    /// The identity of the directory at `path` now; `None` when nothing, or no directory, is
    /// there (a symlink is not followed).
    pub(super) fn dir_key_at(&self, watch: WatchId, path: &RelPath) -> Option<DirKey> {
        std::fs::symlink_metadata(path.absolute(self.root_path(watch)))
            .ok()
            .filter(|meta| meta.is_dir())
            .map(|meta| DirKey::of(&meta))
    }

    /// Forgets a directory subtree and releases its kernel watches.
    pub(super) fn release(&mut self, wd: &Wd) {
        for w in self.tree.remove_subtree(wd) {
            // Fails harmlessly when the kernel released it already (directory deleted).
            sys::remove_watch(self.inotify.as_raw_fd(), w);
        }
        self.stats.set_directories(self.tree.len());
    }

    /// True (once warned about and counted) when `rel` is too long to be watched or sent.
    pub(super) fn too_long(&mut self, watch: WatchId, rel: &RelPath) -> bool {
        let length = self.root_path(watch).as_os_str().len() + 1 + rel.as_bytes().len();
        if length < PATH_MAX {
            return false;
        }
        self.skip(
            watch,
            rel,
            &format!("its path is {length} bytes, longer than the kernel and rsync take ({PATH_MAX} with its NUL)"),
        );
        true
    }

    /// Counts a path that cannot be watched or synced, and warns about it once.
    pub(super) fn skip(&mut self, watch: WatchId, rel: &RelPath, reason: &str) {
        self.stats.skipped.fetch_add(1, Ordering::Relaxed);
        if self.warned.len() < WARNED_PATHS && self.warned.insert(rel.clone()) {
            tracing::warn!(
                root = %self.root_path(watch).display(),
                path = %shortened(rel),
                reason,
                "not watched or synced"
            );
        }
    }

    /// The kernel dropped events: every root may have changed anywhere. Put every watch
    /// where it belongs again and tell every sink to re-sync each root whole.
    fn recover_from_overflow(&mut self, out: &mut Vec<Event>) -> Result<(), WatchError> {
        self.stats.overflows.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            "inotify queue overflowed (fs.inotify.max_queued_events); rescanning every watch root"
        );
        self.doubts.clear();
        for root in self.roots.clone() {
            if self.is_lost(root.watch) {
                continue; // watched again, and rescanned, when it is back
            }
            self.add_tree(root.watch, RelPath::ROOT, None, Report::Nothing)?;
            out.push(Event::now(
                EventKind::Rescan,
                RelPath::ROOT,
                true,
                root.watch,
            ));
        }
        Ok(())
    }
}

/// A path for a log line: whole up to 256 bytes, else its start and its length.
fn shortened(rel: &RelPath) -> String {
    const SHOWN: usize = 256;
    let bytes = rel.as_bytes();
    if bytes.len() <= SHOWN {
        return rel.to_string();
    }
    let start = RelPath::new(&bytes[..SHOWN]);
    format!("{start}… ({} bytes)", bytes.len())
}

/// True for a regular file with one link: its writer's close will be reported. Anything
/// else (symlink, hard link, fifo, device, socket) gets no `IN_CLOSE_WRITE`, so its create
/// must be reported at once.
fn will_report_close_write(path: &Path) -> bool {
    match std::fs::symlink_metadata(path) {
        Ok(meta) => meta.file_type().is_file() && meta.nlink() == 1,
        // Gone already: its delete event follows.
        Err(_) => true,
    }
}

/// Waits up to `timeout` for the inotify descriptor to become readable.
pub(super) fn wait_readable(inotify: &Inotify, timeout: Duration) -> bool {
    let mut pfd = libc::pollfd {
        fd: inotify.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: `pfd` is a valid pollfd for the duration of the call and nfds is 1.
    let ready = unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as libc::c_int) };
    ready > 0
}
