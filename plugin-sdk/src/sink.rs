//! The [`Sink`] trait: a destination for batches of events.
//!
//! # The contract
//! - A sink instance receives one [`Batch`] at a time: the next is never handed to it before
//!   `deliver` returned. A lane (one sink for one watch) runs one instance, or several side by
//!   side when the host allows parallel deliveries for that sink; then the batches in flight
//!   at once never share a path (nor a path above or below one), so the changes of one path
//!   never overtake each other.
//! - A batch holds the *net* change of each path since the previous successful batch: many
//!   writes to a file are one event, a file created and deleted again is no event at all, a
//!   directory delete swallows every change below it. Sinks make the destination match the
//!   source; they do not replay history.
//! - Delivery is at least once: when `deliver` fails, the dispatcher keeps the batch's paths,
//!   merges them with whatever changed meanwhile, and hands them over again later (after a
//!   backoff for [`ErrorClass::Retryable`], after a long pause and a loud log line for
//!   [`ErrorClass::Fatal`]). A sink must therefore tolerate seeing a path again.
//! - A sink never retries, journals or sleeps on its own: the dispatcher does that for every
//!   sink alike. A sink bounds its own I/O with timeouts.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use crate::event::{Batch, RelPath, WatchId};

/// A destination for batches of events.
pub trait Sink: Send {
    /// Applies one batch. Returns when the destination has it, or with the reason it has not.
    fn deliver(&mut self, batch: &Batch) -> Result<(), SinkError>;

    /// Describes, one line each, what [`Sink::deliver`] would do with `batch`, without doing it.
    /// Used by `sersync --dry-run`.
    fn describe(&self, batch: &Batch) -> Vec<String> {
        batch
            .events
            .iter()
            .map(|e| format!("would deliver {} {}", e.kind, e.path))
            .collect()
    }
}

/// Whether a failed delivery is worth trying again as it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// A passing fault: connection refused, timeout, HTTP 5xx or 429, a peer that went away.
    Retryable,
    /// Retrying unchanged will not help: bad credentials, unknown module, HTTP 4xx, a plugin
    /// that rejects its input. Reported loudly; the paths are kept, not dropped.
    Fatal,
}

/// Why a delivery failed, and whether to retry it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SinkError {
    /// Retry or not.
    pub class: ErrorClass,
    /// What went wrong, for the log; names the peer and, where one is to blame, the path.
    pub message: String,
}

impl SinkError {
    /// A passing fault, worth retrying after a backoff.
    pub fn retryable(message: impl Into<String>) -> Self {
        SinkError {
            class: ErrorClass::Retryable,
            message: message.into(),
        }
    }

    /// A fault that retrying unchanged will not cure.
    pub fn fatal(message: impl Into<String>) -> Self {
        SinkError {
            class: ErrorClass::Fatal,
            message: message.into(),
        }
    }

    /// True for [`ErrorClass::Retryable`].
    pub fn is_retryable(&self) -> bool {
        self.class == ErrorClass::Retryable
    }
}

impl fmt::Display for SinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let class = match self.class {
            ErrorClass::Retryable => "retryable",
            ErrorClass::Fatal => "fatal",
        };
        write!(f, "{} ({class})", self.message)
    }
}

impl std::error::Error for SinkError {}

/// The engine's exclude rules, for sinks that walk a subtree themselves (a full sync).
pub trait PathFilter: Send + Sync {
    /// True when `path` (relative to the watch root) is excluded from syncing.
    fn is_excluded(&self, path: &RelPath, is_dir: bool) -> bool;
}

/// A filter that excludes nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoFilter;

impl PathFilter for NoFilter {
    fn is_excluded(&self, _path: &RelPath, _is_dir: bool) -> bool {
        false
    }
}

/// What a sink instance is told about the lane it serves when it is started.
#[derive(Clone)]
pub struct SinkContext {
    /// The watch this instance serves.
    pub watch: WatchId,
    /// The absolute path of that watch's root.
    pub root: PathBuf,
    /// The engine's exclude rules for that watch.
    pub filter: Arc<dyn PathFilter>,
}

impl fmt::Debug for SinkContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SinkContext")
            .field("watch", &self.watch)
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}
