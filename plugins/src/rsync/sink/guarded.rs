//! Each run under the guards (see [`guard`]): the empty-root refusal, then the delete
//! budget, counted before anything is deleted.
//!
//! A run that may delete (`--delete`: recursive or one level) goes first with
//! `--max-delete=0`: rsync sends what it sends and deletes nothing, and says how many deletes
//! it skipped. None (the usual case): that was the run. Within the budget (and, for a run of
//! the whole root, within `maxDeletePercent` of what the remote holds, from a dry run): the run
//! again, the data already there, with `--max-delete=maxDeletes` in case more went meanwhile.
//! Beyond it: held, nothing deleted, with the count and first paths (a dry run) in the error,
//! until the operator approves.

use sersync_plugin_sdk::{RelPath, SinkError};

use super::super::exit;
use super::super::guard::{self, Limit};
use super::super::plan::Run;
use super::{Output, RsyncSink};

impl RsyncSink {
    /// Runs `run` under the guards. `approved` is the operator's go-ahead for this delivery,
    /// taken at most once per delivery: once taken, the delivery deletes without a budget.
    pub(super) fn execute_guarded(&self, run: &Run, approved: &mut bool) -> Result<(), SinkError> {
        let safety = self.options.safety;
        let deletes = self.options.delete && (run.is_recursive() || run.one_level);
        let whole_root = run.subtrees.iter().any(RelPath::is_root);
        if deletes
            && !safety.allow_empty_root
            && whole_root
            && guard::root_is_empty(&self.root, self.filter.as_ref())
        {
            let would = self.deletions(run)?;
            if !would.is_empty() {
                let error = guard::empty_root(&self.remote(), &self.root, &would);
                tracing::error!("{}", error.message);
                return Err(error);
            }
        }
        let progress = self.progress_for(run);
        let percent = safety.max_delete_percent.filter(|_| whole_root);
        if !deletes || *approved || (safety.max_deletes.is_none() && percent.is_none()) {
            return self.execute(run, progress, None);
        }
        let skipped = match self.execute(run, progress, Some(0)) {
            Err(e) if exit::is_delete_budget(&e) => exit::skipped_deletes(&e),
            other => return other,
        };
        // rsync did not say how many: a dry run does.
        let mut would = None;
        let count = match skipped {
            Some(count) => count,
            None => {
                let listed = self.deletions(run)?;
                let count = listed.len() as u64;
                would = Some(listed);
                count
            }
        };
        let mut held = safety
            .max_deletes
            .filter(|&budget| count > budget)
            .map(Limit::Count);
        if let (None, Some(percent)) = (held, percent) {
            let out = self.dry_run(run, &["--info=name2"])?;
            let (deleted, holds) = guard::remote_share(&out);
            if guard::beyond_percent(deleted, holds, percent) {
                held = Some(Limit::Percent {
                    percent,
                    held: holds,
                });
                would = Some(guard::deletions(&out));
            }
        }
        let Some(limit) = held else {
            return match self.execute(run, progress, safety.max_deletes) {
                // More to delete than a moment ago, past the budget: what is past it waits.
                Err(e) if exit::is_delete_budget(&e) => {
                    let would = self.deletions(run).unwrap_or_default();
                    Err(self.hold(Limit::Count(safety.max_deletes.unwrap_or(0)), &would))
                }
                other => other,
            };
        };
        if self.approval.take() {
            *approved = true;
            tracing::warn!(remote = %self.remote(), root = %self.root.display(), "delete budget reached; approved by the operator, deleting without it");
            return self.execute(run, progress, None);
        }
        let would = match would {
            Some(would) => would,
            None => self.deletions(run).unwrap_or_default(),
        };
        Err(self.hold(limit, &would))
    }

    /// What `run` would delete on the remote, from a dry run without the budget.
    fn deletions(&self, run: &Run) -> Result<Vec<String>, SinkError> {
        Ok(guard::deletions(&self.dry_run(run, &[])?))
    }

    /// What a dry run of `run` (without the budget, `extra` arguments added) itemizes.
    fn dry_run(&self, run: &Run, extra: &[&str]) -> Result<Vec<u8>, SinkError> {
        let mut args = vec!["--dry-run", "--out-format=%i %n"];
        args.extend_from_slice(extra);
        self.run_rsync(run, Output::Capture, &args, None)
    }

    /// The error (logged) of a delivery held by the delete budget.
    pub(super) fn hold(&self, limit: Limit, would: &[String]) -> SinkError {
        let error = guard::held(&self.remote(), &self.root, limit, would);
        tracing::error!("{}", error.message);
        error
    }
}
