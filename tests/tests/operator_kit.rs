//! The operator's kit: the man page and completions the package ships are generated from the
//! binary's flags, and the daemon works within the capability bound of the systemd unit.
//!
//! The unit (`examples/systemd/sersync.service`) cannot be started here (systemd is not PID 1),
//! so what it grants is applied by hand: `setpriv` bounds the real daemon to
//! `CAP_DAC_READ_SEARCH` with `NoNewPrivileges`, as `CapabilityBoundingSet=` and
//! `NoNewPrivileges=yes` do for a root service, `tests/scripts/unit-syscall-filter.py` applies
//! its `SystemCallFilter=` (libseccomp, the groups read from `systemd-analyze`), and under both
//! it syncs a tree other users own to a real rsync daemon.

use std::fs;
use std::os::unix::fs::{chown, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use sersync_tests::{assert_converges, sersync_bin, user_ids, Sersync, Stage};

const WAIT: Duration = Duration::from_secs(30);

fn sersync_output(args: &[&str]) -> String {
    let out = Command::new(sersync_bin())
        .args(args)
        .output()
        .expect("run sersync");
    assert!(
        out.status.success(),
        "sersync {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

#[test]
fn completions_and_the_man_page_name_the_flags() {
    for shell in ["bash", "zsh", "fish"] {
        let script = sersync_output(&["completions", shell]);
        for flag in ["pid-file", "config", "full-sync", "raise-limits", "status"] {
            assert!(script.contains(flag), "{shell} completions lack {flag}");
        }
    }
    assert!(sersync_output(&["completions", "bash"]).contains("complete -F _sersync"));

    let page = sersync_output(&["manpage"]);
    assert!(
        page.starts_with(".ie") || page.starts_with(".TH"),
        "not roff"
    );
    // Hyphens are escaped in roff: \-o, \-\-pid\-file.
    for text in [
        r"\-\-pid\-file",
        r"\fB\-o\fR",
        r"\-\-check",
        "confxml.xml",
        "/var/lib/sersync",
        "SIGHUP",
        "SIGTERM",
        ".SH FILES",
        ".SH SIGNALS",
        ".SH EXIT STATUS",
        ".SH SEE ALSO",
        ".BR rsync (1)",
        "sersync completions bash",
    ] {
        assert!(page.contains(text), "the man page lacks {text:?}");
    }
    assert!(!page.contains("manpage"), "the hidden command is listed");

    // The page renders: man(1) reads it without a warning (when man-db is installed).
    if Command::new("man").arg("--version").output().is_ok() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sersync.1");
        fs::write(&file, &page).unwrap();
        let out = Command::new("man")
            .args(["-l", "-P", "cat"])
            .arg(&file)
            .env("MANWIDTH", "80")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let warnings = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "man: {warnings}");
        assert!(warnings.trim().is_empty(), "man warns: {warnings}");
        for section in ["NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "EXIT STATUS"] {
            assert!(
                text.contains(section),
                "rendered page lacks {section}:\n{text}"
            );
        }
        assert!(text.contains("--pid-file"), "{text}");
    } else {
        eprintln!("man is not installed: the page's rendering is not checked");
    }
}

/// `CAP_DAC_READ_SEARCH` = 2 in `<linux/capability.h>`.
const DAC_READ_SEARCH_MASK: u64 = 1 << 2;

/// A field of `/proc/PID/status` (e.g. `CapBnd`), as text.
fn proc_status(pid: u32, field: &str) -> String {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
        .trim()
        .to_string()
}

/// `setpriv` options that give a root process the unit's capabilities.
const UNIT_BOUND: [&str; 5] = [
    "setpriv",
    "--bounding-set=-all,+dac_read_search",
    "--inh-caps=-all",
    "--ambient-caps=-all",
    "--no-new-privs",
];

#[test]
fn the_daemon_syncs_others_files_within_the_units_capability_bound() {
    if Command::new("setpriv").arg("--version").output().is_err() {
        eprintln!("SKIPPED: setpriv (util-linux) is not installed; apt-get install util-linux");
        return;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED: needs root (the unit's bound is a root service's)");
        return;
    }
    let stage = Stage::new(&["www"]);
    let src = &stage.src;
    let (uid, gid) = user_ids("nobody");
    // A directory and a file of another user that only that user may read: root needs
    // CAP_DAC_READ_SEARCH (or CAP_DAC_OVERRIDE) to watch and send them.
    let private = src.join("private");
    fs::create_dir(&private).unwrap();
    fs::write(private.join("secret"), "nobody's").unwrap();
    fs::set_permissions(private.join("secret"), fs::Permissions::from_mode(0o600)).unwrap();
    chown(private.join("secret"), Some(uid), Some(gid)).unwrap();
    fs::set_permissions(&private, fs::Permissions::from_mode(0o700)).unwrap();
    chown(&private, Some(uid), Some(gid)).unwrap();
    fs::write(src.join("public"), "everyone's").unwrap();

    // The bound is real: without the capability root cannot read the file, with it it can.
    let read = |caps: &str| {
        Command::new("setpriv")
            .args([caps, "--inh-caps=-all", "--no-new-privs", "cat"])
            .arg(private.join("secret"))
            .output()
            .unwrap()
            .status
            .success()
    };
    assert!(
        !read("--bounding-set=-all"),
        "root read it without any capability"
    );
    assert!(read("--bounding-set=-all,+dac_read_search"));

    let mut wrapper = UNIT_BOUND.to_vec();
    let filter = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/unit-syscall-filter.py"
    );
    let has_seccomp = Command::new("/usr/bin/python3")
        .args(["-c", "import seccomp"])
        .output()
        .is_ok_and(|o| o.status.success());
    let has_analyze = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let unit = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/systemd/sersync.service"
    );
    if has_seccomp && has_analyze {
        wrapper.extend(["/usr/bin/python3", filter, unit]);
    } else {
        eprintln!(
            "the unit's system call filter is NOT applied: it needs /usr/bin/python3 with \
             python3-seccomp and systemd-analyze (apt-get install python3-seccomp systemd)"
        );
    }
    let config = stage.config("www", |c| c);
    let mut sersync = Sersync::start_under(&wrapper, &config, &["-r"], stage.path());
    if has_seccomp && has_analyze {
        assert_eq!(proc_status(sersync.pid(), "Seccomp"), "2", "no filter");
        assert!(sersync.log().contains("unit-syscall-filter: "));
    }
    let pid = sersync.pid();
    let bound = u64::from_str_radix(&proc_status(pid, "CapBnd"), 16).unwrap();
    assert_eq!(bound, DAC_READ_SEARCH_MASK, "sersync's bounding set");
    let effective = u64::from_str_radix(&proc_status(pid, "CapEff"), 16).unwrap();
    assert_eq!(effective, DAC_READ_SEARCH_MASK, "sersync's effective set");
    assert_eq!(proc_status(pid, "NoNewPrivs"), "1");

    // The first full sync (-r) sends what is there; then live changes, including another
    // user's owner-only file moved into the private directory, and a delete.
    let dst = stage.dst("www");
    assert_converges(src, &dst, WAIT);
    let outside = stage.path().join("incoming");
    fs::write(&outside, "moved in").unwrap();
    fs::set_permissions(&outside, fs::Permissions::from_mode(0o600)).unwrap();
    chown(&outside, Some(uid), Some(gid)).unwrap();
    fs::rename(&outside, private.join("incoming")).unwrap();
    fs::create_dir(private.join("sub")).unwrap();
    fs::write(private.join("sub/new"), "new").unwrap();
    fs::remove_file(src.join("public")).unwrap();
    assert_converges(src, &dst, WAIT);
    assert_eq!(
        fs::read_to_string(dst.join("private/incoming")).unwrap(),
        "moved in"
    );
    assert!(!Path::new(&dst.join("public")).exists());
    let log = sersync.log();
    assert!(
        !log.contains("ERROR") && !log.contains("Permission denied"),
        "{log}"
    );
    let status = sersync.terminate(WAIT).expect("sersync stops on SIGTERM");
    assert!(status.success(), "{status}\n{}", sersync.log());
}
