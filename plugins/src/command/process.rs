//! Running one command: no shell, its own process group, a deadline, output to the log, and a
//! minimal environment.

use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use crate::common::show;

/// How a run ended, short of success.
#[derive(Debug)]
pub(crate) enum RunError {
    /// The program could not be started at all (missing, not executable).
    Spawn(std::io::Error),
    /// It was still running at the deadline and was killed with its process group.
    TimedOut,
}

/// One invocation: `argv[0]` is the program, looked up in `PATH` when it has no `/`.
pub(crate) struct Invocation<'a> {
    /// Program and arguments; each argument is passed as is, never through a shell.
    pub argv: Vec<OsString>,
    /// What the run keeps of sersync's environment (see [`inherited_env`]).
    pub inherited: &'a [(OsString, OsString)],
    /// The run's own variables (`SERSYNC_PATH`, …).
    pub env: Vec<(&'static str, OsString)>,
    /// Working directory (the watch root).
    pub cwd: &'a Path,
    /// How long the run may take.
    pub timeout: Duration,
    /// Names the run in log lines (the program).
    pub label: &'a str,
}

impl Invocation<'_> {
    /// Runs the command to its end or its deadline. Stdin is empty; each line of stdout is
    /// logged at info level, of stderr at warn level, escaped. On the deadline the whole process
    /// group gets SIGKILL, so a shell script's children go too.
    pub fn run(&self) -> Result<ExitStatus, RunError> {
        let mut child = Command::new(&self.argv[0])
            .args(&self.argv[1..])
            .env_clear()
            .envs(self.inherited.iter().map(|(k, v)| (k, v)))
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(self.cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .map_err(RunError::Spawn)?;
        let pgid = child.id() as libc::pid_t;
        if let Some(out) = child.stdout.take() {
            log_lines(out, self.label.to_string(), false);
        }
        if let Some(err) = child.stderr.take() {
            log_lines(err, self.label.to_string(), true);
        }
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let _ = tx.send(child.wait());
        });
        match rx.recv_timeout(self.timeout) {
            Ok(Ok(status)) => Ok(status),
            Ok(Err(e)) => Err(RunError::Spawn(e)),
            Err(_) => {
                // SAFETY: kill(2) has no memory effects. The child is not reaped yet (its waiter
                // has not returned), so its pid, and the group id we gave it, still name our
                // processes. The child itself is killed too in case it left the group.
                unsafe {
                    libc::kill(-pgid, libc::SIGKILL);
                    libc::kill(pgid, libc::SIGKILL);
                }
                let _ = rx.recv();
                Err(RunError::TimedOut)
            }
        }
    }
}

/// Variables of sersync's environment every run keeps: the program search path, the home
/// directory, the locale and the time zone. Anything else — credentials meant for other sinks
/// (`SERSYNC_CDN_TOKEN`), `LD_PRELOAD`, proxies — is left out unless named in `pass`.
const KEPT: &[&str] = &["PATH", "HOME", "LANG", "LANGUAGE", "TZ"];

/// `PATH` when sersync itself has none, so that a bare program name is still found.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The part of `environment` (sersync's, as `std::env::vars_os` gives it) a run keeps: the
/// [`KEPT`] names, every `LC_*`, and the names in `pass` (`<param passEnv>`).
pub(crate) fn inherited_env(
    environment: impl IntoIterator<Item = (OsString, OsString)>,
    pass: &[String],
) -> Vec<(OsString, OsString)> {
    let keeps = |name: &OsStr| {
        let name = name.as_encoded_bytes();
        name.starts_with(b"LC_")
            || KEPT.iter().any(|k| k.as_bytes() == name)
            || pass.iter().any(|p| p.as_bytes() == name)
    };
    let mut kept: Vec<(OsString, OsString)> =
        environment.into_iter().filter(|(k, _)| keeps(k)).collect();
    if !kept.iter().any(|(k, _)| k == "PATH") {
        kept.push(("PATH".into(), DEFAULT_PATH.into()));
    }
    kept
}

/// Logs each line of `stream` from a thread of its own; the thread ends when every writer
/// (the command and whatever it left behind) has closed the pipe.
fn log_lines(stream: impl Read + Send + 'static, label: String, stderr: bool) {
    thread::spawn(move || {
        for line in BufReader::new(stream).split(b'\n').map_while(Result::ok) {
            let line = show(&line);
            if stderr {
                tracing::warn!(target: "sersync::command", command = %label, "stderr: {line}");
            } else {
                tracing::info!(target: "sersync::command", command = %label, "stdout: {line}");
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_documented_variables_and_the_passed_ones_are_kept() {
        let env = |pairs: &[(&str, &str)]| -> Vec<(OsString, OsString)> {
            pairs.iter().map(|(k, v)| (k.into(), v.into())).collect()
        };
        let sersync = env(&[
            ("PATH", "/bin"),
            ("HOME", "/root"),
            ("LC_ALL", "C.UTF-8"),
            ("TZ", "UTC"),
            ("SERSYNC_CDN_TOKEN", "secret"),
            ("LD_PRELOAD", "/tmp/x.so"),
            ("SITE", "main"),
            ("SITE_EXTRA", "no"),
        ]);
        let kept = inherited_env(sersync, &["SITE".to_string()]);
        let expected = env(&[
            ("PATH", "/bin"),
            ("HOME", "/root"),
            ("LC_ALL", "C.UTF-8"),
            ("TZ", "UTC"),
            ("SITE", "main"),
        ]);
        assert_eq!(kept, expected);
        assert_eq!(
            inherited_env(Vec::new(), &[]),
            env(&[("PATH", DEFAULT_PATH)])
        );
    }
}
