//! A tree written by someone else cannot stop syncing: sersync runs as an unprivileged user,
//! as it may on a shared server, against a real rsync daemon, and the tree holds entries that
//! user cannot read.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::{chown, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use sersync_tests::{free_port, user_ids, wait_for, ConfigBuilder, Sersync, Stage};

const WAIT: Duration = Duration::from_secs(30);
const USER: &str = "nobody";

/// Gives `path` and everything below it to `uid`:`gid`.
fn chown_tree(path: &Path, uid: u32, gid: u32) {
    chown(path, Some(uid), Some(gid)).expect("chown");
    if path.is_dir() && !path.is_symlink() {
        for entry in fs::read_dir(path).expect("read_dir") {
            chown_tree(&entry.expect("entry").path(), uid, gid);
        }
    }
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Lines of `log` in which the rsync sink warns that it skips `name`. (The watcher warns
/// on its own that it cannot watch an unreadable directory.)
fn skip_warnings(log: &str, name: &str) -> usize {
    log.lines()
        .filter(|l| l.contains("WARN") && l.contains("skipping a path") && l.contains(name))
        .count()
}

/// One request to the control endpoint on `port`; the whole reply.
fn control(port: u16, method: &str, path: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("control endpoint");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    reply
}

#[test]
fn unreadable_directory_and_file_are_skipped_once_and_later_changes_land() {
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "the test drops to {USER} from root"
    );
    let stage = Stage::new(&["www"]);
    let port = free_port();
    let src = &stage.src;
    let dst = stage.dst("www");
    fs::create_dir_all(src.join("dir000/inner")).unwrap();
    fs::write(src.join("dir000/inner/secret"), "secret").unwrap();
    fs::write(src.join("file000"), "secret").unwrap();
    fs::create_dir(src.join("open")).unwrap();
    fs::write(src.join("open/before"), "before").unwrap();

    // What sersync as nobody reads, in nobody's own directory: the password file, the
    // configuration and its state.
    let (uid, gid) = user_ids(USER);
    let password = stage.path().join("client.pass");
    fs::copy(stage.daemon.password_file(), &password).unwrap();
    let config = ConfigBuilder::new(src)
        .remote(&stage.daemon, "www")
        .password_file(&password)
        .head_xml(&format!("<host hostip=\"127.0.0.1\" port=\"{port}\"/>\n"))
        .write(stage.path());
    chown_tree(stage.path(), uid, gid);
    chmod(&src.join("dir000"), 0o000);
    chmod(&src.join("file000"), 0o000);

    let sersync = Sersync::start_as(USER, &config, &["-r"], stage.path());
    for i in 0..5 {
        fs::write(src.join(format!("open/after{i}")), "after").unwrap();
        fs::create_dir(src.join(format!("newdir{i}"))).unwrap();
        fs::write(src.join(format!("newdir{i}/f")), "f").unwrap();
    }
    let landed = wait_for(WAIT, || {
        let missing: Vec<String> = (0..5)
            .flat_map(|i| [format!("open/after{i}"), format!("newdir{i}/f")])
            .chain(["open/before".to_string()])
            .filter(|p| !dst.join(p).exists())
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!("not on the slave: {missing:?}"))
        }
    });
    let log = sersync.log();
    landed.unwrap_or_else(|e| panic!("{e}\n{log}"));
    assert!(!dst.join("dir000/inner/secret").exists());
    assert!(!dst.join("file000").exists());

    // Two more full syncs of the root meet both again: still one warning each, counted once.
    for round in 1..=2 {
        let reply = control(port, "POST", "/sync");
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
        fs::write(src.join(format!("open/round{round}")), "r").unwrap();
        wait_for(WAIT, || {
            let metrics = control(port, "GET", "/metrics");
            let idle = [
                "sersync_lane_pending_paths{",
                "sersync_lane_in_flight_events{",
            ]
            .iter()
            .all(|name| {
                metrics
                    .lines()
                    .any(|l| l.starts_with(name) && l.ends_with(" 0"))
            });
            (idle && dst.join(format!("open/round{round}")).exists())
                .then_some(())
                .ok_or(format!("round {round} not synced"))
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", sersync.log()));
    }
    let log = sersync.log();
    assert_eq!(skip_warnings(&log, "dir000"), 1, "{log}");
    assert_eq!(skip_warnings(&log, "file000"), 1, "{log}");
    let metrics = control(port, "GET", "/metrics");
    assert!(
        metrics.contains("\nsersync_rsync_unreadable_paths_total 2\n"),
        "{metrics}"
    );
}
