//! The sink-facing side of progress reporting: what a sink doing a long full sync (the
//! start-up push of a watch root, `-r`) tells whoever shows it. Core implements
//! [`ProgressDisplay`] with its terminal board and hands it to the sinks it configures
//! ([`crate::SinkSetup`]); a sink that can report asks it for a [`ProgressReporter`] per
//! destination and says so ([`crate::SinkSpec::reports_progress`]). Without a display a sink
//! runs as it would anyway.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

/// How far a whole run is: what a sink knows at one moment of a long full sync (rsync's
/// `--info=progress2` line gives exactly this).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Snapshot {
    /// Bytes of the files sent so far: their size, not what crossed the wire.
    pub bytes: u64,
    /// `bytes` as a share of the size of every file listed so far, 0 to 100. Low at the end of
    /// a run that found most files up to date.
    pub percent: u8,
    /// The current transfer rate, in bytes per second.
    pub rate: f64,
    /// The file counts, absent before the first file is handled.
    pub files: Option<FileCounts>,
}

/// How many entries of the run's file list are checked and sent (rsync's
/// `(xfr#SENT, to-chk=LEFT/TOTAL)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileCounts {
    /// Files sent so far.
    pub transferred: u64,
    /// File-list entries (files, directories, links) not checked yet.
    pub left: u64,
    /// File-list entries listed so far.
    pub total: u64,
    /// True once the file list is complete (rsync's `to-chk`); false while the sink
    /// still lists directories (`ir-chk`) and `total` still grows.
    pub complete: bool,
}

impl FileCounts {
    /// Entries checked so far.
    pub fn checked(&self) -> u64 {
        self.total - self.left
    }
}

/// Where one destination's full syncs are shown. Calls come from the sink's delivery threads,
/// several at once; none of them may wait long (`update` never waits for the terminal).
pub trait ProgressReporter: Send + Sync + fmt::Debug {
    /// True while the display still wants this destination's full syncs: until one has
    /// succeeded, and while the display is open. A sink reports only runs started while this
    /// holds; the others run as they would without a display.
    fn is_pending(&self) -> bool;

    /// A full sync starts now.
    fn started(&self);

    /// The run's latest snapshot.
    fn update(&self, snapshot: Snapshot);

    /// The run ended, successfully or not (the lane will retry it).
    fn finished(&self, succeeded: bool);
}

/// What shows full syncs (core's terminal board).
pub trait ProgressDisplay: Send + Sync + fmt::Debug {
    /// A place for the full syncs of the watch at `root` to `destination` (as the sink names
    /// it, e.g. `backup@10.0.0.2::www`). Nothing is shown for it until its first run starts.
    fn reporter(self: Arc<Self>, root: &Path, destination: &str) -> Arc<dyn ProgressReporter>;
}
