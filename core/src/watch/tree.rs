//! Watch bookkeeping: which directory each watch descriptor stands for.
//!
//! Each watched directory is a node that knows its parent, its own name and its identity on
//! disk (device and inode), not its full path. Renaming a directory therefore re-links one
//! node, however large the subtree below it, and a path is computed on demand by walking up
//! to the root.
//!
//! The table keeps two promises, whatever order the reader applies changes in:
//! - a place (parent, name) holds at most one descriptor, and a descriptor is in at most one
//!   place: what [`WatchTree::place`] and [`WatchTree::relink`] push out of a place becomes
//!   *homeless* (kept, with its subtree, but with no path) until a walk meets it again or
//!   the kernel says it is gone;
//! - every change of a node's place bumps its *generation*, so a decision taken on an older
//!   view of the node (a rename whose second half never came) can tell it is stale.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;

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

/// One watched directory. Kept small, since the start-up walk of a large tree holds one per
/// directory and the table of them doubles as it grows (old and new tables coexist for a
/// moment): most directories have no watched subdirectory, so their child map is not even
/// allocated.
#[derive(Debug)]
struct DirNode<W> {
    watch: WatchId,
    parent: Option<W>,
    name: Box<[u8]>,
    key: DirKey,
    generation: u32,
    /// Boxed on purpose: 8 bytes in every node instead of the 48 of an inline `HashMap`.
    #[allow(clippy::box_collection)]
    children: Option<Box<HashMap<Box<[u8]>, W>>>,
}

impl<W: Clone + Eq + Hash> DirNode<W> {
    fn child(&self, name: &[u8]) -> Option<&W> {
        self.children.as_ref()?.get(name)
    }

    /// Records `wd` as the child `name`; returns the descriptor that held the name before.
    fn add_child(&mut self, name: &[u8], wd: W) -> Option<W> {
        let previous = self
            .children
            .get_or_insert_with(Default::default)
            .insert(name.into(), wd.clone());
        previous.filter(|p| *p != wd)
    }

    /// Forgets the child `name` if it is still `wd` (a newer directory may have taken the name).
    fn remove_child(&mut self, name: &[u8], wd: &W) {
        if let Some(children) = self.children.as_mut() {
            if children.get(name) == Some(wd) {
                children.remove(name);
            }
        }
    }
}

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
    nodes: HashMap<W, DirNode<W>>,
    /// Pushed out of their place by another directory and not found anywhere since: their
    /// subtrees have no path until a walk meets them again.
    homeless: HashSet<W>,
}

impl<W: Clone + Eq + Hash> Default for WatchTree<W> {
    fn default() -> Self {
        WatchTree {
            nodes: HashMap::new(),
            homeless: HashSet::new(),
        }
    }
}

impl<W: Clone + Eq + Hash> WatchTree<W> {
    /// Number of watched directories.
    pub fn len(&self) -> usize {
        self.nodes.len()
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
        if let Some(node) = self.nodes.get_mut(&wd) {
            node.key = key;
            node.watch = watch;
            // Found again, even in the same place: a rename out of the watch recorded
            // before this must not release it.
            node.generation = node.generation.wrapping_add(1);
            let homeless = self.homeless.remove(&wd);
            if !homeless && node.parent == parent && (parent.is_none() || *node.name == *name) {
                return Placed::Unchanged;
            }
            let displaced = match parent {
                Some(parent) => self.relink(&wd, parent, name),
                None => {
                    self.detach(&wd);
                    None
                }
            };
            return Placed::Moved { displaced };
        }
        let displaced = parent
            .as_ref()
            .and_then(|p| self.nodes.get_mut(p))
            .and_then(|p| p.add_child(name, wd.clone()));
        if let Some(d) = &displaced {
            self.make_homeless(d);
        }
        self.nodes.insert(
            wd,
            DirNode {
                watch,
                parent,
                name: name.into(),
                key,
                generation: 0,
                children: None,
            },
        );
        Placed::New { displaced }
    }

    /// The watched child directory `name` of `parent`.
    pub fn child(&self, parent: &W, name: &[u8]) -> Option<W> {
        self.nodes.get(parent)?.child(name).cloned()
    }

    /// The names and descriptors of the watched children of `wd`.
    pub fn children(&self, wd: &W) -> Vec<(Box<[u8]>, W)> {
        self.nodes
            .get(wd)
            .and_then(|n| n.children.as_ref())
            .map(|c| c.iter().map(|(n, w)| (n.clone(), w.clone())).collect())
            .unwrap_or_default()
    }

    /// The identity recorded for `wd`.
    pub fn key(&self, wd: &W) -> Option<DirKey> {
        self.nodes.get(wd).map(|n| n.key)
    }

    /// How often `wd` has changed place; `None` when it is not known.
    pub fn generation(&self, wd: &W) -> Option<u32> {
        self.nodes.get(wd).map(|n| n.generation)
    }

    /// The watch and relative path of the directory `wd` stands for; `None` when it is not
    /// known or lies in a homeless subtree.
    pub fn path_of(&self, wd: &W) -> Option<(WatchId, RelPath)> {
        let mut node = self.nodes.get(wd)?;
        let check_homeless = !self.homeless.is_empty();
        if check_homeless && self.homeless.contains(wd) {
            return None;
        }
        let watch = node.watch;
        let mut names: Vec<&[u8]> = Vec::new();
        while let Some(parent) = &node.parent {
            if check_homeless && self.homeless.contains(parent) {
                return None;
            }
            names.push(&node.name);
            node = self.nodes.get(parent)?;
        }
        let mut path = RelPath::ROOT;
        for name in names.iter().rev() {
            path = path.join(name);
        }
        Some((watch, path))
    }

    /// The descriptor of the root of `watch`, when it is watched.
    pub fn root_of(&self, watch: WatchId) -> Option<W> {
        self.nodes
            .iter()
            .find(|(wd, node)| {
                node.watch == watch && node.parent.is_none() && !self.homeless.contains(*wd)
            })
            .map(|(wd, _)| wd.clone())
    }

    /// Moves `wd` (and everything below it) to `name` inside `new_parent`. Returns the
    /// descriptor that held that place before, now homeless.
    pub fn relink(&mut self, wd: &W, new_parent: W, name: &[u8]) -> Option<W> {
        let node = self.nodes.get_mut(wd)?;
        node.generation = node.generation.wrapping_add(1);
        self.homeless.remove(wd);
        let old_parent = node.parent.replace(new_parent.clone());
        let old_name = std::mem::replace(&mut node.name, name.into());
        if let Some(p) = old_parent.and_then(|p| self.nodes.get_mut(&p)) {
            p.remove_child(&old_name, wd);
        }
        let displaced = self
            .nodes
            .get_mut(&new_parent)
            .and_then(|p| p.add_child(name, wd.clone()));
        if let Some(d) = &displaced {
            self.make_homeless(d);
        }
        displaced
    }

    /// Takes `wd` out of its place, keeping it and its subtree, with no path until it is
    /// placed again; the place it had is remembered (see [`WatchTree::homeless_at`]).
    pub fn make_homeless(&mut self, wd: &W) {
        // The generation stays: pushed out is not found again, and a rename away
        // recorded before may still release it.
        let Some(node) = self.nodes.get(wd) else {
            return;
        };
        let (parent, name) = (node.parent.clone(), node.name.clone());
        if let Some(p) = parent.and_then(|p| self.nodes.get_mut(&p)) {
            p.remove_child(&name, wd);
        }
        self.homeless.insert(wd.clone());
    }

    /// The homeless descriptor that was last at `name` in `parent`.
    pub fn homeless_at(&self, parent: &W, name: &[u8]) -> Option<W> {
        self.homeless
            .iter()
            .find(|wd| {
                self.nodes
                    .get(*wd)
                    .is_some_and(|n| n.parent.as_ref() == Some(parent) && *n.name == *name)
            })
            .cloned()
    }

    /// The homeless descriptors and their watches.
    pub fn homeless(&self) -> Vec<(W, WatchId)> {
        self.homeless
            .iter()
            .filter_map(|wd| Some((wd.clone(), self.nodes.get(wd)?.watch)))
            .collect()
    }

    /// True when some descriptor is homeless.
    pub fn has_homeless(&self) -> bool {
        !self.homeless.is_empty()
    }

    /// Unhooks `wd` from its parent, making it a root of its own.
    fn detach(&mut self, wd: &W) {
        let Some(node) = self.nodes.get_mut(wd) else {
            return;
        };
        node.generation = node.generation.wrapping_add(1);
        let name = node.name.clone();
        if let Some(parent) = node.parent.take() {
            if let Some(p) = self.nodes.get_mut(&parent) {
                p.remove_child(&name, wd);
            }
        }
    }

    /// Forgets `wd` and every directory below it; returns their descriptors so the caller
    /// can release the kernel watches.
    pub fn remove_subtree(&mut self, wd: &W) -> Vec<W> {
        self.detach(wd);
        let mut removed = Vec::new();
        let mut stack = vec![wd.clone()];
        while let Some(w) = stack.pop() {
            if let Some(node) = self.nodes.remove(&w) {
                self.homeless.remove(&w);
                stack.extend(node.children.into_iter().flat_map(|c| c.into_values()));
                removed.push(w);
            }
        }
        removed
    }

    /// Every descriptor with its watch, path and identity (for checks of the whole table).
    #[cfg(test)]
    pub fn entries(&self) -> Vec<(W, WatchId, RelPath, DirKey)> {
        self.nodes
            .iter()
            .filter_map(|(wd, node)| {
                let (watch, path) = self.path_of(wd)?;
                Some((wd.clone(), watch, path, node.key))
            })
            .collect()
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
