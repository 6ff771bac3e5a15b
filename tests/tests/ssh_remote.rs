//! ssh remotes end to end (`<rsync><ssh start="true"/>`): the real binary pushing through
//! `rsync -e ssh` to a real sshd on loopback started by the test, with the hostile name set
//! (spaces, a leading `-`, shell syntax, a newline, bytes that are no UTF-8), renames and
//! deletes; every scenario ends in a byte-for-byte comparison. Says SKIPPED without
//! `openssh-server` or root.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Duration;

use sersync_tests::random::{Rng, HOSTILE_NAMES};
use sersync_tests::{assert_converges, ConfigBuilder, Sersync, SshServer};

const CONVERGE: Duration = Duration::from_secs(30);

#[test]
fn hostile_names_created_renamed_and_deleted_converge_over_ssh() {
    let Some(server) = SshServer::start_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("before"), "present at start\n").unwrap();
    let slave = server.slave_dir("www");
    let config = ConfigBuilder::new(&src)
        .ssh_remote(&slave)
        .write(dir.path());
    let path = server.path_env();
    let sersync = Sersync::start_with_env(&config, &["-r"], dir.path(), &[("PATH", &path)]);
    assert_converges(&src, &slave, CONVERGE);

    for (i, name) in HOSTILE_NAMES.iter().enumerate() {
        let name = OsStr::from_bytes(name);
        let sub = src.join(name);
        fs::create_dir_all(&sub).unwrap();
        fs::write(sub.join(name), format!("file {i}\n")).unwrap();
        fs::write(src.join(format!("top-{i}")).with_extension(name), "x\n").unwrap();
    }
    assert_converges(&src, &slave, CONVERGE);

    fs::rename(src.join("c d"), src.join("c d renamed")).unwrap();
    fs::rename(src.join("-x"), src.join("$(q)").join("-x moved")).unwrap();
    fs::remove_dir_all(src.join(OsStr::from_bytes(b"new\nline"))).unwrap();
    fs::remove_file(src.join("before")).unwrap();
    assert_converges(&src, &slave, CONVERGE);
    assert!(
        !sersync.log().contains("ERROR"),
        "errors in the log:\n{}",
        sersync.log()
    );
}

/// A file of `len` random bytes (incompressible).
fn random_file(path: &Path, rng: &mut Rng, len: usize) {
    let mut data = Vec::with_capacity(len + 8);
    while data.len() < len {
        data.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    data.truncate(len);
    fs::write(path, data).unwrap();
}

/// What the remote rsync has received so far, from the `--log-file` it is given by
/// `--rsync-path` (one `sent S bytes  received R bytes` line per run); read once it has
/// stopped growing for a second.
fn received_by_remote(log: &Path) -> u64 {
    let total = |text: &str| -> u64 {
        text.lines()
            .filter_map(|line| {
                let rest = &line[line.find("] sent ")? + 7..];
                let rest = &rest[rest.find("received ")? + 9..];
                rest.split(' ').next()?.parse::<u64>().ok()
            })
            .sum()
    };
    // Not UTF-8: it names the hostile files.
    let read = || String::from_utf8_lossy(&fs::read(log).unwrap_or_default()).into_owned();
    let mut last = read();
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let now = read();
        if now == last {
            return total(&now);
        }
        last = now;
    }
}

#[test]
fn renames_over_ssh_are_built_from_the_old_names_on_the_remote() {
    let Some(server) = SshServer::start_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    fs::create_dir(&src).unwrap();
    let slave = server.slave_dir("moves");
    let log = dir.path().join("remote.log");
    let config = ConfigBuilder::new(&src)
        .ssh_remote(&slave)
        .common_params(&format!(
            "-artuz --rsync-path='rsync --log-file={}'",
            log.display()
        ))
        .write(dir.path());
    let path = server.path_env();
    let sersync = Sersync::start_with_env(&config, &[], dir.path(), &[("PATH", &path)]);
    let name = |bytes: &[u8]| OsStr::from_bytes(bytes).to_owned();
    let mut rng = Rng::new(21);
    let tree = src.join(name(b"-rel $(q) 'x'"));
    fs::create_dir_all(tree.join("sub")).unwrap();
    for (i, file) in HOSTILE_NAMES.iter().enumerate() {
        let at = if i % 2 == 0 {
            tree.clone()
        } else {
            tree.join("sub")
        };
        random_file(&at.join(name(file)), &mut rng, 1 << 20);
    }
    random_file(&src.join(name(b"big\n`iso`")), &mut rng, (8 << 20) + 1);
    fs::create_dir(src.join("in")).unwrap();
    random_file(
        &src.join("in").join(name(b"-kept;name")),
        &mut rng,
        (4 << 20) + 2,
    );
    assert_converges(&src, &slave, CONVERGE);
    let data = (HOSTILE_NAMES.len() << 20) + (12 << 20) + 3;
    let before = received_by_remote(&log);
    assert!(
        before > data as u64,
        "the remote's log: {before} bytes received"
    );
    // A directory renamed, a file renamed in its directory, a file moved into another.
    fs::rename(&tree, src.join(name(b"-rel2 $(q)\n\xff"))).unwrap();
    fs::rename(
        src.join(name(b"big\n`iso`")),
        src.join(name(b"-big2 $x.iso")),
    )
    .unwrap();
    fs::rename(
        src.join("in").join(name(b"-kept;name")),
        src.join(name(b"-kept;name")),
    )
    .unwrap();
    assert_converges(&src, &slave, CONVERGE);
    let renamed = received_by_remote(&log) - before;
    println!("renaming {data} bytes over ssh sent the remote {renamed} bytes");
    assert!(
        renamed < data as u64 / 20,
        "renaming {data} bytes over ssh sent the remote {renamed} bytes"
    );
    assert!(
        !sersync.log().contains("ERROR"),
        "errors in the log:\n{}",
        sersync.log()
    );
}
