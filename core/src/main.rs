//! The `sersync` binary: the command line, then the daemon's glue around the engine the
//! library provides.

mod daemon;
mod logging;
mod supervisor;
mod systemd;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use sersync::cli::Cli;
use sersync::config::Config;
use sersync::dispatch::Mode;
use sersync::engine::RunOptions;
use sersync::progress::ProgressBoard;
use sersync::topology::{configure_named, Topology};

use crate::supervisor::Hub;

/// Exit status for a configuration that cannot be used (sersync 2.5.4 used 255).
const EXIT_CONFIG: u8 = 255;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 1 } else { 0 });
        }
    };
    if let Some(code) = sersync::cli::print_generated(cli.command) {
        return code;
    }
    if let Some(sersync::cli::Command::Status(args)) = cli.command {
        return sersync::control::client::status_command(&cli.config, &args);
    }
    let options = RunOptions {
        full_sync_first: cli.full_sync,
        workers: cli.threads,
        only_plugin: cli.plugin.clone(),
        mode: if cli.dry_run {
            Mode::DryRun
        } else {
            Mode::Deliver
        },
        ..RunOptions::default()
    };
    let config = match supervisor::load_config(&cli.config, &options) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("sersync: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if cli.check {
        return check(&config, &cli);
    }
    let term = std::env::var("TERM").ok();
    let progress = cli
        .shows_progress(std::io::stderr().is_terminal(), term.as_deref())
        .then(ProgressBoard::on_stderr);
    if let Err(e) = logging::init(
        cli.log_format,
        cli.verbosity(),
        config.debug,
        cli.log_file.as_deref(),
        progress.as_ref(),
    ) {
        eprintln!("sersync: cannot open the log file: {e}");
        return ExitCode::from(1);
    }
    raise_open_files();
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    let options = RunOptions {
        progress: progress.clone(),
        ..options
    };
    let outcome = run(config, &cli, &options);
    // Erase what is left of the board before the last words and the shell prompt.
    if let Some(board) = &progress {
        board.close();
    }
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            tracing::error!("{message}");
            eprintln!("sersync: {message}");
            ExitCode::from(1)
        }
    }
}

fn run(config: Config, cli: &Cli, options: &RunOptions) -> Result<(), String> {
    // Resolved before -d changes the working directory, so that SIGHUP finds the file again.
    let config_path = std::fs::canonicalize(&cli.config).unwrap_or_else(|_| cli.config.clone());
    // Checked by `config::load` already, except with -m (`config::read`); the token file is
    // read before -d detaches.
    let access = config
        .control
        .access()
        .map_err(|e| e.in_file(&config_path).to_string())?;
    if cli.daemon {
        // Keep standard error only for a person watching a terminal; a daemon never holds
        // its caller's pipes open.
        let keep_stderr =
            cli.log_file.is_none() && std::io::IsTerminal::is_terminal(&std::io::stderr());
        daemon::detach(keep_stderr).map_err(|e| format!("cannot become a daemon: {e}"))?;
    }
    let pid_path = match &cli.pid_file {
        Some(path) => Some(path.clone()),
        None if cli.daemon => Some(daemon::default_pid_file(&config_path)),
        None => None,
    };
    let _pid_file = match &pid_path {
        Some(path) => Some(daemon::PidFile::acquire(path).map_err(|e| e.to_string())?),
        None => None,
    };
    let notices = crossbeam_channel::unbounded();
    daemon::handle_signals(notices.0.clone()).map_err(|e| format!("cannot handle signals: {e}"))?;
    if cli.raise_limits {
        raise_limits(&config)?;
    }
    let hub = Arc::new(Hub::default());
    let control = start_control(&config, access, &hub);
    supervisor::supervise(
        &config_path,
        config,
        options,
        notices,
        &hub,
        control.as_ref(),
    )
}

/// Serves the control endpoint on `<host hostip port>` for as long as the handle lives. A
/// busy or unusable address is a warning: sersync syncs without the endpoint.
fn start_control(
    config: &Config,
    access: sersync::control::Access,
    hub: &Arc<Hub>,
) -> Option<sersync::control::ServerHandle> {
    let control: Arc<dyn sersync::control::Control> = hub.clone();
    let guarded = match (&access.token, access.reads_need_token) {
        (None, _) => "no token",
        (Some(_), false) => "POST /sync needs the token",
        (Some(_), true) => "every request needs the token",
    };
    match sersync::control::serve_with(&config.control.host, config.control.port, control, access) {
        Ok(server) => {
            tracing::info!(addr = %server.local_addr(), access = guarded, "control endpoint: GET /status, GET /metrics, POST /sync");
            Some(server)
        }
        Err(error) => {
            tracing::warn!(host = %config.control.host, port = config.control.port, %error, "control endpoint not started; syncing goes on without it");
            None
        }
    }
}

/// Raises the soft limit of open descriptors to the hard one: rsync runs, inotify, journals
/// and plugins all take descriptors, and the soft limit (often 1024) is a default meant for
/// interactive shells, not for a daemon. Says at debug level what it did.
fn raise_open_files() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain system calls on a local struct.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        let error = std::io::Error::last_os_error();
        tracing::debug!(%error, "cannot read the open-files limit");
        return;
    }
    let soft = limit.rlim_cur;
    if soft >= limit.rlim_max {
        tracing::debug!(
            soft,
            hard = limit.rlim_max,
            "open-files limit already at its hard limit"
        );
        return;
    }
    limit.rlim_cur = limit.rlim_max;
    // SAFETY: as above.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } == 0 {
        tracing::debug!(
            from = soft,
            to = limit.rlim_max,
            "raised the open-files limit to its hard limit"
        );
    } else {
        let error = std::io::Error::last_os_error();
        tracing::debug!(soft, hard = limit.rlim_max, %error, "cannot raise the open-files limit");
    }
}

/// `--raise-limits`: make room for twice the directories below the watch roots.
fn raise_limits(config: &Config) -> Result<(), String> {
    let directories: u64 = config
        .watches
        .iter()
        .map(|w| sersync::watch::limits::count_directories(&w.root))
        .sum();
    let limits = sersync::watch::limits::raise(directories.saturating_mul(2).max(524_288), 327_679)
        .map_err(|e| {
            format!("--raise-limits: cannot write /proc/sys/fs/inotify (run as root): {e}")
        })?;
    tracing::info!(
        max_user_watches = limits.max_user_watches,
        max_queued_events = limits.max_queued_events,
        "inotify limits"
    );
    Ok(())
}

/// `--check`: print the effective configuration, including every plugin section's sink.
fn check(config: &Config, cli: &Cli) -> ExitCode {
    let workers = if cli.threads == 0 { 10 } else { cli.threads };
    let topology = match Topology::plan(config, cli.plugin.as_deref(), workers, None) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("sersync: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    print!("{}", config.describe());
    println!("lanes ({}):", topology.lanes.len());
    for lane in &topology.lanes {
        println!("  {}", lane.spec.summary());
    }
    if !config.plugins.is_empty() {
        println!("plugin sections ({}):", config.plugins.len());
    }
    for section in &config.plugins {
        match configure_named(config, &section.name) {
            Ok(spec) => println!("  {}: {}", section.name, spec.summary()),
            Err(e) => {
                eprintln!("sersync: {e}");
                return ExitCode::from(EXIT_CONFIG);
            }
        }
    }
    println!("configuration OK: {}", config.file.display());
    ExitCode::SUCCESS
}
