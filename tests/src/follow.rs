//! `sersync follow` as the tests run it: its file written from the parts a test has (the
//! NATS servers, the master's rsync daemon module), the process started, its control
//! endpoint read, and killed or stopped at will.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::daemon::{free_port, RsyncDaemon, USER};
use crate::http::http;
use crate::sersync::{sersync_bin, ConfigBuilder, Sersync};

/// The `<plugin>` section and `<sersync><plugin start>` line of a master publishing to
/// `stream` (subject `sersync.STREAM`) on `servers`, with `create` as the `<create>` element's
/// attributes (e.g. `replicas="3"`). Add with `ConfigBuilder::head_xml` and `sersync_xml`.
pub fn master_plugin_xml(servers: &str, stream: &str, create: &str) -> (String, String) {
    (
        format!(
            "  <plugin name=\"stream\" type=\"nats\" servers=\"{servers}\" stream=\"{stream}\" subject=\"sersync.{stream}\" timeout=\"5s\">\n    <create {create}/>\n  </plugin>\n"
        ),
        "    <plugin start=\"true\" name=\"stream\"/>\n".to_string(),
    )
}

/// A master of the change stream: its tree is the module `src` of an rsync daemon (what
/// followers pull from), watched by `sersync -m stream` (attribute changes on) publishing to
/// `stream` on `servers`.
pub struct StreamMaster {
    /// The rsync daemon serving the tree as module `src`.
    pub daemon: RsyncDaemon,
    /// The watched tree.
    pub root: PathBuf,
    _dir: tempfile::TempDir,
    /// The running master.
    pub sersync: Sersync,
}

impl StreamMaster {
    /// Starts the daemon and the master; `create` as in [`master_plugin_xml`].
    pub fn start(servers: &str, stream: &str, create: &str) -> StreamMaster {
        let daemon = RsyncDaemon::start(&["src"]);
        let root = daemon.module_path("src");
        let dir = tempfile::tempdir().expect("a temporary directory");
        let (plugin, enable) = master_plugin_xml(servers, stream, create);
        let config = ConfigBuilder::new(&root)
            .switch("attrib", true)
            .head_xml(&plugin)
            .sersync_xml(&enable)
            .write(dir.path());
        let sersync = Sersync::start(&config, &["-m", "stream"], dir.path());
        StreamMaster {
            daemon,
            root,
            _dir: dir,
            sersync,
        }
    }

    /// A directory outside the watched tree, on its file system (for the walk's moves out).
    pub fn outside(&self) -> PathBuf {
        self.root
            .parent()
            .expect("below the modules")
            .join("outside")
    }

    /// `n` followers of `stream` on `servers`, consumers `edge0…`, each in a directory of
    /// its own, pulling from this master's module.
    pub fn followers(
        &self,
        n: usize,
        servers: &str,
        stream: &str,
    ) -> Vec<(tempfile::TempDir, Follower)> {
        (0..n)
            .map(|i| {
                let dir = tempfile::tempdir().expect("a temporary directory");
                let f = Follower::start(
                    dir.path(),
                    servers,
                    stream,
                    &format!("edge{i}"),
                    &self.daemon,
                    "src",
                );
                (dir, f)
            })
            .collect()
    }
}

/// The `RUST_LOG` of the followers the tests start: `SERSYNC_FOLLOW_LOG` when set, else
/// the follower's plans at debug level (one line a group: what it removed, renamed and
/// pulled), which is what a convergence failure is read from.
fn follow_log_filter() -> String {
    std::env::var("SERSYNC_FOLLOW_LOG").unwrap_or_else(|_| "info,sersync::follow=debug".into())
}

/// A running `sersync follow`; killed when dropped.
pub struct Follower {
    child: Option<Child>,
    config: PathBuf,
    log: PathBuf,
    local: PathBuf,
    port: u16,
}

impl Follower {
    /// Writes `dir/follow.xml` for consumer `consumer` of `stream` on `servers`, pulling
    /// module `module` of `daemon` into `dir/tree`, and starts it; returns when it follows.
    pub fn start(
        dir: &Path,
        servers: &str,
        stream: &str,
        consumer: &str,
        daemon: &RsyncDaemon,
        module: &str,
    ) -> Follower {
        Follower::start_with(dir, servers, stream, consumer, daemon, module, "")
    }

    /// As [`Follower::start`], with more attributes of `<nats>` (e.g. `batch="1"`).
    pub fn start_with(
        dir: &Path,
        servers: &str,
        stream: &str,
        consumer: &str,
        daemon: &RsyncDaemon,
        module: &str,
        nats_attributes: &str,
    ) -> Follower {
        let local = dir.join("tree");
        let port = free_port();
        let config = dir.join("follow.xml");
        let xml = format!(
            "<follow>\n  <nats servers=\"{servers}\" stream=\"{stream}\" subject=\"sersync.{stream}\" consumer=\"{consumer}\" timeout=\"5s\" ackWait=\"20s\" {nats_attributes}/>\n  <source url=\"rsync://{USER}@{}:{}/{module}\" passwordFile=\"{}\" timeout=\"30\"/>\n  <local path=\"{}\"/>\n  <host hostip=\"127.0.0.1\" port=\"{port}\"/>\n</follow>\n",
            daemon.address(),
            daemon.port(),
            daemon.password_file().display(),
            local.display()
        );
        fs::write(&config, xml).expect("follow.xml");
        let mut f = Follower {
            child: None,
            log: dir.join("follow.log"),
            config,
            local,
            port,
        };
        f.resume();
        f
    }

    /// Starts it again (after [`Follower::kill9`]), appending to its log; returns when it
    /// follows.
    pub fn resume(&mut self) {
        let out = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let before = self.log().matches("following stream").count();
        let child = Command::new(sersync_bin())
            .arg("-o")
            .arg(&self.config)
            .arg("follow")
            .env("RUST_LOG", follow_log_filter())
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("dup"))
            .stderr(out)
            .spawn()
            .expect("start sersync follow");
        self.child = Some(child);
        let log = self.log.clone();
        let child = self.child.as_mut().expect("just started");
        crate::wait_for(Duration::from_secs(60), || {
            if let Ok(Some(status)) = child.try_wait() {
                return Ok(Err(status));
            }
            let text = fs::read_to_string(&log).unwrap_or_default();
            if text.matches("following stream").count() > before {
                Ok(Ok(()))
            } else {
                Err("not following yet".to_string())
            }
        })
        .unwrap_or_else(|e| panic!("sersync follow did not start: {e}\n{}", self.log()))
        .unwrap_or_else(|status| panic!("sersync follow exited with {status}:\n{}", self.log()));
    }

    /// The tree it keeps.
    pub fn tree(&self) -> &Path {
        &self.local
    }

    /// Everything it logged.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The value of the `/metrics` sample `name` (a family without labels), if it answers.
    pub fn metric(&self, name: &str) -> Option<f64> {
        let (_, body) = http(self.port, "GET", "/metrics").ok()?;
        body.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
    }

    /// Its control port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// SIGKILL: no goodbye, nothing acked that was not.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Its process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Stops the process (SIGSTOP) until the returned guard is dropped (SIGCONT): what the
    /// stream receives meanwhile is read at once afterwards, in as few groups as its batch
    /// size allows, so orders that are otherwise races happen every time.
    pub fn freeze(&self) -> FrozenFollower<'_> {
        let pid = self.pid().expect("the follower runs");
        // SAFETY: a signal to our own child.
        unsafe { libc::kill(pid as i32, libc::SIGSTOP) };
        let stat = PathBuf::from(format!("/proc/{pid}/stat"));
        crate::wait_for(Duration::from_secs(10), || {
            let text = fs::read_to_string(&stat).unwrap_or_default();
            match text
                .rsplit_once(") ")
                .and_then(|(_, rest)| rest.chars().next())
            {
                Some('T' | 't') => Ok(()),
                state => Err(format!("in state {state:?}")),
            }
        })
        .unwrap_or_else(|e| panic!("sersync follow did not stop: {e}"));
        FrozenFollower {
            pid,
            _follower: std::marker::PhantomData,
        }
    }

    /// SIGTERM, and waits for the exit (SIGKILL after 10 s).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            if !crate::peers::poll(Duration::from_secs(10), || {
                matches!(child.try_wait(), Ok(Some(_)))
            }) {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }
}

/// A stopped [`Follower`] (see [`Follower::freeze`]); continued when dropped, also when the
/// test panics.
pub struct FrozenFollower<'a> {
    pid: u32,
    _follower: std::marker::PhantomData<&'a Follower>,
}

impl Drop for FrozenFollower<'_> {
    fn drop(&mut self) {
        // SAFETY: a signal to our own child.
        unsafe { libc::kill(self.pid as i32, libc::SIGCONT) };
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.kill9();
    }
}
