//! Assembling and running the pipeline: watcher → router → lanes, plus the schedules.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use sersync_plugin_sdk::{ConfigError, Event, EventKind, RelPath, SinkContext, WatchId};

use crate::config::Config;
use crate::dispatch::{self, Journal, Lane, LaneTiming, Mode};
use crate::filter::Filter;
use crate::topology::Topology;
use crate::watch::{limits::InotifyLimits, WatchError, Watcher};

/// How the daemon was asked to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunOptions {
    /// `-r`: push every watch root whole to every remote before watching.
    pub full_sync_first: bool,
    /// `-n`: rsync processes at once (0 means 10).
    pub workers: usize,
    /// `-m NAME`: run only that plugin.
    pub only_plugin: Option<String>,
    /// Deliver, or print what would be delivered.
    pub mode: Mode,
    /// How long shutdown waits for lanes to deliver what they hold.
    pub shutdown_deadline: Duration,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            full_sync_first: false,
            workers: 10,
            only_plugin: None,
            mode: Mode::Deliver,
            shutdown_deadline: Duration::from_secs(10),
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

/// A running lane and its thread.
struct RunningLane {
    lane: Arc<Lane>,
    full_syncs: bool,
    thread: JoinHandle<Vec<Event>>,
}

/// Runs until `shutdown` is set: watches, routes, delivers. Calls `ready` once every watch
/// is established and every lane started.
pub fn run(
    config: &Config,
    options: &RunOptions,
    shutdown: Arc<AtomicBool>,
    ready: impl FnOnce(),
) -> Result<(), EngineError> {
    let workers = if options.workers == 0 {
        10
    } else {
        options.workers
    };
    let topology = Topology::plan(config, options.only_plugin.as_deref(), workers)?;
    let filter = Arc::new(Filter::new(&config.filter));

    let started = Instant::now();
    let watcher = Watcher::new(
        topology.roots.clone(),
        filter.clone(),
        config.events,
        config.debug,
    )?;
    let stats = watcher.stats();
    for root in &topology.roots {
        tracing::info!(watch = root.watch.0, root = %root.path.display(), "watching");
    }
    tracing::info!(
        directories = stats.directories(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "watches established"
    );
    warn_if_near_limits(stats.directories());

    let timing = LaneTiming {
        settle: config.engine.settle,
        max_delay: config.engine.max_delay,
        retry_initial: config.engine.retry_initial,
        retry_max: config.engine.retry_max,
    };
    let mut lanes = Vec::new();
    for plan in &topology.lanes {
        let root = &topology.roots[plan.watch.0 as usize];
        let name = plan.spec.name();
        let ctx = SinkContext {
            watch: plan.watch,
            root: root.path.clone(),
            filter: filter.clone(),
        };
        let sink = plan.spec.start(&ctx).map_err(|e| EngineError::Sink {
            lane: name.clone(),
            message: e.to_string(),
        })?;
        tracing::info!(lane = %name, root = %root.path.display(), "{}", plan.spec.summary());
        let journal = open_journal(&config.engine.state_dir, &name, root);
        let lane = Lane::new(
            name.clone(),
            plan.watch,
            root.path.clone(),
            timing,
            config.engine.max_pending,
            journal,
        );
        let worker = lane.clone();
        let mode = options.mode;
        let thread = thread::Builder::new()
            .name(format!("lane {name}"))
            .spawn(move || worker.run(sink, mode))
            .expect("spawning a lane thread");
        lanes.push(RunningLane {
            lane,
            full_syncs: plan.full_syncs,
            thread,
        });
    }

    let rsync_lanes: Vec<Arc<Lane>> = lanes
        .iter()
        .filter(|l| l.full_syncs)
        .map(|l| l.lane.clone())
        .collect();
    if options.full_sync_first {
        tracing::info!("-r: pushing every watch root whole to every remote first");
        request_full_sync(&rsync_lanes, topology.roots.len());
    }

    let all: Vec<Arc<Lane>> = lanes.iter().map(|l| l.lane.clone()).collect();
    let (tx, rx) = crossbeam_channel::bounded::<Vec<Event>>(1024);
    let router = thread::Builder::new()
        .name("router".into())
        .spawn(move || dispatch::route(rx, &all))
        .expect("spawning the router");
    let reader_shutdown = shutdown.clone();
    let reader = thread::Builder::new()
        .name("inotify reader".into())
        .spawn(move || watcher.run(tx, reader_shutdown))
        .expect("spawning the reader");
    let scheduler = config.crontab.as_ref().map(|crontab| {
        let every = crontab.every;
        let rsync_lanes = rsync_lanes.clone();
        let roots = topology.roots.len();
        let stop = shutdown.clone();
        thread::Builder::new()
            .name("crontab".into())
            .spawn(move || crontab_loop(every, &rsync_lanes, roots, &stop))
            .expect("spawning the crontab")
    });

    ready();
    tracing::info!(lanes = lanes.len(), "running");

    let outcome = reader.join().unwrap_or_else(|_| {
        Err(WatchError::Io {
            path: "inotify reader".into(),
            error: std::io::Error::other("the reader thread panicked"),
        })
    });
    shutdown.store(true, Ordering::SeqCst);
    let _ = router.join();
    if let Some(s) = scheduler {
        let _ = s.join();
    }
    drain(lanes, options.shutdown_deadline);
    outcome.map_err(EngineError::from)
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

/// The `<crontab>` schedule: a full sync of every rsync lane every `every`. A lane busy with
/// the previous one merges the new request into its pending rescan, so two never overlap.
fn crontab_loop(every: Duration, lanes: &[Arc<Lane>], roots: usize, stop: &AtomicBool) {
    let mut next = Instant::now() + every;
    while !stop.load(Ordering::Relaxed) {
        thread::sleep(Duration::from_millis(200).min(every));
        if Instant::now() >= next {
            tracing::info!("crontab: full sync of every watch root");
            request_full_sync(lanes, roots);
            next = Instant::now() + every;
        }
    }
}

/// Closes every lane and waits up to `deadline` for them to deliver what they hold.
fn drain(lanes: Vec<RunningLane>, deadline: Duration) {
    for l in &lanes {
        l.lane.close();
    }
    let until = Instant::now() + deadline;
    for l in lanes {
        while !l.thread.is_finished() && Instant::now() < until {
            thread::sleep(Duration::from_millis(20));
        }
        if !l.thread.is_finished() {
            tracing::warn!(lane = %l.lane.name(), pending = l.lane.pending(), "shutdown deadline passed with a delivery in flight");
            continue;
        }
        match l.thread.join() {
            Ok(left) if !left.is_empty() => {
                tracing::warn!(lane = %l.lane.name(), paths = left.len(), "stopped with undelivered changes")
            }
            Ok(_) => {}
            Err(_) => tracing::error!(lane = %l.lane.name(), "lane thread panicked"),
        }
    }
}

/// Opens the journal of lane `name` for `root`; on failure logs why and returns `None` (the
/// lane then syncs without one).
fn open_journal(
    state_dir: &std::path::Path,
    name: &str,
    root: &crate::watch::Root,
) -> Option<(Journal, Vec<Event>)> {
    let path = state_dir.join(Journal::file_name(name, &root.path));
    match Journal::open(&path, root.watch) {
        Ok(opened) => Some(opened),
        Err(error) => {
            tracing::error!(lane = name, journal = %path.display(), %error, "cannot open the lane's journal; syncing goes on without one (set <engine stateDir> to a writable directory)");
            None
        }
    }
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
