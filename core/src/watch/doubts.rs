//! What the reader could not confirm yet, and how it settles it.
//!
//! The reader applies events in the order the kernel queued them, but it looks at the disk
//! *now*, and by now later renames may have moved things on. Two things can then not be
//! done at once:
//! - a directory named by an event cannot be opened (it was renamed, or an ancestor was,
//!   before the reader got to it; or it is gone): [`DoubtKind::Unwatched`];
//! - a directory moved by a rename may not be found where the rename put it (moved on
//!   since, or the table held the wrong descriptor for the old name):
//!   [`DoubtKind::Unconfirmed`].
//!
//! After every read each doubt is looked at again, with the events read meanwhile applied:
//! most settle at once (the place holds a directory, and the table the descriptor of that
//! very directory; or a directory not watched yet is watched there now). A place that holds
//! no directory is left open: a later event says where it went (its rename or delete
//! dismisses the doubt). One that still holds after two reads that emptied the kernel's
//! queue is beyond what the events can explain; then the watch root is walked again, every
//! descriptor put where it really is, and what had to move is rescanned.

use sersync_plugin_sdk::{Event, EventKind, PathFilter, RelPath, WatchId};

use super::reader::Watcher;
use super::scan::{Report, Walked};
use super::sys::Wd;
use super::WatchError;

/// Drained reads a doubt may outlive before the root is walked again.
const DRAINS_BEFORE_REWALK: u8 = 2;

/// A place the reader could not confirm when it handled the event: the directory `name`
/// in `parent`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Doubt {
    /// The directory it was created or moved into.
    pub parent: Wd,
    /// Its name there.
    pub name: Box<[u8]>,
    /// What is unconfirmed about it.
    pub kind: DoubtKind,
}

/// What is unconfirmed about a place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum DoubtKind {
    /// A new directory (created, or moved in unwatched) that could not be opened: once it
    /// is, everything in it is reported.
    Unwatched,
    /// A renamed directory whose descriptor was moved here: once checked, a wrong or
    /// missing descriptor is replaced and the place rescanned.
    Unconfirmed,
}

/// A doubt and how many emptied queues it has outlived.
#[derive(Debug)]
pub(super) struct Pending {
    doubt: Doubt,
    drains: u8,
}

impl Watcher {
    /// Records a doubt to look at after the read.
    pub(super) fn doubt(&mut self, parent: Wd, name: &[u8], kind: DoubtKind) {
        let doubt = Doubt {
            parent,
            name: name.into(),
            kind,
        };
        if !self.doubts.iter().any(|p| p.doubt == doubt) {
            self.doubts.push(Pending { doubt, drains: 0 });
        }
    }

    /// Forgets the doubts about `name` in `parent`: an event (its delete, or its rename
    /// away) said what became of it.
    pub(super) fn dismiss_doubts(&mut self, parent: &Wd, name: &[u8]) {
        self.doubts
            .retain(|p| !(p.doubt.parent == *parent && *p.doubt.name == *name));
    }

    /// Looks at every doubt again. `drained`: the kernel's queue was empty after the read,
    /// so every event older than the look has been applied.
    pub(super) fn settle_doubts(
        &mut self,
        drained: bool,
        out: &mut Vec<Event>,
    ) -> Result<(), WatchError> {
        if self.doubts.is_empty() && !self.tree.has_homeless() {
            self.homeless_drains = 0;
            return Ok(());
        }
        let mut rewalk: Vec<WatchId> = Vec::new();
        for mut pending in std::mem::take(&mut self.doubts) {
            let Some(watch) = self.look(&pending.doubt, out)? else {
                continue;
            };
            if drained {
                pending.drains += 1;
            }
            if pending.drains < DRAINS_BEFORE_REWALK {
                self.doubts.push(pending);
                continue;
            }
            tracing::warn!(
                root = %self.root_path(watch).display(),
                doubt = ?pending.doubt,
                "the kernel's events do not explain where a directory went; walking the watch root again"
            );
            if !rewalk.contains(&watch) {
                rewalk.push(watch);
            }
        }
        // A directory pushed out of its place is either gone (the kernel's IN_IGNORED for it
        // releases it) or somewhere the events have not said: after two emptied queues, the
        // second.
        if self.tree.has_homeless() && drained {
            self.homeless_drains += 1;
        }
        if self.homeless_drains >= DRAINS_BEFORE_REWALK {
            for (wd, watch) in self.tree.homeless() {
                tracing::warn!(
                    root = %self.root_path(watch).display(),
                    ?wd,
                    "a watched directory was pushed out of its place and not found again; walking the watch root again"
                );
                if !rewalk.contains(&watch) {
                    rewalk.push(watch);
                }
            }
        }
        for watch in rewalk {
            self.rewalk(watch, out)?;
        }
        if self.homeless_drains >= DRAINS_BEFORE_REWALK {
            // Not met by the walk: no longer below any root.
            for (wd, _) in self.tree.homeless() {
                self.release(&wd);
            }
            self.homeless_drains = 0;
        }
        Ok(())
    }

    /// Walks the root of `watch` again: every descriptor is put where it really is, what
    /// was missing or misplaced is rescanned, and doubts about that root are settled.
    fn rewalk(&mut self, watch: WatchId, out: &mut Vec<Event>) -> Result<(), WatchError> {
        if self.is_lost(watch) {
            return Ok(()); // nothing to walk until it is back
        }
        self.stats.count_rewalk();
        let tree = &self.tree;
        self.doubts
            .retain(|p| tree.path_of(&p.doubt.parent).map(|(w, _)| w) != Some(watch));
        self.add_tree(watch, RelPath::ROOT, None, Report::Repairs(out))?;
        Ok(())
    }

    /// Looks at one doubt: `None` when it is settled, else the watch it is about.
    fn look(&mut self, doubt: &Doubt, out: &mut Vec<Event>) -> Result<Option<WatchId>, WatchError> {
        let Some((watch, dir)) = self.tree.path_of(&doubt.parent) else {
            return Ok(None); // its parent is gone, and so is it
        };
        let path = dir.join(&doubt.name);
        if self.filter.is_excluded(&path, true) {
            return Ok(None);
        }
        // Renamed on, or gone: the events that say so may still be queued.
        let Some(key) = self.dir_key_at(watch, &path) else {
            return Ok(Some(watch));
        };
        let held = self.tree.child(&doubt.parent, &doubt.name);
        if held.and_then(|wd| self.tree.key(&wd)) == Some(key) {
            return Ok(None);
        }
        let parent = Some(doubt.parent);
        match doubt.kind {
            DoubtKind::Unwatched => {
                let mut found = Vec::new();
                if self.add_tree(watch, path.clone(), parent, Report::Entries(&mut found))?
                    == Walked::Missing
                {
                    return Ok(Some(watch));
                }
                out.push(Event::now(EventKind::Create, path, true, watch));
                out.extend(found);
            }
            DoubtKind::Unconfirmed => {
                tracing::debug!(%path, "renamed directory not where the rename put it; watching what is there");
                if self.add_tree(watch, path, parent, Report::Repairs(out))? == Walked::Missing {
                    return Ok(Some(watch));
                }
            }
        }
        Ok(None)
    }
}
