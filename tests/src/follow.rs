//! `sersync follow` as the tests run it: its file written from the parts a test has (the
//! NATS servers, the master's rsync daemon module), the process started, its control
//! endpoint read, and killed or stopped at will.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::daemon::{free_port, RsyncDaemon, USER};
use crate::http::http;
use crate::sersync::sersync_bin;

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
        let local = dir.join("tree");
        let port = free_port();
        let config = dir.join("follow.xml");
        let xml = format!(
            "<follow>\n  <nats servers=\"{servers}\" stream=\"{stream}\" subject=\"sersync.{stream}\" consumer=\"{consumer}\" timeout=\"5s\" ackWait=\"20s\"/>\n  <source url=\"rsync://{USER}@{}:{}/{module}\" passwordFile=\"{}\" timeout=\"30\"/>\n  <local path=\"{}\"/>\n  <host hostip=\"127.0.0.1\" port=\"{port}\"/>\n</follow>\n",
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
            .env("RUST_LOG", "info")
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

impl Drop for Follower {
    fn drop(&mut self) {
        self.kill9();
    }
}
