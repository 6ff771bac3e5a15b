//! What keeps a run from wiping a remote: the root guard, the empty-root refusal and the
//! delete budget (`<rsync><deleteSafety maxDeletes maxDeletePercent allowEmptyRoot>`). This
//! module decides; `sink/guarded.rs` runs each run under them.
//!
//! - **Root guard.** Each sink instance records the watch root's device (`st_dev`) when it
//!   starts (the daemon's start, or a reload). Before every run the root must still be a
//!   directory on that device: a root deleted, renamed away, or whose file system is no
//!   longer mounted (the mount point then shows the empty directory below it, on another
//!   device) fails the run with a retryable error that names the root, and nothing is sent,
//!   deletes least of all. The lane keeps the changes and retries; once the root is back on
//!   its device the run goes through. A root that is back on another device is accepted by
//!   a reload (SIGHUP), which records it again.
//! - **Empty root.** A run that sends the whole root with `--delete` (a full sync: `-r`, the
//!   crontab, `POST /sync`, a rescan) of a root that holds nothing (nothing the filter keeps)
//!   first asks rsync what it would delete (a dry run); if the remote holds anything the run
//!   is refused with an error that says why, unless `allowEmptyRoot="true"`. An empty
//!   remote costs one dry run and nothing else.
//! - **Delete budget** (`maxDeletes`, default [`DEFAULT_MAX_DELETES`], `0` turns it off;
//!   `maxDeletePercent`, off unless set): a batch whose events delete more paths than the
//!   budget is held before its deletes are sent (its other runs go out); every run that may
//!   delete is counted before it deletes (a first pass with `--max-delete=0`, which sends and
//!   deletes nothing, then, within the budget — and for a full sync within
//!   `maxDeletePercent` of what the remote holds, [`remote_share`] — the pass that deletes),
//!   so a directory whose remote subtree is larger than the events said, or a full sync,
//!   deletes nothing beyond the budget. A held delivery says how many entries would be
//!   deleted and the first of them (a dry run), in the log and as the lane's last error in
//!   `/status`; it is released by `POST /approve` (the next delivery of that remote deletes
//!   without a budget) or by raising the budget and reloading (SIGHUP).

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use sersync_plugin_sdk::{PathFilter, RelPath, SinkError};

/// Entries one run or batch may delete on a remote without the operator's approval.
pub const DEFAULT_MAX_DELETES: u64 = 10_000;

/// How many of the paths a held delivery would delete are named.
const NAMED: usize = 10;

/// `<rsync><deleteSafety maxDeletes maxDeletePercent allowEmptyRoot>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeleteSafety {
    /// The delete budget; `None` when off (`maxDeletes="0"`).
    pub max_deletes: Option<u64>,
    /// A full sync may delete at most this percentage of the entries the remote holds;
    /// `None` when off (the default).
    pub max_delete_percent: Option<u8>,
    /// A full sync of an empty root may delete what the remote holds.
    pub allow_empty_root: bool,
}

impl Default for DeleteSafety {
    fn default() -> Self {
        DeleteSafety {
            max_deletes: Some(DEFAULT_MAX_DELETES),
            max_delete_percent: None,
            allow_empty_root: false,
        }
    }
}

/// The watch root as a sink instance first saw it.
#[derive(Clone, Copy, Debug)]
pub struct RootIdentity {
    /// Its device; `None` when it could not be read at the start (then any directory will
    /// do, and the empty-root refusal still stands).
    dev: Option<u64>,
}

impl RootIdentity {
    /// Records the device of `root` now.
    pub fn record(root: &Path) -> RootIdentity {
        RootIdentity {
            dev: std::fs::metadata(root).ok().map(|m| m.dev()),
        }
    }

    /// `Ok` when `root` is still a directory on the recorded device.
    pub fn check(&self, root: &Path, remote: &str) -> Result<(), SinkError> {
        let problem = match std::fs::symlink_metadata(root) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                "is missing (deleted or renamed away)".to_string()
            }
            Err(e) => format!("cannot be read ({e})"),
            Ok(meta) if !meta.is_dir() => "is not a directory any more".to_string(),
            Ok(meta) => match self.dev {
                Some(dev) if dev != meta.dev() => format!(
                    "is on another file system than when sersync started (device {:#x}, was {dev:#x}: unmounted?)",
                    meta.dev()
                ),
                _ => return Ok(()),
            },
        };
        Err(SinkError::retryable(format!(
            "watch root {} {problem}: nothing is sent to {remote}, deletes least of all, until it is back (a root back on another device is accepted by a reload, SIGHUP)",
            root.display()
        )))
    }
}

/// True when `root` holds nothing the filter keeps (an unreadable root counts as empty: it
/// would send nothing either).
pub fn root_is_empty(root: &Path, filter: &dyn PathFilter) -> bool {
    let Ok(entries) = std::fs::read_dir(root) else {
        return true;
    };
    !entries.flatten().any(|entry| {
        let name = entry.file_name();
        let path = RelPath::new(std::os::unix::ffi::OsStrExt::as_bytes(name.as_os_str()));
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        !filter.is_excluded(&path, is_dir)
    })
}

/// The operator's go-ahead for a held delivery, shared by the instances of one remote: the
/// next delivery that would be held deletes without a budget.
#[derive(Debug, Default)]
pub struct Approval(AtomicBool);

impl Approval {
    /// Releases the next held delivery.
    pub fn approve(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// True (once) when the operator approved.
    pub fn take(&self) -> bool {
        self.0.swap(false, Ordering::SeqCst)
    }
}

/// The paths a dry run with `--out-format=%i %n` says it would delete.
pub fn deletions(dry_run: &[u8]) -> Vec<String> {
    super::audit::parse_itemized(dry_run)
        .into_iter()
        .filter(|d| d.kind == crate::audit::DriftKind::Extra)
        .map(|d| d.path.to_string())
        .collect()
}

/// What a dry run with `--out-format=%i %n --info=name2` (unchanged entries listed too) says
/// of the remote: `(entries it would delete, entries it holds now)`, the run's top directory
/// left out. An entry the run would create is not the remote's.
pub fn remote_share(dry_run: &[u8]) -> (u64, u64) {
    let (mut deleted, mut held) = (0, 0);
    for line in dry_run.split(|&b| b == b'\n') {
        if line.len() < 13 || line[11] != b' ' {
            continue;
        }
        let (code, name) = (&line[..11], &line[12..]);
        if code.starts_with(b"*deleting") {
            deleted += 1;
            held += 1;
        } else if !matches!(name, b"./" | b".") && code[2..].iter().any(|&c| c != b'+') {
            held += 1;
        }
    }
    (deleted, held)
}

/// True when deleting `deleted` of the `held` entries a remote holds is more than `percent`.
pub fn beyond_percent(deleted: u64, held: u64, percent: u8) -> bool {
    deleted > 0 && deleted.saturating_mul(100) > u64::from(percent).saturating_mul(held)
}

/// Which limit held a delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// `maxDeletes`.
    Count(u64),
    /// `maxDeletePercent`, with the entries the remote holds.
    Percent {
        /// The configured percentage.
        percent: u8,
        /// The entries the remote holds.
        held: u64,
    },
}

/// The error of a delivery held by the delete budget: how many entries would go, the first
/// of them, and how to release it.
pub fn held(remote: &str, root: &Path, limit: Limit, would: &[String]) -> SinkError {
    let first: Vec<&str> = would.iter().take(NAMED).map(String::as_str).collect();
    let more = if would.len() > NAMED { ", …" } else { "" };
    let (limit, setting) = match limit {
        Limit::Count(budget) => (format!("maxDeletes {budget}"), "maxDeletes"),
        Limit::Percent { percent, held } => (
            format!("of the {held} it holds, beyond maxDeletePercent {percent}"),
            "maxDeletePercent",
        ),
    };
    SinkError::retryable(format!(
        "held by the delete budget: {} entries would be deleted on {remote} from {} ({limit}; first: {}{more}); none of them is deleted until POST /approve (or raise <deleteSafety {setting}> and reload with SIGHUP)",
        would.len(),
        root.display(),
        first.join(", ")
    ))
}

/// The error of a full sync of an empty root refused.
pub fn empty_root(remote: &str, root: &Path, would: &[String]) -> SinkError {
    let first: Vec<&str> = would.iter().take(NAMED).map(String::as_str).collect();
    SinkError::retryable(format!(
        "refusing to sync the empty watch root {} to {remote} with --delete: the remote holds {} entries it would delete (first: {}); is the root's file system mounted? Set <deleteSafety allowEmptyRoot=\"true\"/> (and reload) if the root is meant to be empty",
        root.display(),
        would.len(),
        first.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sersync_plugin_sdk::sink::NoFilter;

    #[test]
    fn a_root_gone_or_replaced_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let identity = RootIdentity::record(&root);
        assert!(identity.check(&root, "h::m").is_ok());
        std::fs::rename(&root, dir.path().join("away")).unwrap();
        let err = identity.check(&root, "h::m").unwrap_err();
        assert!(err.is_retryable());
        assert!(
            err.message.contains(&root.display().to_string()),
            "{}",
            err.message
        );
        let moved = RootIdentity {
            dev: Some(u64::MAX),
        };
        std::fs::create_dir(&root).unwrap();
        let err = moved.check(&root, "h::m").unwrap_err();
        assert!(
            err.message.contains("another file system"),
            "{}",
            err.message
        );
    }

    #[test]
    fn emptiness_counts_only_what_the_filter_keeps() {
        struct NoTmp;
        impl PathFilter for NoTmp {
            fn is_excluded(&self, path: &RelPath, _: bool) -> bool {
                path.as_bytes().ends_with(b".tmp")
            }
        }
        let dir = tempfile::tempdir().unwrap();
        assert!(root_is_empty(dir.path(), &NoFilter));
        std::fs::write(dir.path().join("x.tmp"), "").unwrap();
        assert!(root_is_empty(dir.path(), &NoTmp));
        assert!(!root_is_empty(dir.path(), &NoFilter));
    }

    #[test]
    fn approval_is_used_once() {
        let approval = Approval::default();
        assert!(!approval.take());
        approval.approve();
        assert!(approval.take());
        assert!(!approval.take());
    }

    #[test]
    fn deletions_are_read_from_the_dry_run() {
        let out = b"*deleting   gone.txt\n>f+++++++++ new\n*deleting   d/\n";
        assert_eq!(deletions(out), ["gone.txt", "d"]);
        let err = held("h::m", Path::new("/w"), Limit::Count(1), &deletions(out));
        assert!(err.message.contains("2 entries") && err.message.contains("gone.txt"));
        assert!(err.message.contains("maxDeletes 1"), "{}", err.message);
    }

    #[test]
    fn the_remotes_share_counts_what_it_holds_not_what_it_would_receive() {
        let out = b"*deleting   big/f1\n*deleting   big/\n.d          ./\n>f+++++++++ new\n\
                    cd+++++++++ newdir/\n.d          s/\n.f          s/a\n>f.st...... s/b\n";
        assert_eq!(remote_share(out), (2, 5));
        assert!(beyond_percent(2, 5, 39));
        assert!(!beyond_percent(2, 5, 40));
        assert!(!beyond_percent(0, 0, 0));
        assert!(beyond_percent(1, 0, 100));
    }
}
