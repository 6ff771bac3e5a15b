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
//! than half of it is dead); the watch root and device a node belongs to are one index into
//! a small table of the (watch, device) pairs met; two hash tables of slot numbers find a
//! node by descriptor and a child by (parent, name). A node is 40 bytes with the kernel's
//! descriptor number (~55 bytes per directory with the hash tables and names), where a hash
//! map node per directory with a boxed name and a child map per parent took ~200. The
//! descriptors themselves are not dense over time (the kernel hands them out cyclically),
//! so they are not used as indices.
//!
//! The table keeps two promises, whatever order the reader applies changes in:
//! - a place (parent, name) holds at most one descriptor, and a descriptor is in at most one
//!   place: what [`WatchTree::place`] and [`WatchTree::relink`] push out of a place becomes
//!   *homeless* (kept, with its subtree, but with no path) until a walk meets it again or
//!   the kernel says it is gone;
//! - every change of a node's place bumps its *generation*, so a decision taken on an older
//!   view of the node (a rename whose second half never came) can tell it is stale.
//!   The generation is 16 bits: it is compared only within one turn of the reader (a
//!   rename's first half against what became of the node by the end of that turn's reads,
//!   at most two buffers of ~16,000 events each), so a stale view taken for a fresh one
//!   would need exactly 65,536 moves of that one directory in between.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher};

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
/// The parent of a free slot.
const FREE: Slot = Slot::MAX - 2;
/// The previous sibling of a linked node that is its parent's first child (an unlinked
/// node's is [`NONE`]).
const HEAD: Slot = Slot::MAX - 3;

/// One watched directory: 40 bytes with a 4-byte descriptor.
#[derive(Debug)]
struct DirNode<W> {
    wd: W,
    /// `st_ino`, in two halves so that the node needs no 8-byte alignment.
    ino: [u32; 2],
    /// Its (watch, device) in [`WatchTree::realms`].
    realm: u16,
    name_len: u16,
    name_start: u32,
    generation: u16,
    /// The place it has, or last had when it is homeless: [`NONE`] for a watch root,
    /// [`FREE`] for a free slot.
    parent: Slot,
    first_child: Slot,
    next_sibling: Slot,
    /// [`HEAD`] for a first child; [`NONE`] when it is not in its place (not listed among
    /// its parent's children nor found by (parent, name)).
    prev_sibling: Slot,
}

const _: () = assert!(std::mem::size_of::<DirNode<i32>>() == 40);

impl<W> DirNode<W> {
    fn linked(&self) -> bool {
        self.prev_sibling != NONE
    }
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

/// Hashes a descriptor the kernel handed out (not a value anyone writing into the tree
/// chooses): a multiplication, where the (parent, name) table keeps a keyed hash.
#[derive(Default)]
struct DescriptorHasher(u64);

impl Hasher for DescriptorHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    fn write_i32(&mut self, n: i32) {
        self.write_u64(u64::from(n as u32));
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// Maps watch descriptors (`W`) to directories, per watch root.
#[derive(Debug)]
pub struct WatchTree<W> {
    slots: Vec<DirNode<W>>,
    free: Vec<Slot>,
    len: usize,
    /// Slots by descriptor.
    by_wd: HashTable<Slot>,
    /// Slots of linked nodes by (parent slot, name).
    by_place: HashTable<Slot>,
    names: Vec<u8>,
    dead_name_bytes: usize,
    /// Every (watch, device) a node has had, by index; never shrinks (a tree spans few).
    realms: Vec<(WatchId, u64)>,
    realm_index: HashMap<(WatchId, u64), u16>,
    /// Pushed out of their place by another directory and not found anywhere since: their
    /// subtrees have no path until a walk meets them again.
    homeless: HashSet<Slot>,
    wd_hasher: BuildHasherDefault<DescriptorHasher>,
    place_hasher: RandomState,
}

impl<W: Copy + Eq + Hash> Default for WatchTree<W> {
    fn default() -> Self {
        WatchTree {
            slots: Vec::new(),
            free: Vec::new(),
            len: 0,
            by_wd: HashTable::new(),
            by_place: HashTable::new(),
            names: Vec::new(),
            dead_name_bytes: 0,
            realms: Vec::new(),
            realm_index: HashMap::new(),
            homeless: HashSet::new(),
            wd_hasher: BuildHasherDefault::default(),
            place_hasher: RandomState::new(),
        }
    }
}

impl<W: Copy + Eq + Hash> WatchTree<W> {
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
        let realm = self.realm(watch, key.dev);
        if let Some(slot) = self.slot_of(&wd) {
            let node = self.node_mut(slot);
            node.ino = split(key.ino);
            node.realm = realm;
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
        let (name_start, name_len) = self.push_name(name);
        let node = DirNode {
            wd,
            ino: split(key.ino),
            realm,
            name_len,
            name_start,
            generation: 0,
            parent: parent_slot,
            first_child: NONE,
            next_sibling: NONE,
            prev_sibling: NONE,
        };
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = node;
                slot
            }
            None => {
                let slot = Slot::try_from(self.slots.len())
                    .ok()
                    .filter(|&s| s < HEAD)
                    .expect("fewer than 4 billion directories");
                self.slots.push(node);
                slot
            }
        };
        self.len += 1;
        let hash = self.wd_hasher.hash_one(wd);
        let (slots, hasher) = (&self.slots, &self.wd_hasher);
        self.by_wd
            .insert_unique(hash, slot, |&s| hasher.hash_one(slots[s as usize].wd));
        let displaced = if parent_slot < ORPHAN {
            self.link(slot, parent_slot)
        } else {
            None
        };
        if let Some(d) = displaced {
            self.homeless.insert(d);
        }
        Placed::New {
            displaced: displaced.map(|d| self.node(d).wd),
        }
    }

    /// The watched child directory `name` of `parent`.
    pub fn child(&self, parent: &W, name: &[u8]) -> Option<W> {
        let parent = self.slot_of(parent)?;
        self.find_child(parent, name).map(|c| self.node(c).wd)
    }

    /// True when some watched directory is in its place inside `wd`.
    pub fn has_children(&self, wd: &W) -> bool {
        self.slot_of(wd)
            .is_some_and(|s| self.node(s).first_child != NONE)
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
            children.push((self.name(child).into(), node.wd));
            child = node.next_sibling;
        }
        children
    }

    /// The identity recorded for `wd`.
    pub fn key(&self, wd: &W) -> Option<DirKey> {
        self.slot_of(wd).map(|s| self.key_of(s))
    }

    /// How often `wd` has changed place (modulo 2^16); `None` when it is not known.
    pub fn generation(&self, wd: &W) -> Option<u16> {
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
        let watch = self.watch_of(slot);
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
            .find(|&(slot, node)| {
                node.parent == NONE
                    && self.watch_of(slot) == watch
                    && !self.homeless.contains(&slot)
            })
            .map(|(_, node)| node.wd)
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
        Some(self.node(displaced).wd)
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
            .map(|&s| self.node(s).wd)
    }

    /// The homeless descriptors and their watches.
    pub fn homeless(&self) -> Vec<(W, WatchId)> {
        self.homeless
            .iter()
            .map(|&s| (self.node(s).wd, self.watch_of(s)))
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
            .filter_map(|(slot, node)| {
                let (watch, path) = self.path_of(&node.wd)?;
                Some((node.wd, watch, path, self.key_of(slot)))
            })
            .collect()
    }

    fn used(&self) -> impl Iterator<Item = (Slot, &DirNode<W>)> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, n)| n.parent != FREE)
            .map(|(i, n)| (i as Slot, n))
    }

    fn node(&self, slot: Slot) -> &DirNode<W> {
        let node = &self.slots[slot as usize];
        debug_assert!(node.parent != FREE, "a used slot");
        node
    }

    fn node_mut(&mut self, slot: Slot) -> &mut DirNode<W> {
        let node = &mut self.slots[slot as usize];
        debug_assert!(node.parent != FREE, "a used slot");
        node
    }

    fn name(&self, slot: Slot) -> &[u8] {
        let node = self.node(slot);
        let start = node.name_start as usize;
        &self.names[start..start + node.name_len as usize]
    }

    fn key_of(&self, slot: Slot) -> DirKey {
        let node = self.node(slot);
        DirKey {
            dev: self.realms[node.realm as usize].1,
            ino: u64::from(node.ino[0]) | u64::from(node.ino[1]) << 32,
        }
    }

    fn watch_of(&self, slot: Slot) -> WatchId {
        self.realms[self.node(slot).realm as usize].0
    }

    /// The index of (`watch`, `dev`), added when new.
    fn realm(&mut self, watch: WatchId, dev: u64) -> u16 {
        if let Some(&i) = self.realm_index.get(&(watch, dev)) {
            return i;
        }
        let i = u16::try_from(self.realms.len())
            .expect("fewer than 65,536 (watch root, file system) pairs");
        self.realms.push((watch, dev));
        self.realm_index.insert((watch, dev), i);
        i
    }

    fn slot_of(&self, wd: &W) -> Option<Slot> {
        let hash = self.wd_hasher.hash_one(wd);
        self.by_wd
            .find(hash, |&s| self.slots[s as usize].wd == *wd)
            .copied()
    }

    fn slot_or_orphan(&self, wd: &W) -> Slot {
        self.slot_of(wd).unwrap_or(ORPHAN)
    }

    fn place_hash(&self, parent: Slot, name: &[u8]) -> u64 {
        self.place_hasher.hash_one((parent, name))
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
        debug_assert!(!self.node(slot).linked(), "linked twice");
        let name = self.name(slot);
        let displaced = self.find_child(parent, name).filter(|&d| d != slot);
        if let Some(d) = displaced {
            self.unlink(d);
        }
        let hash = self.place_hash(parent, self.name(slot));
        let (slots, names, hasher) = (&self.slots, &self.names, &self.place_hasher);
        self.by_place.insert_unique(hash, slot, |&s| {
            let node = &slots[s as usize];
            let start = node.name_start as usize;
            hasher.hash_one((node.parent, &names[start..start + node.name_len as usize]))
        });
        let first = self.node(parent).first_child;
        if first != NONE {
            self.node_mut(first).prev_sibling = slot;
        }
        self.node_mut(parent).first_child = slot;
        let node = self.node_mut(slot);
        node.next_sibling = first;
        node.prev_sibling = HEAD;
        displaced
    }

    /// Takes `slot` out of its place (if it is in one), keeping its parent and name.
    fn unlink(&mut self, slot: Slot) {
        let node = self.node(slot);
        if !node.linked() {
            return;
        }
        let (parent, prev, next) = (node.parent, node.prev_sibling, node.next_sibling);
        let hash = self.place_hash(parent, self.name(slot));
        if let Ok(entry) = self.by_place.find_entry(hash, |&s| s == slot) {
            entry.remove();
        }
        if prev == HEAD {
            self.node_mut(parent).first_child = next;
        } else {
            self.node_mut(prev).next_sibling = next;
        }
        if next != NONE {
            self.node_mut(next).prev_sibling = prev;
        }
        let node = self.node_mut(slot);
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
        let hash = self.wd_hasher.hash_one(self.node(slot).wd);
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
        let node = &mut self.slots[slot as usize];
        node.parent = FREE;
        let (wd, name_len) = (node.wd, node.name_len);
        self.dead_name_bytes += name_len as usize;
        self.free.push(slot);
        self.len -= 1;
        self.compact_names();
        wd
    }

    fn push_name(&mut self, name: &[u8]) -> (u32, u16) {
        let start = self.names.len();
        self.names.extend_from_slice(name);
        (
            u32::try_from(start).expect("names arena below 4 GiB"),
            u16::try_from(name.len()).expect("a file name is shorter than 64 KiB"),
        )
    }

    /// Gives the unlinked `slot` the name `name` (kept when it has it already).
    fn rename(&mut self, slot: Slot, name: &[u8]) {
        if self.name(slot) == name {
            return;
        }
        self.dead_name_bytes += self.node(slot).name_len as usize;
        let (start, len) = self.push_name(name);
        let node = self.node_mut(slot);
        node.name_start = start;
        node.name_len = len;
        self.compact_names();
    }

    /// Rewrites the arena with only the live names once most of it is dead.
    fn compact_names(&mut self) {
        if self.dead_name_bytes < COMPACT_AFTER || self.dead_name_bytes * 2 < self.names.len() {
            return;
        }
        let mut names = Vec::with_capacity(self.names.len() - self.dead_name_bytes);
        for node in self.slots.iter_mut().filter(|n| n.parent != FREE) {
            let start = node.name_start as usize;
            let bytes = &self.names[start..start + node.name_len as usize];
            node.name_start = names.len() as u32;
            names.extend_from_slice(bytes);
        }
        self.names = names;
        self.dead_name_bytes = 0;
    }
}

/// `ino` in two halves, low first.
fn split(ino: u64) -> [u32; 2] {
    [ino as u32, (ino >> 32) as u32]
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
