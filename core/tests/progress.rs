//! The rsync sink reporting the start-up full sync (`-r`) on core's progress board, against a
//! real rsync daemon: two remotes in parallel on one board that draws into a buffer. The
//! sinks are configured as the daemon configures them (a `confxml.xml`, `Topology::plan`),
//! so the test also holds that the board reaches the sink through the registry only.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sersync::config::parse_str;
use sersync::progress::ProgressBoard;
use sersync::topology::Topology;
use sersync_plugin_sdk::{Batch, Event, EventKind, RelPath, Sink, SinkContext, WatchId};
use sersync_tests::{tree_diff, RsyncDaemon, SharedBuffer, USER};

fn board() -> (Arc<ProgressBoard>, SharedBuffer) {
    let out = SharedBuffer::default();
    (ProgressBoard::new(Box::new(out.clone()), 400), out)
}

/// Three directories of 40 small files and one larger file; returns (file-list entries as
/// rsync counts them: the root, the directories and the files; regular files).
fn tree(root: &Path) -> (u64, u64) {
    for d in 0..3 {
        let dir = root.join(format!("d{d}"));
        std::fs::create_dir(&dir).unwrap();
        for f in 0..40 {
            std::fs::write(dir.join(format!("f{f}")), format!("{d}/{f}\n").repeat(100)).unwrap();
        }
    }
    std::fs::write(root.join("big"), vec![7u8; 3 << 20]).unwrap();
    (1 + 3 + 121, 121)
}

/// One sink per module of `daemon`, pushing `root`, reporting on `board`, in module order.
fn sinks(
    daemon: &RsyncDaemon,
    modules: &[&str],
    root: &Path,
    board: &Arc<ProgressBoard>,
) -> Vec<Box<dyn Sink>> {
    let remotes: String = modules
        .iter()
        .map(|m| format!("<remote ip=\"{}\" name=\"{m}\"/>", daemon.address()))
        .collect();
    let text = format!(
        "<head><sersync><localpath watch=\"{}\">{remotes}</localpath><rsync>\
         <auth start=\"true\" users=\"{USER}\" passwordfile=\"{}\"/>\
         <userDefinedPort start=\"true\" port=\"{}\"/><timeout start=\"true\" time=\"20\"/>\
         </rsync></sersync></head>",
        root.display(),
        daemon.password_file().display(),
        daemon.port()
    );
    let config = parse_str(&text, Path::new("conf.xml")).expect("the configuration parses");
    let topology = Topology::plan(&config, None, 4, Some(board)).expect("the lanes are planned");
    let ctx = SinkContext {
        watch: WatchId(0),
        root: root.to_path_buf(),
        filter: Arc::new(sersync_plugin_sdk::sink::NoFilter),
    };
    topology
        .lanes
        .iter()
        .map(|lane| {
            assert!(lane.spec.reports_progress() && lane.spec.takes_full_syncs());
            lane.spec.start(&ctx).expect("the rsync sink starts")
        })
        .collect()
}

fn rescan(path: &str) -> Batch {
    Batch {
        watch: WatchId(0),
        root: PathBuf::new(),
        events: vec![Event::now(
            EventKind::Rescan,
            RelPath::from(path),
            true,
            WatchId(0),
        )],
    }
}

/// The final line the board left for `module`.
fn done_line(text: &str, module: &str) -> String {
    let lines: Vec<&str> = text
        .split(['\n', '\r'])
        .filter(|l| l.contains(&format!("::{module} ")) && l.contains(" done in "))
        .collect();
    assert_eq!(lines.len(), 1, "one final line for {module} in {text:?}");
    lines[0].to_string()
}

#[test]
fn each_remote_reports_its_first_full_sync_then_falls_silent() {
    let modules = ["one", "two"];
    let daemon = RsyncDaemon::start(&modules);
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let (entries, files) = tree(&src);
    let (board, out) = board();
    let mut sinks = sinks(&daemon, &modules, &src, &board);

    // The start-up full sync, both remotes at once as their lanes run it.
    std::thread::scope(|s| {
        for sink in &mut sinks {
            s.spawn(|| sink.deliver(&rescan("")).expect("the full sync succeeds"));
        }
    });
    let text = out.text();
    for module in modules {
        tree_diff(&src, &daemon.module_path(module)).unwrap();
        let line = done_line(&text, module);
        assert!(
            line.contains(&format!(": {entries} files, {files} sent, 3.")),
            "{line}"
        );
        assert!(line.ends_with("/s average"), "{line}");
    }
    assert!(!text.contains("failed"), "{text:?}");

    // A later full sync of the same lanes (crontab, POST /sync) sends, silently.
    std::fs::write(src.join("later"), "x").unwrap();
    let drawn = text.len();
    for sink in &mut sinks {
        sink.deliver(&rescan("")).unwrap();
    }
    for module in modules {
        tree_diff(&src, &daemon.module_path(module)).unwrap();
    }
    assert_eq!(out.text().len(), drawn, "{:?}", &out.text()[drawn..]);
}

#[test]
fn only_a_push_of_the_whole_root_is_shown_and_a_failed_one_is_retried() {
    let mut daemon = RsyncDaemon::start(&["www"]);
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let (entries, _) = tree(&src);
    let (board, out) = board();
    let mut sink = sinks(&daemon, &["www"], &src, &board).remove(0);

    // A rescan of a subtree (overflow recovery, a moved-in directory) is not the full sync.
    sink.deliver(&rescan("d1")).unwrap();
    assert_eq!(out.text(), "");

    daemon.stop();
    let error = sink.deliver(&rescan("")).unwrap_err();
    assert!(error.is_retryable(), "{error}");
    let text = out.text();
    assert!(
        text.contains("full sync  backup@127.0.0.1::www  failed after "),
        "{text:?}"
    );
    assert!(!text.contains(" done in "), "{text:?}");

    daemon.resume();
    sink.deliver(&rescan("")).unwrap();
    tree_diff(&src, &daemon.module_path("www")).unwrap();
    assert!(done_line(&out.text(), "www").contains(&format!(": {entries} files, ")));
}
