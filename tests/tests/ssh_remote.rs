//! ssh remotes end to end (`<rsync><ssh start="true"/>`): the real binary pushing through
//! `rsync -e ssh` to a real sshd on loopback started by the test, with the hostile name set
//! (spaces, a leading `-`, shell syntax, a newline, bytes that are no UTF-8), renames and
//! deletes; every scenario ends in a byte-for-byte comparison. Says SKIPPED without
//! `openssh-server` or root.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::time::Duration;

use sersync_tests::random::HOSTILE_NAMES;
use sersync_tests::{assert_converges, ConfigBuilder, Sersync, SshServer};

const CONVERGE: Duration = Duration::from_secs(30);

#[test]
fn hostile_names_created_renamed_and_deleted_converge_over_ssh() {
    let server = match SshServer::start() {
        Ok(server) => server,
        Err(why) => {
            eprintln!("SKIPPED: {why}");
            return;
        }
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
