//! What keeps a run from wiping a remote: the root guard, the empty-root refusal and the
//! delete budget (`<rsync><deleteSafety maxDeletes allowEmptyRoot>`).
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
//! - **Delete budget** (`maxDeletes`, default [`DEFAULT_MAX_DELETES`], `0` turns it off): a
//!   batch whose events delete more paths than the budget is held before its deletes are
//!   sent (its other runs go out); every run with `--delete` gets rsync's own
//!   `--max-delete=N`, so a directory whose remote subtree is larger than the events said,
//!   or a full sync, deletes at most N entries and then stops deleting (exit 25), which
//!   is classified as held. A held delivery says how many entries would be deleted and the
//!   first of them (a dry run), in the log and as the lane's last error in `/status`; it is
//!   released by `POST /approve` (the next delivery of that remote deletes without a
//!   budget) or by raising the budget and reloading (SIGHUP).

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use sersync_plugin_sdk::{PathFilter, RelPath, SinkError};

/// Entries one run or batch may delete on a remote without the operator's approval.
pub const DEFAULT_MAX_DELETES: u64 = 10_000;

/// How many of the paths a held delivery would delete are named.
const NAMED: usize = 10;

/// `<rsync><deleteSafety maxDeletes allowEmptyRoot>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeleteSafety {
    /// The delete budget; `None` when off (`maxDeletes="0"`).
    pub max_deletes: Option<u64>,
    /// A full sync of an empty root may delete what the remote holds.
    pub allow_empty_root: bool,
}

impl Default for DeleteSafety {
    fn default() -> Self {
        DeleteSafety {
            max_deletes: Some(DEFAULT_MAX_DELETES),
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

/// The error of a delivery held by the delete budget.
pub fn held(remote: &str, root: &Path, budget: u64, would: &[String]) -> SinkError {
    let first: Vec<&str> = would.iter().take(NAMED).map(String::as_str).collect();
    let more = if would.len() > NAMED { ", …" } else { "" };
    SinkError::retryable(format!(
        "held by the delete budget: {} entries would be deleted on {remote} from {} (maxDeletes {budget}; first: {}{more}); nothing more is deleted until POST /approve (or raise <deleteSafety maxDeletes> and reload with SIGHUP)",
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
        let err = held("h::m", Path::new("/w"), 1, &deletions(out));
        assert!(err.message.contains("2 entries") && err.message.contains("gone.txt"));
    }
}
