//! Running one command: no shell, its own process group, a deadline, output to the log.

use std::ffi::OsString;
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
    /// Extra environment variables.
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
