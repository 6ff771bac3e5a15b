//! The `command` sink: runs `prefix ABSOLUTE_PATH suffix` for each changed path, as sersync
//! 2.5.4 did, but without a shell: the prefix and suffix are split into words once, at load,
//! and the path is one argument, whatever bytes it holds.
//!
//! See `docs/sinks/command.md` for the options, the environment a run gets, and how each event
//! kind maps to runs.

mod config;
mod process;

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use sersync_plugin_sdk::{Batch, ConfigError, ConfigNode, Sink, SinkContext, SinkError};

use crate::common::changes::{changed_paths, Changed, Role};
use crate::common::show;
use crate::SinkSpec;
use config::CommandOptions;
use process::{Invocation, RunError};

/// Largest total size of the paths handed to one run in batch mode (well below `ARG_MAX`).
const MAX_BATCH_BYTES: usize = 128 * 1024;

/// Reads `<plugin name="command">` into a [`SinkSpec`].
pub fn configure(node: &ConfigNode) -> Result<Box<dyn SinkSpec>, ConfigError> {
    Ok(Box::new(CommandSpec {
        options: CommandOptions::parse(node)?,
    }))
}

/// The validated command configuration; serves every watch.
#[derive(Debug)]
struct CommandSpec {
    options: CommandOptions,
}

impl SinkSpec for CommandSpec {
    fn name(&self) -> String {
        "command".into()
    }

    fn summary(&self) -> String {
        let o = &self.options;
        let mode = match o.batch {
            Some(n) => format!("up to {n} paths per run"),
            None => "one run per path".into(),
        };
        let argv = [show_words(&o.prefix), "PATH".into(), show_words(&o.suffix)];
        format!(
            "command: runs {} ({mode}, timeout {:?}{}{}{}), no shell",
            argv.join(" ").trim_end(),
            o.timeout,
            if o.ignore_error {
                ", exit status ignored"
            } else {
                ""
            },
            match &o.includes {
                Some(res) => format!(", only paths matching one of {} include filters", res.len()),
                None => String::new(),
            },
            match o.pass_env.as_slice() {
                [] => String::new(),
                names => format!(", also passes {}", names.join(" ")),
            }
        )
    }

    fn start(&self, ctx: &SinkContext) -> Result<Box<dyn Sink>, SinkError> {
        Ok(Box::new(CommandSink {
            options: self.options.clone(),
            root: ctx.root.clone(),
            label: self.options.prefix[0].to_string_lossy().into_owned(),
            inherited: process::inherited_env(std::env::vars_os(), &self.options.pass_env),
        }))
    }
}

/// One lane of the command sink.
struct CommandSink {
    options: CommandOptions,
    root: PathBuf,
    label: String,
    /// What every run keeps of sersync's environment, read when the lane starts.
    inherited: Vec<(OsString, OsString)>,
}

/// One planned run: the paths it gets and its environment.
struct Run {
    paths: Vec<PathBuf>,
    env: Vec<(&'static str, OsString)>,
}

impl CommandSink {
    /// The runs `batch` calls for, filter applied, in batch order.
    fn plan(&self, batch: &Batch) -> Vec<Run> {
        let root_env = ("SERSYNC_ROOT", self.root.clone().into_os_string());
        let accepted = changed_paths(batch)
            .map(|c| (c.absolute(&self.root), c))
            .filter(|(abs, _)| self.options.accepts(abs.as_os_str().as_bytes()));
        let Some(max_args) = self.options.batch else {
            return accepted
                .map(|(abs, c)| Run {
                    env: [root_env.clone()].into_iter().chain(path_env(&c)).collect(),
                    paths: vec![abs],
                })
                .collect();
        };
        let mut runs: Vec<Run> = Vec::new();
        let mut bytes = 0;
        for (abs, _) in accepted {
            let len = abs.as_os_str().len() + 1;
            match runs.last_mut() {
                Some(run) if run.paths.len() < max_args && bytes + len <= MAX_BATCH_BYTES => {
                    bytes += len;
                    run.paths.push(abs);
                }
                _ => {
                    bytes = len;
                    runs.push(Run {
                        paths: vec![abs],
                        env: vec![root_env.clone(), ("SERSYNC_EVENT", "batch".into())],
                    });
                }
            }
        }
        runs
    }

    fn argv(&self, paths: &[PathBuf]) -> Vec<OsString> {
        let o = &self.options;
        o.prefix
            .iter()
            .cloned()
            .chain(paths.iter().map(|p| p.clone().into_os_string()))
            .chain(o.suffix.iter().cloned())
            .collect()
    }

    fn run(&self, run: Run) -> Result<(), SinkError> {
        let what = match run.paths.as_slice() {
            [one] => show(one.as_os_str().as_bytes()),
            many => format!(
                "{} paths from {}",
                many.len(),
                show(many[0].as_os_str().as_bytes())
            ),
        };
        let invocation = Invocation {
            argv: self.argv(&run.paths),
            inherited: &self.inherited,
            env: run.env,
            cwd: &self.root,
            timeout: self.options.timeout,
            label: &self.label,
        };
        let label = &self.label;
        match invocation.run() {
            Ok(status) if status.success() => Ok(()),
            Ok(status) if self.options.ignore_error => {
                tracing::warn!(target: "sersync::command", command = %label, "{status} for {what} (ignoreError)");
                Ok(())
            }
            Ok(status) => Err(SinkError::retryable(format!(
                "command {label}: {status} for {what}"
            ))),
            Err(RunError::TimedOut) => Err(SinkError::retryable(format!(
                "command {label}: killed after {:?} (timeout) for {what}",
                self.options.timeout
            ))),
            Err(RunError::Spawn(e)) => {
                let message = format!("command {label}: cannot run it: {e}");
                match e.kind() {
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied => {
                        Err(SinkError::fatal(message))
                    }
                    _ => Err(SinkError::retryable(message)),
                }
            }
        }
    }
}

impl Sink for CommandSink {
    fn deliver(&mut self, batch: &Batch) -> Result<(), SinkError> {
        self.plan(batch)
            .into_iter()
            .try_for_each(|run| self.run(run))
    }

    fn describe(&self, batch: &Batch) -> Vec<String> {
        self.plan(batch)
            .into_iter()
            .map(|run| format!("would run {}", show_words(&self.argv(&run.paths))))
            .collect()
    }
}

/// `SERSYNC_EVENT`, `SERSYNC_PATH`, `SERSYNC_IS_DIR` and, for a move, `SERSYNC_FROM` (on the
/// new name) or `SERSYNC_TO` (on the old one).
fn path_env(c: &Changed<'_>) -> Vec<(&'static str, OsString)> {
    let bytes = |p: &sersync_plugin_sdk::RelPath| OsString::from_vec(p.as_bytes().to_vec());
    let mut env = vec![
        ("SERSYNC_EVENT", c.kind_name().into()),
        ("SERSYNC_PATH", bytes(c.path)),
        (
            "SERSYNC_IS_DIR",
            if c.event.is_dir { "1" } else { "0" }.into(),
        ),
    ];
    match (c.role, &c.event.from) {
        (Role::Path, Some(from)) => env.push(("SERSYNC_FROM", bytes(from))),
        (Role::MovedFrom, _) => env.push(("SERSYNC_TO", bytes(&c.event.path))),
        _ => {}
    }
    env
}

/// Words for a log line, each escaped and single-quoted when it holds a space.
fn show_words<S: AsRef<Path>>(words: &[S]) -> String {
    words
        .iter()
        .map(|w| {
            let s = show(w.as_ref().as_os_str().as_bytes());
            if s.contains(' ') || s.is_empty() {
                format!("'{s}'")
            } else {
                s
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}
