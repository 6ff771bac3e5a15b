//! The follower fed by hand: batches made here and published to a real JetStream (with the
//! stream format's own encoder, `wire::parts`), describing changes that arrive late (a
//! message about how a path *was*, after newer ones were applied — what a redelivery or a
//! retried group looks like from the follower), twice, or never (a change the master
//! merged away). The follower runs in this process against a real rsync daemon; after each
//! sequence the local tree must equal the source byte for byte.
//!
//! Needs `nats-server`: without it each test says SKIPPED.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use crossbeam_channel::Sender;
use sersync_plugin_sdk::{Batch, Event, EventKind, RelPath, WatchId};
use sersync_plugins::stream::async_nats::jetstream::{self, message::PublishMessage, stream};
use sersync_plugins::stream::{wire, Runtime};
use sersync_tests::nats::{nats_server_program, NatsCluster};
use sersync_tests::{free_port, tree_diff, wait_for, RsyncDaemon, USER};

use super::status::Board;
use super::Follower;
use crate::supervisor::Notice;

const SUBJECT: &str = "sersync.crafted";
const CONVERGE: Duration = Duration::from_secs(30);

/// A stream, a source served by an rsync daemon, and a follower of the stream in a thread.
struct Bench {
    _cluster: NatsCluster,
    _daemon: RsyncDaemon,
    src: PathBuf,
    local: PathBuf,
    _dir: tempfile::TempDir,
    runtime: Runtime,
    js: jetstream::Context,
    stop: Sender<Notice>,
    follower: Option<JoinHandle<Result<(), String>>>,
    published: AtomicU64,
}

/// One change as a test writes it: kind, path, the old name of a move, a directory.
type Change<'a> = (EventKind, &'a [u8], Option<&'a [u8]>, bool);

impl Bench {
    /// `prepare` makes the source before the follower's first full pull; `heal_after` is
    /// `<local healAfter>`. `None` (and SKIPPED printed) without `nats-server`.
    fn start(prepare: impl FnOnce(&Path), heal_after: &str) -> Option<Bench> {
        Bench::start_with(prepare, heal_after, "")
    }

    /// As [`Bench::start`], with more attributes of `<nats>` (`batch="1"`).
    fn start_with(prepare: impl FnOnce(&Path), heal_after: &str, nats: &str) -> Option<Bench> {
        if nats_server_program().is_none() {
            println!("SKIPPED: nats-server is not installed (Debian package `nats-server`)");
            return None;
        }
        let cluster = NatsCluster::single();
        let runtime = Runtime::new("crafted").unwrap();
        let url = format!("nats://127.0.0.1:{}", cluster.port(0));
        let js = runtime.block_on(async {
            let client = sersync_plugins::stream::async_nats::connect(url)
                .await
                .unwrap();
            let js = jetstream::new(client);
            js.get_or_create_stream(stream::Config {
                name: "CRAFTED".into(),
                subjects: vec![SUBJECT.into()],
                ..Default::default()
            })
            .await
            .unwrap();
            js
        });
        let daemon = RsyncDaemon::start(&["src"]);
        let src = daemon.module_path("src");
        prepare(&src);
        let dir = tempfile::tempdir().unwrap();
        let local = dir.path().join("tree");
        let file = dir.path().join("follow.xml");
        let xml = format!(
            "<follow>\n  <nats servers=\"{}\" stream=\"CRAFTED\" subject=\"{SUBJECT}\" consumer=\"edge\" timeout=\"5s\" ackWait=\"20s\" {nats}/>\n  <source url=\"rsync://{USER}@{}:{}/src\" passwordFile=\"{}\" timeout=\"30\"/>\n  <local path=\"{}\" healAfter=\"{heal_after}\"/>\n  <host hostip=\"127.0.0.1\" port=\"{}\"/>\n</follow>\n",
            cluster.servers(),
            daemon.address(),
            daemon.port(),
            daemon.password_file().display(),
            local.display(),
            free_port()
        );
        std::fs::write(&file, xml).unwrap();
        let config = super::config::load(&file).unwrap();
        let board = Arc::new(Board::new("follow edge".into(), local.clone()));
        let (stop, notices) = crossbeam_channel::unbounded();
        let ready = board.clone();
        let follower = std::thread::spawn(move || {
            Follower::new(config, board, notices).and_then(|mut f| f.run())
        });
        wait_for(CONVERGE, || {
            if ready.is_ready() {
                Ok(())
            } else {
                Err("the follower is not following yet".to_string())
            }
        })
        .unwrap();
        let bench = Bench {
            _cluster: cluster,
            _daemon: daemon,
            src,
            local,
            _dir: dir,
            runtime,
            js,
            stop,
            follower: Some(follower),
            published: AtomicU64::new(0),
        };
        bench.converge("after the first full pull");
        Some(bench)
    }

    /// Publishes `changes` as one batch, its parts under ids of their own (so that a batch
    /// published again is stored again, as a redelivery is delivered again).
    fn publish(&self, changes: &[Change<'_>]) {
        let events = changes
            .iter()
            .map(|&(kind, path, from, is_dir)| Event {
                kind,
                path: RelPath::new(path),
                from: from.map(RelPath::new),
                is_dir,
                watch: WatchId(0),
                time: SystemTime::now(),
            })
            .collect();
        let batch = Batch {
            watch: WatchId(0),
            root: self.src.clone(),
            events,
        };
        let n = self.published.fetch_add(1, Ordering::SeqCst);
        for part in wire::parts(&batch, SUBJECT, 1 << 20).unwrap() {
            let message = PublishMessage::build()
                .payload(part.payload.clone().into())
                .message_id(format!("{}-{n}", part.message_id()));
            self.runtime.block_on(async {
                self.js
                    .send_publish(SUBJECT.to_string(), message)
                    .await
                    .unwrap()
                    .await
                    .unwrap()
            });
        }
    }

    /// Waits until the local tree equals the source.
    fn converge(&self, when: &str) {
        if let Err(e) = wait_for(CONVERGE, || tree_diff(&self.src, &self.local)) {
            panic!("{when}: the follower's tree differs from the source: {e}");
        }
    }

    /// Publishes `changes`, then a new file of the source in a message of its own, and
    /// waits until the tree equals the source: the file shows that the follower got past
    /// `changes` (messages are applied in order), so a tree that was equal already proves
    /// nothing on its own.
    fn apply(&self, changes: &[Change<'_>], when: &str) {
        self.publish(changes);
        let marker = format!("marker-{}", self.published.load(Ordering::SeqCst));
        std::fs::write(self.src.join(&marker), &marker).unwrap();
        self.publish(&[(CloseWrite, marker.as_bytes(), None, false)]);
        self.converge(when);
    }

    fn src(&self, path: &str) -> PathBuf {
        self.src.join(path)
    }

    fn local(&self, path: &str) -> PathBuf {
        self.local.join(path)
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        let _ = self.stop.send(Notice::Stop);
        if let Some(follower) = self.follower.take() {
            let _ = follower.join();
        }
    }
}

use EventKind::{CloseWrite, Create, Delete, Move};

/// A change of `d/f` from when `d` was a directory arrives after `d` became a link to a
/// directory that holds an `f`: rsync given `d/f` looks it up through the link and makes `d`
/// a real directory here (unless the link happens to lead to a directory here too). The
/// link is absolute: the daemon (chrooted, as root runs it) resolves it inside its module,
/// this tree does not.
#[test]
fn a_late_change_below_what_is_now_a_link_leaves_the_link() {
    let Some(bench) = Bench::start(
        |src| {
            std::fs::create_dir(src.join("target")).unwrap();
            std::fs::write(src.join("target/f"), "through the link").unwrap();
            std::os::unix::fs::symlink("/target", src.join("d")).unwrap();
        },
        "0",
    ) else {
        return;
    };
    bench.apply(
        &[(CloseWrite, b"d/f", None, false)],
        "after the late change",
    );
    assert!(std::fs::symlink_metadata(bench.local("d"))
        .unwrap()
        .file_type()
        .is_symlink());
}

/// The same, with the link's own change in the same group (here: the same batch, which is
/// what the follower makes of messages it reads together): a one-by-one name below another
/// waits until that other one is pulled.
#[test]
fn a_change_below_a_name_that_became_a_link_in_the_same_group_leaves_the_link() {
    let Some(bench) = Bench::start(
        |src| {
            std::fs::create_dir_all(src.join("d")).unwrap();
            std::fs::write(src.join("d/f"), "v1").unwrap();
            std::fs::create_dir(src.join("target")).unwrap();
            std::fs::write(src.join("target/f"), "the target's").unwrap();
        },
        "0",
    ) else {
        return;
    };
    std::fs::remove_dir_all(bench.src("d")).unwrap();
    std::os::unix::fs::symlink("target", bench.src("d")).unwrap();
    bench.apply(
        &[
            (CloseWrite, b"d/f", None, false),
            (Create, b"d", None, false),
            (CloseWrite, b"target/f", None, false),
        ],
        "after the link",
    );
}

/// A directory's pull must still delete what the source lost when another name of the same
/// run lies below what is a file on the source (its change not applied yet here): rsync
/// skips every deletion of a run with a sender's I/O error.
#[test]
fn a_name_below_a_file_on_the_source_does_not_stop_a_directorys_deletions() {
    let Some(bench) = Bench::start(
        |src| {
            std::fs::create_dir_all(src.join("f/sub")).unwrap();
            std::fs::create_dir_all(src.join("d")).unwrap();
            std::fs::write(src.join("d/old"), "o").unwrap();
        },
        "0",
    ) else {
        return;
    };
    // The source: `f` became a file, `d/old` went. The stream says so later (below).
    std::fs::remove_dir_all(bench.src("f")).unwrap();
    std::fs::write(bench.src("f"), "a file").unwrap();
    std::fs::remove_file(bench.src("d/old")).unwrap();
    bench.publish(&[(Create, b"f/sub", None, true), (Create, b"d", None, true)]);
    wait_for(CONVERGE, || {
        if bench.local("d/old").exists() {
            Err("d/old is still here".to_string())
        } else {
            Ok(())
        }
    })
    .unwrap();
    bench.apply(&[(CloseWrite, b"f", None, false)], "after f's own change");
}

/// Every name of a pull below a file on the source: the daemon ends the connection early
/// ("Connection reset by peer" on this side), and the group must still count as applied;
/// else it is retried for ever and, read one message at a time, the messages after it
/// (which would settle it) wait behind it.
#[test]
fn a_group_whose_every_name_is_gone_on_the_source_is_applied() {
    let Some(bench) = Bench::start_with(
        |src| {
            std::fs::create_dir_all(src.join("f")).unwrap();
            std::fs::write(src.join("f/x"), "x").unwrap();
        },
        "0",
        r#"batch="1""#,
    ) else {
        return;
    };
    std::fs::remove_dir_all(bench.src("f")).unwrap();
    std::fs::write(bench.src("f"), "a file").unwrap();
    std::fs::write(bench.src("g"), "g").unwrap();
    bench.publish(&[(CloseWrite, b"f/x", None, false)]);
    bench.publish(&[(CloseWrite, b"f/x", None, false)]);
    bench.apply(
        &[
            (CloseWrite, b"f", None, false),
            (CloseWrite, b"g", None, false),
        ],
        "after the messages behind it",
    );
}

/// A rename delivered again after the rename back: applied again here, the pulls undo it.
#[test]
fn a_rename_delivered_again_after_the_rename_back_is_undone() {
    let Some(bench) = Bench::start(
        |src| {
            std::fs::create_dir_all(src.join("a/in")).unwrap();
            std::fs::write(src.join("a/in/f"), "f").unwrap();
            std::fs::create_dir(src.join("p")).unwrap();
        },
        "0",
    ) else {
        return;
    };
    std::fs::rename(bench.src("a"), bench.src("p/b")).unwrap();
    let there: &[Change<'_>] = &[(Move, b"p/b", Some(b"a"), true)];
    bench.apply(there, "after the rename");
    std::fs::rename(bench.src("p/b"), bench.src("a")).unwrap();
    std::fs::write(bench.src("a/in/f"), "changed since").unwrap();
    bench.apply(
        &[
            (Move, b"a", Some(b"p/b"), true),
            (CloseWrite, b"a/in/f", None, false),
        ],
        "after the rename back",
    );
    bench.apply(there, "after the first rename again");
    bench.apply(there, "after the first rename a third time");
}

/// A delete delivered again after the name was made again (as another kind of thing).
#[test]
fn a_delete_delivered_again_after_the_name_came_back_leaves_it() {
    let Some(bench) = Bench::start(|src| std::fs::write(src.join("x"), "file").unwrap(), "0")
    else {
        return;
    };
    std::fs::remove_file(bench.src("x")).unwrap();
    let deleted: &[Change<'_>] = &[(Delete, b"x", None, false)];
    bench.apply(deleted, "after the delete");
    std::fs::create_dir_all(bench.src("x/y")).unwrap();
    std::fs::write(bench.src("x/y/z"), "z").unwrap();
    bench.apply(&[(Create, b"x", None, true)], "after the new directory");
    bench.apply(deleted, "after the delete again");
}

/// A name the master never mentions: made in a directory the follower pulled whole while it
/// existed, and removed before the master's batch left (the master merges a create and its
/// delete into nothing). The later prune of the directory takes it away.
#[test]
fn a_name_the_stream_never_mentions_is_pruned_after_the_pull_that_brought_it() {
    let Some(bench) = Bench::start(|_| {}, "1s") else {
        return;
    };
    std::fs::create_dir(bench.src("D")).unwrap();
    std::fs::write(bench.src("D/.tmp-123"), "temporary").unwrap();
    bench.publish(&[(Create, b"D", None, true)]);
    wait_for(CONVERGE, || {
        if bench.local("D/.tmp-123").exists() {
            Ok(())
        } else {
            Err("not pulled yet".to_string())
        }
    })
    .unwrap();
    // Renamed in place: to the master a pending create moved, so a create of the new name
    // only. The old name is never in the stream.
    std::fs::rename(bench.src("D/.tmp-123"), bench.src("D/file")).unwrap();
    bench.apply(&[(Create, b"D/file", None, false)], "after the rename");
}
