//! The table of watch roots: each [`Root`] found by its [`WatchId`], which is its place in
//! the table, so that no caller indexes a list with an id.

use std::path::{Path, PathBuf};

use sersync_plugin_sdk::WatchId;

use super::Root;

/// Every watch root of a configuration, `WatchId(i)` at place `i`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Roots(Vec<Root>);

impl Roots {
    /// No roots yet.
    pub fn new() -> Roots {
        Roots::default()
    }

    /// The id of the root at `path`, added with the next id when it is not there yet.
    pub fn add(&mut self, path: &Path) -> WatchId {
        if let Some(root) = self.0.iter().find(|r| r.path == path) {
            return root.watch;
        }
        let watch = WatchId(self.0.len() as u32);
        self.0.push(Root {
            watch,
            path: path.to_path_buf(),
        });
        watch
    }

    /// The root `watch` names. Ids come from this table: an unknown one is a bug, and
    /// panics.
    pub fn get(&self, watch: WatchId) -> &Root {
        self.0
            .get(watch.0 as usize)
            .unwrap_or_else(|| panic!("no watch root {watch:?} among {}", self.0.len()))
    }

    /// The path of the root `watch` names (see [`Roots::get`]).
    pub fn path(&self, watch: WatchId) -> &Path {
        &self.get(watch).path
    }

    /// Every root's path, in id order.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.0.iter().map(|r| r.path.clone()).collect()
    }

    /// The roots in id order.
    pub fn iter(&self) -> std::slice::Iter<'_, Root> {
        self.0.iter()
    }

    /// How many.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// None at all.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A list of roots numbered by place (`roots[i].watch == WatchId(i)`, else it panics).
impl From<Vec<Root>> for Roots {
    fn from(roots: Vec<Root>) -> Roots {
        for (i, root) in roots.iter().enumerate() {
            assert_eq!(root.watch, WatchId(i as u32), "watch roots out of order");
        }
        Roots(roots)
    }
}

impl IntoIterator for Roots {
    type Item = Root;
    type IntoIter = std::vec::IntoIter<Root>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a Roots {
    type Item = &'a Root;
    type IntoIter = std::slice::Iter<'a, Root>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_places_and_a_root_is_added_once() {
        let mut roots = Roots::new();
        assert_eq!(roots.add(Path::new("/a")), WatchId(0));
        assert_eq!(roots.add(Path::new("/b")), WatchId(1));
        assert_eq!(roots.add(Path::new("/a")), WatchId(0));
        assert_eq!(roots.len(), 2);
        assert_eq!(roots.path(WatchId(1)), Path::new("/b"));
        assert_eq!(roots.get(WatchId(0)).watch, WatchId(0));
    }
}
