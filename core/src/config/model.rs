//! The typed configuration. Every field has a documented default, so a sparse file is valid.

use std::path::PathBuf;
use std::time::Duration;

use crate::filter::Matcher;
use sersync_plugin_sdk::{ConfigError, ConfigNode, Position};
use sersync_plugins::SersyncSinks;

/// Everything `confxml.xml` says, checked and typed.
#[derive(Debug)]
pub struct Config {
    /// The file this was read from.
    pub file: PathBuf,
    /// `<host hostip port>`: where the control endpoint listens. Default `localhost:8008`.
    pub control: ControlAddress,
    /// `<debug start>`: log every raw event, watch and batch. Default off.
    pub debug: bool,
    /// `<filter>`: what is never watched nor synced.
    pub filter: FilterConfig,
    /// `<inotify>`: which kinds of change are acted on.
    pub events: EventSwitches,
    /// Every `<sersync><localpath>`, in file order.
    pub watches: Vec<WatchConfig>,
    /// The sinks `<sersync>` itself configures (rsync, one per `<remote>` of each
    /// `<localpath>`), read by them from `<sersync><rsync>`, the `<remote>`s, `<inotify><delete>`
    /// and `<crontab><crontabfilter>` (`sersync_plugins::configure_sersync`). Core knows them
    /// only through their specs.
    pub sersync_sinks: SersyncSinks,
    /// `<sersync><failLog path timeToExecute>`.
    pub fail_log: FailLogConfig,
    /// `<sersync><crontab>`, when `start="true"`.
    pub crontab: Option<CrontabConfig>,
    /// Names of `<sersync><plugin start="true" name="…">`: plugins run beside rsync.
    pub enabled_plugins: Vec<String>,
    /// `<sersync><plugin … after="rsync">`: the enabled plugins that deliver a change only
    /// once the sinks they name have (refreshCDN after rsync by default).
    pub plugin_order: Vec<PluginOrder>,
    /// Every top-level `<plugin name="…">` section, kept raw for the sink it configures.
    pub plugins: Vec<PluginConfig>,
    /// Engine tuning (`<engine>` extension element).
    pub engine: EngineConfig,
    /// What is valid but most likely a mistake, located: unknown elements and attributes
    /// (ignored), a second copy of an element read once (ignored), switch values other than
    /// `true`/`false` (read as off), watches whose changes go nowhere. Top-level `<plugin>`
    /// sections are left to their sinks. The daemon should log them at start;
    /// [`Config::describe`] lists them.
    pub warnings: Vec<ConfigError>,
}

impl Config {
    /// An error unless at least one `<sersync><localpath>` is configured. The daemon needs one
    /// unless it runs only a plugin that names its own `<localpath>` (`-m NAME`).
    pub fn require_watches(&self) -> Result<(), ConfigError> {
        if self.watches.is_empty() {
            return Err(ConfigError::new("nothing to watch: the file has no <sersync><localpath>")
                .with_hint(
                    "add <sersync><localpath watch=\"/dir\"><remote ip=\"HOST\" name=\"MODULE\"/></localpath></sersync>",
                )
                .in_file(&self.file));
        }
        Ok(())
    }

    /// The top-level `<plugin name>` section called `name` (compared case-insensitively, as
    /// `-m NAME` is).
    pub fn plugin_section(&self, name: &str) -> Option<&PluginConfig> {
        self.plugins
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case(name))
    }
}

/// One enabled plugin ordered after other sinks of its watches
/// (`<sersync><plugin start="true" name after quorum maxWait onTimeout>`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginOrder {
    /// The plugin, as in [`Config::enabled_plugins`].
    pub plugin: String,
    /// What it runs after: `rsync` (every remote of `<sersync>`) or enabled plugins' names.
    pub after: Vec<String>,
    /// How many of their lanes must have delivered, how long to wait, what then.
    pub rule: crate::dispatch::OrderRule,
}

/// `<host hostip port>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlAddress {
    /// Host name or address. Default `localhost`.
    pub host: String,
    /// TCP port. Default 8008.
    pub port: u16,
    /// `tokenFile="…"`: the file whose first line is the endpoint's bearer token (see
    /// [`ControlAddress::token`]).
    pub token_file: Option<PathBuf>,
    /// `readsNeedToken="true"`: `GET /status` and `GET /metrics` need the token too.
    pub reads_need_token: bool,
    /// Where `<host>` is in the file (the start of the file when it is absent).
    pub position: Position,
}

/// `<filter>` and the temporary-file rules.
#[derive(Debug, Clone)]
pub struct FilterConfig {
    /// `<filter start="true"><exclude expression="…">`: regexes matched against the whole
    /// relative path (anchored at both ends). Empty when the filter is off.
    pub excludes: Vec<Pattern>,
    /// Temporary-file name patterns, matched against the last path component (anchored).
    /// Default: [`DEFAULT_TEMP_PATTERNS`]; replaced by `<filter><tempfiles><pattern>` children
    /// when given; empty with `<filter><tempfiles start="false">`.
    pub temp_names: Vec<Pattern>,
}

/// Temporary names that are never synced unless the config replaces the list: vim swap files
/// and its `4913` probe, `~` backups, emacs `#autosave#` and `.#lock` files.
///
/// rsync's own `.name.XXXXXX` temporaries are deliberately not in the list: no pattern tells
/// them from real files such as `.htaccess.backup`, and syncing a temporary costs a little
/// traffic while excluding a real file loses it.
pub const DEFAULT_TEMP_PATTERNS: &[&str] = &[r"\..*\.sw[a-p]", r"4913", r".*~", r"#.*#", r"\.#.*"];

/// A regex with the text it was written as and where.
#[derive(Debug, Clone)]
pub struct Pattern {
    /// The expression as written in the file.
    pub source: String,
    /// What it matches, anchored at both ends, on bytes: a literal comparison when the
    /// expression is a plain name, else the compiled regex.
    pub matcher: Matcher,
    /// Where it was written; `None` for built-in defaults.
    pub position: Option<Position>,
}

/// `<inotify>`: each switch on only when `start="true"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventSwitches {
    /// Default true. Off: nothing is ever deleted on a remote.
    pub delete: bool,
    /// Default true. Off: new directories are still watched (unlike 2.5.4), but their
    /// creation alone does not trigger a sync.
    pub create_folder: bool,
    /// Default false (`closeWrite` covers new files).
    pub create_file: bool,
    /// Default true.
    pub close_write: bool,
    /// Default true.
    pub move_from: bool,
    /// Default true.
    pub move_to: bool,
    /// Default false.
    pub attrib: bool,
    /// Default false.
    pub modify: bool,
}

/// One `<localpath watch>` of `<sersync>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchConfig {
    /// The watched directory, absolute, without a trailing `/`; once loaded, the real
    /// directory (symlinks resolved).
    pub root: PathBuf,
    /// The path the file gave, when it was not the real directory (a symlink in it).
    pub configured_as: Option<PathBuf>,
    /// Where the element stands.
    pub position: Position,
}

/// `<failLog path timeToExecute>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailLogConfig {
    /// The retry script. Default `/tmp/rsync_fail_log.sh`.
    pub path: PathBuf,
    /// How often it is run. Default 60 minutes.
    pub every: Duration,
}

/// `<crontab start="true" schedule>` (what full syncs leave out, `<crontabfilter>`, is the
/// sinks' to read).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrontabConfig {
    /// Period of the full sync. Default 600 minutes.
    pub every: Duration,
}

/// A top-level `<plugin name="…">` section, kept as written: the sink it names reads its
/// own options from `node` when it is configured (`sersync_plugins::configure_plugin`).
#[derive(Clone, Debug)]
pub struct PluginConfig {
    /// The `name` attribute, as written.
    pub name: String,
    /// The whole `<plugin>` element.
    pub node: ConfigNode,
}

/// `<engine>` (an extension; all attributes optional).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineConfig {
    /// `settleMs`: quiet time after the last event before a batch is cut. Default 10 ms.
    pub settle: Duration,
    /// `idleSettleMs`: the settle window of a lane that was idle (nothing changed for
    /// `settleMs` before) when every pending change is a file its writer is done with (closed
    /// after writing, renamed into place). Default 2 ms, at most `settleMs`.
    pub idle_settle: Duration,
    /// `maxDelayMs`: a batch is cut at the latest this long after its first event, however
    /// busy the tree. Default 40 ms: under a steady stream of changes the quiet window never
    /// comes, and an idle sink should not wait longer than this (a busy one takes everything
    /// that accumulated while its previous transfer ran anyway).
    pub max_delay: Duration,
    /// `busyMaxDelayMs`: while another delivery of the lane runs, a batch waits as long as
    /// the lane's last delivery took (when that is more than `maxDelayMs`), at most this, so
    /// that a lane behind a stream of changes cuts fewer, bigger batches. Default `maxDelayMs`
    /// (off), at least `maxDelayMs`.
    pub busy_max_delay: Duration,
    /// `maxPending`: pending paths per lane before they collapse into directory rescans.
    /// Default 100,000.
    pub max_pending: usize,
    /// `retryInitialMs` / `retryMaxMs`: exponential backoff bounds. Default 500 ms / 60 s.
    pub retry_initial: Duration,
    /// See `retry_initial`.
    pub retry_max: Duration,
    /// `transfersPerRemote`: rsync processes one remote of one watch may run at once, each
    /// on changes whose paths do not overlap with the others'. Default 2; `-n` still bounds
    /// the processes across all remotes.
    pub transfers_per_remote: usize,
    /// `warmTransfers`: each rsync transfer keeps its next changes run connected to the
    /// remote and waiting for its file list, so that a batch pays only its transfer, not the
    /// connection (one more connection per transfer on the slave, counted against its `max
    /// connections`). Default on.
    pub warm_transfers: bool,
    /// `auditSeconds`: how often each rsync remote is asked what differs from the source
    /// (a dry run), what differs logged, counted and sent again. `None` (0, the default): never.
    pub audit: Option<Duration>,
    /// `stateDir`: where lane journals and the heartbeat live. Default:
    /// [`crate::state_dir::default_path`] (`$STATE_DIRECTORY`, `/var/lib/sersync` for root,
    /// else the user's `~/.local/state/sersync`).
    pub state_dir: PathBuf,
}
