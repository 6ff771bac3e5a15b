//! The event model: what changed, where, and when.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// A path relative to its watch root, kept as the raw bytes the kernel reported.
///
/// File names on Linux are arbitrary bytes except `/` and NUL: spaces, newlines, quotes, a
/// leading `-` and invalid UTF-8 all survive unchanged. The empty path is the watch root itself.
/// Components are separated by a single `/`; there is no leading or trailing `/`.
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RelPath(Vec<u8>);

impl RelPath {
    /// The watch root itself.
    pub const ROOT: RelPath = RelPath(Vec::new());

    /// Wraps raw bytes; leading and trailing `/` are removed.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        let mut bytes = bytes.into();
        while bytes.last() == Some(&b'/') {
            bytes.pop();
        }
        let leading = bytes.iter().take_while(|&&b| b == b'/').count();
        bytes.drain(..leading);
        RelPath(bytes)
    }

    /// The raw bytes of the path.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The path as a [`Path`] (relative; empty for the root).
    pub fn as_path(&self) -> &Path {
        Path::new(crate::os_bytes::os_str(&self.0))
    }

    /// True for the watch root itself.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// `self/name`; `name` is one path component.
    pub fn join(&self, name: &[u8]) -> RelPath {
        if self.0.is_empty() {
            return RelPath::new(name);
        }
        let mut bytes = Vec::with_capacity(self.0.len() + 1 + name.len());
        bytes.extend_from_slice(&self.0);
        bytes.push(b'/');
        bytes.extend_from_slice(name);
        RelPath(bytes)
    }

    /// The absolute path of this entry below `root`.
    pub fn absolute(&self, root: &Path) -> PathBuf {
        if self.is_root() {
            root.to_path_buf()
        } else {
            root.join(self.as_path())
        }
    }

    /// The parent directory; `None` for the root.
    pub fn parent(&self) -> Option<RelPath> {
        if self.is_root() {
            return None;
        }
        Some(match self.0.iter().rposition(|&b| b == b'/') {
            Some(i) => RelPath(self.0[..i].to_vec()),
            None => RelPath::ROOT,
        })
    }

    /// The last component; empty for the root.
    pub fn file_name(&self) -> &[u8] {
        match self.0.iter().rposition(|&b| b == b'/') {
            Some(i) => &self.0[i + 1..],
            None => &self.0,
        }
    }

    /// The directories above this path, outermost first, as prefixes of its bytes; the root
    /// (the empty prefix) is not included. `a/b/c` gives `a`, `a/b`.
    pub fn ancestors(&self) -> impl Iterator<Item = &[u8]> {
        self.0
            .iter()
            .enumerate()
            .filter(|&(_, &b)| b == b'/')
            .map(|(i, _)| &self.0[..i])
    }

    /// True when `self` is `ancestor` or lies below it.
    pub fn is_within(&self, ancestor: &RelPath) -> bool {
        ancestor.is_root()
            || (self.0.starts_with(&ancestor.0)
                && (self.0.len() == ancestor.0.len() || self.0[ancestor.0.len()] == b'/'))
    }

    /// Replaces the prefix `from` (an ancestor of `self`, or `self`) by `to`.
    pub fn rebase(&self, from: &RelPath, to: &RelPath) -> Option<RelPath> {
        if !self.is_within(from) {
            return None;
        }
        let rest = if from.is_root() {
            &self.0[..]
        } else {
            &self.0[from.0.len()..]
        };
        let rest = rest.strip_prefix(b"/").unwrap_or(rest);
        Some(if rest.is_empty() {
            to.clone()
        } else {
            to.join(rest)
        })
    }
}

impl From<&str> for RelPath {
    fn from(s: &str) -> Self {
        RelPath::new(s.as_bytes())
    }
}

/// Shows the path with every byte that is not printable ASCII escaped as `\xNN`
/// (and `\` as `\\`), so that log lines stay one line whatever the name holds.
impl fmt::Display for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_root() {
            return f.write_str(".");
        }
        crate::text::write_escaped_bytes(f, &self.0)
    }
}

impl fmt::Debug for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

/// Identifies one `<localpath watch>` of the configuration (its index).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WatchId(pub u32);

/// What happened to a path, after duplicate events have been merged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// The path came into existence (created, or moved in from outside the watch).
    Create,
    /// The contents changed and the writer may still have the file open.
    Modify,
    /// A writer closed the file after writing.
    CloseWrite,
    /// Metadata (mode, owner, times) changed.
    Attrib,
    /// The path no longer exists (deleted, or moved out of the watch).
    Delete,
    /// The path was renamed inside the watch; [`Event::from`] holds the old name.
    Move,
    /// Anything below the path may have changed (kernel queue overflow, a moved-in tree, too
    /// many pending changes in one directory, a full sync): make the destination match it whole.
    Rescan,
}

impl EventKind {
    /// The lower-case name used in logs, JSON and environment variables.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Create => "create",
            EventKind::Modify => "modify",
            EventKind::CloseWrite => "close_write",
            EventKind::Attrib => "attrib",
            EventKind::Delete => "delete",
            EventKind::Move => "move",
            EventKind::Rescan => "rescan",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One change to one path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// What happened.
    pub kind: EventKind,
    /// The path it happened to, relative to the watch root.
    pub path: RelPath,
    /// For [`EventKind::Move`], the old path; `None` otherwise.
    pub from: Option<RelPath>,
    /// True when the path is (or, for a delete, was) a directory.
    pub is_dir: bool,
    /// The watch the path belongs to.
    pub watch: WatchId,
    /// When the engine saw the (last merged) event.
    pub time: SystemTime,
}

impl Event {
    /// An event stamped with the current time.
    pub fn now(kind: EventKind, path: RelPath, is_dir: bool, watch: WatchId) -> Self {
        Event {
            kind,
            path,
            from: None,
            is_dir,
            watch,
            time: SystemTime::now(),
        }
    }

    /// A rename inside the watch, stamped with the current time: [`EventKind::Move`] at `to`,
    /// with `from` holding the old path. `is_dir` says whether the moved entry is a directory.
    pub fn moved(from: RelPath, to: RelPath, is_dir: bool, watch: WatchId) -> Self {
        Event {
            from: Some(from),
            ..Event::now(EventKind::Move, to, is_dir, watch)
        }
    }
}

/// The unit of delivery: every change one sink has to apply for one watch, merged so that each
/// path appears at most once (a move names two paths: its `from` and its `path`).
#[derive(Clone, Debug)]
pub struct Batch {
    /// The watch these events belong to.
    pub watch: WatchId,
    /// The absolute path of the watch root.
    pub root: PathBuf,
    /// The merged events, in the order their paths were first touched.
    pub events: Vec<Event>,
}

impl Batch {
    /// Number of events in the batch.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// True when the batch holds no event.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relpath_normalises_slashes_and_keeps_bytes() {
        let p = RelPath::new(&b"/a/b\xff c/"[..]);
        assert_eq!(p.as_bytes(), b"a/b\xff c");
        assert_eq!(p.to_string(), "a/b\\xff c");
        assert_eq!(p.file_name(), b"b\xff c");
        assert_eq!(p.parent(), Some(RelPath::from("a")));
        assert_eq!(RelPath::from("a").parent(), Some(RelPath::ROOT));
        assert_eq!(RelPath::ROOT.parent(), None);
    }

    #[test]
    fn ancestors_are_the_directories_above_outermost_first() {
        let path = RelPath::from("a/b c/d\n");
        assert_eq!(path.ancestors().collect::<Vec<_>>(), [&b"a"[..], b"a/b c"]);
        assert_eq!(RelPath::from("top").ancestors().count(), 0);
        assert_eq!(RelPath::ROOT.ancestors().count(), 0);
    }

    #[test]
    fn is_within_respects_component_boundaries() {
        let dir = RelPath::from("a/b");
        assert!(RelPath::from("a/b").is_within(&dir));
        assert!(RelPath::from("a/b/c").is_within(&dir));
        assert!(!RelPath::from("a/bc").is_within(&dir));
        assert!(RelPath::from("x").is_within(&RelPath::ROOT));
    }

    #[test]
    fn moved_is_a_move_from_the_old_path() {
        let e = Event::moved(
            RelPath::from("a/old"),
            RelPath::from("b/new"),
            true,
            WatchId(2),
        );
        assert_eq!(e.kind, EventKind::Move);
        assert_eq!(e.path, RelPath::from("b/new"));
        assert_eq!(e.from, Some(RelPath::from("a/old")));
        assert!(e.is_dir);
        assert_eq!(e.watch, WatchId(2));
    }

    #[test]
    fn rebase_moves_a_subtree() {
        let p = RelPath::from("a/b/c");
        assert_eq!(
            p.rebase(&RelPath::from("a/b"), &RelPath::from("z")),
            Some(RelPath::from("z/c"))
        );
        assert_eq!(
            p.rebase(&RelPath::from("a/b/c"), &RelPath::from("q")),
            Some(RelPath::from("q"))
        );
        assert_eq!(p.rebase(&RelPath::from("a/x"), &RelPath::from("z")), None);
    }
}
