//! Which trees are watched and which lanes serve them, from the configuration and the
//! command line. Pure: touches neither the kernel nor the network.

use std::path::PathBuf;
use std::sync::Arc;

use sersync_plugin_sdk::{ConfigError, WatchId};
use sersync_plugins::progress::ProgressDisplay;
use sersync_plugins::{configure_plugin, SinkSetup, SinkSpec};

use crate::config::Config;
use crate::progress::ProgressBoard;
use crate::watch::Roots;

/// What `after=` calls the sinks `<sersync>` configures (every remote).
pub const RSYNC_GROUP: &str = "rsync";

/// One lane to start: a sink for one watch.
#[derive(Debug, Clone)]
pub struct LanePlan {
    /// The watch it serves.
    pub watch: WatchId,
    /// The configured sink; what the engine does with the lane follows from its
    /// capabilities (`takes_full_syncs`, `replay_command`, …).
    pub spec: Arc<dyn SinkSpec>,
    /// The name `after=` refers to it by: `rsync` for the sinks `<sersync>` configures,
    /// the plugin's name for a plugin.
    pub group: String,
}

/// Every watch root and every lane.
#[derive(Debug, Clone)]
pub struct Topology {
    /// The trees to watch.
    pub roots: Roots,
    /// The lanes.
    pub lanes: Vec<LanePlan>,
}

impl Topology {
    /// Plans the watches and lanes. `only_plugin` is `-m NAME`: that plugin alone, none of
    /// the sinks `<sersync>` configures. `workers` (`-n`) and `progress`, the board of the
    /// start-up full sync (`-r` on a terminal), are handed to those sinks ([`SinkSetup`]):
    /// each that can report progress takes a place on the board.
    pub fn plan(
        config: &Config,
        only_plugin: Option<&str>,
        workers: usize,
        progress: Option<&Arc<ProgressBoard>>,
    ) -> Result<Topology, ConfigError> {
        let mut topology = Topology {
            roots: Roots::new(),
            lanes: Vec::new(),
        };
        let sersync_roots: Vec<PathBuf> = config.watches.iter().map(|w| w.root.clone()).collect();
        if only_plugin.is_none() {
            config.require_watches()?;
            let setup = SinkSetup {
                workers,
                progress: progress.map(|board| board.clone() as Arc<dyn ProgressDisplay>),
                warm_transfers: config.engine.warm_transfers,
                // Safe now or created 0700 at start; a refused one holds no socket of ours.
                state_dir: crate::state_dir::inspect(&config.engine.state_dir)
                    .is_ok()
                    .then(|| config.engine.state_dir.clone()),
            };
            for (i, spec) in config.sersync_sinks.specs(&sersync_roots, &setup) {
                let id = topology.root_id(&sersync_roots[i]);
                topology.lanes.push(LanePlan {
                    watch: id,
                    spec: Arc::from(spec),
                    group: RSYNC_GROUP.to_string(),
                });
            }
        }
        let plugins: Vec<&str> = match only_plugin {
            Some(name) => vec![name],
            None => config.enabled_plugins.iter().map(String::as_str).collect(),
        };
        for name in plugins {
            let spec: Arc<dyn SinkSpec> = Arc::from(configure_named(config, name)?);
            let own = spec.own_watches();
            let targets = if own.is_empty() {
                sersync_roots.clone()
            } else {
                own
            };
            if targets.is_empty() {
                return Err(ConfigError::new(format!(
                    "plugin {name} has no <localpath watch> of its own and <sersync> has none"
                ))
                .with_hint("add <localpath watch=\"/dir\"> to <sersync> or to the plugin's section")
                .in_file(&config.file));
            }
            for root in targets {
                let id = topology.root_id(&root);
                topology.lanes.push(LanePlan {
                    watch: id,
                    spec: spec.clone(),
                    group: name.to_string(),
                });
            }
        }
        topology.check_roots_do_not_nest(config)?;
        topology.order_upstream_first(config);
        Ok(topology)
    }

    /// Puts every lane after the lanes it runs after (`after=`): lanes are made, replay
    /// their journals and are pushed to in this order (`dispatch::order`). Stable otherwise.
    fn order_upstream_first(&mut self, config: &Config) {
        fn depth(group: &str, config: &Config, seen: usize) -> usize {
            let order = config.plugin_order.iter().find(|o| o.plugin == group);
            match order {
                // The configuration refuses loops; the bound is only a guard.
                Some(o) if seen < 64 => {
                    1 + o
                        .after
                        .iter()
                        .map(|a| depth(a, config, seen + 1))
                        .max()
                        .unwrap_or(0)
                }
                _ => 0,
            }
        }
        self.lanes.sort_by_key(|plan| depth(&plan.group, config, 0));
    }

    fn root_id(&mut self, path: &std::path::Path) -> WatchId {
        self.roots.add(path)
    }

    /// The kernel hands out one watch per directory: a tree inside another cannot be
    /// watched twice.
    fn check_roots_do_not_nest(&self, config: &Config) -> Result<(), ConfigError> {
        for a in &self.roots {
            for b in &self.roots {
                if a.watch != b.watch && b.path.starts_with(&a.path) {
                    return Err(ConfigError::new(format!(
                        "watch roots {} and {} nest; one tree cannot be watched twice",
                        a.path.display(),
                        b.path.display()
                    ))
                    .with_hint(
                        "watch only the outer directory, or exclude the inner one with <filter>",
                    )
                    .in_file(&config.file));
                }
            }
        }
        Ok(())
    }
}

/// Configures the plugin `name` from its top-level `<plugin>` section.
pub fn configure_named(config: &Config, name: &str) -> Result<Box<dyn SinkSpec>, ConfigError> {
    let section = config.plugin_section(name).ok_or_else(|| {
        ConfigError::new(format!(
            "plugin {name} is selected but the file has no <plugin name=\"{name}\"> section"
        ))
        .with_hint(format!(
            "add <plugin name=\"{name}\"> with its options at the top level of <head>"
        ))
        .in_file(&config.file)
    })?;
    configure_plugin(&section.node).map_err(|e| e.in_file(&config.file))
}
