//! Running it as an admin does: `-d` with a pid file, the control endpoint queried with a
//! real HTTP client while syncing to a real rsync daemon, a second instance refused, SIGTERM
//! cleaning up, `POST /sync` reaching the slave.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use sersync_tests::{
    assert_converges, free_port, http, http_with_headers, sersync_bin, wait_for, Sersync, Stage,
};

const WAIT: Duration = Duration::from_secs(30);

/// The value of an unlabelled-or-labelled sample line starting with `prefix` in `metrics`.
fn sample(metrics: &str, prefix: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// A stage whose configuration serves the control endpoint on a free loopback port.
fn controlled_stage() -> (Stage, u16, PathBuf) {
    let stage = Stage::new(&["www"]);
    let port = free_port();
    let config = stage.config("www", |c| {
        c.head_xml(&format!("<host hostip=\"127.0.0.1\" port=\"{port}\"/>\n"))
    });
    (stage, port, config)
}

/// Sends SIGTERM to the daemon `pid` and waits until it is gone.
fn terminate(pid: i32) {
    // SAFETY: plain system call on the daemon the test started.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    wait_for(WAIT, || {
        (!pid_alive(pid))
            .then_some(())
            .ok_or("still running".to_string())
    })
    .unwrap();
}

fn pid_alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

/// Runs sersync on `config` with its state beside the configuration (not the default
/// `/var/lib/sersync`).
fn sersync(config: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(sersync_bin())
        .arg("-o")
        .arg(config)
        .args(extra)
        .env("STATE_DIRECTORY", state_dir(config))
        .output()
        .expect("run sersync")
}

/// Waits for `/status` to say `running`: it answers 503 `starting` until every watch is
/// established, and a change made before that may not be seen.
fn wait_until_running(port: u16) {
    wait_for(WAIT, || match http(port, "GET", "/status")? {
        (200, body) if body.contains("\"state\": \"running\"") => Ok(()),
        (code, body) => Err(format!("{code} {body}")),
    })
    .unwrap();
}

fn state_dir(config: &Path) -> std::path::PathBuf {
    config.with_file_name("sersync-state")
}

#[test]
fn daemon_with_pid_file_status_metrics_second_instance_and_sigterm() {
    let (stage, port, config) = controlled_stage();
    let (src, daemon, dir) = (&stage.src, &stage.daemon, &stage.dir);
    let pid_file = dir.path().join("sersync.pid");
    let log = dir.path().join("sersync.log");
    let pid_arg = pid_file.display().to_string();
    let log_arg = log.display().to_string();
    let started = sersync(
        &config,
        &["-d", "--pid-file", &pid_arg, "--log-file", &log_arg],
    );
    assert!(started.status.success(), "sersync -d: {started:?}");
    let pid: i32 = wait_for(WAIT, || {
        fs::read_to_string(&pid_file)
            .map_err(|e| e.to_string())?
            .trim()
            .parse()
            .map_err(|e| format!("{e}"))
    })
    .unwrap();
    assert!(pid_alive(pid));
    wait_until_running(port);

    // Numbers move while it syncs.
    for i in 0..25 {
        fs::write(src.join(format!("f{i}")), b"x").unwrap();
    }
    assert_converges(src, &daemon.module_path("www"), WAIT);
    let status = wait_for(WAIT, || {
        let (code, body) = http(port, "GET", "/status")?;
        (code == 200 && body.contains("\"events\": 25"))
            .then_some(body.clone())
            .ok_or(body)
    })
    .unwrap();
    assert!(status.contains("rsync backup@127.0.0.1::www"), "{status}");
    let (code, metrics) = http(port, "GET", "/metrics").unwrap();
    assert_eq!(code, 200);
    assert_eq!(
        sample(&metrics, "sersync_lane_events_total{"),
        Some(25.0),
        "{metrics}"
    );
    assert!(sample(&metrics, "sersync_lane_sync_latency_seconds_count{").unwrap() >= 25.0);
    assert_eq!(sample(&metrics, "sersync_watched_directories"), Some(1.0));

    // The human view.
    let table = sersync(&config, &["status"]);
    assert!(table.status.success(), "{table:?}");
    assert!(String::from_utf8_lossy(&table.stdout).contains("rsync backup@127.0.0.1::www"));

    // POST /sync: a full sync reaches the slave (one more session in its log).
    let sessions = || daemon.log().matches("rsync to www").count();
    let before = sessions();
    let (code, body) = http(port, "POST", "/sync").unwrap();
    assert_eq!(
        (
            code,
            body.contains("\"lanes\": 1") || body.contains("\"lanes\":1")
        ),
        (200, true),
        "{body}"
    );
    wait_for(WAIT, || {
        (sessions() > before).then_some(()).ok_or(daemon.log())
    })
    .unwrap();

    // A second instance on the same pid file is refused, naming the holder.
    let second = sersync(&config, &["--pid-file", &pid_arg]);
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(
        err.contains(&pid.to_string()) && err.contains("held by a running sersync"),
        "{err}"
    );

    // SIGTERM: exits, removes the pid file.
    terminate(pid);
    assert!(!pid_file.exists(), "pid file left behind");
}

#[test]
fn a_second_daemon_on_the_same_configuration_is_refused_without_a_pid_file_flag() {
    let (stage, port, config) = controlled_stage();
    let dir = &stage.dir;
    let first = sersync(&config, &["-d"]);
    assert!(first.status.success(), "{first:?}");
    wait_until_running(port);
    // The second one detaches too, then finds the default pid file locked and exits 1;
    // the first keeps serving.
    let second = Command::new(sersync_bin())
        .arg("-o")
        .arg(&config)
        .args(["-d", "--log-file"])
        .arg(dir.path().join("second.log"))
        .env("STATE_DIRECTORY", state_dir(&config))
        .output()
        .unwrap();
    assert!(
        second.status.success(),
        "the parent of -d exits 0: {second:?}"
    );
    wait_for(WAIT, || {
        let log = fs::read_to_string(dir.path().join("second.log")).unwrap_or_default();
        log.contains("held by a running sersync")
            .then_some(())
            .ok_or(log)
    })
    .unwrap();
    let (_, status) = http(port, "GET", "/status").unwrap();
    let pid: i32 = status
        .lines()
        .find_map(|l| l.trim().strip_prefix("\"pid\": "))
        .and_then(|v| v.trim_end_matches(',').parse().ok())
        .unwrap_or_else(|| panic!("/status names no pid: {status}"));
    assert!(pid_alive(pid));
    terminate(pid);
}

#[test]
fn systemd_hears_ready_reloading_and_stopping_on_its_notify_socket() {
    let stage = Stage::new(&["www"]);
    let config = stage.config("www", |c| c);
    let socket = stage.path().join("notify");
    let listener = std::os::unix::net::UnixDatagram::bind(&socket).unwrap();
    listener.set_read_timeout(Some(WAIT)).unwrap();
    let next = || {
        let mut buf = [0u8; 512];
        let n = listener
            .recv(&mut buf)
            .expect("a notification within the wait");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let mut sersync = Sersync::start_with_env(
        &config,
        &[],
        stage.path(),
        &[("NOTIFY_SOCKET", socket.as_os_str())],
    );
    let ready = next();
    assert!(
        ready.starts_with("READY=1\nSTATUS=watching 1 directories in 1 roots, 1 lanes"),
        "{ready}"
    );
    sersync.signal(libc::SIGHUP);
    let reloading = next();
    assert!(
        reloading.starts_with("RELOADING=1\nMONOTONIC_USEC="),
        "{reloading}"
    );
    assert!(next().starts_with("READY=1\n"));
    assert!(sersync.terminate(WAIT).is_some_and(|s| s.success()));
    assert_eq!(next(), "STOPPING=1");
}

/// The token is read again at SIGHUP: after the operator rotates it, the old one is refused
/// and the new one works, without a restart (a live daemon, not the endpoint on its own).
#[test]
fn a_reload_holds_the_control_endpoint_to_the_rotated_token() {
    use std::os::unix::fs::PermissionsExt;
    let stage = Stage::new(&["www"]);
    let port = free_port();
    let token_file = stage.path().join("control.token");
    let write_token = |token: &str| {
        fs::write(&token_file, format!("{token}\n")).unwrap();
        fs::set_permissions(&token_file, fs::Permissions::from_mode(0o600)).unwrap();
    };
    write_token("first-token");
    let config = stage.config("www", |c| {
        c.head_xml(&format!(
            "<host hostip=\"127.0.0.1\" port=\"{port}\" tokenFile=\"{}\"/>\n",
            token_file.display()
        ))
    });
    let sersync = Sersync::start(&config, &[], stage.path());
    wait_until_running(port);
    let sync_with = |token: Option<&str>| {
        let bearer = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = bearer
            .iter()
            .map(|b| ("Authorization", b.as_str()))
            .collect();
        http_with_headers(port, "POST", "/sync", &headers)
            .unwrap()
            .0
    };
    assert_eq!(sync_with(Some("first-token")), 200);
    assert_eq!(sync_with(None), 401);

    write_token("second-token");
    sersync.signal(libc::SIGHUP);
    sersync
        .wait_for_log("configuration reloaded", WAIT)
        .unwrap_or_else(|e| panic!("{e}\n{}", sersync.log()));
    wait_until_running(port);
    assert_eq!(
        sync_with(Some("first-token")),
        401,
        "the old token is refused"
    );
    assert_eq!(sync_with(Some("second-token")), 200, "the new one works");
}
