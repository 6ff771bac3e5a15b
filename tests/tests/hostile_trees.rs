//! Trees that anyone who can write into them can make hostile: they must not stop syncing.
//! Real binary, real rsync daemon on loopback.

use std::ffi::CString;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::Duration;

use sersync_tests::{assert_converges, wait_for, ConfigBuilder, RsyncDaemon, Sersync, Stage};

const CONVERGE: Duration = Duration::from_secs(30);

/// `mkdir NAME && cd NAME`, `levels` times, below `top` (with `mkdirat`/`openat`, since the
/// path soon exceeds what any path-based call takes).
fn make_deep_tree(top: &Path, name: &str, levels: usize) {
    let name = CString::new(name).unwrap();
    let top = CString::new(top.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: plain system calls on descriptors this function opens and closes, with
    // NUL-terminated strings that outlive them.
    unsafe {
        let mut dir = libc::open(top.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY);
        assert!(dir >= 0);
        for _ in 0..levels {
            assert_eq!(libc::mkdirat(dir, name.as_ptr(), 0o755), 0);
            let next = libc::openat(dir, name.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY);
            assert!(next >= 0);
            libc::close(dir);
            dir = next;
        }
        libc::close(dir);
    }
}

#[test]
fn a_tree_too_deep_to_watch_is_skipped_with_a_warning_and_the_rest_keeps_syncing() {
    let stage = Stage::new(&["www"]);
    let (src, slave) = (&stage.src, stage.dst("www"));
    let config = stage.config("www", |c| c);
    let mut sersync = Sersync::start(&config, &[], stage.path());
    // 400 levels of 11 bytes: 4,400 bytes, past PATH_MAX.
    make_deep_tree(src, "d123456789", 400);
    fs::write(src.join("after"), b"written after the deep tree").unwrap();
    wait_for(CONVERGE, || {
        fs::read(slave.join("after")).map_err(|e| e.to_string())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", sersync.log()));
    sersync
        .wait_for_log("not watched or synced", CONVERGE)
        .unwrap_or_else(|e| panic!("{e}\n{}", sersync.log()));
    assert_eq!(
        sersync.log().matches("not watched or synced").count(),
        1,
        "one warning for the one path too long:\n{}",
        sersync.log()
    );
    // It keeps running, and it starts again on the same tree.
    let status = sersync.terminate(Duration::from_secs(15)).expect("exits");
    assert!(status.success(), "{status}\n{}", sersync.log());
    let again = Sersync::start(&config, &[], stage.path());
    fs::write(src.join("after-restart"), b"r").unwrap();
    wait_for(CONVERGE, || {
        fs::read(slave.join("after-restart")).map_err(|e| e.to_string())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", again.log()));
}

#[test]
fn a_symlinked_watch_root_is_followed_once_and_every_later_change_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("data-www");
    fs::create_dir(&real).unwrap();
    fs::write(real.join("before"), b"b").unwrap();
    let link = dir.path().join("www");
    symlink(&real, &link).unwrap();
    let daemon = RsyncDaemon::start(&["www"]);
    let config = ConfigBuilder::new(&link)
        .remote(&daemon, "www")
        .write(dir.path());
    let sersync = Sersync::start(&config, &["-r"], dir.path());
    for i in 0..45 {
        fs::write(link.join(format!("change-{i}")), i.to_string()).unwrap();
    }
    fs::create_dir(real.join("sub")).unwrap();
    fs::write(real.join("sub/inner"), b"i").unwrap();
    assert_converges(&real, &daemon.module_path("www"), CONVERGE);
    assert!(
        sersync.log().contains("the real directory is watched"),
        "both names are logged:\n{}",
        sersync.log()
    );
}
