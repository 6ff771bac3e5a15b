//! A real OpenSSH server on a loopback port, started by the test, for ssh remotes
//! (`<rsync><ssh start="true"/>`): `rsync -e ssh` reaches it through a wrapper `ssh` first in
//! `PATH` that adds the test's client configuration (port, generated user key, no host-key
//! prompt). Needs Debian's `openssh-server` and root (sshd logs the user in as itself).
//!
//! Sessions get an empty `HOME` of their own (`SetEnv HOME=…`): bash, started by sshd for
//! each session's command, reads `~/.bashrc` even when not interactive, and this box's root
//! runs `pyenv init` there (~300–600 ms per session measured, ~100 processes); a slave's
//! account for rsync (Debian's default `.bashrc`) costs none of that, and the transport is
//! what the tests and the bench measure. The working directory stays the user's home.

use std::ffi::OsString;
use std::fs;
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use crate::free_port;

const SSHD: &str = "/usr/sbin/sshd";

/// An sshd on 127.0.0.1 accepting the current user with a key made for the test.
pub struct SshServer {
    dir: TempDir,
    port: u16,
    child: Option<Child>,
}

impl SshServer {
    /// Starts sshd on a free port of 127.0.0.1, or says why it cannot (no `sshd` installed,
    /// not root): the caller prints `SKIPPED` with the reason and returns.
    pub fn start() -> Result<SshServer, String> {
        if !Path::new(SSHD).exists() {
            return Err(format!(
                "{SSHD} is missing (apt-get install openssh-server)"
            ));
        }
        if unsafe { libc::geteuid() } != 0 {
            return Err("sshd tests run as root".into());
        }
        // sshd's privilege separation directory, made by the package's unit at boot.
        fs::create_dir_all("/run/sshd").map_err(|e| format!("/run/sshd: {e}"))?;
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let path = dir.path();
        keygen(&path.join("host_key"))?;
        keygen(&path.join("user_key"))?;
        fs::copy(path.join("user_key.pub"), path.join("authorized_keys"))
            .map_err(|e| format!("authorized_keys: {e}"))?;
        fs::create_dir(path.join("home")).map_err(|e| format!("home: {e}"))?;
        let port = free_port();
        fs::write(
            path.join("sshd_config"),
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {dir}/host_key\n\
                 PidFile {dir}/sshd.pid\nAuthorizedKeysFile {dir}/authorized_keys\n\
                 StrictModes no\nPermitRootLogin prohibit-password\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nUsePAM no\nMaxStartups 100:30:200\n\
                 MaxSessions 100\nSetEnv HOME={dir}/home\nLogLevel ERROR\n",
                dir = path.display()
            ),
        )
        .map_err(|e| format!("sshd_config: {e}"))?;
        fs::write(
            path.join("ssh_config"),
            format!(
                "Host *\n  Port {port}\n  IdentityFile {dir}/user_key\n  IdentitiesOnly yes\n\
                 \x20 StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  BatchMode yes\n\
                 \x20 LogLevel ERROR\n",
                dir = path.display()
            ),
        )
        .map_err(|e| format!("ssh_config: {e}"))?;
        let bin = path.join("bin");
        fs::create_dir(&bin).map_err(|e| e.to_string())?;
        let wrapper = bin.join("ssh");
        fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\nexec /usr/bin/ssh -F '{}' \"$@\"\n",
                path.join("ssh_config").display()
            ),
        )
        .map_err(|e| e.to_string())?;
        fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755))
            .map_err(|e| e.to_string())?;
        let mut server = SshServer {
            dir,
            port,
            child: None,
        };
        server.resume()?;
        Ok(server)
    }

    /// [`SshServer::start`], or `None` after printing `SKIPPED` and why: a test that needs
    /// it returns then.
    pub fn start_or_skip() -> Option<SshServer> {
        SshServer::start()
            .map_err(|why| eprintln!("SKIPPED: {why}"))
            .ok()
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The client configuration file (`ssh -F`), for runs of ssh outside sersync.
    pub fn client_config(&self) -> PathBuf {
        self.dir.path().join("ssh_config")
    }

    /// A fresh empty directory for a slave reached over ssh (an absolute remote path).
    pub fn slave_dir(&self, name: &str) -> PathBuf {
        let dir = self.dir.path().join("slaves").join(name);
        fs::create_dir_all(&dir).expect("slave dir");
        dir
    }

    /// `PATH` with the wrapper `ssh` first: give it to sersync (and anything else that runs
    /// `ssh`) as `("PATH", …)`.
    pub fn path_env(&self) -> OsString {
        let mut path = OsString::from(self.dir.path().join("bin"));
        if let Some(rest) = std::env::var_os("PATH") {
            path.push(":");
            path.push(rest);
        }
        path
    }

    /// Stops sshd (connections are then refused).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port.
    pub fn resume(&mut self) -> Result<(), String> {
        assert!(self.child.is_none(), "sshd already running");
        let child = Command::new(SSHD)
            .args(["-D", "-e", "-f"])
            .arg(self.dir.path().join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("{SSHD}: {e}"))?;
        self.child = Some(child);
        crate::wait_for(Duration::from_secs(10), || {
            TcpStream::connect(("127.0.0.1", self.port)).map_err(|e| e.to_string())
        })
        .map(|_| ())
        .map_err(|e| format!("sshd does not accept connections: {e}"))
    }
}

impl Drop for SshServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn keygen(file: &Path) -> Result<(), String> {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(file)
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("ssh-keygen: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "ssh-keygen {} exited with {status}",
            file.display()
        ))
    }
}
