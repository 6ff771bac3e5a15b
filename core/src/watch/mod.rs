//! The recursive inotify watch: one kernel watch per directory, kept right across creates,
//! deletes and renames, turned into [`Event`](sersync_plugin_sdk::Event)s by a reader thread that never waits on a sink.
//!
//! - `tree`: descriptor → directory bookkeeping, each with its identity on disk.
//! - `scan`: adding a directory tree (the initial walk, new and moved-in directories,
//!   repairs): every descriptor put where the walk found it.
//! - `parallel`: the start-up walk of a root on several threads.
//! - `sys`: the system calls of a walk, on open descriptors, and the watch on exactly the
//!   directory a descriptor holds.
//! - `reader`: the thread: read, translate, pair moves, hand on.
//! - `doubts`: what the reader could not confirm when it handled an event, settled after
//!   each read.
//! - `guard`: whether each root is still the directory watched (deleted, renamed away,
//!   unmounted), and watching it again when it is back.
//! - [`limits`]: the kernel's inotify limits.

mod doubts;
mod guard;
pub mod limits;
mod parallel;
mod reader;
mod roots;
mod scan;
mod sys;
mod tree;

#[cfg(test)]
mod tests;

pub use guard::{RootGuard, RootListener, ROOT_CHECK};
pub use reader::{Watcher, WatcherStats};
pub use roots::Roots;

use std::path::PathBuf;

use sersync_plugin_sdk::WatchId;

/// Why watching could not start or go on.
#[derive(Debug)]
pub enum WatchError {
    /// The kernel refused another watch (`ENOSPC`).
    Limit {
        /// What to raise and how.
        advice: String,
    },
    /// Any other failure, with the directory it concerns.
    Io {
        /// The directory.
        path: PathBuf,
        /// What failed.
        error: std::io::Error,
    },
}

impl std::fmt::Display for WatchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WatchError::Limit { advice } => write!(f, "out of inotify watches: {advice}"),
            WatchError::Io { path, error } => write!(f, "cannot watch {}: {error}", path.display()),
        }
    }
}

impl std::error::Error for WatchError {}

/// A directory tree to watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Root {
    /// Its id in events.
    pub watch: WatchId,
    /// Its absolute path.
    pub path: PathBuf,
}
