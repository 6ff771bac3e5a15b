//! The daemon's main loop: start the engine, then react to signals — stop, or reload the
//! configuration without losing pending work — and to a reader that fails.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};

use crate::systemd;
use sersync::config::{self, Config};
use sersync::control::{
    Access, Control, DaemonState, LaneStatus, ServerHandle, StatusSnapshot, WatchStatus,
};
use sersync::dispatch::Lane;
use sersync::engine::{self, Engine, FirstSync, RunOptions};
use sersync::watch::WatchError;
use sersync::watch::{RootGuard, WatcherStats};
use sersync_plugins::sdk::WatchId;
use sersync_plugins::SinkSpec;

/// What the main loop reacts to.
#[derive(Debug)]
pub enum Notice {
    /// SIGTERM or SIGINT: deliver what is pending and exit.
    Stop,
    /// SIGHUP: load the configuration again and switch to it if it is valid.
    Reload,
    /// The reader stopped with an error.
    ReaderFailed(WatchError),
}

/// Loads the configuration the way the command line asks: with `-m`, the file-system checks
/// of the rsync part are skipped (only the plugin's own section matters).
pub fn load_config(path: &Path, options: &RunOptions) -> Result<Config, String> {
    let loaded = if options.only_plugin.is_some() {
        config::read(path)
    } else {
        config::load(path)
    };
    loaded.map_err(|e| e.to_string())
}

/// Runs the engine for `config` (read from `path`) until a [`Notice::Stop`]; returns an error
/// when it cannot start or its reader fails. `hub` is pointed at whichever engine runs, and
/// the control endpoint (`control`, when it runs) is held to each reload's token.
pub fn supervise(
    path: &Path,
    config: Config,
    options: &RunOptions,
    notices: (Sender<Notice>, Receiver<Notice>),
    hub: &Arc<Hub>,
    control: Option<&ServerHandle>,
) -> Result<(), String> {
    let (tx, rx) = notices;
    let prepared = Engine::prepare(&config, options).map_err(|e| e.to_string())?;
    let first = if options.full_sync_first {
        FirstSync::All
    } else {
        FirstSync::CatchUp
    };
    let mut engine = start(prepared, first, &tx);
    hub.show(&engine);
    systemd::ready(&running_status(&engine));
    for notice in rx {
        match notice {
            Notice::Stop => break,
            Notice::ReaderFailed(error) => {
                systemd::stopping();
                engine.stop(options.shutdown_deadline);
                return Err(error.to_string());
            }
            Notice::Reload => match reload(path, options) {
                Ok((prepared, access)) => {
                    let previous = engine.kept_lane_ids();
                    engine.stop(options.shutdown_deadline);
                    // The board shows the start-up full sync only, not the new lanes'.
                    if let Some(board) = &options.progress {
                        board.close();
                    }
                    engine = start(prepared, FirstSync::NewLanes(previous), &tx);
                    hub.show(&engine);
                    if let Some(server) = control {
                        server.set_access(access);
                    }
                    tracing::info!(config = %path.display(), "configuration reloaded");
                    systemd::ready(&running_status(&engine));
                }
                Err(message) => {
                    tracing::error!("reload refused, the running configuration stays: {message}");
                    systemd::ready(&format!(
                        "{} (reload refused: {message})",
                        running_status(&engine)
                    ));
                }
            },
        }
    }
    systemd::stopping();
    engine.stop(options.shutdown_deadline);
    Ok(())
}

/// One line for `systemctl status`: what is watched and how many lanes deliver.
fn running_status(engine: &Engine) -> String {
    format!(
        "watching {} directories in {} roots, {} lanes",
        engine.watcher_stats().directories(),
        engine.roots().len(),
        engine.lane_ids().len()
    )
}

/// The engine of the configuration at `path`, and what the control endpoint asks of requests
/// under it (its token file is read again).
fn reload(path: &Path, options: &RunOptions) -> Result<(engine::Prepared, Access), String> {
    tracing::info!(config = %path.display(), "SIGHUP: reloading the configuration");
    systemd::reloading();
    let config = load_config(path, options)?;
    let access = config
        .control
        .access()
        .map_err(|e| e.in_file(path).to_string())?;
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    let options = RunOptions {
        progress: None,
        ..options.clone()
    };
    let prepared = Engine::prepare(&config, &options).map_err(|e| e.to_string())?;
    Ok((prepared, access))
}

fn start(prepared: engine::Prepared, first: FirstSync, tx: &Sender<Notice>) -> Engine {
    let tx = tx.clone();
    Engine::start(prepared, first, move |error| {
        if let Some(error) = error {
            let _ = tx.send(Notice::ReaderFailed(error));
        }
    })
}

/// What the control endpoint sees of the engine that runs now.
#[derive(Default)]
struct View {
    roots: Vec<PathBuf>,
    lanes: Vec<(Arc<Lane>, PathBuf, bool)>,
    stats: Option<Arc<WatcherStats>>,
    /// Which roots are lost.
    guard: Option<Arc<RootGuard>>,
    /// The lanes with their sinks' specs, for `POST /approve`.
    specs: Vec<(Arc<Lane>, Arc<dyn SinkSpec>)>,
}

/// The [`Control`] implementation: follows the running engine across reloads.
pub struct Hub {
    started: Instant,
    view: RwLock<View>,
}

impl Default for Hub {
    fn default() -> Self {
        Hub {
            started: Instant::now(),
            view: RwLock::new(View::default()),
        }
    }
}

impl Hub {
    fn show(&self, engine: &Engine) {
        let roots = engine.roots();
        let view = View {
            lanes: engine
                .lanes()
                .map(|(lane, full)| (lane.clone(), roots.path(lane.watch()).into(), full))
                .collect(),
            roots: roots.paths(),
            stats: Some(engine.watcher_stats().clone()),
            guard: Some(engine.root_guard().clone()),
            specs: engine.lane_specs(),
        };
        *self.view.write().unwrap_or_else(|e| e.into_inner()) = view;
    }
}

impl Control for Hub {
    fn snapshot(&self) -> StatusSnapshot {
        let view = self.view.read().unwrap_or_else(|e| e.into_inner());
        let stats = view.stats.as_deref();
        let read = |f: fn(&WatcherStats) -> u64| stats.map_or(0, f);
        StatusSnapshot {
            state: match stats {
                Some(_) => DaemonState::Running,
                None => DaemonState::Starting,
            },
            version: env!("CARGO_PKG_VERSION").to_string(),
            pid: std::process::id(),
            uptime: self.started.elapsed(),
            overflows: read(WatcherStats::overflows),
            events_seen: read(WatcherStats::events),
            directories: read(WatcherStats::directories),
            watch_skipped: read(WatcherStats::skipped),
            watch_rewalks: read(WatcherStats::rewalks),
            watches: view
                .roots
                .iter()
                .enumerate()
                .map(|(i, root)| WatchStatus {
                    root: root.clone(),
                    lost: view.guard.as_ref().and_then(|g| g.lost(WatchId(i as u32))),
                })
                .collect(),
            lanes: view
                .lanes
                .iter()
                .map(|(lane, root, _)| lane_status(lane, root))
                .collect(),
        }
    }

    fn request_full_sync(&self, watch: Option<&str>, remote: Option<&str>) -> usize {
        let view = self.view.read().unwrap_or_else(|e| e.into_inner());
        let chosen: Vec<Arc<Lane>> = view
            .lanes
            .iter()
            .filter(|(lane, root, full)| {
                *full
                    && watch.is_none_or(|w| Path::new(w) == root.as_path())
                    && remote.is_none_or(|r| lane.name().contains(r))
            })
            .map(|(lane, _, _)| lane.clone())
            .collect();
        engine::request_full_sync(&chosen, view.roots.len());
        chosen.len()
    }

    fn approve_deletes(&self, remote: Option<&str>) -> usize {
        let view = self.view.read().unwrap_or_else(|e| e.into_inner());
        engine::approve_deletes(view.specs.iter().map(|(l, s)| (l, s)), remote)
    }
}

fn lane_status(lane: &Lane, root: &Path) -> LaneStatus {
    let stats = lane.stats();
    let last = stats.last();
    LaneStatus {
        name: lane.name().to_string(),
        root: root.to_path_buf(),
        pending: lane.pending() as u64,
        in_flight: stats.in_flight(),
        batches: stats.batches(),
        events: stats.events(),
        failures: stats.failures(),
        retry_streak: stats.retry_streak(),
        last_success: last.success,
        oldest_pending: lane.oldest_pending(),
        last_error: last.error,
        journal_bytes: lane.journal_bytes(),
        latency: stats.latency(),
        audit_runs: stats.audit_runs(),
        audit_differences: stats.audit_differences(),
        order: lane.order_status(),
        held: lane.held(),
    }
}
