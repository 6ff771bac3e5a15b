//! Watch bookkeeping: which directory each watch descriptor stands for.
//!
//! Each watched directory is a node that knows its parent and its own name, not its full
//! path. Renaming a directory therefore re-links one node, however large the subtree below
//! it, and a path is computed on demand by walking up to the root.

use std::collections::HashMap;
use std::hash::Hash;

use sersync_plugin_sdk::{RelPath, WatchId};

/// One watched directory. Kept small, since the start-up walk of a large tree holds one per
/// directory and the table of them doubles as it grows (old and new tables coexist for a
/// moment): most directories have no watched subdirectory, so their child map is not even
/// allocated.
#[derive(Debug)]
struct DirNode<W> {
    watch: WatchId,
    parent: Option<W>,
    name: Box<[u8]>,
    /// Boxed on purpose: 8 bytes in every node instead of the 48 of an inline `HashMap`.
    #[allow(clippy::box_collection)]
    children: Option<Box<HashMap<Box<[u8]>, W>>>,
}

impl<W: Clone + Eq + Hash> DirNode<W> {
    fn child(&self, name: &[u8]) -> Option<&W> {
        self.children.as_ref()?.get(name)
    }

    fn add_child(&mut self, name: &[u8], wd: W) {
        self.children
            .get_or_insert_with(Default::default)
            .insert(name.into(), wd);
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

/// Maps watch descriptors (`W`) to directories, per watch root.
#[derive(Debug)]
pub struct WatchTree<W> {
    nodes: HashMap<W, DirNode<W>>,
}

impl<W: Clone + Eq + Hash> Default for WatchTree<W> {
    fn default() -> Self {
        WatchTree {
            nodes: HashMap::new(),
        }
    }
}

impl<W: Clone + Eq + Hash> WatchTree<W> {
    /// Number of watched directories.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True when nothing is watched.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// True when `wd` is known.
    pub fn contains(&self, wd: &W) -> bool {
        self.nodes.contains_key(wd)
    }

    /// Records `wd` as the directory `name` inside `parent` (`None`: a watch root, whose name
    /// is ignored). A descriptor already known is re-linked there (the kernel hands out the
    /// same descriptor for the same directory).
    pub fn insert(&mut self, wd: W, watch: WatchId, parent: Option<W>, name: &[u8]) {
        if self.nodes.contains_key(&wd) {
            if let Some(parent) = parent {
                self.relink(&wd, parent, name);
            }
            return;
        }
        if let Some(p) = parent.as_ref().and_then(|p| self.nodes.get_mut(p)) {
            p.add_child(name, wd.clone());
        }
        self.nodes.insert(
            wd,
            DirNode {
                watch,
                parent,
                name: name.into(),
                children: None,
            },
        );
    }

    /// The watched child directory `name` of `parent`.
    pub fn child(&self, parent: &W, name: &[u8]) -> Option<W> {
        self.nodes.get(parent)?.child(name).cloned()
    }

    /// The watch and relative path of the directory `wd` stands for.
    pub fn path_of(&self, wd: &W) -> Option<(WatchId, RelPath)> {
        let mut node = self.nodes.get(wd)?;
        let watch = node.watch;
        let mut names: Vec<&[u8]> = Vec::new();
        while let Some(parent) = &node.parent {
            names.push(&node.name);
            node = self.nodes.get(parent)?;
        }
        let mut path = RelPath::ROOT;
        for name in names.iter().rev() {
            path = path.join(name);
        }
        Some((watch, path))
    }

    /// Moves `wd` (and everything below it) to `name` inside `new_parent`.
    pub fn relink(&mut self, wd: &W, new_parent: W, name: &[u8]) {
        let Some(node) = self.nodes.get_mut(wd) else {
            return;
        };
        let old_parent = node.parent.replace(new_parent.clone());
        let old_name = std::mem::replace(&mut node.name, name.into());
        if let Some(p) = old_parent.and_then(|p| self.nodes.get_mut(&p)) {
            p.remove_child(&old_name, wd);
        }
        if let Some(p) = self.nodes.get_mut(&new_parent) {
            p.add_child(name, wd.clone());
        }
    }

    /// Forgets `wd` and every directory below it; returns their descriptors so the caller
    /// can release the kernel watches.
    pub fn remove_subtree(&mut self, wd: &W) -> Vec<W> {
        if let Some(parent) = self.nodes.get(wd).and_then(|n| n.parent.clone()) {
            let name = self.nodes[wd].name.clone();
            if let Some(p) = self.nodes.get_mut(&parent) {
                p.remove_child(&name, wd);
            }
        }
        let mut removed = Vec::new();
        let mut stack = vec![wd.clone()];
        while let Some(w) = stack.pop() {
            if let Some(node) = self.nodes.remove(&w) {
                stack.extend(node.children.into_iter().flat_map(|c| c.into_values()));
                removed.push(w);
            }
        }
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> WatchTree<u32> {
        let mut t = WatchTree::default();
        t.insert(1, WatchId(0), None, b"");
        t.insert(2, WatchId(0), Some(1), b"a");
        t.insert(3, WatchId(0), Some(2), b"b");
        t.insert(4, WatchId(0), Some(3), b"c\n");
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
        t.relink(&2, 1, b"z");
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
}
