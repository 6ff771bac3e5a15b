//! rsync's exit status, classified as success, retryable or fatal.

use std::process::ExitStatus;

use sersync_plugin_sdk::SinkError;

/// The outcome of one run, from its exit status and the tail of its standard error.
pub fn classify(status: ExitStatus, stderr: &str, remote: &str) -> Result<(), SinkError> {
    let code = match status.code() {
        // 24: some source files vanished while sending; their deletes come as later events.
        Some(0) | Some(24) => return Ok(()),
        Some(code) => code,
        None => {
            return Err(SinkError::retryable(format!(
                "rsync to {remote} was killed ({status})"
            )))
        }
    };
    let detail = last_lines(stderr, 3);
    let mut message = format!(
        "rsync to {remote} failed with exit code {code} ({}): {detail}",
        meaning(code)
    );
    if rejects_missing_args(stderr) {
        message.push_str(MISSING_ARGS_HINT);
    }
    if is_permanent(code, stderr) {
        Err(SinkError::fatal(message))
    } else {
        Err(SinkError::retryable(message))
    }
}

/// What the receiving rsync says when it cannot take `--delete-missing-args` entries from
/// `--files-from`: rsync 3.4.3, and distribution builds with its security fix backported
/// (e.g. Ubuntu's 3.2.7-1ubuntu1.4), reject them as files of mode 0
/// (RsyncProject/rsync#910, fixed in 3.4.4).
fn rejects_missing_args(stderr: &str) -> bool {
    stderr.contains("invalid file mode 00")
}

const MISSING_ARGS_HINT: &str = " — the remote's rsync rejects the deletes sersync sends \
    (--delete-missing-args with --files-from is broken in rsync 3.4.3 and in distribution builds \
    that backported its security fix, RsyncProject/rsync#910). Upgrade the remote's rsync (3.4.4 \
    or later, or a fixed distribution build), or set <inotify><delete start=\"false\"/> to stop \
    propagating deletes; the changes are kept until then";

/// Failures that retrying with the same configuration cannot cure.
fn is_permanent(code: i32, stderr: &str) -> bool {
    let daemon_refused = |what: &str| stderr.contains(what);
    match code {
        // Syntax or usage error, protocol incompatibility, unsupported action.
        1 | 2 | 4 => true,
        _ if rejects_missing_args(stderr) => true,
        // Error starting the client-server protocol: permanent for bad credentials or an
        // unknown module, passing for a daemon that is at its connection limit.
        5 => {
            daemon_refused("auth failed")
                || daemon_refused("Unknown module")
                || daemon_refused("access denied")
                || daemon_refused("password file")
        }
        _ => false,
    }
}

/// The rsync manual's words for an exit code.
fn meaning(code: i32) -> &'static str {
    match code {
        1 => "syntax or usage error",
        2 => "protocol incompatibility",
        3 => "errors selecting input/output files, dirs",
        4 => "requested action not supported",
        5 => "error starting client-server protocol",
        6 => "daemon unable to append to log-file",
        10 => "error in socket I/O",
        11 => "error in file I/O",
        12 => "error in rsync protocol data stream",
        13 => "errors with program diagnostics",
        14 => "error in IPC code",
        20 => "received SIGUSR1 or SIGINT",
        21 => "some error returned by waitpid()",
        22 => "error allocating core memory buffers",
        23 => "partial transfer due to error",
        25 => "the --max-delete limit stopped deletions",
        30 => "timeout in data send/receive",
        35 => "timeout waiting for daemon connection",
        255 => "remote shell failed",
        _ => "unknown exit code",
    }
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let start = lines.len().saturating_sub(n);
    if lines.is_empty() {
        "no error output".to_string()
    } else {
        lines[start..].join(" | ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    fn exit(code: i32) -> ExitStatus {
        ExitStatus::from_raw(code << 8)
    }

    #[test]
    fn vanished_files_are_success() {
        assert!(classify(exit(24), "", "h::m").is_ok());
    }

    #[test]
    fn auth_failure_is_fatal_and_names_the_remote() {
        let err = classify(exit(5), "@ERROR: auth failed on module www\n", "u@h::www").unwrap_err();
        assert!(!err.is_retryable());
        assert!(err.message.contains("u@h::www"));
        assert!(err.message.contains("auth failed on module www"));
    }

    #[test]
    fn a_remote_that_rejects_missing_args_is_fatal_with_what_to_do() {
        // As rsync 3.4.3 reports it (RsyncProject/rsync#910).
        let stderr = "invalid file mode 00 for ghost.txt [Receiver]\n\
            rsync error: protocol incompatibility (code 2) at flist.c(885) [Receiver=3.4.3]\n";
        let err = classify(exit(2), stderr, "h::www").unwrap_err();
        assert!(!err.is_retryable());
        assert!(
            err.message.contains("Upgrade the remote's rsync"),
            "{}",
            err.message
        );
        assert!(err.message.contains("h::www") && err.message.contains("ghost.txt"));
        let err = classify(exit(12), stderr, "h::www").unwrap_err();
        assert!(!err.is_retryable(), "whatever the exit code the sender saw");
    }

    #[test]
    fn connection_limits_and_socket_errors_are_retryable() {
        assert!(
            classify(exit(5), "@ERROR: max connections (1) reached", "r")
                .unwrap_err()
                .is_retryable()
        );
        assert!(classify(exit(10), "Connection refused", "r")
            .unwrap_err()
            .is_retryable());
        assert!(classify(exit(30), "", "r").unwrap_err().is_retryable());
        assert!(classify(ExitStatus::from_raw(9), "", "r")
            .unwrap_err()
            .is_retryable());
    }
}
