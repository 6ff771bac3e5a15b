//! The drift audit (`<engine auditSeconds>`) against a real rsync daemon: what something
//! outside sersync changes on the slave is found, logged, counted and healed; a slave that
//! sersync alone keeps shows no difference.

use std::fs;
use std::time::{Duration, SystemTime};

use sersync_tests::{assert_converges, tree_diff, wait_for, Sersync, Stage};

const CONVERGE: Duration = Duration::from_secs(30);

/// sersync pushing the stage's tree to module `www`, audited every second.
fn audited(stage: &Stage) -> Sersync {
    let config = stage.config("www", |c| c.head_xml("<engine auditSeconds=\"1\"/>\n"));
    Sersync::start(&config, &[], stage.path())
}

/// The number of `audit done` lines in the log whose difference count is `differences`.
fn audits_with(log: &str, differences: usize) -> usize {
    log.lines()
        .filter(|l| l.contains("audit done") && l.contains(&format!("differences={differences} ")))
        .count()
}

#[test]
fn what_is_changed_on_the_slave_behind_sersyncs_back_is_found_and_healed() {
    let stage = Stage::new(&["www"]);
    let src = &stage.src;
    fs::create_dir_all(src.join("d")).unwrap();
    let sersync = audited(&stage);
    for name in ["kept", "d/removed-remotely", "d/changed-remotely"] {
        fs::write(src.join(name), name).unwrap();
    }
    let slave = stage.dst("www");
    assert_converges(src, &slave, CONVERGE);
    // Someone edits the slave: a file lost, one added, one rewritten (dated in the past, so
    // that rsync's --update does not keep it).
    fs::remove_file(slave.join("d/removed-remotely")).unwrap();
    fs::write(slave.join("d/extra-remotely"), b"not in the source").unwrap();
    fs::write(slave.join("d/changed-remotely"), b"edited on the slave").unwrap();
    fs::File::options()
        .write(true)
        .open(slave.join("d/changed-remotely"))
        .unwrap()
        .set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000))
        .unwrap();
    if let Err(e) = wait_for(CONVERGE, || tree_diff(src, &slave)) {
        panic!("not healed: {e}\n{}", sersync.log());
    }
    wait_for(CONVERGE, || {
        let log = sersync.log();
        let named = [
            "d/removed-remotely",
            "d/extra-remotely",
            "d/changed-remotely",
        ]
        .iter()
        .all(|p| {
            log.lines()
                .any(|l| l.contains("audit: the remote differs") && l.contains(p))
        });
        (named && audits_with(&log, 3) == 1)
            .then_some(())
            .ok_or_else(|| "not every difference logged yet".to_string())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", sersync.log()));
}

#[test]
fn a_slave_kept_by_sersync_alone_shows_no_difference() {
    let stage = Stage::new(&["www"]);
    let src = &stage.src;
    let sersync = audited(&stage);
    for i in 0..50 {
        let sub = src.join(format!("dir{}", i % 5));
        fs::create_dir_all(&sub).unwrap();
        fs::write(sub.join(format!("f{i}")), i.to_string()).unwrap();
    }
    fs::rename(src.join("dir1"), src.join("renamed")).unwrap();
    fs::remove_dir_all(src.join("dir2")).unwrap();
    if let Err(e) = wait_for(CONVERGE, || tree_diff(src, &stage.dst("www"))) {
        panic!("{e}\n{}", sersync.log());
    }
    wait_for(CONVERGE, || {
        (audits_with(&sersync.log(), 0) >= 2)
            .then_some(())
            .ok_or_else(|| "no clean audit yet".to_string())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", sersync.log()));
    assert!(
        !sersync.log().contains("audit: the remote differs"),
        "{}",
        sersync.log()
    );
}
