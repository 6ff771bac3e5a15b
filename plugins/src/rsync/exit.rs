//! rsync's exit status, classified as success, retryable or fatal.

use std::process::ExitStatus;

use sersync_plugin_sdk::SinkError;

use super::excludes;

/// The outcome of one run, from its exit status and the tail of its standard error.
pub fn classify(status: ExitStatus, stderr: &str, remote: &str) -> Result<(), SinkError> {
    // Pushed to a daemon, the deletes are the receiver's: its warning reaches our stderr,
    // but its exit status 25 does not (rsync 3.2.7 exits 0 here).
    if stderr.contains(MAX_DELETE_WARNING) {
        return Err(SinkError::retryable(format!(
            "rsync to {remote} {BUDGET_WORDS} (--max-delete{}): {}",
            skipped_words(stderr),
            last_lines(stderr, 3)
        )));
    }
    let code = match status.code() {
        // 24: some source files vanished while sending; their deletes come as later events.
        Some(0) | Some(24) => return Ok(()),
        // Partial transfer, when all that failed is local files sersync's user cannot read:
        // retrying cannot cure that, everything else was sent, and rsync's deletes ran.
        Some(23) if skip_unreadable_files(stderr) => return Ok(()),
        Some(code) => code,
        None => {
            return Err(SinkError::retryable(format!(
                "rsync to {remote} was killed ({status})"
            )))
        }
    };
    let detail = last_lines(stderr, 3);
    if code == MAX_DELETE_REACHED {
        // Not a passing failure: the remote would lose more than the budget allows. Held (the
        // lane keeps the batch) until the operator approves or raises the budget.
        return Err(SinkError::retryable(format!(
            "rsync to {remote} {BUDGET_WORDS} (--max-delete, exit 25{}): {detail}",
            skipped_words(stderr)
        )));
    }
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

/// The exit status rsync ends with when `--max-delete` stopped its deletions.
pub const MAX_DELETE_REACHED: i32 = 25;

/// True when `error` is a run stopped by `--max-delete` ([`classify`] words it so).
pub fn is_delete_budget(error: &SinkError) -> bool {
    error.message.contains(BUDGET_WORDS)
}

const BUDGET_WORDS: &str = "stopped by the delete budget";

/// How [`classify`] words the count of deletes rsync skipped: `; N deletes skipped`.
const SKIPPED_WORDS: &str = " deletes skipped";

/// How many deletes a run stopped by `--max-delete` skipped, from the receiver's warning
/// (`Deletions stopped due to --max-delete limit (N skipped)`), as [`classify`] words it;
/// `None` when rsync did not say.
pub fn skipped_deletes(error: &SinkError) -> Option<u64> {
    let end = error.message.find(SKIPPED_WORDS)?;
    let start = error.message[..end].rfind("; ")? + 2;
    error.message[start..end].parse().ok()
}

/// `; N deletes skipped` from rsync's warning in `stderr`, or nothing.
fn skipped_words(stderr: &str) -> String {
    let count = stderr.lines().find_map(|line| {
        let rest = &line[line.find(MAX_DELETE_WARNING)? + MAX_DELETE_WARNING.len()..];
        let digits = rest.trim_start().strip_prefix('(')?;
        let digits = &digits[..digits.find(' ')?];
        digits.parse::<u64>().ok()
    });
    count.map_or_else(String::new, |n| format!("; {n}{SKIPPED_WORDS}"))
}

/// What rsync's receiver says when `--max-delete` stopped its deletions.
const MAX_DELETE_WARNING: &str = "Deletions stopped due to --max-delete limit";

/// What the sending rsync says when it cannot open a local file for reading.
const CANNOT_OPEN: &str = "rsync: [sender] send_files failed to open \"";
const DENIED: &str = "\": Permission denied (13)";

/// When every error in `stderr` is a local file that could not be opened for lack of
/// permission, notes each of them (one warning per path, see [`excludes::note_unreadable`])
/// and returns true. Any other error — one on the receiving side, a directory that could not
/// be listed (rsync then skips the run's deletes), anything unrecognised — returns false and
/// the run is retried. rsync before 3.2.0 does not say which side failed: always false.
fn skip_unreadable_files(stderr: &str) -> bool {
    let mut unreadable = Vec::new();
    for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
        if let Some(path) = line
            .strip_prefix(CANNOT_OPEN)
            .and_then(|rest| rest.strip_suffix(DENIED))
        {
            unreadable.push(path);
        } else if !(line.starts_with("rsync error: some files/attrs were not transferred")
            || line.starts_with("file has vanished: "))
        {
            return false;
        }
    }
    for path in &unreadable {
        excludes::note_unreadable(path, "rsync cannot open it: Permission denied");
    }
    !unreadable.is_empty()
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

/// What a receiver with the fix for CVE-2024-12087 (rsync 3.4, Debian 12's 3.2.7-1+deb12u5)
/// says when a file arrives whose parent directory was not in the file list before it. The
/// sender skips a parent that changed while it was listed (a directory replaced or moved
/// away between the lstat of the implied directory and its entries), so a tree changing
/// under a run can cause it: a new run lists the tree as it is now.
fn invalid_path_from_sender(stderr: &str) -> bool {
    stderr.contains("ABORTING due to invalid path from sender")
}

/// Failures that retrying with the same configuration cannot cure.
fn is_permanent(code: i32, stderr: &str) -> bool {
    let daemon_refused = |what: &str| stderr.contains(what);
    match code {
        2 if invalid_path_from_sender(stderr) => false,
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
    fn the_max_delete_limit_is_held_by_the_budget_not_a_passing_failure() {
        let err = classify(
            exit(25),
            "Deletions stopped due to --max-delete limit (41 skipped)\n",
            "h::m",
        )
        .unwrap_err();
        assert!(is_delete_budget(&err), "{}", err.message);
        assert_eq!(skipped_deletes(&err), Some(41), "{}", err.message);
        // Pushed to a daemon, only the receiver's warning says so.
        let warned = "Deletions stopped due to --max-delete limit (35 skipped)\n";
        let err = classify(exit(0), warned, "h::m").unwrap_err();
        assert!(is_delete_budget(&err));
        assert_eq!(skipped_deletes(&err), Some(35));
        // Exit 25 without the warning: the count is unknown.
        let err = classify(exit(25), "rsync error: ...\n", "h::m").unwrap_err();
        assert!(is_delete_budget(&err));
        assert_eq!(skipped_deletes(&err), None);
        assert!(!is_delete_budget(
            &classify(exit(10), "", "h::m").unwrap_err()
        ));
    }

    #[test]
    fn vanished_files_are_success() {
        assert!(classify(exit(24), "", "h::m").is_ok());
    }

    #[test]
    fn unreadable_local_files_are_skipped_and_other_partial_transfers_retried() {
        let unreadable = "rsync: [sender] send_files failed to open \"/src/f000\": Permission denied (13)\n\
            rsync error: some files/attrs were not transferred (see previous errors) (code 23) at main.c(1347) [sender=3.2.7]\n";
        let before = excludes::unreadable_paths();
        assert!(classify(exit(23), unreadable, "h::m").is_ok());
        assert!(classify(exit(23), unreadable, "h::m").is_ok());
        assert_eq!(excludes::unreadable_paths(), before + 1, "counted once");
        let unlisted = "rsync: [sender] opendir \"/src/d000\" failed: Permission denied (13)\n";
        let receiver = "rsync: [receiver] mkstemp \"/m/.f.XXXX\" failed: Permission denied (13)\n";
        for stderr in [
            format!("{unreadable}{unlisted}"),
            format!("{receiver}{unreadable}"),
            String::new(),
        ] {
            let err = classify(exit(23), &stderr, "h::m").unwrap_err();
            assert!(err.is_retryable(), "{stderr}");
        }
    }

    #[test]
    fn a_parent_that_changed_while_listed_is_retried_soon() {
        let stderr = "ABORTING due to invalid path from sender: v/b/y/z/g/o/j/l/w/o\n\
            rsync error: protocol incompatibility (code 2) at generator.c(1320) [generator=3.2.7]\n";
        let e = classify(ExitStatus::from_raw(2 << 8), stderr, "h::m").unwrap_err();
        assert!(e.is_retryable(), "{}", e.message);
        let other = "rsync error: protocol incompatibility (code 2) at compat.c(600)\n";
        let e = classify(ExitStatus::from_raw(2 << 8), other, "h::m").unwrap_err();
        assert!(
            !e.is_retryable(),
            "another protocol error stays fatal: {}",
            e.message
        );
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
