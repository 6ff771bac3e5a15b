//! The command line: sersync 2.5.4's flags, with long forms, and the additions.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::logging::LogFormat;

/// Live file sync: watches directory trees with inotify and pushes every change through rsync
/// to many slaves, and through plugin sinks (command, refreshCDN, socket, http, native and
/// WASM plugins). A drop-in for sersync 2.5.4: same confxml.xml, same flags.
#[derive(Debug, Parser)]
#[command(name = "sersync", version, about, long_about = None)]
pub struct Cli {
    /// Push every watch root whole to every remote once before watching (the first sync).
    #[arg(short = 'r', long = "full-sync")]
    pub full_sync: bool,

    /// Run in the background as a daemon.
    #[arg(short = 'd', long = "daemon")]
    pub daemon: bool,

    /// The configuration file.
    #[arg(
        short = 'o',
        long = "config",
        value_name = "FILE",
        default_value = "confxml.xml",
        global = true
    )]
    pub config: PathBuf,

    /// rsync processes running at once, across all remotes (0: 10).
    #[arg(short = 'n', long = "threads", value_name = "N", default_value_t = 0)]
    pub threads: usize,

    /// Run only the plugin NAME (refreshCDN, socket, command, http, or a plugin section's
    /// name), no rsync.
    #[arg(short = 'm', long = "plugin", value_name = "NAME")]
    pub plugin: Option<String>,

    /// Load and validate the configuration, print the effective setup, and exit.
    #[arg(long)]
    pub check: bool,

    /// Watch and batch as usual, but print what each sink would do instead of doing it.
    #[arg(long)]
    pub dry_run: bool,

    /// More log output (-v debug, -vv trace). RUST_LOG overrides.
    #[arg(short = 'v', long = "verbose", action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Less log output (-q warnings, -qq errors only).
    #[arg(short = 'q', long = "quiet", action = clap::ArgAction::Count)]
    pub quiet: u8,

    /// Log line format.
    #[arg(long, value_enum, default_value = "human")]
    pub log_format: LogFormat,

    /// Append the log to FILE instead of standard error (useful with -d).
    #[arg(long, value_name = "FILE")]
    pub log_file: Option<PathBuf>,

    /// Write the daemon's process id to FILE; refuse to start when a live process holds it.
    #[arg(long, value_name = "FILE")]
    pub pid_file: Option<PathBuf>,

    /// As root: raise fs.inotify.max_user_watches and max_queued_events when they are too
    /// low for the watched trees (sersync never rewrites them on its own).
    #[arg(long)]
    pub raise_limits: bool,

    /// Instead of running the daemon (the default, as in 2.5.4), do this.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// What `sersync` can do besides running the daemon. 2.5.4 took no positional arguments, so
/// its command lines keep their meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Show how the running daemon is doing, one line per lane.
    ///
    /// Asks the control endpoint at the configuration's <host hostip port> (GET /status) and
    /// prints, per lane: pending paths, events in flight, events delivered, failures, the age
    /// of the last success and the last error.
    Status,
}

impl Cli {
    /// `-v` count minus `-q` count.
    pub fn verbosity(&self) -> i8 {
        self.verbose.min(4) as i8 - self.quiet.min(4) as i8
    }

    /// True when the start-up full sync (`-r`) shows its progress: for a person watching the
    /// terminal on standard error (`stderr_is_terminal`; `term`, the value of `TERM`, must
    /// know cursor movement), so not with `-d`, `--dry-run`, `-m` (no rsync), `-q`, nor with
    /// JSON log lines on standard error (those are for a program).
    pub fn shows_progress(&self, stderr_is_terminal: bool, term: Option<&str>) -> bool {
        let json_on_stderr = self.log_file.is_none() && self.log_format == LogFormat::Json;
        self.full_sync
            && !self.daemon
            && !self.dry_run
            && self.plugin.is_none()
            && self.quiet == 0
            && !json_on_stderr
            && stderr_is_terminal
            && term.is_some_and(|t| !t.is_empty() && t != "dumb")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shows(args: &[&str], tty: bool, term: Option<&str>) -> bool {
        let mut argv = vec!["sersync"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).unwrap().shows_progress(tty, term)
    }

    #[test]
    fn progress_only_for_the_first_sync_of_a_foreground_run_on_a_terminal() {
        let xterm = Some("xterm-256color");
        assert!(shows(&["-r"], true, xterm));
        assert!(shows(&["-r", "-v", "--log-file", "/l"], true, xterm));
        assert!(shows(
            &["-r", "--log-format", "json", "--log-file", "/l"],
            true,
            xterm
        ));
        assert!(!shows(&[], true, xterm));
        assert!(!shows(&["-r"], false, xterm));
        assert!(!shows(&["-r"], true, Some("dumb")));
        assert!(!shows(&["-r"], true, None));
        for refused in [
            &["-r", "-d"][..],
            &["-r", "--dry-run"],
            &["-r", "-m", "http"],
            &["-r", "-q"],
            &["-r", "--log-format", "json"],
        ] {
            assert!(!shows(refused, true, xterm), "{refused:?}");
        }
    }
}
