//! The command line: sersync 2.5.4's flags, with long forms, and the additions.

use std::path::PathBuf;

use clap::{CommandFactory, Parser, Subcommand};

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
    /// Asks the control endpoint at the configuration's `<host hostip port>` (GET /status) and
    /// prints, per lane: pending paths, events in flight, events delivered, failures, the age
    /// of the last success and the last error.
    ///
    /// Exit status as a monitoring plugin's (Nagios, Icinga, Sensu): 0 OK, 1 WARNING and 2
    /// CRITICAL (a --warn-*/--crit-* threshold crossed; the first line of output says which),
    /// 3 UNKNOWN (the configuration cannot be read, the daemon cannot be reached or answers
    /// badly).
    Status(StatusArgs),

    /// Follow a change stream: keep a local tree equal to a source by reading the changes a
    /// master publishes on NATS JetStream (the `nats` sink) and pulling exactly those paths
    /// with rsync, acking each message only after its pull succeeded.
    ///
    /// -o names the follower's own file (`<follow>` with `<nats>`, `<source>`, `<local>`,
    /// `<host>`; docs/scale.md); --check validates it. Its position is the durable consumer's,
    /// so a restart catches up from the stream; it pulls the whole tree once on its first
    /// start and when the stream no longer holds what it missed.
    Follow,

    /// Print the shell completion script for SHELL on standard output.
    ///
    /// bash: sersync completions bash > /etc/bash_completion.d/sersync; zsh: into a directory
    /// of $fpath as _sersync; fish: ~/.config/fish/completions/sersync.fish. The Debian
    /// package installs all three.
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },

    /// Print the manual page (roff, section 1) on standard output: man -l <(sersync manpage).
    #[command(hide = true)]
    Manpage,
}

/// `sersync status`'s options: the output and the thresholds of its exit status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::Args)]
pub struct StatusArgs {
    /// Print the daemon's /status document (JSON) instead of the table; a threshold's
    /// verdict then goes to standard error.
    #[arg(long)]
    pub json: bool,

    /// WARNING when a lane's oldest undelivered change is older than DURATION (e.g. 60s, 5m;
    /// a bare number is seconds).
    #[arg(long, value_name = "DURATION", value_parser = parse_lag)]
    pub warn_lag: Option<std::time::Duration>,

    /// CRITICAL when a lane's oldest undelivered change is older than DURATION.
    #[arg(long, value_name = "DURATION", value_parser = parse_lag)]
    pub crit_lag: Option<std::time::Duration>,

    /// WARNING when a lane has failed N times in a row (its current retry streak).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub warn_failing: Option<u32>,

    /// CRITICAL when a lane has failed N times in a row.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub crit_failing: Option<u32>,
}

/// A threshold in the configuration's one duration syntax.
fn parse_lag(text: &str) -> Result<std::time::Duration, String> {
    use sersync_plugin_sdk::config::attrs::{parse_duration, DurationError, Unit};
    parse_duration(text, Unit::Seconds).map_err(|e| match e {
        DurationError::NotADuration => {
            "not a duration: a whole number with an optional unit ms, s, m or h (60s, 5m)".into()
        }
        DurationError::TooLong => "too long".into(),
    })
}

/// Runs the commands that print what is generated from this definition (`completions`,
/// `manpage`) and returns their exit status; `None` for any other command line.
pub fn print_generated(command: Option<Command>) -> Option<std::process::ExitCode> {
    let mut out = std::io::stdout().lock();
    let written = match command? {
        Command::Completions { shell } => {
            // Generated into memory first: clap_complete panics on a failed write.
            let mut script = Vec::new();
            write_completions(shell, &mut script);
            std::io::Write::write_all(&mut out, &script)
                .and_then(|()| std::io::Write::flush(&mut out))
        }
        Command::Manpage => write_manpage(&mut out).and_then(|()| std::io::Write::flush(&mut out)),
        Command::Status(_) | Command::Follow => return None,
    };
    Some(match written {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sersync: cannot write to standard output: {e}");
            std::process::ExitCode::from(1)
        }
    })
}

/// `sersync completions SHELL`: the script, generated from this definition.
pub fn write_completions(shell: clap_complete::Shell, out: &mut dyn std::io::Write) {
    clap_complete::generate(shell, &mut Cli::command(), "sersync", out);
}

/// `sersync manpage`: clap's NAME, SYNOPSIS, OPTIONS, a DESCRIPTION longer than `--help`'s,
/// the commands, then what a daemon's page needs that the flags do not say (`MAN_EXTRA`).
pub fn write_manpage(out: &mut dyn std::io::Write) -> std::io::Result<()> {
    let cmd = Cli::command().long_about(MAN_DESCRIPTION);
    let commands: Vec<(String, String)> = cmd
        .get_subcommands()
        .filter(|c| !c.is_hide_set() && c.get_name() != "help")
        .map(|c| {
            let mut usage = format!("sersync {}", c.get_name());
            for arg in c.get_positionals() {
                let values: Vec<String> = arg
                    .get_possible_values()
                    .iter()
                    .map(|v| v.get_name().to_owned())
                    .collect();
                usage.push(' ');
                usage.push_str(&values.join("|"));
            }
            let about = c.get_long_about().or(c.get_about()).map(|a| a.to_string());
            (usage, about.unwrap_or_default())
        })
        .collect();
    let man = clap_mangen::Man::new(cmd)
        .manual("User Commands")
        .date(man_date());
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    man.render_options_section(out)?;
    out.write_all(b".SH COMMANDS\n")?;
    for (usage, about) in commands {
        writeln!(out, ".TP\n.B {}", roff_escape(&usage))?;
        let paragraphs: Vec<String> = about.split("\n\n").map(|p| roff_escape(p.trim())).collect();
        writeln!(out, "{}", paragraphs.join("\n.IP\n"))?;
    }
    out.write_all(MAN_EXTRA.as_bytes())?;
    man.render_version_section(out)
}

/// Text as roff shows it literally: backslashes and hyphens escaped, no line read as a
/// request.
fn roff_escape(text: &str) -> String {
    let escaped = text.replace('\\', "\\e").replace('-', "\\-");
    escaped
        .lines()
        .map(|line| {
            if line.starts_with(['.', '\'']) {
                format!("\\&{line}")
            } else {
                line.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The page's date: `SOURCE_DATE_EPOCH` when set (reproducible package builds), else today.
fn man_date() -> String {
    let seconds = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64)
        });
    civil_date(seconds)
}

/// Seconds since the epoch as a UTC date, YYYY-MM-DD (Howard Hinnant's days-to-civil).
fn civil_date(seconds: i64) -> String {
    let z = seconds.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// The man page's DESCRIPTION (`--help` keeps the one-line summary).
const MAN_DESCRIPTION: &str = "sersync watches directory trees with inotify and pushes every \
change to one or more slaves through rsync (rsync daemons or ssh), and through plugin sinks \
that run beside rsync or instead of it: command, refreshCDN, socket, http, native shared \
libraries and sandboxed WASM components. It reads sersync 2.5.4's confxml.xml and takes its \
flags (-r -d -o -n -m) unchanged.

Changes are merged per path and sent in batches, a few milliseconds after they settle: one \
rsync process per kind of run, the paths fed on standard input, never through a shell. Each \
destination keeps a journal of what it has not delivered in the state directory, replayed at \
the next start, and a heartbeat lets the next start send what changed while sersync was \
stopped.

The configuration's <host hostip port> serves GET /status, GET /metrics (Prometheus) and \
POST /sync; sersync status prints the status as a table.";

/// The man page's sections after the commands, in roff.
const MAN_EXTRA: &str = r#".SH EXAMPLES
Without a command, sersync runs the daemon, as sersync 2.5.4's command lines expect:
.PP
.RS
.nf
sersync \-o /etc/sersync/confxml.xml \-\-check
sersync \-r \-o /etc/sersync/confxml.xml
sersync \-d \-o /etc/sersync/confxml.xml \-\-pid\-file /run/sersync.pid \-\-log\-file /var/log/sersync.log
sersync status \-o /etc/sersync/confxml.xml
.fi
.RE
.PP
Under systemd run \fBsystemctl enable \-\-now sersync\fR (the configuration
/etc/sersync/confxml.xml) or \fBsystemctl enable \-\-now sersync@NAME\fR (one instance
per /etc/sersync/NAME.xml). The service runs in the foreground with Type=notify.
.SH FILES
.TP
.B /etc/sersync/confxml.xml
The configuration (sersync 2.5.4's format; every element is described in
/usr/share/doc/sersync/config.md). The packaged one watches /var/lib/sersync/demo and
pushes nowhere until a remote is added.
.TP
.B /etc/sersync/NAME.xml
The configuration of the service instance sersync@NAME.
.TP
.B /var/lib/sersync
The state directory (root's default, and systemd's StateDirectory=): each lane's journal of
undelivered changes and the heartbeat that lets the next start send what changed while
sersync was stopped. \fB<engine stateDir>\fR moves it; a directory other users can write to
is refused.
.TP
.B /usr/share/doc/sersync/examples/
Example configurations: rsync daemons, ssh, CDN purges, socket, HTTP, command and plugin
sinks.
.SH SIGNALS
.TP
.B SIGHUP
Reload the configuration. An invalid file is refused and the running configuration stays;
otherwise pending changes are kept and the new watches, remotes and sinks take over.
.TP
.BR SIGTERM ", " SIGINT
Stop: deliver what is pending (within 10 seconds), keep the rest in the journal, exit 0.
.SH EXIT STATUS
.TP
.B 0
Success: the daemon stopped on a signal, \-\-check found the configuration usable,
or a command did its job.
.TP
.B 1
A usage error or a runtime error (the log says which).
.TP
.B 255
The configuration cannot be used (as in sersync 2.5.4): restarting will not help.
.PP
\fBsersync status\fR exits as a monitoring plugin does: 0 OK, 1 WARNING, 2 CRITICAL (a
\-\-warn\-* or \-\-crit\-* threshold crossed), 3 UNKNOWN (the configuration cannot be read,
the daemon cannot be reached or answers badly); a usage error is 1, as for every command.
.SH ENVIRONMENT
.TP
.B RUST_LOG
Overrides the log level \-v and \-q set (e.g. RUST_LOG=sersync=debug).
.TP
.B STATE_DIRECTORY
The state directory when \fB<engine stateDir>\fR is not set (systemd sets it).
.TP
.B SERSYNC_CONTROL_TOKEN
The control endpoint's bearer token when \fB<host tokenFile>\fR is not set, for the daemon
and for \fBsersync status\fR.
.SH SEE ALSO
.BR rsync (1),
.BR rsyncd.conf (5),
.BR ssh (1),
.BR inotify (7),
.BR systemd.service (5),
/usr/share/doc/sersync/operations.md, /usr/share/doc/sersync/config.md
"#;

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

/// The log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One readable line per event.
    Human,
    /// One JSON object per line, for log shippers.
    Json,
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
    fn man_page_dates() {
        assert_eq!(civil_date(0), "1970-01-01");
        assert_eq!(civil_date(951_782_400), "2000-02-29");
        assert_eq!(civil_date(1_764_547_199), "2025-11-30");
        assert_eq!(civil_date(1_764_547_200), "2025-12-01");
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
