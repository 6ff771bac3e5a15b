//! From the configuration to configured sinks: a `<plugin>` element ([`configure_plugin`]),
//! and the sinks `<sersync>` itself configures ([`configure_sersync`]: rsync, one spec per
//! `<remote>`). Core knows a sink only through [`SinkSpec`] and its capabilities.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use sersync_plugin_sdk::{Batch, ConfigError, ConfigNode, Sink, SinkContext, SinkError};

use crate::audit::Auditor;
use crate::progress::ProgressDisplay;
use crate::rsync::config::RsyncConfig;

/// A sink that has read and validated its configuration and can start one instance per lane.
pub trait SinkSpec: Send + Sync + fmt::Debug {
    /// The name lanes of this sink are known by in logs and status, e.g. `refreshCDN`.
    fn name(&self) -> String;

    /// Watch roots this sink's own configuration names (a plugin's `<localpath watch>`).
    /// Empty means the sink serves every `<sersync><localpath>`.
    fn own_watches(&self) -> Vec<PathBuf> {
        Vec::new()
    }

    /// One human-readable line for `sersync --check`: where it sends and how.
    fn summary(&self) -> String;

    /// Starts an instance serving one lane (one watch).
    fn start(&self, ctx: &SinkContext) -> Result<Box<dyn Sink>, SinkError>;

    /// True when a rescan of the watch root makes this sink's destination match the whole
    /// tree: its lanes are the ones `-r`, the `<crontab>` and `POST /sync` push whole trees
    /// to, whose failures the `<failLog>` script records and whose retries its
    /// `timeToExecute` hurries. The default is false (a plugin is told of changes only).
    fn takes_full_syncs(&self) -> bool {
        false
    }

    /// True when this sink shows its long full syncs on the progress display it was given
    /// ([`SinkSetup::progress`]). The default is false.
    fn reports_progress(&self) -> bool {
        false
    }

    /// True when a lane may run several instances of this sink side by side, each
    /// delivering batches whose paths do not overlap (`<engine transfersPerRemote>`). Only
    /// sinks whose deliveries are independent say so; the default is one at a time.
    fn allows_parallel_deliveries(&self) -> bool {
        false
    }

    /// True when whoever reads this sink's output also reads the watched tree itself, at
    /// moments of its own: the change stream's followers pull the paths they are told of,
    /// and directories whole, from the source. A path made and removed (or renamed) again
    /// before its batch left may then have reached them inside such a directory, so the
    /// lanes of this sink never let a delete cancel the create it follows: the delete, or
    /// the rename's old name, is told. The default is false (a create and its delete
    /// cancel out: nobody was told of the path, nobody needs to hear it is gone).
    fn consumers_read_the_tree(&self) -> bool {
        false
    }

    /// A `/bin/sh` command, with every word single-quoted, that applies `batch` by hand: what
    /// the `<failLog>` script records for a batch that failed. `None` for sinks that have no
    /// command-line equivalent (only rsync has one).
    fn replay_command(&self, batch: &Batch) -> Option<Vec<u8>> {
        let _ = batch;
        None
    }

    /// Releases the next delivery this sink's delete budget would hold (`POST /approve`);
    /// `false` when the sink has no budget.
    fn approve_deletes(&self) -> bool {
        false
    }

    /// An instance that can tell what differs on the destination, for `<engine
    /// auditSeconds>`; `None` for sinks whose destination holds no state to compare (only
    /// rsync's does).
    fn auditor(&self, ctx: &SinkContext) -> Option<Result<Box<dyn Auditor>, SinkError>> {
        let _ = ctx;
        None
    }
}

/// The plugin names sersync knows without a `type`/`path` (compared case-insensitively).
pub const BUILT_IN_PLUGINS: &[&str] = &["command", "refreshCDN", "socket", "http", "nats"];

/// Reads a top-level `<plugin name="…">` element into a [`SinkSpec`].
///
/// An unknown name, or options the sink rejects, give an error located in the file.
pub fn configure_plugin(node: &ConfigNode) -> Result<Box<dyn SinkSpec>, ConfigError> {
    // `type="nats"` names a built-in sink under a name of the user's choosing.
    if node.attr("type") == Some("nats") {
        return crate::nats::configure(node);
    }
    if let Some(spec) = crate::third_party::configure(node) {
        return spec;
    }
    let name = node.required_attr("name")?;
    match name.to_ascii_lowercase().as_str() {
        "command" => return crate::command::configure(node),
        "refreshcdn" => return crate::refresh_cdn::configure(node),
        "socket" => return crate::socket::configure(node),
        "http" => return crate::http::configure(node),
        "nats" => return crate::nats::configure(node),
        _ => {}
    }
    Err(node
        .error(format!("unknown plugin name \"{name}\""))
        .with_hint(format!(
            "built-in plugins are {}; a third-party plugin needs type=\"dylib\" or type=\"wasm\" and path=\"FILE\"",
            BUILT_IN_PLUGINS.join(", ")
        )))
}

/// What the sinks get from the daemon when they are configured, beside their own elements.
#[derive(Clone, Debug)]
pub struct SinkSetup {
    /// `-n`: how many processes the sinks that run one per delivery (rsync) may run at once,
    /// across all their lanes. At least one.
    pub workers: usize,
    /// Where long full syncs are shown (the start-up `-r` on a terminal), if anywhere.
    pub progress: Option<Arc<dyn ProgressDisplay>>,
    /// `<engine warmTransfers>`: rsync sinks keep their next changes run connected and
    /// waiting for its file list.
    pub warm_transfers: bool,
    /// The daemon's state directory when it is one only sersync's user can write to (it is
    /// created mode 0700 at start): where ssh remotes keep their multiplexed connection's
    /// socket. `None`: no such sockets.
    pub state_dir: Option<PathBuf>,
}

/// The elements outside `<plugin>` sections that configure built-in sinks, as positioned
/// nodes of the file (each missing one `None`).
#[derive(Clone, Copy, Debug, Default)]
pub struct SersyncNodes<'a> {
    /// `<sersync>`: its `<rsync>`, the `<remote>`s of each `<localpath>` (in file order; the
    /// watch roots themselves are core's), and `<crontab><crontabfilter>`.
    pub sersync: Option<&'a ConfigNode>,
    /// `<inotify>`: its `<delete>` switch (whether deletes reach the destinations).
    pub inotify: Option<&'a ConfigNode>,
}

/// The sinks `<sersync>` itself configures, read and checked: rsync, one per `<remote>` of
/// each `<localpath>`. Watches are named by their position among the `<localpath>`s.
#[derive(Clone, Debug)]
pub struct SersyncSinks {
    rsync: RsyncConfig,
}

/// Reads the sinks `<sersync>` configures from its nodes. An invalid value is an error located
/// in the file; nothing on disk is looked at (see [`SersyncSinks::check_files`]).
pub fn configure_sersync(nodes: SersyncNodes<'_>) -> Result<SersyncSinks, ConfigError> {
    Ok(SersyncSinks {
        rsync: crate::rsync::config::parse(nodes.sersync, nodes.inotify)?,
    })
}

impl SersyncSinks {
    /// The specs of every lane these sinks serve, each with the index of the watch it serves;
    /// `roots[i]` is the directory of the `i`-th `<localpath>`.
    pub fn specs(&self, roots: &[PathBuf], setup: &SinkSetup) -> Vec<(usize, Box<dyn SinkSpec>)> {
        self.rsync.specs(roots, setup)
    }

    /// True when the `watch`-th `<localpath>` has a destination.
    pub fn serves(&self, watch: usize) -> bool {
        self.rsync.serves(watch)
    }

    /// The `--check` lines under the `watch`-th `<localpath>`: where its changes go.
    pub fn describe_watch(&self, watch: usize) -> Vec<String> {
        self.rsync.describe_watch(watch)
    }

    /// The `--check` lines of how these sinks run (one `topic: …` line each).
    pub fn describe(&self) -> Vec<String> {
        vec![self.rsync.describe()]
    }

    /// What full syncs leave out, for the `--check` crontab line; `None` when nothing.
    pub fn describe_full_syncs(&self) -> Option<String> {
        self.rsync.describe_full_syncs()
    }

    /// Makes every relative path these sinks open absolute, against the current directory.
    pub fn absolute_paths(&mut self) -> io::Result<()> {
        self.rsync.absolute_paths()
    }

    /// Checks what the configuration names on the file system (rsync's password file).
    pub fn check_files(&self) -> Result<(), ConfigError> {
        self.rsync.check_files()
    }
}

/// A daemon-wide counter a built-in sink keeps, for `/metrics`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SinkCounter {
    /// The metric's name, e.g. `sersync_rsync_unreadable_paths_total`.
    pub name: &'static str,
    /// Its help text.
    pub help: &'static str,
    /// Its value now.
    pub value: u64,
}

/// Every daemon-wide counter the built-in sinks keep, in a fixed order (present whether or
/// not a lane of that sink runs, so a scrape always finds the same families).
pub fn sink_counters() -> Vec<SinkCounter> {
    vec![SinkCounter {
        name: "sersync_rsync_unreadable_paths_total",
        help:
            "Local paths the rsync sink skipped because sersync's user cannot read them, each once.",
        value: crate::rsync::unreadable_paths(),
    }]
}
