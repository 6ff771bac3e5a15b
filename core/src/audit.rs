//! The drift audit (`<engine auditSeconds>`): every so often each lane whose sink can tell
//! (rsync) is asked what differs on its remote; each difference is logged, counted
//! (`sersync_audit_differences_total`) and sent again through the lane.
//!
//! A correct engine finds nothing. A lane that is busy (changes pending or in flight) is
//! left for the next round, and a difference whose local entry changed after the audit
//! began is a change on its way, not drift: neither is counted.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use sersync_plugins::audit::{Auditor, Drift, DriftKind};

use crate::dispatch::Lane;

/// Differences named one by one in the log per audit; the rest are counted.
const LOGGED: usize = 100;

/// One lane and the instance that audits its remote.
pub struct LaneAudit {
    lane: Arc<Lane>,
    auditor: Box<dyn Auditor>,
    root: PathBuf,
}

impl LaneAudit {
    /// Audits `lane` (serving `root`) with `auditor`.
    pub fn new(lane: Arc<Lane>, auditor: Box<dyn Auditor>, root: PathBuf) -> Self {
        LaneAudit {
            lane,
            auditor,
            root,
        }
    }

    /// One audit, unless the lane is busy.
    pub fn run(&mut self) {
        let lane = self.lane.name().to_string();
        let stats = self.lane.stats();
        if self.lane.pending() > 0 || stats.in_flight() > 0 {
            tracing::debug!(%lane, "audit skipped: the lane is delivering");
            return;
        }
        let began = Instant::now();
        let since = SystemTime::now();
        let drifts = match self.auditor.audit() {
            Ok(drifts) => drifts,
            Err(error) => {
                tracing::warn!(%lane, error = %error.message, "audit failed; trying again at the next one");
                return;
            }
        };
        let drifts: Vec<Drift> = drifts
            .into_iter()
            .filter(|d| !self.changed_since(d, since))
            .collect();
        stats.count_audit(drifts.len() as u64);
        for drift in drifts.iter().take(LOGGED) {
            let differs = match drift.kind {
                DriftKind::Differs => "missing or different on the remote",
                DriftKind::Extra => "on the remote only",
            };
            tracing::warn!(%lane, path = %drift.path, differs, "audit: the remote differs from the source; sending it again");
        }
        let watch = self.lane.watch();
        let heal: Vec<_> = drifts.iter().map(|d| d.heal(watch)).collect();
        self.lane.push_all(heal.iter());
        tracing::info!(
            %lane,
            differences = drifts.len(),
            elapsed_ms = began.elapsed().as_millis() as u64,
            "audit done"
        );
    }

    /// True when the entry (or, for something only the remote has, the directory it would
    /// be in) changed after `since`: its change is on its way through the lane.
    fn changed_since(&self, drift: &Drift, since: SystemTime) -> bool {
        let local = drift.path.absolute(&self.root);
        let checked = match drift.kind {
            DriftKind::Differs => local,
            DriftKind::Extra => local.parent().map_or(local.clone(), |p| p.to_path_buf()),
        };
        let since = since
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        std::fs::symlink_metadata(checked).is_ok_and(|m| m.ctime() >= since)
    }
}
