//! Assembling and running the pipeline: watcher → router → lanes, plus the schedules.
//!
//! Starting is split in two so that a reload can be refused without disturbing anything:
//! [`Engine::prepare`] plans the lanes, configures every sink and establishes every watch
//! (the new watches already queue events), then [`Engine::start`] starts delivering.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use sersync_plugin_sdk::{ConfigError, Event, EventKind, RelPath, Sink, SinkContext, WatchId};
use sersync_plugins::audit::Auditor;

use crate::audit::LaneAudit;
use crate::catchup::{self, Heartbeat};
use crate::config::{Config, FailLogConfig, PluginOrder};
use crate::dispatch::{self, Journal, Lane, LaneId, LaneTiming, Mode, Pool, Sequence};
use crate::faillog::{FailLog, SpecRecorder};
use crate::filter::Filter;
use crate::progress::ProgressBoard;
use crate::state_dir::{StateDir, StateDirError};
use crate::topology::{LanePlan, Topology};
use crate::watch::{
    limits::InotifyLimits, Root, RootGuard, Roots, WatchError, Watcher, WatcherStats,
};

/// How the daemon was asked to run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// `-r`: push every watch root whole to every remote before watching.
    pub full_sync_first: bool,
    /// `-n`: rsync processes at once (0 means 10).
    pub workers: usize,
    /// `-m NAME`: run only that plugin.
    pub only_plugin: Option<String>,
    /// Deliver, or print what would be delivered.
    pub mode: Mode,
    /// How long stopping waits for lanes to deliver what they hold.
    pub shutdown_deadline: Duration,
    /// `-r` on a terminal: where every lane whose sink can report progress shows its
    /// start-up full sync.
    pub progress: Option<Arc<ProgressBoard>>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            full_sync_first: false,
            workers: 10,
            only_plugin: None,
            mode: Mode::Deliver,
            shutdown_deadline: Duration::from_secs(10),
            progress: None,
        }
    }
}

/// Why the daemon could not start or had to stop.
#[derive(Debug)]
pub enum EngineError {
    /// The configuration does not describe a runnable setup.
    Config(ConfigError),
    /// Watching failed.
    Watch(WatchError),
    /// A sink could not be started.
    Sink {
        /// The lane's name.
        lane: String,
        /// Why.
        message: String,
    },
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EngineError::Config(e) => write!(f, "{e}"),
            EngineError::Watch(e) => write!(f, "{e}"),
            EngineError::Sink { lane, message } => write!(f, "cannot start {lane}: {message}"),
        }
    }
}

impl std::error::Error for EngineError {}

impl From<ConfigError> for EngineError {
    fn from(e: ConfigError) -> Self {
        EngineError::Config(e)
    }
}

impl From<WatchError> for EngineError {
    fn from(e: WatchError) -> Self {
        EngineError::Watch(e)
    }
}

/// A sink instance ready to serve its lane.
struct ReadyLane {
    plan: LanePlan,
    name: String,
    /// One instance per concurrent delivery the lane may make.
    sinks: Vec<Box<dyn Sink>>,
    /// The instance that audits the lane's remote, with `<engine auditSeconds>`.
    auditor: Option<Box<dyn Auditor>>,
}

/// Everything a configuration needs, set up and checked, with nothing delivering yet.
pub struct Prepared {
    roots: Roots,
    filter: Arc<Filter>,
    lanes: Vec<ReadyLane>,
    watcher: Watcher,
    timing: LaneTiming,
    max_pending: usize,
    state_dir: std::path::PathBuf,
    crontab: Option<Duration>,
    audit: Option<Duration>,
    fail_log: FailLogConfig,
    mode: Mode,
    /// Which plugins run after which sinks (`after=`).
    order: Vec<PluginOrder>,
}

/// Which lanes push their whole tree when the engine starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FirstSync {
    /// None: lanes replay their journals, and catch up with what changed while sersync was
    /// stopped.
    CatchUp,
    /// Every rsync lane (`-r`).
    All,
    /// After a reload: rsync lanes that did not exist before (a remote added to the file),
    /// told by the lanes that did; the others catch up.
    NewLanes(Vec<LaneId>),
}

/// A running lane.
struct RunningLane {
    lane: Arc<Lane>,
    full_syncs: bool,
    /// Its sink's spec, for what the operator asks of it (`POST /approve`).
    spec: Arc<dyn sersync_plugins::SinkSpec>,
}

/// The running pipeline.
pub struct Engine {
    roots: Roots,
    heartbeat: Option<Heartbeat>,
    lanes: Vec<RunningLane>,
    stats: Arc<WatcherStats>,
    root_guard: Arc<RootGuard>,
    stop_reading: Arc<AtomicBool>,
    reader: JoinHandle<()>,
    router: JoinHandle<()>,
    schedules: Vec<JoinHandle<()>>,
}

impl Engine {
    /// Plans the lanes, configures and starts every sink instance, and establishes every
    /// watch. Nothing is delivered yet; changes from now on are queued by the kernel.
    pub fn prepare(config: &Config, options: &RunOptions) -> Result<Prepared, EngineError> {
        let workers = if options.workers == 0 {
            10
        } else {
            options.workers
        };
        let topology = Topology::plan(
            config,
            options.only_plugin.as_deref(),
            workers,
            options.progress.as_ref(),
        )?;
        let filter = Arc::new(Filter::new(&config.filter));
        let mut lanes = Vec::new();
        for plan in topology.lanes {
            let root = topology.roots.get(plan.watch);
            let name = plan.spec.name();
            let ctx = SinkContext {
                watch: plan.watch,
                root: root.path.clone(),
                filter: filter.clone(),
            };
            let instances = match options.mode {
                Mode::Deliver if plan.spec.allows_parallel_deliveries() => {
                    config.engine.transfers_per_remote
                }
                _ => 1,
            };
            let sinks = (0..instances)
                .map(|_| plan.spec.start(&ctx))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| EngineError::Sink {
                    lane: name.clone(),
                    message: e.to_string(),
                })?;
            let auditor = match (config.engine.audit, options.mode) {
                (Some(_), Mode::Deliver) => {
                    plan.spec
                        .auditor(&ctx)
                        .transpose()
                        .map_err(|e| EngineError::Sink {
                            lane: name.clone(),
                            message: e.to_string(),
                        })?
                }
                _ => None,
            };
            lanes.push(ReadyLane {
                plan,
                name,
                sinks,
                auditor,
            });
        }
        for watch in &config.watches {
            if let Some(configured) = &watch.configured_as {
                tracing::info!(
                    configured = %configured.display(),
                    real = %watch.root.display(),
                    "watch root is reached through a symlink; the real directory is watched (a link re-pointed later needs a reload)"
                );
            }
        }
        let started = Instant::now();
        let watcher = Watcher::new(
            topology.roots.clone(),
            filter.clone(),
            config.events,
            config.debug,
        )?;
        let directories = watcher.stats().directories();
        tracing::info!(
            directories,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "watches established"
        );
        warn_if_near_limits(directories);
        Ok(Prepared {
            roots: topology.roots,
            filter,
            lanes,
            watcher,
            timing: LaneTiming {
                settle: config.engine.settle,
                idle_settle: config.engine.idle_settle,
                max_delay: config.engine.max_delay,
                busy_max_delay: config.engine.busy_max_delay,
                retry_initial: config.engine.retry_initial,
                retry_max: config.engine.retry_max,
            },
            max_pending: config.engine.max_pending,
            state_dir: config.engine.state_dir.clone(),
            crontab: config.crontab.as_ref().map(|c| c.every),
            audit: config.engine.audit,
            fail_log: config.fail_log.clone(),
            mode: options.mode,
            order: config.plugin_order.clone(),
        })
    }

    /// Starts delivering: lanes (each replaying its journal), router, reader, crontab, and
    /// the full syncs `first` asks for. `on_reader_exit` is called from the reader thread
    /// when it stops, with the error that stopped it, if any.
    pub fn start(
        prepared: Prepared,
        first: FirstSync,
        on_reader_exit: impl FnOnce(Option<WatchError>) + Send + 'static,
    ) -> Engine {
        let Prepared {
            roots,
            filter,
            lanes: ready,
            watcher,
            timing,
            max_pending,
            state_dir,
            crontab,
            audit,
            fail_log,
            mode,
            order,
        } = prepared;
        let has_rsync = ready.iter().any(|r| r.plan.spec.takes_full_syncs());
        let script =
            (has_rsync && mode == Mode::Deliver).then(|| Arc::new(FailLog::new(&fail_log.path)));
        // Verified once per start; a refused directory is reported by every lane and the
        // heartbeat, which then run without it.
        let state = StateDir::open(&state_dir).map(Arc::new);
        let (lanes, audits) = start_lanes(
            ready,
            &roots,
            state.as_ref(),
            LaneSettings {
                timing,
                max_pending,
                mode,
                order: &order,
            },
            script.as_ref(),
        );
        let all: Vec<Arc<Lane>> = lanes.iter().map(|l| l.lane.clone()).collect();
        let root_guard = watcher.root_guard();
        guard_lanes(&root_guard, &roots, &all);
        let rsync_lanes: Vec<Arc<Lane>> = lanes
            .iter()
            .filter(|l| l.full_syncs)
            .map(|l| l.lane.clone())
            .collect();
        let heartbeat_name = Heartbeat::file_name(&roots.paths());
        let last_alive = state
            .as_ref()
            .ok()
            .and_then(|dir| Heartbeat::last_alive(dir, &heartbeat_name));
        first_syncs(&first, &roots, &rsync_lanes, &all, filter, last_alive);
        let heartbeat = match &state {
            Ok(dir) => Heartbeat::start(dir.clone(), heartbeat_name).map_err(|e| e.to_string()),
            Err(refused) => Err(refused.to_string()),
        }
        .map_err(|error| tracing::error!(%error, dir = %state_dir.display(), "cannot write the heartbeat; changes made while sersync is stopped will need a full sync (-r)"))
        .ok();
        let (tx, rx) = crossbeam_channel::bounded::<Vec<Event>>(1024);
        let router = thread::Builder::new()
            .name("router".into())
            .spawn(move || dispatch::route(rx, &all))
            .expect("spawning the router");
        let stats = watcher.stats();
        let stop_reading = Arc::new(AtomicBool::new(false));
        let reader = spawn_reader(watcher, tx, stop_reading.clone(), on_reader_exit);
        let schedules = start_schedules(
            Schedules {
                crontab,
                fail_log_every: script.is_some().then_some(fail_log.every),
                audit: audit.map(|every| (every, audits)),
            },
            rsync_lanes,
            roots.len(),
            &stop_reading,
        );
        tracing::info!(lanes = lanes.len(), "running");
        Engine {
            roots,
            heartbeat,
            lanes,
            stats,
            root_guard,
            stop_reading,
            reader,
            router,
            schedules,
        }
    }

    /// The watch roots.
    pub fn roots(&self) -> &Roots {
        &self.roots
    }

    /// Every lane's identity.
    pub fn lane_ids(&self) -> Vec<LaneId> {
        self.lanes.iter().map(|l| l.lane.id().clone()).collect()
    }

    /// The lanes whose watch root is not lost now: those a reload carries on as they are.
    /// The others are as new to the next engine, which pushes their root whole (when the
    /// reload accepts a root back on another device, it is sent whole, as a root back on its
    /// own device is rescanned).
    pub fn kept_lane_ids(&self) -> Vec<LaneId> {
        self.lanes
            .iter()
            .filter(|l| self.root_guard.lost(l.lane.watch()).is_none())
            .map(|l| l.lane.id().clone())
            .collect()
    }

    /// The lanes, with whether each takes full syncs (rsync lanes do).
    pub fn lanes(&self) -> impl Iterator<Item = (&Arc<Lane>, bool)> {
        self.lanes.iter().map(|l| (&l.lane, l.full_syncs))
    }

    /// The watcher's counters.
    pub fn watcher_stats(&self) -> &Arc<WatcherStats> {
        &self.stats
    }

    /// Which watch roots are lost (deleted, renamed away, unmounted).
    pub fn root_guard(&self) -> &Arc<RootGuard> {
        &self.root_guard
    }

    /// Releases the next delivery the delete budget would hold on every lane whose name
    /// contains `remote` (all when `None`), and retries those lanes now. Returns how many
    /// lanes were released.
    pub fn approve_deletes(&self, remote: Option<&str>) -> usize {
        approve_deletes(self.lanes.iter().map(|l| (&l.lane, &l.spec)), remote)
    }

    /// The lanes with their sink's spec, for the control endpoint.
    pub fn lane_specs(&self) -> Vec<(Arc<Lane>, Arc<dyn sersync_plugins::SinkSpec>)> {
        self.lanes
            .iter()
            .map(|l| (l.lane.clone(), l.spec.clone()))
            .collect()
    }

    /// Stops reading, then gives every lane up to `deadline` to deliver what it holds; what
    /// is not delivered stays in the lanes' journals for the next start.
    pub fn stop(self, deadline: Duration) {
        self.stop_reading.store(true, Ordering::SeqCst);
        let _ = self.reader.join();
        let _ = self.router.join();
        for schedule in self.schedules {
            let _ = schedule.join();
        }
        drain(self.lanes, deadline);
        if let Some(heartbeat) = self.heartbeat {
            heartbeat.stop();
        }
    }
}

/// Releases the next delivery the delete budget would hold on each of `lanes` whose name
/// contains `remote`, and retries it now. Returns how many were released.
pub fn approve_deletes<'a>(
    lanes: impl Iterator<Item = (&'a Arc<Lane>, &'a Arc<dyn sersync_plugins::SinkSpec>)>,
    remote: Option<&str>,
) -> usize {
    let mut released = 0;
    for (lane, spec) in lanes {
        if remote.is_none_or(|r| lane.name().contains(r)) && spec.approve_deletes() {
            tracing::warn!(lane = %lane.name(), "deletes approved by the operator: the next delivery the delete budget would hold goes through");
            lane.retry_now();
            released += 1;
        }
    }
    released
}

/// Holds the lanes of a watch whose root is lost, and when it is back releases them with a
/// rescan of the whole root (queued first, so it covers what waited meanwhile).
fn guard_lanes(guard: &RootGuard, roots: &Roots, lanes: &[Arc<Lane>]) {
    let lanes = lanes.to_vec();
    let roots = roots.clone();
    guard.listen(Box::new(move |watch, lost| {
        for lane in lanes.iter().filter(|l| l.watch() == watch) {
            match lost {
                Some(reason) => lane.hold(Some(format!(
                    "watch root {} lost: {reason}; paused until it is back",
                    roots.path(watch).display()
                ))),
                None => {
                    let rescan = Event::now(EventKind::Rescan, RelPath::ROOT, true, watch);
                    lane.push_all(std::iter::once(&rescan));
                    lane.hold(None);
                }
            }
        }
    }));
}

/// In the background, sends every lane what changed in its watch since `since` (while
/// sersync was not running).
fn spawn_catch_up(
    roots: Roots,
    filter: Arc<Filter>,
    lanes: Vec<Arc<Lane>>,
    since: std::time::SystemTime,
) {
    let spawned = thread::Builder::new().name("catch-up".into()).spawn(move || {
        for root in &roots {
            let started = Instant::now();
            let events = catchup::changed_since(&root.path, root.watch, filter.as_ref(), since);
            tracing::info!(root = %root.path.display(), changes = events.len(), elapsed_ms = started.elapsed().as_millis() as u64, "caught up with changes made while sersync was stopped");
            for lane in lanes.iter().filter(|l| l.watch() == root.watch) {
                lane.push_all(events.iter());
            }
        }
    });
    if let Err(error) = spawned {
        tracing::error!(%error, "cannot start the catch-up walk; run a full sync (-r) to be sure");
    }
}

/// How every lane of an engine runs.
struct LaneSettings<'a> {
    timing: LaneTiming,
    max_pending: usize,
    mode: Mode,
    /// Which plugins run after which sinks.
    order: &'a [PluginOrder],
}

/// Starts every lane, each replaying its journal, on one pool of delivery threads; rsync
/// lanes report their failures to the failLog `script` when there is one. Lanes come in
/// plan order, upstream first (`Topology::plan`): each is made, stamps its replayed
/// changes and is ordered after the lanes of its watch it runs after, which exist already.
fn start_lanes(
    ready: Vec<ReadyLane>,
    roots: &Roots,
    state: Result<&Arc<StateDir>, &StateDirError>,
    LaneSettings {
        timing,
        max_pending,
        mode,
        order,
    }: LaneSettings<'_>,
    script: Option<&Arc<FailLog>>,
) -> (Vec<RunningLane>, Vec<LaneAudit>) {
    let pool = Pool::new();
    let sequence = Sequence::new();
    let mut lanes: Vec<RunningLane> = Vec::new();
    let mut groups: Vec<String> = Vec::new();
    let mut audits = Vec::new();
    for ReadyLane {
        plan,
        name,
        sinks,
        auditor,
    } in ready
    {
        let root = roots.get(plan.watch);
        tracing::info!(lane = %name, root = %root.path.display(), "{}", plan.spec.summary());
        let journal = open_journal(state, &name, root);
        let lane = Lane::new_in(
            LaneId::new(name.clone(), root.path.clone()),
            plan.watch,
            timing,
            max_pending,
            journal,
            sequence.clone(),
        );
        if let Some(rule) = order.iter().find(|o| o.plugin == plan.group) {
            let upstream: Vec<Arc<Lane>> = lanes
                .iter()
                .zip(&groups)
                .filter(|(l, group)| l.lane.watch() == plan.watch && rule.after.contains(group))
                .map(|(l, _)| l.lane.clone())
                .collect();
            if upstream.is_empty() {
                tracing::info!(lane = %name, after = %rule.after.join(", "), "not ordered: none of the sinks it runs after serves this watch");
            } else {
                lane.order_after(upstream, rule.rule);
            }
        }
        if plan.spec.consumers_read_the_tree() {
            lane.tell_every_delete();
        }
        if let (Some(log), true) = (script, plan.spec.takes_full_syncs()) {
            lane.record_failures(Arc::new(SpecRecorder {
                log: log.clone(),
                spec: plan.spec.clone(),
            }));
        }
        if let Some(auditor) = auditor {
            audits.push(LaneAudit::new(lane.clone(), auditor, root.path.clone()));
        }
        lane.start(sinks, mode, &pool);
        lanes.push(RunningLane {
            lane,
            full_syncs: plan.spec.takes_full_syncs(),
            spec: plan.spec.clone(),
        });
        groups.push(plan.group);
    }
    (lanes, audits)
}

/// What the lanes do first: full syncs where `first` asks for them, and otherwise a catch-up
/// with what changed since the previous run was `last_alive`.
fn first_syncs(
    first: &FirstSync,
    roots: &Roots,
    rsync_lanes: &[Arc<Lane>],
    all: &[Arc<Lane>],
    filter: Arc<Filter>,
    last_alive: Option<std::time::SystemTime>,
) {
    let is_new = |lane: &Lane, previous: &[LaneId]| !previous.contains(lane.id());
    let full: Vec<Arc<Lane>> = match first {
        FirstSync::All => rsync_lanes.to_vec(),
        FirstSync::NewLanes(previous) => rsync_lanes
            .iter()
            .filter(|l| is_new(l, previous))
            .cloned()
            .collect(),
        FirstSync::CatchUp => Vec::new(),
    };
    if !full.is_empty() {
        tracing::info!(
            lanes = full.len(),
            "pushing every watch root whole to the new (or, with -r, every) remote first"
        );
        request_full_sync(&full, roots.len());
    }
    if *first != FirstSync::All {
        if let Some(since) = last_alive {
            spawn_catch_up(roots.clone(), filter, all.to_vec(), since);
        }
    }
}

/// The periodic tasks: the `<crontab>` full sync, and the `<failLog timeToExecute>` wake-up
/// that makes failing rsync lanes retry now, whatever their backoff.
/// What runs on a timer, each `None` when off.
struct Schedules {
    /// `<crontab>`: a full sync of every root.
    crontab: Option<Duration>,
    /// `<failLog timeToExecute>`: failing lanes retried at once.
    fail_log_every: Option<Duration>,
    /// `<engine auditSeconds>`, with the lanes to audit (one after the other, on one thread).
    audit: Option<(Duration, Vec<LaneAudit>)>,
}

fn start_schedules(
    Schedules {
        crontab,
        fail_log_every,
        audit,
    }: Schedules,
    rsync_lanes: Vec<Arc<Lane>>,
    roots: usize,
    stop: &Arc<AtomicBool>,
) -> Vec<JoinHandle<()>> {
    let mut schedules = Vec::new();
    if let Some((every, mut audits)) = audit.filter(|(_, audits)| !audits.is_empty()) {
        schedules.push(periodic("audit", every, stop.clone(), move || {
            for audit in &mut audits {
                audit.run();
            }
        }));
    }
    if let Some(every) = crontab {
        let lanes = rsync_lanes.clone();
        schedules.push(periodic("crontab", every, stop.clone(), move || {
            tracing::info!("crontab: full sync of every watch root");
            request_full_sync(&lanes, roots);
        }));
    }
    if let Some(every) = fail_log_every {
        schedules.push(periodic("failLog", every, stop.clone(), move || {
            for lane in rsync_lanes.iter().filter(|l| l.stats().retry_streak() > 0) {
                tracing::info!(lane = %lane.name(), "failLog timeToExecute: retrying now");
                lane.retry_now();
            }
        }));
    }
    schedules
}

fn spawn_reader(
    watcher: Watcher,
    tx: Sender<Vec<Event>>,
    stop: Arc<AtomicBool>,
    on_exit: impl FnOnce(Option<WatchError>) + Send + 'static,
) -> JoinHandle<()> {
    thread::Builder::new()
        .name("inotify reader".into())
        .spawn(move || on_exit(watcher.run(tx, stop).err()))
        .expect("spawning the reader")
}

/// Pushes "every root may have changed" into `lanes` (each takes its own watch's).
pub fn request_full_sync(lanes: &[Arc<Lane>], roots: usize) {
    let events: Vec<Event> = (0..roots)
        .map(|i| Event::now(EventKind::Rescan, RelPath::ROOT, true, WatchId(i as u32)))
        .collect();
    for lane in lanes {
        lane.push_all(events.iter());
    }
}

/// Runs `task` every `every` on a thread called `name` until `stop` is set. The crontab's
/// full syncs use it: a lane busy with the previous one merges the new request into its
/// pending rescan, so two never overlap.
fn periodic(
    name: &str,
    every: Duration,
    stop: Arc<AtomicBool>,
    mut task: impl FnMut() + Send + 'static,
) -> JoinHandle<()> {
    thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let mut next = Instant::now() + every;
            while !stop.load(Ordering::Relaxed) {
                thread::sleep(Duration::from_millis(200).min(every));
                if Instant::now() >= next {
                    task();
                    next = Instant::now() + every;
                }
            }
        })
        .expect("spawning a schedule")
}

/// Closes every lane and waits up to `deadline` for them to deliver what they hold.
fn drain(lanes: Vec<RunningLane>, deadline: Duration) {
    for l in &lanes {
        l.lane.close();
    }
    let until = Instant::now() + deadline;
    for l in lanes {
        match l.lane.wait_finished(until) {
            None => {
                tracing::warn!(lane = %l.lane.name(), pending = l.lane.pending(), "stop deadline passed with a delivery in flight; its changes stay in the journal")
            }
            Some(left) if !left.is_empty() => {
                tracing::warn!(lane = %l.lane.name(), paths = left.len(), "stopped with undelivered changes; they stay in the journal for the next start")
            }
            Some(_) => {}
        }
    }
}

/// Opens the journal of lane `name` for `root` in the state directory; on failure (or
/// when the state directory was refused) logs why and returns `None` (the lane then syncs
/// without one).
fn open_journal(
    state: Result<&Arc<StateDir>, &StateDirError>,
    name: &str,
    root: &Root,
) -> Option<(Journal, Vec<Event>)> {
    let file = Journal::file_name(&LaneId::new(name, root.path.clone()));
    let opened = match state {
        Ok(dir) => Journal::open(dir, &file, root.watch).map_err(|e| e.to_string()),
        Err(refused) => Err(refused.to_string()),
    };
    opened
        .map_err(|error| tracing::error!(lane = name, journal = %file, %error, "cannot open the lane's journal; syncing goes on without one, so changes pending at a stop or crash need a full sync (-r)"))
        .ok()
}

/// Warns when the watched directories come close to the kernel's watch limit.
fn warn_if_near_limits(directories: u64) {
    if let Ok(limits) = InotifyLimits::read() {
        if directories.saturating_mul(10) > limits.max_user_watches.saturating_mul(9) {
            tracing::warn!(
                directories,
                max_user_watches = limits.max_user_watches,
                "{}",
                crate::watch::limits::watch_limit_advice(limits.max_user_watches, directories * 2)
            );
        }
    }
}
