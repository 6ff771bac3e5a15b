//! A real rsync daemon on a loopback port, started and stopped by the test.

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

/// The rsync user every test daemon accepts.
pub const USER: &str = "backup";
const PASSWORD: &str = "s3cret-pass";

/// An rsync daemon with one module per name, each backed by its own directory.
pub struct RsyncDaemon {
    dir: TempDir,
    address: String,
    port: u16,
    modules: Vec<String>,
    child: Option<Child>,
}

impl RsyncDaemon {
    /// Starts a daemon serving `modules` on a free port of 127.0.0.1.
    pub fn start(modules: &[&str]) -> RsyncDaemon {
        RsyncDaemon::start_with(modules, "")
    }

    /// [`RsyncDaemon::start`] with `global` (lines of `rsyncd.conf`, e.g.
    /// `socket options = TCP_NODELAY\n`) added to the global section.
    pub fn start_with(modules: &[&str], global: &str) -> RsyncDaemon {
        Self::launch("127.0.0.1", free_port(), modules, global)
    }

    /// Starts a daemon serving `modules` on `address:port` (a loopback address). Slaves of
    /// one configuration share the port (`<userDefinedPort>` is global), so a second slave
    /// listens on another loopback address, e.g. 127.0.0.2.
    pub fn start_at(address: &str, port: u16, modules: &[&str]) -> RsyncDaemon {
        Self::launch(address, port, modules, "")
    }

    fn launch(address: &str, port: u16, modules: &[&str], global: &str) -> RsyncDaemon {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut conf = format!(
            "use chroot = {chroot}\nmunge symlinks = no\nmax connections = 0\nlog file = {log}\nreverse lookup = no\n",
            log = dir.path().join("rsyncd.log").display(),
            // Without chroot the daemon rewrites absolute symlink targets; root can chroot.
            chroot = if unsafe { libc::geteuid() } == 0 { "yes" } else { "no" },
        );
        conf.push_str(global);
        for module in modules {
            let path = dir.path().join("modules").join(module);
            fs::create_dir_all(&path).expect("module dir");
            conf.push_str(&format!(
                "[{module}]\npath = {}\nread only = no\nuid = 0\ngid = 0\nauth users = {USER}\nsecrets file = {}\n",
                path.display(),
                dir.path().join("rsyncd.secrets").display()
            ));
        }
        fs::write(dir.path().join("rsyncd.conf"), conf).expect("rsyncd.conf");
        write_private(
            &dir.path().join("rsyncd.secrets"),
            &format!("{USER}:{PASSWORD}\n"),
        );
        write_private(&dir.path().join("client.pass"), &format!("{PASSWORD}\n"));
        let mut daemon = RsyncDaemon {
            dir,
            address: address.to_string(),
            port,
            modules: modules.iter().map(|m| m.to_string()).collect(),
            child: None,
        };
        daemon.resume();
        daemon
    }

    /// The address it listens on.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory behind `module`: what the slave holds.
    pub fn module_path(&self, module: &str) -> PathBuf {
        assert!(
            self.modules.iter().any(|m| m == module),
            "no module {module}"
        );
        self.dir.path().join("modules").join(module)
    }

    /// The daemon's process id (`None` while it is stopped).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// The client password file (mode 600) for [`USER`].
    pub fn password_file(&self) -> PathBuf {
        self.dir.path().join("client.pass")
    }

    /// The daemon's log file (one line per transfer and error); bytes that are no UTF-8 (a
    /// file name's) are replaced, so that one such name does not empty the whole log.
    pub fn log(&self) -> String {
        fs::read(self.dir.path().join("rsyncd.log"))
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    }

    /// Stops the daemon (the port then refuses connections).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port.
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "daemon already running");
        let child = Command::new(daemon_program())
            .arg("--daemon")
            .arg("--no-detach")
            .arg(format!(
                "--config={}",
                self.dir.path().join("rsyncd.conf").display()
            ))
            .arg(format!("--port={}", self.port))
            .arg(format!("--address={}", self.address))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("rsync is installed (apt-get install rsync)");
        self.child = Some(child);
        crate::wait_for(Duration::from_secs(10), || {
            TcpStream::connect((self.address.as_str(), self.port)).map_err(|e| e.to_string())
        })
        .expect("rsync daemon accepts connections");
    }
}

impl Drop for RsyncDaemon {
    fn drop(&mut self) {
        self.stop();
    }
}

fn write_private(path: &Path, text: &str) {
    fs::write(path, text).expect("write");
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).expect("chmod");
}

/// The rsync program the test daemons run: `$SERSYNC_TEST_DAEMON_RSYNC` when set (e.g. a
/// receiver without a distribution's bug, to tell a slave's bug from sersync's), else
/// `rsync` from `PATH`.
fn daemon_program() -> std::ffi::OsString {
    std::env::var_os("SERSYNC_TEST_DAEMON_RSYNC").unwrap_or_else(|| "rsync".into())
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}
