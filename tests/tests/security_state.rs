//! The state files as an attacker sees them: the daemon runs as root (as CI does), another
//! user (`nobody`) prepares the state directory or a shared directory, and a file standing
//! in for `/etc/passwd` must stay byte-for-byte intact while syncing goes on.
//!
//! The attack these stop: a state directory in a shared place, pre-created by a local user
//! with `NAME.journal.new` linked to `/etc/passwd`, and files whose names hold newlines
//! written into a watched tree; the root daemon's journal rewrite truncated the target and
//! wrote the names into it.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use sersync_tests::{assert_converges, paced_writer, sersync_bin, wait_for, Sersync, Stage};

const CONVERGE: Duration = Duration::from_secs(60);
const NOBODY: u32 = 65534;
const PASSWD: &[u8] = b"root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534::/:/bin/false\n";
/// A name an attacker writes into the watched tree: its newlines become lines of the
/// victim when a journal is written through a link.
const EVIL: &str = "a\nevil::0:0:::\nb-";

/// Runs `script` with `sh -c` as `nobody`; panics unless it succeeds.
fn as_nobody(script: &str) {
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .uid(NOBODY)
        .gid(NOBODY)
        .output()
        .expect("run sh as nobody");
    assert!(
        out.status.success(),
        "as nobody: {script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// These tests give files away and act as another user: only meaningful as root.
fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        eprintln!("skipped: the attack needs a root daemon and another user");
    }
    root
}

/// A stage whose directory `nobody` can enter, with a root-owned victim file in it (an old
/// modification time, so that a touch through a link shows).
fn stage_with_victim() -> (Stage, PathBuf, SystemTime) {
    let stage = Stage::new(&["www"]);
    fs::set_permissions(stage.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let victim = stage.path().join("passwd");
    fs::write(&victim, PASSWD).unwrap();
    let old = SystemTime::UNIX_EPOCH + Duration::from_secs(1_600_000_000);
    fs::File::options()
        .write(true)
        .open(&victim)
        .unwrap()
        .set_modified(old)
        .unwrap();
    (stage, victim, old)
}

/// A sticky directory everyone can write to, like `/tmp`.
fn shared_dir(stage: &Stage) -> PathBuf {
    let shared = stage.path().join("shared");
    fs::create_dir(&shared).unwrap();
    fs::set_permissions(&shared, fs::Permissions::from_mode(0o1777)).unwrap();
    shared
}

/// A configuration pushing the stage's tree to `www` with its state in `state`.
fn config_with_state(stage: &Stage, state: &Path) -> PathBuf {
    stage.config("www", |c| {
        c.head_xml(&format!("<engine stateDir=\"{}\"/>\n", state.display()))
    })
}

/// The names sersync gives its state files for this configuration, learnt as an attacker
/// would: by running it once with a state directory of one's own.
fn state_file_names(stage: &Stage) -> (Vec<String>, String) {
    let probe = stage.path().join("probe-state");
    let config = config_with_state(stage, &probe);
    let mut sersync = Sersync::start(&config, &[], stage.path());
    fs::write(stage.src.join("probe"), b"p").unwrap();
    assert_converges(&stage.src, &stage.dst("www"), CONVERGE);
    sersync.kill9();
    let names: Vec<String> = fs::read_dir(&probe)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let journals: Vec<String> = names
        .iter()
        .filter(|n| n.ends_with(".journal"))
        .cloned()
        .collect();
    let heartbeat = names
        .iter()
        .find(|n| n.starts_with("heartbeat-"))
        .expect("a heartbeat file")
        .clone();
    assert!(!journals.is_empty(), "{names:?}");
    (journals, heartbeat)
}

/// Writes files named like [`EVIL`] while batches go out, so that every rewrite of the
/// journal has something pending (the temporary file is written then), and waits until the
/// slave holds the tree.
fn write_evil_names_and_converge(stage: &Stage) {
    paced_writer(stage.src.clone(), EVIL, 150, 150)
        .join()
        .unwrap();
    fs::write(stage.src.join("plain"), b"still synced").unwrap();
    assert_converges(&stage.src, &stage.dst("www"), CONVERGE);
}

fn assert_intact(victim: &Path, mtime: SystemTime) {
    assert_eq!(
        String::from_utf8_lossy(&fs::read(victim).unwrap()),
        String::from_utf8_lossy(PASSWD),
        "the victim was written through a link"
    );
    assert_eq!(
        fs::metadata(victim).unwrap().modified().unwrap(),
        mtime,
        "the victim was touched through a link"
    );
}

/// Runs sersync with `state` as its state directory while names with newlines are written
/// into the tree, checks that `victim` is untouched, and returns sersync's log.
fn run_attack(stage: &Stage, state: &Path, victim: &Path, mtime: SystemTime) -> String {
    let config = config_with_state(stage, state);
    let sersync = Sersync::start(&config, &[], stage.path());
    write_evil_names_and_converge(stage);
    assert_intact(victim, mtime);
    sersync.log()
}

/// The attack from the issue: `nobody` creates the state directory in a shared place and
/// links the journal's temporary name and the heartbeat to the victim.
#[test]
fn a_state_directory_planted_by_another_user_is_refused_and_the_victim_stays_intact() {
    if !running_as_root() {
        return;
    }
    let (stage, victim, mtime) = stage_with_victim();
    let (journals, heartbeat) = state_file_names(&stage);
    let state = shared_dir(&stage).join("sersync-state");
    let mut script = format!(
        "mkdir {0} && ln -s {1} {0}/{heartbeat}",
        state.display(),
        victim.display()
    );
    for journal in &journals {
        script += &format!(
            " && ln -s {} {}/{journal}.new",
            victim.display(),
            state.display()
        );
    }
    as_nobody(&script);
    assert_eq!(fs::metadata(&state).unwrap().uid(), NOBODY);

    let log = run_attack(&stage, &state, &victim, mtime);
    assert!(
        log.contains("belongs to uid 65534, not to sersync's user (uid 0)")
            && log.contains(&state.display().to_string()),
        "the refusal names the directory and why:\n{log}"
    );
    assert!(log.contains("syncing goes on without one"), "{log}");
    let planted = fs::read_dir(&state).unwrap().count();
    assert_eq!(
        planted,
        journals.len() + 1,
        "nothing was added to their directory"
    );
}

/// A directory of root's that anyone may write to (mode 0777) is refused as well: anyone
/// could have planted the links in it.
#[test]
fn a_world_writable_state_directory_is_refused() {
    if !running_as_root() {
        return;
    }
    let (stage, victim, mtime) = stage_with_victim();
    let (journals, _) = state_file_names(&stage);
    let state = stage.path().join("open-state");
    fs::create_dir(&state).unwrap();
    fs::set_permissions(&state, fs::Permissions::from_mode(0o777)).unwrap();
    for journal in &journals {
        as_nobody(&format!(
            "ln -s {} {}/{journal}.new",
            victim.display(),
            state.display()
        ));
    }

    let log = run_attack(&stage, &state, &victim, mtime);
    assert!(
        log.contains("is writable by its group or by others (mode 0777)")
            && log.contains("chmod 700"),
        "{log}"
    );
}

/// Links inside a directory that passes the checks (root's, 0700: left by an earlier
/// compromise or a careless admin) are not followed either: the journal's temporary file
/// replaces its link, the heartbeat refuses its own.
#[test]
fn links_in_a_usable_state_directory_are_not_followed() {
    if !running_as_root() {
        return;
    }
    let (stage, victim, mtime) = stage_with_victim();
    let (journals, heartbeat) = state_file_names(&stage);
    let state = stage.path().join("state");
    fs::create_dir(&state).unwrap();
    fs::set_permissions(&state, fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::symlink(&victim, state.join(&heartbeat)).unwrap();
    for journal in &journals {
        std::os::unix::fs::symlink(&victim, state.join(format!("{journal}.new"))).unwrap();
    }

    let log = run_attack(&stage, &state, &victim, mtime);
    assert!(
        log.contains("cannot write the heartbeat") && log.contains("symbolic link"),
        "{log}"
    );
    for journal in &journals {
        let meta = fs::symlink_metadata(state.join(journal)).unwrap();
        assert!(meta.is_file(), "{journal} is the lane's own file");
    }
}

/// A state directory sersync creates is 0700 and its files 0600: they hold file names.
#[test]
fn state_files_are_owner_only() {
    let stage = Stage::new(&["www"]);
    let state = stage.path().join("new/state");
    let config = config_with_state(&stage, &state);
    let mut sersync = Sersync::start(&config, &[], stage.path());
    paced_writer(stage.src.clone(), "secret-name-", 100, 200)
        .join()
        .unwrap();
    assert_converges(&stage.src, &stage.dst("www"), CONVERGE);
    sersync.kill9();
    let mode = |p: &Path| fs::symlink_metadata(p).unwrap().mode() & 0o7777;
    assert_eq!(mode(&state), 0o700, "{}", state.display());
    let files: Vec<PathBuf> = fs::read_dir(&state)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(
        files
            .iter()
            .any(|f| f.to_string_lossy().ends_with(".journal"))
            && files
                .iter()
                .any(|f| f.to_string_lossy().contains("heartbeat-")),
        "{files:?}"
    );
    for file in &files {
        assert_eq!(mode(file), 0o600, "{}", file.display());
    }
}

/// `--pid-file` in a sticky world-writable directory where `nobody` planted a link to the
/// victim: sersync refuses to start instead of writing its pid through the link.
#[test]
fn a_pid_file_planted_as_a_link_in_a_shared_directory_is_refused() {
    if !running_as_root() {
        return;
    }
    let (stage, victim, mtime) = stage_with_victim();
    let shared = shared_dir(&stage);
    let pid_file = shared.join("sersync.pid");
    as_nobody(&format!(
        "ln -s {} {}",
        victim.display(),
        pid_file.display()
    ));
    let config = config_with_state(&stage, &stage.path().join("state"));
    let mut child = Command::new(sersync_bin())
        .arg("-o")
        .arg(&config)
        .arg("--pid-file")
        .arg(&pid_file)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run sersync");
    let exited = wait_for(Duration::from_secs(20), || {
        child
            .try_wait()
            .unwrap()
            .ok_or_else(|| "still running".to_string())
    });
    if exited.is_err() {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        exited.is_ok() && !out.status.success(),
        "started through a linked pid file:\n{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "pid file {}: is a symbolic link",
            pid_file.display()
        )),
        "{stderr}"
    );
    assert_intact(&victim, mtime);
    assert!(fs::symlink_metadata(&pid_file)
        .unwrap()
        .file_type()
        .is_symlink());
}

/// Bytes that are no journal record end the replay with a warning naming the file and the
/// offset; the lane rescans its root and syncs on.
#[test]
fn garbage_in_a_journal_is_reported_with_its_offset_and_the_lane_goes_on() {
    let stage = Stage::new(&["www"]);
    let state = stage.path().join("state");
    let config = config_with_state(&stage, &state);
    let mut sersync = Sersync::start(&config, &[], stage.path());
    fs::write(stage.src.join("before"), b"1").unwrap();
    assert_converges(&stage.src, &stage.dst("www"), CONVERGE);
    sersync.kill9();
    let journal = fs::read_dir(&state)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".journal"))
        .expect("the lane's journal");
    let offset = fs::metadata(&journal).unwrap().len();
    let mut bytes = fs::read(&journal).unwrap();
    bytes.extend_from_slice(b"\xff\xfe this is not a journal record \x00\x01");
    fs::write(&journal, &bytes).unwrap();

    let sersync = Sersync::start(&config, &[], stage.path());
    fs::write(stage.src.join("after"), b"2").unwrap();
    assert_converges(&stage.src, &stage.dst("www"), CONVERGE);
    let log = sersync.log();
    let warning = log
        .lines()
        .find(|l| l.contains("cannot be parsed"))
        .unwrap_or_else(|| panic!("no warning about the garbage:\n{log}"));
    assert!(
        warning.contains("WARN")
            && warning.contains(&journal.display().to_string())
            && warning.contains(&format!("byte offset {offset}")),
        "{warning}"
    );
}
