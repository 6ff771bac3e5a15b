//! The rsync spec (one per remote) and sink (one per lane).

use sersync_plugin_sdk::{Batch, PathFilter, RelPath, Sink, SinkContext, SinkError};
use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use super::command::{arguments, BasisShape, RunShape, Target};
use super::guard::{self, Approval, RootIdentity};
use super::plan::{Basis, Run, TransferPlan};
use super::progress;
use super::ssh::{self, Share};
use super::warm::Warm;
use super::watchdog::{self, Watchdog};
use super::{ancestry, audit, excludes, exit, replay, version, ProcessLimit, RsyncOptions};
use crate::audit::{Auditor, Drift};
use crate::progress::{ProgressDisplay, ProgressReporter};
use crate::SinkSpec;

/// Waiting processes an instance may keep for an rsync daemon: one is what a batch every
/// few tens of milliseconds needs when a connection is set up sooner than that, two when it
/// is not (to a default slave under load, ~50 ms against ~40 ms between an instance's
/// batches at 50 files/s); the pool grows to it only when a batch found its process still
/// connecting ([`super::warm`]).
const DAEMON_POOL: usize = 2;

mod guarded;

/// The rsync sink for one `<remote>` of one `<localpath>`.
#[derive(Debug)]
pub struct RsyncSpec {
    options: RsyncOptions,
    target: Target,
    watch_root: PathBuf,
    limit: Arc<ProcessLimit>,
    progress: Option<Arc<dyn ProgressReporter>>,
    /// The operator's go-ahead for a delivery held by the delete budget, shared by every
    /// instance of this remote.
    approval: Arc<Approval>,
    /// `<engine warmTransfers>`: each instance keeps its next changes run waiting (see
    /// [`warm`](super::warm)).
    warm_transfers: bool,
}

impl RsyncSpec {
    /// A remote of the watch at `watch_root`; `limit` is shared by every rsync lane (`-n`).
    pub fn new(
        options: RsyncOptions,
        target: Target,
        watch_root: PathBuf,
        limit: Arc<ProcessLimit>,
    ) -> Self {
        RsyncSpec {
            options,
            target,
            watch_root,
            limit,
            progress: None,
            approval: Arc::default(),
            warm_transfers: false,
        }
    }

    /// Keeps, per instance, the next changes run connected and waiting for its list
    /// (`<engine warmTransfers>`, see [`warm`](super::warm)).
    pub fn with_warm_transfers(mut self, on: bool) -> Self {
        self.warm_transfers = on;
        self
    }

    /// Reports this remote's first full sync of the watch root to `display` (`-r` on a
    /// terminal).
    pub fn with_progress(mut self, display: &Arc<dyn ProgressDisplay>) -> Self {
        let remote = self.target.destination(&self.options);
        self.progress = Some(display.clone().reporter(&self.watch_root, &remote));
        self
    }
}

impl SinkSpec for RsyncSpec {
    fn name(&self) -> String {
        format!("rsync {}", self.target.destination(&self.options))
    }

    fn own_watches(&self) -> Vec<PathBuf> {
        vec![self.watch_root.clone()]
    }

    fn summary(&self) -> String {
        let limit = watchdog::limit(&self.options);
        let shape = RunShape {
            rsync_keeps_timeout: limit.is_none(),
            ..RunShape::default()
        };
        let args: Vec<String> = arguments(&self.options, &self.target, shape)
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let timeout = limit.map_or_else(String::new, |limit| {
            format!(
                "; a run that moves no data for {} s is stopped and retried",
                limit.as_secs()
            )
        });
        let update = if self.options.drops_update() {
            "; -u/--update from <commonParams> is not passed: it would keep remote files newer than the source's"
        } else {
            ""
        };
        format!(
            "{} -> {}: {} {} (file list on stdin{timeout}{update})",
            self.watch_root.display(),
            self.target.destination(&self.options),
            self.options.program.display(),
            args.join(" ")
        )
    }

    /// Each instance runs its own rsync process; batches over disjoint paths do not interfere.
    fn allows_parallel_deliveries(&self) -> bool {
        true
    }

    /// A rescan of the root is a recursive push that makes the remote match.
    fn takes_full_syncs(&self) -> bool {
        true
    }

    fn reports_progress(&self) -> bool {
        self.progress.is_some()
    }

    /// The next delivery to this remote that the delete budget would hold goes through.
    fn approve_deletes(&self) -> bool {
        self.approval.approve();
        true
    }

    fn replay_command(&self, batch: &Batch) -> Option<Vec<u8>> {
        Some(replay::command(
            &self.options,
            &self.target,
            &self.watch_root,
            batch,
        ))
    }

    /// Checks once per program that rsync runs and is new enough (see [`version`]).
    fn start(&self, ctx: &SinkContext) -> Result<Box<dyn Sink>, SinkError> {
        let mut sink = self.instance(ctx)?;
        if self.warm_transfers {
            sink.warm = Some(Mutex::new(Warm::new(sink.changes_arguments())));
        }
        Ok(Box::new(sink))
    }

    /// An instance of its own, asking rsync what a full sync would change (a dry run).
    fn auditor(&self, ctx: &SinkContext) -> Option<Result<Box<dyn Auditor>, SinkError>> {
        Some(
            self.instance(ctx)
                .map(|sink| Box::new(sink) as Box<dyn Auditor>),
        )
    }
}

impl RsyncSpec {
    fn instance(&self, ctx: &SinkContext) -> Result<RsyncSink, SinkError> {
        version::check(&self.options.program).map_err(SinkError::fatal)?;
        Ok(RsyncSink {
            options: self.options.clone(),
            target: self.target.clone(),
            root: ctx.root.clone(),
            filter: ctx.filter.clone(),
            limit: self.limit.clone(),
            progress: self.progress.clone(),
            identity: RootIdentity::record(&ctx.root),
            approval: self.approval.clone(),
            warm: None,
            share: self.options.ssh.then(|| self.share()),
        })
    }

    /// This instance's share of the master connection to its ssh host.
    fn share(&self) -> Share {
        Share::join(
            &ssh::remote_shell(&self.options, &self.target.host),
            &self.target.host,
        )
    }
}

/// Sends batches of one watch to one remote.
pub struct RsyncSink {
    options: RsyncOptions,
    target: Target,
    root: PathBuf,
    filter: Arc<dyn PathFilter>,
    limit: Arc<ProcessLimit>,
    progress: Option<Arc<dyn ProgressReporter>>,
    /// The watch root's device when this instance started: every run checks it first.
    identity: RootIdentity,
    approval: Arc<Approval>,
    /// The changes runs waiting for their lists, when warm transfers are on.
    warm: Option<Mutex<Warm>>,
    /// Over ssh: this instance's share of the connection's sessions.
    share: Option<Share>,
}

impl RsyncSink {
    fn remote(&self) -> String {
        self.target.destination(&self.options)
    }

    /// The arguments of a changes run without recursion: the run a warm process waits as.
    fn changes_arguments(&self) -> Vec<OsString> {
        let run = Run {
            ignore_times: true,
            ..Run::default()
        };
        arguments(&self.options, &self.target, self.shape(&run, None, &[]))
    }

    /// The file list as rsync reads it: NUL-terminated paths, `.` for the root; in a
    /// one-level run each directory ends in `/`, which is what makes rsync `--dirs` send
    /// (and delete within) its entries.
    fn file_list(run: &Run) -> Vec<u8> {
        let mut list = Vec::new();
        if matches!(run.basis, Some(Basis::Tree { .. })) {
            // Its directory is an operand.
            return list;
        }
        // Sent from their directory: listed by name.
        let by_name = matches!(run.basis, Some(Basis::Into { .. }));
        for path in &run.paths {
            if path.is_root() {
                list.push(b'.');
            } else if by_name {
                list.extend_from_slice(path.file_name());
            } else {
                list.extend_from_slice(path.as_bytes());
                if run.one_level {
                    list.push(b'/');
                }
            }
            list.push(0);
        }
        list
    }

    fn shape<'a>(
        &self,
        run: &'a Run,
        exclude_file: Option<&'a std::path::Path>,
        bases: &'a [OsString],
    ) -> RunShape<'a> {
        let basis = match (&run.basis, bases.first(), run.paths.first()) {
            (Some(Basis::Fuzzy), _, _) => Some(BasisShape::Fuzzy),
            (Some(Basis::Tree { .. }), Some(basis), Some(dir)) => {
                Some(BasisShape::Tree { dir, basis })
            }
            (Some(Basis::Into { dir, .. }), Some(_), _) => Some(BasisShape::Into { dir, bases }),
            _ => None,
        };
        RunShape {
            basis,
            recursive: run.is_recursive(),
            exclude_file,
            ignore_times: run.ignore_times,
            progress: false,
            rsync_keeps_timeout: watchdog::limit(&self.options).is_none(),
            one_level: run.one_level,
            max_delete: self.options.safety.max_deletes,
        }
    }

    /// Where `run` reports its progress: a run that sends the whole root, while this remote's
    /// start-up full sync has not succeeded yet.
    fn progress_for(&self, run: &Run) -> Option<&Arc<dyn ProgressReporter>> {
        let whole_root = run.subtrees.iter().any(RelPath::is_root);
        self.progress
            .as_ref()
            .filter(|p| whole_root && p.is_pending())
    }

    fn execute(
        &self,
        run: &Run,
        progress: Option<&Arc<dyn ProgressReporter>>,
        max_delete: Option<u64>,
    ) -> Result<(), SinkError> {
        let output = match progress {
            Some(entry) => Output::Progress(entry),
            None => Output::Discard,
        };
        self.run_rsync(run, output, &[], max_delete).map(drop)
    }

    /// Runs rsync for `run` with `extra` arguments and the delete budget `max_delete`;
    /// returns what it printed when `output` asks for it. Refused, with nothing run, when
    /// the watch root is not the one this instance started with.
    fn run_rsync(
        &self,
        run: &Run,
        output: Output<'_>,
        extra: &[&str],
        max_delete: Option<u64>,
    ) -> Result<Vec<u8>, SinkError> {
        self.identity.check(&self.root, &self.remote())?;
        let progress = match output {
            Output::Progress(entry) => Some(entry),
            _ => None,
        };
        let bases = self.bases(run)?;
        let rules = if let (Some(Basis::Tree { .. }), Some(dir)) = (&run.basis, run.paths.first()) {
            let rules = excludes::collect_within(&self.root, dir, self.filter.as_ref())
                .map_err(|e| SinkError::retryable(format!("listing excludes: reading {e}")))?;
            Some(rules)
        } else if run.one_level {
            Some(excludes::collect_one_level(
                &self.root,
                &run.paths,
                self.filter.as_ref(),
            ))
        } else if run.is_recursive() {
            let rules = excludes::collect(&self.root, &run.subtrees, self.filter.as_ref())
                .map_err(|e| SinkError::retryable(format!("listing excludes: reading {e}")))?;
            Some(rules)
        } else {
            None
        };
        let exclude_file = if let Some(rules) = rules {
            Some(excludes::write_rules(&rules).map_err(|e| {
                SinkError::retryable(format!(
                    "writing the exclude list for {}: {e}",
                    self.remote()
                ))
            })?)
        } else {
            None
        };
        let shape = RunShape {
            progress: progress.is_some(),
            max_delete,
            ..self.shape(run, exclude_file.as_ref().map(|f| f.path()), &bases)
        };
        let mut args = arguments(&self.options, &self.target, shape);
        // Before the source and destination, which stay last.
        let operands = args.len() - 2;
        args.splice(operands..operands, extra.iter().map(OsString::from));
        let list = Self::file_list(run);
        let _permit = self.limit.acquire();
        if let Some(entry) = progress {
            entry.started();
        }
        let outcome = self.transfer(&args, list, output);
        if let Some(entry) = progress {
            entry.finished(outcome.is_ok());
        }
        outcome
    }

    /// The `--copy-dest` directories of a move run on the remote.
    fn bases(&self, run: &Run) -> Result<Vec<OsString>, SinkError> {
        let from = match &run.basis {
            Some(Basis::Tree { from }) => std::slice::from_ref(from),
            Some(Basis::Into { from, .. }) => from.as_slice(),
            _ => &[],
        };
        from.iter()
            .map(|from| {
                self.target
                    .basis_directory(&self.options, from)
                    .ok_or_else(|| {
                        SinkError::retryable(format!(
                            "no --copy-dest for {from} on {}: the remote path is not absolute",
                            self.remote()
                        ))
                    })
            })
            .collect()
    }

    /// Runs rsync with `args`, `list` on its standard input: through this instance's oldest
    /// warm process when one waits with these arguments (see [`warm`](super::warm); one that
    /// fails before the watchdog stopped it is followed by one fresh run), else fresh; a run
    /// of the warm kind tops the pool up as it begins.
    fn transfer(
        &self,
        args: &[OsString],
        list: Vec<u8>,
        output: Output<'_>,
    ) -> Result<Vec<u8>, SinkError> {
        let Some(warm) = self
            .warm
            .as_ref()
            .filter(|_| matches!(output, Output::Discard))
        else {
            return self.spawn(args, list, output);
        };
        let lock = || warm.lock().unwrap_or_else(|e| e.into_inner());
        // For a daemon at most [`DAEMON_POOL`] (each waiting one is one of its `max
        // connections`); over ssh the instance's share of the connection's sessions.
        let bound = self.share.as_ref().map_or(DAEMON_POOL, Share::pool_bound);
        let refill = || {
            let mut warm = lock();
            if warm.suits(args) {
                warm.refill(bound, |args| self.launch(args, Stdio::null()));
            }
        };
        let waiting = lock().take(args, &self.root, bound);
        // The next ones connect while this run transfers: under a steady stream a batch
        // comes sooner than a connection is set up (~50 ms to a default slave here, more
        // over ssh), so one started only after the run would still be connecting.
        refill();
        let outcome = match waiting {
            Some(child) => {
                let outcome = self.finish(child, list.clone(), Output::Discard);
                let retry = matches!(&outcome, Err(e) if e.is_retryable() && !watchdog::stopped(e));
                lock().used(!retry);
                match outcome {
                    Err(e) if retry => {
                        tracing::debug!(remote = %self.remote(), error = %e.message, "the warm rsync failed; running the batch's run fresh");
                        self.spawn(args, list, output)
                    }
                    other => other,
                }
            }
            None => self.spawn(args, list, output),
        };
        // One started above may have died meanwhile (a daemon refusing it).
        refill();
        outcome
    }

    /// Runs rsync with `args`, `list` on its standard input; its standard output goes where
    /// `output` says.
    fn spawn(
        &self,
        args: &[OsString],
        list: Vec<u8>,
        output: Output<'_>,
    ) -> Result<Vec<u8>, SinkError> {
        let piped = !matches!(output, Output::Discard);
        let stdout = if piped { Stdio::piped() } else { Stdio::null() };
        let child = self.launch(args, stdout)?;
        self.finish(child, list, output)
    }

    /// Starts rsync with `args` in the watch root, its standard input and error piped (over
    /// ssh, after making sure the host's master connection is up or coming).
    fn launch(&self, args: &[OsString], stdout: Stdio) -> Result<Child, SinkError> {
        if self.options.ssh {
            ssh::keep_master(&self.options, &self.target.host);
        }
        Command::new(&self.options.program)
            .args(args)
            .current_dir(&self.root)
            .stdin(Stdio::piped())
            .stdout(stdout)
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                SinkError::fatal(format!(
                    "cannot run {} for {}: {e}",
                    self.options.program.display(),
                    self.remote()
                ))
            })
    }

    /// Writes `list` to the standard input of `child` (started by [`Self::launch`], its
    /// standard output piped unless `output` discards it), closes it and waits for the run's
    /// end under the I/O watchdog.
    fn finish(
        &self,
        mut child: Child,
        list: Vec<u8>,
        output: Output<'_>,
    ) -> Result<Vec<u8>, SinkError> {
        let (progress, capture) = match output {
            Output::Discard => (None, false),
            Output::Progress(entry) => (Some(entry), false),
            Output::Capture => (None, true),
        };
        // Stopped before the child is reaped, so that its pid cannot be reused meanwhile.
        let limit = watchdog::limit(&self.options);
        let watchdog = limit.map(|limit| Watchdog::start(child.id(), limit));
        let mut stdin = child.stdin.take().expect("stdin is piped");
        // Written from another thread so that a large list never deadlocks against stderr.
        let writer = std::thread::spawn(move || stdin.write_all(&list));
        let follower = progress
            .and_then(|entry| Some((entry.clone(), child.stdout.take()?)))
            .map(|(entry, pipe)| {
                std::thread::spawn(move || progress::follow(pipe, |s| entry.update(s)))
            });
        // Read beside stderr, so that neither pipe can fill up and stall rsync.
        let captured = child.stdout.take().filter(|_| capture).map(|mut pipe| {
            std::thread::spawn(move || {
                let mut bytes = Vec::new();
                let _ = pipe.read_to_end(&mut bytes);
                bytes
            })
        });
        let mut stderr = String::new();
        if let Some(mut pipe) = child.stderr.take() {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            stderr = String::from_utf8_lossy(&bytes).into_owned();
        }
        let timed_out = watchdog.is_some_and(Watchdog::stop);
        let status = child.wait().map_err(|e| {
            SinkError::retryable(format!("waiting for rsync to {}: {e}", self.remote()))
        })?;
        // A write error here means rsync exited early; its status says why.
        let _ = writer.join();
        if let Some(follower) = follower {
            let _ = follower.join();
        }
        let captured = captured
            .and_then(|reader| reader.join().ok())
            .unwrap_or_default();
        if let (true, Some(limit)) = (timed_out, limit) {
            return Err(watchdog::stalled(&self.remote(), limit));
        }
        exit::classify(status, &stderr, &self.remote()).map(|()| captured)
    }
}

/// Where a run's standard output goes.
enum Output<'a> {
    /// Nowhere.
    Discard,
    /// Read as progress lines into the entry.
    Progress(&'a Arc<dyn ProgressReporter>),
    /// Returned to the caller.
    Capture,
}

impl Auditor for RsyncSink {
    /// A dry run of the full sync of the root, its changes itemized (`%i %n`).
    fn audit(&mut self) -> Result<Vec<Drift>, SinkError> {
        let run = Run {
            paths: vec![RelPath::ROOT],
            subtrees: vec![RelPath::ROOT],
            ignore_times: false,
            one_level: false,
            basis: None,
        };
        let out = self.run_rsync(
            &run,
            Output::Capture,
            &["--dry-run", "--out-format=%i %n"],
            None,
        )?;
        Ok(audit::parse_itemized(&out))
    }
}

impl Sink for RsyncSink {
    fn deliver(&mut self, batch: &Batch) -> Result<(), SinkError> {
        let mut plan = TransferPlan::for_batch(batch, self.options.delete);
        let mut approved = false;
        // Moves first, while the remote still has the old names (the deletes come last):
        // what one sends is taken out of the changes run; one that fails, for whatever
        // reason, leaves its paths to the changes run, which sends them without a basis.
        let mut moves = std::mem::take(&mut plan.moves);
        let root = &self.root;
        for run in &mut moves {
            // Without -R, rsync would follow a symlink standing where a directory was; with
            // -R, send an ancestor that is no directory as a directory: such paths are left
            // to the changes run, which lists what stands there.
            if matches!(run.basis, Some(Basis::Tree { .. })) {
                run.paths
                    .retain(|dir| ancestry::is_real_directory(dir, root));
            } else if let Some(Basis::Into { dir, .. }) = &run.basis {
                if !dir.is_root() && !ancestry::is_real_directory(dir, root) {
                    run.paths.clear();
                }
            } else {
                run.paths.retain(|file| {
                    file.parent()
                        .is_none_or(|dir| dir.is_root() || ancestry::is_real_directory(&dir, root))
                });
            }
        }
        // Over ssh to a relative path there is no --copy-dest to give.
        moves.retain(|run| self.bases(run).is_ok() && !run.paths.is_empty());
        // A directory's move run writes into its place on the remote, following whatever
        // stands there: a symlink left from before (`rm current; mv release current`) would
        // take it elsewhere. So each new name (and the directories above it, which -R sends
        // too) is first made a real directory on the remote, by a run that sends just those
        // directories; when it fails, the directories are left to the changes run.
        let trees: Vec<RelPath> = moves
            .iter()
            .flat_map(|run| match &run.basis {
                Some(Basis::Tree { .. }) => run.paths.clone(),
                Some(Basis::Into { dir, .. }) if !dir.is_root() => vec![dir.clone()],
                _ => Vec::new(),
            })
            .collect();
        if !trees.is_empty() {
            let places = Run {
                paths: trees,
                ignore_times: true,
                ..Run::default()
            };
            if let Err(e) = self.execute_guarded(&places, &mut approved) {
                tracing::debug!(remote = %self.remote(), error = %e.message, "could not make the new names of moved directories directories on the remote; the moves are sent without a basis");
                moves.clear();
            }
        }
        // After one fails, the others are not tried: a slave that hangs costs one I/O
        // timeout more, not one per move.
        for run in moves {
            match self.execute_guarded(&run, &mut approved) {
                Ok(()) => plan.moved(&run),
                Err(e) => {
                    tracing::debug!(remote = %self.remote(), error = %e.message, "a move run failed; its paths, and the other moves', are sent without a basis");
                    break;
                }
            }
        }
        // Rescans, then changes, then deletes: what a delete's directory holds on the remote
        // may only be right once the changes are there (a file there that is a directory
        // now). A run that fails for a passing reason does not stop the others, so a retry
        // starts from a remote that is as far along as it can be.
        let mut runs: Vec<(Run, bool)> = plan.runs.into_iter().map(|r| (r, true)).collect();
        // More deletes than the budget allows: held before they are sent (the other runs go
        // out), unless the operator approved.
        let mut held = None;
        if let Some(budget) = self.options.safety.max_deletes {
            if plan.deleted.len() as u64 > budget {
                approved = approved || self.approval.take();
                if !approved {
                    let would: Vec<String> = plan.deleted.iter().map(|p| p.to_string()).collect();
                    held = Some(self.hold(guard::Limit::Count(budget), &would));
                }
            }
        }
        if !plan.deleted.is_empty() && held.is_none() {
            let (scopes, present) = ancestry::deletes_at(&plan.deleted, &self.root);
            if !present.paths.is_empty() {
                runs.push((present, true));
            }
            runs.push((scopes, false));
        }
        let mut failure = None;
        for (mut run, listed) in runs {
            if listed {
                ancestry::list_below_real_directories(&mut run, &self.root);
            }
            match self.execute_guarded(&run, &mut approved) {
                Ok(()) => {}
                Err(e) if e.is_retryable() => {
                    failure.get_or_insert(e);
                }
                Err(e) => return Err(e),
            }
        }
        failure.or(held).map_or(Ok(()), Err)
    }

    fn describe(&self, batch: &Batch) -> Vec<String> {
        let plan = TransferPlan::for_batch(batch, self.options.delete);
        let runs = plan.runs_by_name();
        if runs.is_empty() {
            return vec![format!("rsync to {}: nothing to send", self.remote())];
        }
        let mut lines = Vec::new();
        for run in &runs {
            let mut command: Vec<OsString> = vec![self.options.program.clone().into()];
            command.extend(arguments(
                &self.options,
                &self.target,
                self.shape(run, None, &[]),
            ));
            lines.push(format!(
                "would run in {}: {}",
                self.root.display(),
                command
                    .iter()
                    .map(|a| a.to_string_lossy())
                    .collect::<Vec<_>>()
                    .join(" ")
            ));
            lines.extend(run.paths.iter().map(|p| {
                let kind = if run.subtrees.contains(p) {
                    "tree"
                } else if run.one_level {
                    "entries of"
                } else {
                    "path"
                };
                format!("  {kind} {p}")
            }));
        }
        lines
    }
}
