//! The real `sersync` binary, configured and run by a test.

use std::fmt::Write as _;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use crate::daemon::{RsyncDaemon, USER};

/// The path of the `sersync` binary: `$SERSYNC_BIN` when set, else built once with cargo
/// (debug profile) in the workspace's target directory.
pub fn sersync_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("SERSYNC_BIN") {
            return PathBuf::from(bin);
        }
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("workspace root");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--quiet", "-p", "sersync", "--bin", "sersync"])
            .current_dir(workspace)
            .status()
            .expect("running cargo build");
        assert!(status.success(), "cargo build -p sersync failed");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace.join("target"));
        target.join("debug").join("sersync")
    })
    .clone()
}

#[derive(Clone, Debug)]
struct Remote {
    address: String,
    port: u16,
    password_file: PathBuf,
    module: String,
}

/// Writes a `confxml.xml` in the 2.5.4 layout for a watch pushed to test daemons.
#[derive(Clone, Debug)]
pub struct ConfigBuilder {
    watch: PathBuf,
    remotes: Vec<Remote>,
    timeout_secs: u32,
    switches: Vec<(&'static str, bool)>,
    excludes: Vec<String>,
    head_extra: String,
    sersync_extra: String,
    rsync_extra: String,
    common_params: String,
    ssh: bool,
}

impl ConfigBuilder {
    /// Watches `watch`, pushing to nothing yet.
    pub fn new(watch: &Path) -> Self {
        ConfigBuilder {
            watch: watch.to_path_buf(),
            remotes: Vec::new(),
            timeout_secs: 20,
            switches: Vec::new(),
            excludes: Vec::new(),
            head_extra: String::new(),
            sersync_extra: String::new(),
            rsync_extra: String::new(),
            common_params: "-artuz".into(),
            ssh: false,
        }
    }

    /// Adds a remote: `module` of `daemon`.
    pub fn remote(mut self, daemon: &RsyncDaemon, module: &str) -> Self {
        self.remotes.push(Remote {
            address: daemon.address().to_string(),
            port: daemon.port(),
            password_file: daemon.password_file(),
            module: module.to_string(),
        });
        self
    }

    /// Adds a remote reached over ssh (`<rsync><ssh start="true"/>`): the absolute directory
    /// `path` on `server`. Every remote of the configuration is then an ssh one (the switch is
    /// global in the format), with no password file or port in the file: the port is in the
    /// client configuration of [`crate::SshServer::path_env`]'s `ssh`.
    pub fn ssh_remote(mut self, path: &Path) -> Self {
        self.ssh = true;
        self.remotes.push(Remote {
            address: "127.0.0.1".into(),
            port: 0,
            password_file: PathBuf::new(),
            module: path.display().to_string(),
        });
        self
    }

    /// Adds a remote that is no rsync daemon (e.g. a listener that hangs) at `address`.
    pub fn raw_remote(mut self, address: &str, port: u16, module: &str) -> Self {
        let password_file = self
            .remotes
            .first()
            .map(|r| r.password_file.clone())
            .unwrap_or_default();
        self.remotes.push(Remote {
            address: address.to_string(),
            port,
            password_file,
            module: module.to_string(),
        });
        self
    }

    /// Sets `<timeout start="true" time>` (seconds).
    pub fn timeout(mut self, secs: u32) -> Self {
        self.timeout_secs = secs;
        self
    }

    /// Uses `file` as `<auth passwordfile>` for every remote.
    pub fn password_file(mut self, file: &Path) -> Self {
        for r in &mut self.remotes {
            r.password_file = file.to_path_buf();
        }
        self
    }

    /// Sets an `<inotify>` switch (`attrib`, `delete`, `createFile`, …).
    pub fn switch(mut self, name: &'static str, on: bool) -> Self {
        self.switches.push((name, on));
        self
    }

    /// Adds a `<filter><exclude expression>` (and turns the filter on).
    pub fn exclude(mut self, regex: &str) -> Self {
        self.excludes.push(regex.to_string());
        self
    }

    /// Sets `<commonParams params>`.
    pub fn common_params(mut self, params: &str) -> Self {
        self.common_params = params.to_string();
        self
    }

    /// Adds raw XML inside `<head>` (plugin sections, `<engine>`).
    pub fn head_xml(mut self, xml: &str) -> Self {
        self.head_extra.push_str(xml);
        self
    }

    /// Adds raw XML inside `<sersync><rsync>` (`<deleteSafety>`).
    pub fn rsync_xml(mut self, xml: &str) -> Self {
        self.rsync_extra.push_str(xml);
        self
    }

    /// Adds raw XML inside `<sersync>` (`<crontab>`, `<plugin start>`).
    pub fn sersync_xml(mut self, xml: &str) -> Self {
        self.sersync_extra.push_str(xml);
        self
    }

    /// The configuration text, with the failLog script (and so the journals' state
    /// directory) in `state`. Every remote shares the first one's port and password file, as
    /// `<rsync>` is global in the format.
    pub fn xml(&self, state: &Path) -> String {
        let switch = |name: &str, default: bool| {
            self.switches
                .iter()
                .rev()
                .find(|(n, _)| *n == name)
                .map(|(_, on)| *on)
                .unwrap_or(default)
        };
        let mut x = String::from(
            "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>\n<head version=\"2.5\">\n",
        );
        let _ = writeln!(x, "  <filter start=\"{}\">", !self.excludes.is_empty());
        for e in &self.excludes {
            let _ = writeln!(x, "    <exclude expression=\"{}\"/>", xml_escape(e));
        }
        x.push_str("  </filter>\n  <inotify>\n");
        for (name, default) in [
            ("delete", true),
            ("createFolder", true),
            ("createFile", false),
            ("closeWrite", true),
            ("moveFrom", true),
            ("moveTo", true),
            ("attrib", false),
            ("modify", false),
        ] {
            let _ = writeln!(x, "    <{name} start=\"{}\"/>", switch(name, default));
        }
        x.push_str("  </inotify>\n  <sersync>\n");
        let _ = writeln!(
            x,
            "    <localpath watch=\"{}\">",
            xml_escape(&self.watch.display().to_string())
        );
        for r in &self.remotes {
            let _ = writeln!(
                x,
                "      <remote ip=\"{}\" name=\"{}\"/>",
                r.address, r.module
            );
        }
        x.push_str("    </localpath>\n    <rsync>\n");
        let _ = writeln!(x, "      <commonParams params=\"{}\"/>", self.common_params);
        if self.ssh {
            x.push_str("      <ssh start=\"true\"/>\n");
        } else if let Some(r) = self.remotes.first() {
            let _ = writeln!(
                x,
                "      <auth start=\"true\" users=\"{USER}\" passwordfile=\"{}\"/>",
                r.password_file.display()
            );
            let _ = writeln!(
                x,
                "      <userDefinedPort start=\"true\" port=\"{}\"/>",
                r.port
            );
        }
        let _ = writeln!(
            x,
            "      <timeout start=\"true\" time=\"{}\"/>\n{}    </rsync>",
            self.timeout_secs, self.rsync_extra
        );
        let _ = writeln!(
            x,
            "    <failLog path=\"{}\" timeToExecute=\"60\"/>",
            xml_escape(&state.join("rsync_fail_log.sh").display().to_string())
        );
        x.push_str(&self.sersync_extra);
        x.push_str("  </sersync>\n");
        x.push_str(&self.head_extra);
        x.push_str("</head>\n");
        x
    }

    /// Writes the configuration into `dir` and returns its path.
    pub fn write(&self, dir: &Path) -> PathBuf {
        let path = dir.join("confxml.xml");
        fs::write(&path, self.xml(dir)).expect("write config");
        path
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
}

/// A running `sersync`, killed when dropped.
pub struct Sersync {
    child: Option<Child>,
    log: PathBuf,
}

impl Sersync {
    /// Starts `sersync -o config ARGS…` with its log in `log_dir`, and waits until its watches
    /// are established.
    pub fn start(config: &Path, args: &[&str], log_dir: &Path) -> Sersync {
        Sersync::start_with_env(config, args, log_dir, &[])
    }

    /// As [`Sersync::start`], with extra environment variables. `STATE_DIRECTORY` is
    /// `log_dir/sersync-state` unless `env` sets it, so that the default state directory is
    /// the test's own (as systemd's `StateDirectory=` would make it), not `/var/lib/sersync`.
    pub fn start_with_env(
        config: &Path,
        args: &[&str],
        log_dir: &Path,
        env: &[(&str, &std::ffi::OsStr)],
    ) -> Sersync {
        Sersync::launch(Command::new(sersync_bin()), config, args, log_dir, env)
    }

    /// As [`Sersync::start`], running as the unprivileged `user` (e.g. `nobody`) with that
    /// user's primary group and no supplementary groups; the test must run as root. The
    /// binary, `config` and everything it names must be reachable by `user`; the log is
    /// opened by the test.
    pub fn start_as(user: &str, config: &Path, args: &[&str], log_dir: &Path) -> Sersync {
        use std::os::unix::process::CommandExt;
        let (uid, gid) = user_ids(user);
        let mut command = Command::new(sersync_bin());
        // std drops supplementary groups (setgroups(0)) when a root parent sets the uid.
        command.uid(uid).gid(gid);
        Sersync::launch(command, config, args, log_dir, &[])
    }

    /// As [`Sersync::start`], run by `wrapper` (a program and its arguments, e.g. `setpriv`
    /// with a capability bound), which is given the binary's path and then sersync's arguments.
    pub fn start_under(wrapper: &[&str], config: &Path, args: &[&str], log_dir: &Path) -> Sersync {
        let mut command = Command::new(wrapper[0]);
        command.args(&wrapper[1..]).arg(sersync_bin());
        Sersync::launch(command, config, args, log_dir, &[])
    }

    fn launch(
        mut command: Command,
        config: &Path,
        args: &[&str],
        log_dir: &Path,
        env: &[(&str, &std::ffi::OsStr)],
    ) -> Sersync {
        let log = log_dir.join("sersync.log");
        let out = File::create(&log).expect("log file");
        let child = command
            .arg("-o")
            .arg(config)
            .args(args)
            .env("STATE_DIRECTORY", log_dir.join("sersync-state"))
            .envs(env.iter().copied())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("dup"))
            .stderr(out)
            .spawn()
            .expect("start sersync");
        let mut s = Sersync {
            child: Some(child),
            log,
        };
        s.wait_ready();
        s
    }

    fn wait_ready(&mut self) {
        let log = self.log.clone();
        let child = self.child.as_mut().expect("running");
        crate::wait_for(Duration::from_secs(30), || {
            if let Ok(Some(status)) = child.try_wait() {
                return Ok(Err(status));
            }
            let text = fs::read_to_string(&log).unwrap_or_default();
            if text.contains("running lanes=") {
                Ok(Ok(()))
            } else {
                Err("not ready".to_string())
            }
        })
        .unwrap_or_else(|e| panic!("sersync did not start: {e}\n{}", self.log()))
        .unwrap_or_else(|status| panic!("sersync exited with {status}:\n{}", self.log()));
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Sends `signal` (e.g. `libc::SIGHUP`).
    pub fn signal(&self, signal: i32) {
        // SAFETY: plain system call on a child we own and have not reaped.
        unsafe { libc::kill(self.pid() as i32, signal) };
    }

    /// Stops the whole process (SIGSTOP, every thread, the reader included) until the
    /// returned guard is dropped (SIGCONT). What the test does meanwhile queues up in the
    /// kernel and is read at once afterwards, so an order of events that is otherwise a
    /// race — a directory renamed before its create is read — happens every time.
    pub fn freeze(&self) -> Frozen<'_> {
        self.signal(libc::SIGSTOP);
        let tasks = PathBuf::from(format!("/proc/{}/task", self.pid()));
        crate::wait_for(Duration::from_secs(10), || {
            let entries = fs::read_dir(&tasks).map_err(|e| e.to_string())?;
            for task in entries.flatten() {
                let stat = fs::read_to_string(task.path().join("stat")).unwrap_or_default();
                // The state follows the parenthesised command name: `T` is stopped.
                let state = stat
                    .rsplit_once(") ")
                    .and_then(|(_, rest)| rest.chars().next());
                if !matches!(state, Some('T') | Some('t')) {
                    return Err(format!("task {:?} in state {state:?}", task.file_name()));
                }
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("sersync did not stop: {e}"));
        Frozen { sersync: self }
    }

    /// Waits until the log contains `text`.
    pub fn wait_for_log(&self, text: &str, timeout: Duration) -> Result<(), String> {
        crate::wait_for(timeout, || {
            if self.log().contains(text) {
                Ok(())
            } else {
                Err(format!("log does not contain {text:?}:\n{}", self.log()))
            }
        })
    }

    /// Sends SIGTERM and waits up to `timeout` for it to exit.
    pub fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.signal(libc::SIGTERM);
        let mut child = self.child.take()?;
        let status = crate::wait_for(timeout, || match child.try_wait() {
            Ok(Some(status)) => Ok(status),
            _ => Err("still running".to_string()),
        });
        if status.is_err() {
            let _ = child.kill();
            let _ = child.wait();
        }
        status.ok()
    }

    /// Kills it with SIGKILL (no chance to clean up).
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A stopped [`Sersync`] (see [`Sersync::freeze`]); continues it when dropped, also when
/// the test panics.
pub struct Frozen<'a> {
    sersync: &'a Sersync,
}

impl Drop for Frozen<'_> {
    fn drop(&mut self) {
        self.sersync.signal(libc::SIGCONT);
    }
}

/// The uid and primary gid of `user`, from the password database.
pub fn user_ids(user: &str) -> (u32, u32) {
    let name = std::ffi::CString::new(user).expect("a user name without NUL");
    // SAFETY: getpwnam reads a NUL-terminated name; the record it returns is read at once,
    // before any other call could overwrite it (tests that use it do not race on getpwnam).
    let entry = unsafe { libc::getpwnam(name.as_ptr()) };
    assert!(!entry.is_null(), "no user {user}");
    // SAFETY: non-null, points to a valid passwd record.
    unsafe { ((*entry).pw_uid, (*entry).pw_gid) }
}

impl Drop for Sersync {
    fn drop(&mut self) {
        self.kill9();
    }
}
