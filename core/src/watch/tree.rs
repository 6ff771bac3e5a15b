//! Watch bookkeeping: which directory each watch descriptor stands for.
//!
//! Each watched directory is a node that knows its parent, its own name and its identity on
//! disk (device and inode), not its full path. Renaming a directory therefore re-links one
//! node, however large the subtree below it, and a path is computed on demand by walking up
//! to the root.
//!
//! Laid out for a start-up walk of a large tree, which holds one node per directory: the
//! nodes sit in one `Vec` (a slot each, freed slots reused), linked to their parent, first
//! child and siblings by slot number; every name is in one byte arena (compacted when more
//! than half of it is dead); two hash tables of slot numbers find a node by descriptor and
//! a child by (parent, name). That is ~80 bytes per directory, where a hash map node per
//! directory with a boxed name and a child map per parent took ~200. The descriptors
//! themselves are not dense over time (the kernel hands them out cyclically), so they are
//! not used as indices.
//!
//! The table keeps two promises, whatever order the reader applies changes in:
//! - a place (parent, name) holds at most one descriptor, and a descriptor is in at most one
//!   place: what [`WatchTree::place`] and [`WatchTree::relink`] push out of a place becomes
//!   *homeless* (kept, with its subtree, but with no path) until a walk meets it again or
//!   the kernel says it is gone;
//! - every change of a node's place bumps its *generation*, so a decision taken on an older
//!   view of the node (a rename whose second half never came) can tell it is stale.

use std::collections::hash_map::RandomState;
use std::collections::HashSet;
use std::hash::{BuildHasher, Hash};

use hashbrown::HashTable;
use sersync_plugin_sdk::{RelPath, WatchId};

/// The identity of a directory on disk: what a path must lead to for a descriptor's
/// recorded place to be true.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DirKey {
    /// `st_dev`.
    pub dev: u64,
    /// `st_ino`.
    pub ino: u64,
}

impl DirKey {
    /// The identity of what `meta` describes.
    pub fn of(meta: &std::fs::Metadata) -> DirKey {
        use std::os::unix::fs::MetadataExt;
        DirKey {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

/// A slot number in [`WatchTree`]'s node vector.
type Slot = u32;

/// A parent or sibling link to nothing: a watch root's parent, the end of a sibling list.
const NONE: Slot = Slot::MAX;
/// The parent of a node whose parent descriptor was not in the table when it was placed
/// there: it has no path.
const ORPHAN: Slot = Slot::MAX - 1;

/// Where a name lies in the arena.
#[derive(Clone, Copy, Debug)]
struct Name {
    start: u32,
    len: u16,
}

/// One watched directory.
#[derive(Debug)]
struct DirNode<W> {
    wd: W,
    key: DirKey,
    watch: WatchId,
    generation: u32,
    /// The place it has, or last had when it is homeless: [`NONE`] for a watch root.
    parent: Slot,
    name: Name,
    /// In its place: listed among its parent's children and found by (parent, name).
    linked: bool,
    first_child: Slot,
    next_sibling: Slot,
    prev_sibling: Slot,
}

/// Arena bytes that may be dead before it is compacted (and only when more than half is).
const COMPACT_AFTER: usize = 64 * 1024;

/// What [`WatchTree::place`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Placed<W> {
    /// A descriptor not known before.
    New {
        /// The descriptor that held the place before, now forgotten by its parent.
        displaced: Option<W>,
    },
    /// A known descriptor, already in this place (its generation is bumped all the same).
    Unchanged,
    /// A known descriptor, moved here from another place.
    Moved {
        /// The descriptor that held the place before, now forgotten by its parent.
        displaced: Option<W>,
    },
}

/// Maps watch descriptors (`W`) to directories, per watch root.
#[derive(Debug)]
pub struct WatchTree<W> {
    slots: Vec<Option<DirNode<W>>>,
    free: Vec<Slot>,
    len: usize,
    /// Slots by descriptor.
    by_wd: HashTable<Slot>,
    /// Slots of linked nodes by (parent slot, name).
    by_place: HashTable<Slot>,
    names: Vec<u8>,
    dead_name_bytes: usize,
    /// Pushed out of their place by another directory and not found anywhere since: their
    /// subtrees have no path until a walk meets them again.
    homeless: HashSet<Slot>,
    hasher: RandomState,
}

impl<W: Clone + Eq + Hash> Default for WatchTree<W> {
    fn default() -> Self {
        WatchTree {
            slots: Vec::new(),
            free: Vec::new(),
            len: 0,
            by_wd: HashTable::new(),
            by_place: HashTable::new(),
            names: Vec::new(),
            dead_name_bytes: 0,
            homeless: HashSet::new(),
            hasher: RandomState::new(),
        }
    }
}

impl<W: Clone + Eq + Hash> WatchTree<W> {
    /// Number of watched directories.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Records that `wd` watches the directory `key`, found at `name` inside `parent`
    /// (`None`: a watch root, whose name is ignored). The kernel hands out the same
    /// descriptor for the same directory, so a known descriptor is moved to this place.
    pub fn place(
        &mut self,
        wd: W,
        key: DirKey,
        watch: WatchId,
        parent: Option<W>,
        name: &[u8],
    ) -> Placed<W> {
        let parent_slot = parent.as_ref().map_or(NONE, |p| self.slot_or_orphan(p));
        if let Some(slot) = self.slot_of(&wd) {
            let node = self.node_mut(slot);
            node.key = key;
            node.watch = watch;
            // Found again, even in the same place: a rename out of the watch recorded
            // before this must not release it.
            node.generation = node.generation.wrapping_add(1);
            let same_parent = node.parent == parent_slot;
            let homeless = self.homeless.remove(&slot);
            if !homeless && same_parent && (parent.is_none() || self.name(slot) == name) {
                return Placed::Unchanged;
            }
            let displaced = match parent {
                Some(parent) => self.relink(&wd, parent, name),
                None => {
                    self.detach(slot);
                    None
                }
            };
            return Placed::Moved { displaced };
        }
        let name = self.push_name(name);
        let node = DirNode {
            wd: wd.clone(),
            key,
            watch,
            generation: 0,
            parent: parent_slot,
            name,
            linked: false,
            first_child: NONE,
            next_sibling: NONE,
            prev_sibling: NONE,
        };
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = Some(node);
                slot
            }
            None => {
                self.slots.push(Some(node));
                (self.slots.len() - 1) as Slot
            }
        };
        self.len += 1;
        let hash = self.hasher.hash_one(&wd);
        let (slots, hasher) = (&self.slots, &self.hasher);
        self.by_wd.insert_unique(hash, slot, |&s| {
            hasher.hash_one(&slots[s as usize].as_ref().expect("a used slot").wd)
        });
        let displaced = if parent_slot < ORPHAN {
            self.link(slot, parent_slot)
        } else {
            None
        };
        if let Some(d) = displaced {
            self.homeless.insert(d);
        }
        Placed::New {
            displaced: displaced.map(|d| self.node(d).wd.clone()),
        }
    }

    /// The watched child directory `name` of `parent`.
    pub fn child(&self, parent: &W, name: &[u8]) -> Option<W> {
        let parent = self.slot_of(parent)?;
        self.find_child(parent, name)
            .map(|c| self.node(c).wd.clone())
    }

    /// The names and descriptors of the watched children of `wd`.
    pub fn children(&self, wd: &W) -> Vec<(Box<[u8]>, W)> {
        let Some(slot) = self.slot_of(wd) else {
            return Vec::new();
        };
        let mut children = Vec::new();
        let mut child = self.node(slot).first_child;
        while child != NONE {
            let node = self.node(child);
            children.push((self.name(child).into(), node.wd.clone()));
            child = node.next_sibling;
        }
        children
    }

    /// The identity recorded for `wd`.
    pub fn key(&self, wd: &W) -> Option<DirKey> {
        self.slot_of(wd).map(|s| self.node(s).key)
    }

    /// How often `wd` has changed place; `None` when it is not known.
    pub fn generation(&self, wd: &W) -> Option<u32> {
        self.slot_of(wd).map(|s| self.node(s).generation)
    }

    /// The watch and relative path of the directory `wd` stands for; `None` when it is not
    /// known or lies in a homeless subtree.
    pub fn path_of(&self, wd: &W) -> Option<(WatchId, RelPath)> {
        let mut slot = self.slot_of(wd)?;
        let check_homeless = !self.homeless.is_empty();
        if check_homeless && self.homeless.contains(&slot) {
            return None;
        }
        let watch = self.node(slot).watch;
        let mut names: Vec<&[u8]> = Vec::new();
        loop {
            let parent = self.node(slot).parent;
            if parent == NONE {
                break;
            }
            if parent == ORPHAN || (check_homeless && self.homeless.contains(&parent)) {
                return None;
            }
            names.push(self.name(slot));
            slot = parent;
        }
        let mut path = RelPath::ROOT;
        for name in names.iter().rev() {
            path = path.join(name);
        }
        Some((watch, path))
    }

    /// The descriptor of the root of `watch`, when it is watched.
    pub fn root_of(&self, watch: WatchId) -> Option<W> {
        self.used()
            .find(|(slot, node)| {
                node.watch == watch && node.parent == NONE && !self.homeless.contains(slot)
            })
            .map(|(_, node)| node.wd.clone())
    }

    /// Moves `wd` (and everything below it) to `name` inside `new_parent`. Returns the
    /// descriptor that held that place before, now homeless.
    pub fn relink(&mut self, wd: &W, new_parent: W, name: &[u8]) -> Option<W> {
        let slot = self.slot_of(wd)?;
        let parent = self.slot_or_orphan(&new_parent);
        let node = self.node_mut(slot);
        node.generation = node.generation.wrapping_add(1);
        self.homeless.remove(&slot);
        self.unlink(slot);
        self.node_mut(slot).parent = parent;
        self.rename(slot, name);
        if parent == ORPHAN {
            return None;
        }
        let displaced = self.link(slot, parent)?;
        self.homeless.insert(displaced);
        Some(self.node(displaced).wd.clone())
    }

    /// Takes `wd` out of its place, keeping it and its subtree, with no path until it is
    /// placed again; the place it had is remembered (see [`WatchTree::homeless_at`]).
    pub fn make_homeless(&mut self, wd: &W) {
        // The generation stays: pushed out is not found again, and a rename away
        // recorded before may still release it.
        let Some(slot) = self.slot_of(wd) else {
            return;
        };
        self.unlink(slot);
        self.homeless.insert(slot);
    }

    /// The homeless descriptor that was last at `name` in `parent`.
    pub fn homeless_at(&self, parent: &W, name: &[u8]) -> Option<W> {
        let parent = self.slot_of(parent)?;
        self.homeless
            .iter()
            .find(|&&s| self.node(s).parent == parent && self.name(s) == name)
            .map(|&s| self.node(s).wd.clone())
    }

    /// The homeless descriptors and their watches.
    pub fn homeless(&self) -> Vec<(W, WatchId)> {
        self.homeless
            .iter()
            .map(|&s| {
                let node = self.node(s);
                (node.wd.clone(), node.watch)
            })
            .collect()
    }

    /// True when some descriptor is homeless.
    pub fn has_homeless(&self) -> bool {
        !self.homeless.is_empty()
    }

    /// Forgets `wd` and every directory below it; returns their descriptors so the caller
    /// can release the kernel watches.
    pub fn remove_subtree(&mut self, wd: &W) -> Vec<W> {
        let Some(top) = self.slot_of(wd) else {
            return Vec::new();
        };
        self.detach(top);
        let mut removed = Vec::new();
        let mut stack = vec![top];
        while let Some(slot) = stack.pop() {
            loop {
                let child = self.node(slot).first_child;
                if child == NONE {
                    break;
                }
                self.unlink(child);
                stack.push(child);
            }
            removed.push(self.free_slot(slot));
        }
        removed
    }

    /// Every descriptor with its watch, path and identity (for checks of the whole table).
    #[cfg(test)]
    pub fn entries(&self) -> Vec<(W, WatchId, RelPath, DirKey)> {
        self.used()
            .filter_map(|(_, node)| {
                let (watch, path) = self.path_of(&node.wd)?;
                Some((node.wd.clone(), watch, path, node.key))
            })
            .collect()
    }

    fn used(&self) -> impl Iterator<Item = (Slot, &DirNode<W>)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, n)| Some((i as Slot, n.as_ref()?)))
    }

    fn node(&self, slot: Slot) -> &DirNode<W> {
        self.slots[slot as usize].as_ref().expect("a used slot")
    }

    fn node_mut(&mut self, slot: Slot) -> &mut DirNode<W> {
        self.slots[slot as usize].as_mut().expect("a used slot")
    }

    fn name(&self, slot: Slot) -> &[u8] {
        let name = self.node(slot).name;
        &self.names[name.start as usize..name.start as usize + name.len as usize]
    }

    fn slot_of(&self, wd: &W) -> Option<Slot> {
        let hash = self.hasher.hash_one(wd);
        self.by_wd.find(hash, |&s| self.node(s).wd == *wd).copied()
    }

    fn slot_or_orphan(&self, wd: &W) -> Slot {
        self.slot_of(wd).unwrap_or(ORPHAN)
    }

    fn place_hash(&self, parent: Slot, name: &[u8]) -> u64 {
        self.hasher.hash_one((parent, name))
    }

    fn find_child(&self, parent: Slot, name: &[u8]) -> Option<Slot> {
        let hash = self.place_hash(parent, name);
        self.by_place
            .find(hash, |&s| {
                self.node(s).parent == parent && self.name(s) == name
            })
            .copied()
    }

    /// Puts `slot` in its place (its `parent` and `name`), which must be a node's; returns
    /// the slot that held that place before, now out of it.
    fn link(&mut self, slot: Slot, parent: Slot) -> Option<Slot> {
        debug_assert!(!self.node(slot).linked, "linked twice");
        let name = self.name(slot);
        let displaced = self.find_child(parent, name).filter(|&d| d != slot);
        if let Some(d) = displaced {
            self.unlink(d);
        }
        let hash = self.place_hash(parent, self.name(slot));
        let (slots, names, hasher) = (&self.slots, &self.names, &self.hasher);
        self.by_place.insert_unique(hash, slot, |&s| {
            let node = slots[s as usize].as_ref().expect("a used slot");
            let start = node.name.start as usize;
            hasher.hash_one((node.parent, &names[start..start + node.name.len as usize]))
        });
        let first = self.node(parent).first_child;
        if first != NONE {
            self.node_mut(first).prev_sibling = slot;
        }
        self.node_mut(parent).first_child = slot;
        let node = self.node_mut(slot);
        node.next_sibling = first;
        node.prev_sibling = NONE;
        node.linked = true;
        displaced
    }

    /// Takes `slot` out of its place (if it is in one), keeping its parent and name.
    fn unlink(&mut self, slot: Slot) {
        let node = self.node(slot);
        if !node.linked {
            return;
        }
        let (parent, prev, next) = (node.parent, node.prev_sibling, node.next_sibling);
        let hash = self.place_hash(parent, self.name(slot));
        if let Ok(entry) = self.by_place.find_entry(hash, |&s| s == slot) {
            entry.remove();
        }
        if prev == NONE {
            self.node_mut(parent).first_child = next;
        } else {
            self.node_mut(prev).next_sibling = next;
        }
        if next != NONE {
            self.node_mut(next).prev_sibling = prev;
        }
        let node = self.node_mut(slot);
        node.linked = false;
        node.next_sibling = NONE;
        node.prev_sibling = NONE;
    }

    /// Unhooks `slot` from its parent, making it a root of its own.
    fn detach(&mut self, slot: Slot) {
        self.unlink(slot);
        let node = self.node_mut(slot);
        node.generation = node.generation.wrapping_add(1);
        node.parent = NONE;
    }

    /// Forgets the unlinked node at `slot` (its children already taken out); returns its
    /// descriptor.
    fn free_slot(&mut self, slot: Slot) -> W {
        let hash = self.hasher.hash_one(&self.node(slot).wd);
        if let Ok(entry) = self.by_wd.find_entry(hash, |&s| s == slot) {
            entry.remove();
        }
        self.homeless.remove(&slot);
        if !self.homeless.is_empty() {
            // A homeless node last placed below this one must not be taken for a child of
            // whatever gets this slot next.
            let orphans: Vec<Slot> = self
                .homeless
                .iter()
                .copied()
                .filter(|&h| self.node(h).parent == slot)
                .collect();
            for h in orphans {
                self.node_mut(h).parent = ORPHAN;
            }
        }
        let node = self.slots[slot as usize].take().expect("a used slot");
        self.dead_name_bytes += node.name.len as usize;
        self.free.push(slot);
        self.len -= 1;
        self.compact_names();
        node.wd
    }

    fn push_name(&mut self, name: &[u8]) -> Name {
        let start = self.names.len();
        self.names.extend_from_slice(name);
        Name {
            start: u32::try_from(start).expect("names arena below 4 GiB"),
            len: u16::try_from(name.len()).expect("a file name is at most 255 bytes"),
        }
    }

    /// Gives the unlinked `slot` the name `name` (kept when it has it already).
    fn rename(&mut self, slot: Slot, name: &[u8]) {
        if self.name(slot) == name {
            return;
        }
        let old = self.node(slot).name;
        self.dead_name_bytes += old.len as usize;
        let new = self.push_name(name);
        self.node_mut(slot).name = new;
        self.compact_names();
    }

    /// Rewrites the arena with only the live names once most of it is dead.
    fn compact_names(&mut self) {
        if self.dead_name_bytes < COMPACT_AFTER || self.dead_name_bytes * 2 < self.names.len() {
            return;
        }
        let mut names = Vec::with_capacity(self.names.len() - self.dead_name_bytes);
        for node in self.slots.iter_mut().flatten() {
            let start = node.name.start as usize;
            let bytes = &self.names[start..start + node.name.len as usize];
            node.name.start = names.len() as u32;
            names.extend_from_slice(bytes);
        }
        self.names = names;
        self.dead_name_bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(ino: u64) -> DirKey {
        DirKey { dev: 1, ino }
    }

    fn tree() -> WatchTree<u32> {
        let mut t = WatchTree::default();
        t.place(1, key(1), WatchId(0), None, b"");
        t.place(2, key(2), WatchId(0), Some(1), b"a");
        t.place(3, key(3), WatchId(0), Some(2), b"b");
        t.place(4, key(4), WatchId(0), Some(3), b"c\n");
        t
    }

    #[test]
    fn paths_are_computed_from_parents() {
        let t = tree();
        assert_eq!(t.path_of(&1), Some((WatchId(0), RelPath::ROOT)));
        assert_eq!(
            t.path_of(&4),
            Some((WatchId(0), RelPath::new(&b"a/b/c\n"[..])))
        );
    }

    #[test]
    fn rename_moves_the_whole_subtree() {
        let mut t = tree();
        assert_eq!(t.relink(&2, 1, b"z"), None);
        assert_eq!(t.path_of(&4).unwrap().1, RelPath::new(&b"z/b/c\n"[..]));
        assert_eq!(t.child(&1, b"z"), Some(2));
        assert_eq!(t.child(&1, b"a"), None);
    }

    #[test]
    fn remove_subtree_forgets_descendants() {
        let mut t = tree();
        let mut removed = t.remove_subtree(&2);
        removed.sort();
        assert_eq!(removed, vec![2, 3, 4]);
        assert_eq!(t.len(), 1);
        assert_eq!(t.child(&1, b"a"), None);
    }

    #[test]
    fn a_place_holds_one_descriptor_and_hands_back_the_one_it_displaces() {
        let mut t = tree();
        // Another directory now found at a/b: the old one is displaced.
        assert_eq!(
            t.place(9, key(9), WatchId(0), Some(2), b"b"),
            Placed::New { displaced: Some(3) }
        );
        assert_eq!(t.child(&2, b"b"), Some(9));
        // The displaced directory keeps its subtree, but has no path until placed again.
        assert_eq!(t.path_of(&3), None);
        assert_eq!(t.path_of(&4), None);
        assert_eq!(t.homeless(), vec![(3, WatchId(0))]);
        assert_eq!(
            t.homeless_at(&2, b"b"),
            Some(3),
            "its last place is remembered"
        );
        assert_eq!(
            t.place(3, key(3), WatchId(0), Some(1), b"back"),
            Placed::Moved { displaced: None }
        );
        assert_eq!(t.path_of(&4).unwrap().1, RelPath::new(&b"back/c\n"[..]));
        assert!(t.homeless().is_empty());
        // A rename onto a name another directory holds displaces it too.
        assert_eq!(t.relink(&4, 2, b"b"), Some(9));
        assert_eq!(t.path_of(&4).unwrap().1, RelPath::new(&b"a/b"[..]));
        assert_eq!(t.path_of(&9), None);
    }

    #[test]
    fn freed_slots_are_reused_and_renames_past_the_arenas_compaction_keep_every_path() {
        let mut t = tree();
        // 2,000 subdirectories of a/b, each renamed 40 times (long names, so that the
        // arena is compacted several times), then half of them removed and made anew.
        let long = |i: u32, round: u32| format!("{round:03}-{i:05}-{}", "n".repeat(40));
        for i in 0..2_000u32 {
            t.place(
                100 + i,
                key(100 + u64::from(i)),
                WatchId(0),
                Some(3),
                long(i, 0).as_bytes(),
            );
        }
        for round in 1..40 {
            for i in 0..2_000u32 {
                t.relink(&(100 + i), 3, long(i, round).as_bytes());
            }
        }
        assert!(t.names.len() < 2 * 2_000 * long(0, 0).len() + COMPACT_AFTER * 2);
        for i in (0..2_000u32).step_by(2) {
            assert_eq!(t.remove_subtree(&(100 + i)), vec![100 + i]);
        }
        let slots = t.slots.len();
        for i in (0..2_000u32).step_by(2) {
            t.place(
                10_000 + i,
                key(10_000 + u64::from(i)),
                WatchId(0),
                Some(2),
                b"x",
            );
            t.remove_subtree(&(10_000 + i));
            t.place(
                20_000 + i,
                key(20_000 + u64::from(i)),
                WatchId(0),
                Some(2),
                long(i, 99).as_bytes(),
            );
        }
        assert_eq!(t.slots.len(), slots, "freed slots were not reused");
        for i in 0..2_000u32 {
            let (wd, name, parent) = if i % 2 == 0 {
                (20_000 + i, long(i, 99), "a")
            } else {
                (100 + i, long(i, 39), "a/b")
            };
            let path = format!("{parent}/{name}");
            assert_eq!(t.path_of(&wd).unwrap().1, RelPath::new(path.as_bytes()));
            assert_eq!(
                t.child(&if i % 2 == 0 { 2 } else { 3 }, name.as_bytes()),
                Some(wd)
            );
        }
        assert_eq!(t.len(), 4 + 2_000);
        assert_eq!(t.children(&3).len(), 1_000 + 1);
    }

    #[test]
    fn a_homeless_directory_whose_old_parent_is_removed_is_not_found_below_its_successor() {
        let mut t = tree();
        // 9 takes 3's place; 3 is homeless, last at a/b.
        t.place(9, key(9), WatchId(0), Some(2), b"b");
        t.remove_subtree(&2);
        // A new directory gets 2's slot: 3 was not at b inside it.
        t.place(7, key(7), WatchId(0), Some(1), b"a");
        assert_eq!(t.homeless_at(&7, b"b"), None);
        assert_eq!(t.homeless(), vec![(3, WatchId(0))]);
        assert_eq!(t.path_of(&4), None);
    }

    #[test]
    fn placing_a_known_descriptor_elsewhere_moves_it_and_bumps_its_generation() {
        let mut t = tree();
        let before = t.generation(&3).unwrap();
        assert_eq!(
            t.place(3, key(3), WatchId(0), Some(1), b"b2"),
            Placed::Moved { displaced: None }
        );
        assert_eq!(t.path_of(&4).unwrap().1, RelPath::new(&b"b2/c\n"[..]));
        assert_eq!(t.child(&2, b"b"), None);
        assert_ne!(t.generation(&3).unwrap(), before);
        let moved = t.generation(&3).unwrap();
        assert_eq!(
            t.place(3, key(3), WatchId(0), Some(1), b"b2"),
            Placed::Unchanged
        );
        assert_ne!(
            t.generation(&3).unwrap(),
            moved,
            "found again: a newer view"
        );
    }
}
