//! `sersync follow`: an edge that keeps a local tree equal to a source by reading the change
//! stream a master (or relay) publishes on NATS JetStream (the `nats` sink) and pulling
//! exactly the paths each message names with rsync, acking a message only after its pull
//! succeeded. See `docs/scale.md`.
//!
//! `config` (its own small file), `feed` (the durable consumer: position, catch-up,
//! retention), `plan` (changes → local deletes and renames, and two pulls), `local` (those
//! operations, never outside the tree), `pull` (rsync's argument vectors), `status` (the
//! control endpoint's view).

mod config;
#[cfg(test)]
mod crafted_tests;
mod feed;
mod heal;
mod local;
mod plan;
mod pull;
mod status;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use sersync::cli::Cli;
use sersync::dispatch::Backoff;
use sersync_plugin_sdk::RelPath;

use crate::supervisor::Notice;
use crate::systemd;
use config::FollowConfig;
use feed::{Feed, Group, Start};
use heal::Healing;
use local::LocalTree;
use plan::{LocalOp, Lookup, Plan, Pulls};
use pull::Puller;
use status::Board;

/// Exit status for a configuration that cannot be used, as the daemon's.
const EXIT_CONFIG: u8 = 255;
/// How long one wait for a message lasts before the loop looks at signals and requests.
const POLL: Duration = Duration::from_millis(500);
/// How long the loop waits before reading a broken message stream again.
const STREAM_AGAIN: Duration = Duration::from_millis(250);

/// Runs the follower named by `-o FILE` until SIGTERM/SIGINT.
pub fn run(cli: &Cli) -> ExitCode {
    let config = match config::load(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sersync follow: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let access = match config.control.access() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("sersync follow: {}", e.in_file(&config.file));
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if cli.check {
        println!(
            "follow: {} into {} from {}\nconfiguration OK: {}",
            config.stream.describe(),
            config.local.display(),
            config.source.url,
            config.file.display()
        );
        return ExitCode::SUCCESS;
    }
    if let Err(e) = crate::logging::init(
        cli.log_format,
        cli.verbosity(),
        false,
        cli.log_file.as_deref(),
        None,
    ) {
        eprintln!("sersync follow: cannot open the log file: {e}");
        return ExitCode::from(1);
    }
    let (send, notices) = crossbeam_channel::unbounded();
    if let Err(e) = crate::daemon::handle_signals(send) {
        eprintln!("sersync follow: cannot handle signals: {e}");
        return ExitCode::from(1);
    }
    let board = Arc::new(Board::new(
        format!("follow {}", config.consumer),
        config.local.clone(),
    ));
    let control: Arc<dyn sersync::control::Control> = board.clone();
    let _server = match sersync::control::serve_with(
        &config.control.host,
        config.control.port,
        control,
        access,
    ) {
        Ok(server) => {
            tracing::info!(addr = %server.local_addr(), "control endpoint: GET /status, GET /metrics, POST /sync (a full pull)");
            Some(server)
        }
        Err(error) => {
            tracing::warn!(host = %config.control.host, port = config.control.port, %error, "control endpoint not started; following goes on without it");
            None
        }
    };
    match Follower::new(config, board, notices).and_then(|mut f| f.run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            tracing::error!("{message}");
            ExitCode::from(1)
        }
    }
}

/// The follower's loop and what it holds.
struct Follower {
    config: FollowConfig,
    board: Arc<Board>,
    notices: Receiver<Notice>,
    tree: LocalTree,
    puller: Puller,
    backoff: Backoff,
    healing: Healing,
}

impl Follower {
    fn new(
        config: FollowConfig,
        board: Arc<Board>,
        notices: Receiver<Notice>,
    ) -> Result<Follower, String> {
        let tree = LocalTree::open(&config.local)
            .map_err(|e| format!("local tree {}: {e}", config.local.display()))?;
        Ok(Follower {
            puller: Puller::new(config.source.clone(), &config.local),
            healing: Healing::new(config.heal_after),
            config,
            board,
            notices,
            tree,
            backoff: Backoff::new(Duration::from_millis(500), Duration::from_secs(10)),
        })
    }

    /// True once SIGTERM or SIGINT came.
    fn stopping(&self) -> bool {
        self.notices.try_iter().any(|n| matches!(n, Notice::Stop))
    }

    /// Sleeps `delay` unless a stop comes first; true when it did.
    fn pause(&self, delay: Duration) -> bool {
        let deadline = Instant::now() + delay;
        while Instant::now() < deadline {
            if let Ok(Notice::Stop) = self.notices.recv_timeout(deadline - Instant::now()) {
                return true;
            }
        }
        false
    }

    fn fail(&mut self, error: &str) -> Duration {
        self.board.failed(error);
        let delay = self.backoff.next_delay();
        tracing::warn!(retry_in = ?delay, "{}: {error}", self.board.name());
        delay
    }

    fn run(&mut self) -> Result<(), String> {
        let mut feed = loop {
            match Feed::open(&self.config) {
                Ok((feed, start)) => {
                    self.begin(start)?;
                    break feed;
                }
                Err(e) => {
                    let delay = self.fail(&e);
                    if self.pause(delay) {
                        return Ok(());
                    }
                }
            }
        };
        self.backoff.reset();
        self.board.set_ready();
        systemd::ready(&format!("following {}", self.config.stream.describe()));
        tracing::info!(
            local = %self.config.local.display(),
            source = %self.config.source.url,
            "following {}",
            self.config.stream.describe()
        );
        let mut last_pending_check = Instant::now();
        loop {
            if self.stopping() {
                break;
            }
            if self.board.take_full_request() {
                tracing::info!("POST /sync: pulling the whole tree");
                self.full_pull_until_done()?;
            }
            if self
                .healing
                .next_due()
                .is_some_and(|at| at <= Instant::now())
            {
                self.heal();
            }
            let wait = self.healing.next_due().map_or(POLL, |at| {
                at.saturating_duration_since(Instant::now()).min(POLL)
            });
            match feed.next(wait.max(Duration::from_millis(10))) {
                Ok(None) => {
                    if last_pending_check.elapsed() > Duration::from_secs(5) {
                        if let Some(p) = feed.pending() {
                            self.board.set_pending(p);
                        }
                        last_pending_check = Instant::now();
                    }
                }
                Ok(Some(group)) => {
                    if let Err(e) = self.apply(&group).and_then(|()| feed.ack(&group)) {
                        let delay = self.fail(&e);
                        feed.retry_later(&group, delay);
                        if self.pause(delay) {
                            break;
                        }
                    } else {
                        self.backoff.reset();
                        self.board
                            .applied(group.changes.len(), &group.published, group.pending);
                    }
                }
                // The consumer's message stream broke (a heartbeat missed while a node went
                // away, a reconnect): it is made again at once, without the backoff.
                Err(e) => {
                    self.board.failed(&e);
                    tracing::warn!("{}: {e}; reading again", self.board.name());
                    if self.pause(STREAM_AGAIN) {
                        break;
                    }
                }
            }
        }
        systemd::stopping();
        tracing::info!("stopped; the stream keeps the position (nothing unacked is lost)");
        Ok(())
    }

    /// Prunes again the directories pulled whole a while ago (`heal.rs`): recursively,
    /// deleting only, and each one level in its own directory. A failure puts them back.
    fn heal(&mut self) {
        let due = self.healing.take_due();
        let mut lookup = TreeLookup(&self.tree);
        let mut dirs = Vec::new();
        let mut parents = std::collections::BTreeSet::new();
        for path in &due {
            // Below something that is no real directory here: that thing's own change is
            // in the stream (or was applied), and nothing below it is this tree's.
            match lookup.first_non_directory_above(path) {
                Ok(None) => {}
                _ => continue,
            }
            if matches!(lookup.kind(path), Ok(local::Kind::Directory)) {
                dirs.push(path.clone());
            }
            if let Some(parent) = path.parent() {
                parents.insert(parent);
            }
        }
        let healed = self
            .puller
            .prune(&parents)
            .and_then(|()| self.puller.heal(&dirs));
        match healed {
            Ok(()) => tracing::debug!("pruned again: {}", names(&due)),
            Err(e) => {
                tracing::warn!(
                    "{}: pruning again what was pulled whole: {e}",
                    self.board.name()
                );
                self.healing.again(&due);
            }
        }
    }

    /// What the position found asks for before following.
    fn begin(&mut self, start: Start) -> Result<(), String> {
        match start {
            Start::Fresh => {
                tracing::info!(
                    "new consumer {}: pulling the whole tree once, then following the stream",
                    self.config.consumer
                );
                self.full_pull_until_done()
            }
            Start::Resumed {
                acked,
                first,
                missed: true,
            } => {
                tracing::warn!(acked, first, "the stream no longer holds the changes after this follower's position (retention): pulling the whole tree once");
                self.full_pull_until_done()
            }
            Start::Resumed { acked, .. } => {
                tracing::info!(acked, "resuming after stream sequence {acked}: catching up from the stream, no full pull");
                Ok(())
            }
        }
    }

    /// A full pull, retried with backoff until it succeeds (or a stop).
    fn full_pull_until_done(&mut self) -> Result<(), String> {
        loop {
            let started = Instant::now();
            match self.puller.full() {
                Ok(()) => {
                    self.healing.pulled([RelPath::ROOT].iter());
                    self.board.full_pull_done();
                    self.backoff.reset();
                    tracing::info!(took = ?started.elapsed(), "full pull done");
                    return Ok(());
                }
                Err(e) => {
                    let delay = self.fail(&format!("full pull: {e}"));
                    if self.pause(delay) {
                        return Err("stopped before the full pull succeeded".into());
                    }
                }
            }
        }
    }

    /// Applies one group: local deletes and renames, then the pulls (the directories that lost
    /// names pruned to the source's, then what is named pulled).
    fn apply(&mut self, group: &Group) -> Result<(), String> {
        self.board.applying(group.changes.len(), group.oldest);
        if let Some(why) = &group.missed {
            tracing::warn!("{why}: changes in between are gone from the stream (retention); pulling the whole tree once");
            self.puller.full()?;
            self.healing.pulled([RelPath::ROOT].iter());
            self.board.full_pull_done();
        }
        let plan = Plan::of(group.changes.iter().map(|c| &c.event));
        for refused in &plan.refused {
            tracing::warn!(path = %refused, "a path with '.', '..' or an empty component is not applied");
        }
        if tracing::enabled!(tracing::Level::DEBUG) {
            tracing::debug!(
                messages = group.len(),
                changes = group.changes.len(),
                sequences = %group.sequences(),
                "applying: {}",
                plan.describe()
            );
            tracing::trace!("changes: {}", describe_changes(group));
        }
        for op in &plan.local {
            let done = match op {
                LocalOp::Remove(path) => self.tree.remove(path),
                LocalOp::Rename(from, to) => self.tree.rename(from, to),
            };
            done.map_err(|e| {
                format!(
                    "{} in {}: {e}",
                    match op {
                        LocalOp::Remove(p) => format!("removing {p}"),
                        LocalOp::Rename(f, t) => format!("renaming {f} to {t}"),
                    },
                    self.tree.root().display()
                )
            })?;
        }
        let mut lookup = TreeLookup(&self.tree);
        let pulls = plan.pulls(&mut lookup)?;
        tracing::debug!("pulling: {}", pulls.describe());
        self.puller.prune(&pulls.prune)?;
        self.puller.whole(&pulls.whole)?;
        self.healing.pulled(&pulls.whole);
        for level in &pulls.files {
            let mut listed = Vec::with_capacity(level.len());
            for path in level {
                if Pulls::still_listable(&mut lookup, path)? {
                    listed.push(path);
                }
            }
            self.puller.files(listed)?;
        }
        Ok(())
    }
}

/// `paths` for a log line.
fn names(paths: &[RelPath]) -> String {
    paths
        .iter()
        .map(|p| format!("{p:?}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The local tree as [`Plan::pulls`] looks at it.
struct TreeLookup<'t>(&'t LocalTree);

impl Lookup for TreeLookup<'_> {
    fn first_non_directory_above(&mut self, path: &RelPath) -> Result<Option<RelPath>, String> {
        self.0
            .first_non_directory_above(path)
            .map_err(|e| format!("looking at {path} in {}: {e}", self.0.root().display()))
    }

    fn kind(&mut self, path: &RelPath) -> Result<local::Kind, String> {
        self.0
            .kind(path)
            .map_err(|e| format!("looking at {path} in {}: {e}", self.0.root().display()))
    }
}

/// A group's changes, one after the other (`create dir "a"; move "b" -> "c"`), for the trace
/// log.
fn describe_changes(group: &Group) -> String {
    group
        .changes
        .iter()
        .map(|c| {
            let e = &c.event;
            let dir = if e.is_dir { " dir" } else { "" };
            match &e.from {
                Some(from) => format!("{}{dir} {from:?} -> {:?}", e.kind, e.path),
                None => format!("{}{dir} {:?}", e.kind, e.path),
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}
