//! The rsync spec (one per remote) and sink (one per lane).

use sersync_plugin_sdk::{Batch, PathFilter, RelPath, Sink, SinkContext, SinkError};
use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;

use super::command::{arguments, RunShape, Target};
use super::plan::{Run, TransferPlan};
use super::progress::{self, ProgressBoard, ProgressEntry};
use super::watchdog::{self, Watchdog};
use super::{ancestry, excludes, exit, replay, version, ProcessLimit, RsyncOptions};
use crate::SinkSpec;

/// The rsync sink for one `<remote>` of one `<localpath>`.
#[derive(Debug)]
pub struct RsyncSpec {
    options: RsyncOptions,
    target: Target,
    watch_root: PathBuf,
    limit: Arc<ProcessLimit>,
    progress: Option<ProgressEntry>,
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
        }
    }

    /// Shows this remote's first full sync of the watch root on `board` (`-r` on a terminal).
    pub fn with_progress(mut self, board: &Arc<ProgressBoard>) -> Self {
        let remote = self.target.destination(&self.options);
        self.progress = Some(board.register(&self.watch_root, &remote));
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
        format!(
            "{} -> {}: {} {} (file list on stdin{timeout})",
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
        version::check(&self.options.program).map_err(SinkError::fatal)?;
        Ok(Box::new(RsyncSink {
            options: self.options.clone(),
            target: self.target.clone(),
            root: ctx.root.clone(),
            filter: ctx.filter.clone(),
            limit: self.limit.clone(),
            progress: self.progress.clone(),
        }))
    }
}

/// Sends batches of one watch to one remote.
pub struct RsyncSink {
    options: RsyncOptions,
    target: Target,
    root: PathBuf,
    filter: Arc<dyn PathFilter>,
    limit: Arc<ProcessLimit>,
    progress: Option<ProgressEntry>,
}

impl RsyncSink {
    fn remote(&self) -> String {
        self.target.destination(&self.options)
    }

    /// The file list as rsync reads it: NUL-terminated paths, `.` for the root.
    fn file_list(run: &Run) -> Vec<u8> {
        let mut list = Vec::new();
        for path in &run.paths {
            list.extend_from_slice(if path.is_root() {
                b"."
            } else {
                path.as_bytes()
            });
            list.push(0);
        }
        list
    }

    fn shape<'a>(&self, run: &Run, exclude_file: Option<&'a std::path::Path>) -> RunShape<'a> {
        RunShape {
            recursive: run.is_recursive(),
            exclude_file,
            ignore_times: run.ignore_times,
            progress: false,
            rsync_keeps_timeout: watchdog::limit(&self.options).is_none(),
        }
    }

    /// Where `run` reports its progress: a run that sends the whole root, while this remote's
    /// start-up full sync has not succeeded yet.
    fn progress_for(&self, run: &Run) -> Option<&ProgressEntry> {
        let whole_root = run.subtrees.iter().any(RelPath::is_root);
        self.progress
            .as_ref()
            .filter(|p| whole_root && p.is_pending())
    }

    fn execute(&self, run: &Run, progress: Option<&ProgressEntry>) -> Result<(), SinkError> {
        let exclude_file = if run.is_recursive() {
            let rules = excludes::collect(&self.root, &run.subtrees, self.filter.as_ref())
                .map_err(|e| SinkError::retryable(format!("listing excludes: reading {e}")))?;
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
            ..self.shape(run, exclude_file.as_ref().map(|f| f.path()))
        };
        let args = arguments(&self.options, &self.target, shape);
        let list = Self::file_list(run);
        let _permit = self.limit.acquire();
        if let Some(entry) = progress {
            entry.started();
        }
        let outcome = self.spawn(&args, list, progress);
        if let Some(entry) = progress {
            entry.finished(outcome.is_ok());
        }
        outcome
    }

    /// Runs rsync with `args`, `list` on its standard input; with `progress`, its standard
    /// output is read as progress lines.
    fn spawn(
        &self,
        args: &[OsString],
        list: Vec<u8>,
        progress: Option<&ProgressEntry>,
    ) -> Result<(), SinkError> {
        let stdout = if progress.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        };
        let mut child = Command::new(&self.options.program)
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
            })?;
        // Stopped before the child is reaped, so that its pid cannot be reused meanwhile.
        let limit = watchdog::limit(&self.options);
        let watchdog = limit.map(|limit| Watchdog::start(child.id(), limit));
        let mut stdin = child.stdin.take().expect("stdin is piped");
        // Written from another thread so that a large list never deadlocks against stderr.
        let writer = std::thread::spawn(move || stdin.write_all(&list));
        let follower = progress.zip(child.stdout.take()).map(|(entry, pipe)| {
            let entry = entry.clone();
            std::thread::spawn(move || progress::parse::follow(pipe, |s| entry.update(s)))
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
        if let (true, Some(limit)) = (timed_out, limit) {
            return Err(SinkError::retryable(format!(
                "rsync to {} moved no data for {} s and was stopped (<timeout>)",
                self.remote(),
                limit.as_secs()
            )));
        }
        exit::classify(status, &stderr, &self.remote())
    }
}

impl Sink for RsyncSink {
    fn deliver(&mut self, batch: &Batch) -> Result<(), SinkError> {
        let plan = TransferPlan::for_batch(batch, self.options.delete);
        for mut run in plan.runs {
            ancestry::list_below_real_directories(&mut run, &self.root);
            self.execute(&run, self.progress_for(&run))?;
        }
        Ok(())
    }

    fn describe(&self, batch: &Batch) -> Vec<String> {
        let plan = TransferPlan::for_batch(batch, self.options.delete);
        if plan.runs.is_empty() {
            return vec![format!("rsync to {}: nothing to send", self.remote())];
        }
        let mut lines = Vec::new();
        for run in &plan.runs {
            let mut command: Vec<OsString> = vec![self.options.program.clone().into()];
            command.extend(arguments(
                &self.options,
                &self.target,
                self.shape(run, None),
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
                } else {
                    "path"
                };
                format!("  {kind} {p}")
            }));
        }
        lines
    }
}
