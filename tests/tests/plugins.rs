//! Plugins inside the real daemon: the built-in sinks beside rsync or alone (`-m`), and
//! third-party plugins built from `examples/` — the way users run them. Real peers on
//! loopback: an rsync daemon, an HTTP server that records requests.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sersync_tests::peers::{HttpPeer, Reply};
use sersync_tests::{
    assert_converges, build_example, wait_for, wasm_target_installed, ConfigBuilder, Sersync,
    Stage, WASM_TARGET,
};

const WAIT: Duration = Duration::from_secs(30);

/// A 2.5.4-style refreshCDN section for `watch`, purging through `cdn`.
fn refresh_cdn(watch: &Path, cdn: &HttpPeer) -> String {
    format!(
        r#"<plugin name="refreshCDN">
  <localpath watch="{}">
    <cdninfo domainname="127.0.0.1" port="{}" username="user" passwd="secret"/>
    <sendurl base="http://pic.example.com/cms"/>
    <regexurl regex="false" match=""/>
  </localpath>
</plugin>
"#,
        watch.display(),
        cdn.port()
    )
}

fn purged(cdn: &HttpPeer) -> Vec<String> {
    cdn.requests()
        .into_iter()
        .map(|r| format!("{} {}", r.method, r.target))
        .collect()
}

fn wait_purged(cdn: &HttpPeer, url_part: &str) {
    wait_for(WAIT, || {
        let seen = purged(cdn);
        if seen.iter().any(|r| r.contains(url_part)) {
            Ok(())
        } else {
            Err(format!("no purge of {url_part} in {seen:?}"))
        }
    })
    .unwrap();
}

#[test]
fn rsync_and_refresh_cdn_from_one_watch_both_deliver() {
    let stage = Stage::new(&["www"]);
    let (src, daemon, dir) = (&stage.src, &stage.daemon, &stage.dir);
    let cdn = HttpPeer::start(Reply::Status(200));
    let config = ConfigBuilder::new(src)
        .remote(daemon, "www")
        .sersync_xml("    <plugin start=\"true\" name=\"refreshCDN\"/>\n")
        .head_xml(&refresh_cdn(src, &cdn))
        .write(dir.path());
    let _sersync = Sersync::start(&config, &[], dir.path());
    fs::create_dir(src.join("img")).unwrap();
    fs::write(src.join("img/logo.png"), b"png").unwrap();
    assert_converges(src, &daemon.module_path("www"), WAIT);
    wait_purged(&cdn, "urls=http");
    let requests = cdn.requests();
    let logo = requests
        .iter()
        .find(|r| r.target.contains("logo.png"))
        .expect("logo purged");
    assert_eq!(logo.method, "HEAD");
    assert!(
        logo.target
            .starts_with("/index.jsp?user=user&pswd=secret&ok=ok&urls="),
        "{}",
        logo.target
    );
}

#[test]
fn dash_m_runs_only_that_plugin_and_never_touches_rsync() {
    let stage = Stage::new(&["www"]);
    let (src, daemon, dir) = (&stage.src, &stage.daemon, &stage.dir);
    let cdn = HttpPeer::start(Reply::Status(200));
    let config = ConfigBuilder::new(src)
        .remote(daemon, "www")
        .head_xml(&refresh_cdn(src, &cdn))
        .write(dir.path());
    let sersync = Sersync::start(&config, &["-m", "refreshCDN"], dir.path());
    fs::write(src.join("page.html"), b"<p>").unwrap();
    wait_purged(&cdn, "page.html");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        fs::read_dir(daemon.module_path("www")).unwrap().count(),
        0,
        "rsync pushed something"
    );
    // The daemon logs every session with its module; the harness's readiness probe names none.
    assert!(
        !daemon.log().contains("www"),
        "rsync used the module:\n{}",
        daemon.log()
    );
    assert!(!sersync.log().contains("lane=rsync"), "{}", sersync.log());
}

#[test]
fn command_plugin_gets_each_path_as_one_argument_beside_rsync() {
    let stage = Stage::new(&["www"]);
    let (src, daemon, dir) = (&stage.src, &stage.daemon, &stage.dir);
    let out = dir.path().join("received");
    let script = dir.path().join("record.sh");
    fs::write(
        &script,
        format!(
            "#!/bin/sh\nprintf '%s|%s\\n' \"$SERSYNC_EVENT\" \"$1\" >> {}\n",
            out.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let config = ConfigBuilder::new(src)
        .remote(daemon, "www")
        .sersync_xml("    <plugin start=\"true\" name=\"command\"/>\n")
        .head_xml(&format!(
            "<plugin name=\"command\"><param prefix=\"{}\" suffix=\"\" ignoreError=\"false\"/></plugin>\n",
            script.display()
        ))
        .write(dir.path());
    let _sersync = Sersync::start(&config, &[], dir.path());
    let weird = "it's $(touch PWNED) `x`";
    fs::write(src.join(weird), b"w").unwrap();
    assert_converges(src, &daemon.module_path("www"), WAIT);
    let expected = format!("close_write|{}", src.join(weird).display());
    wait_for(WAIT, || {
        let text = fs::read_to_string(&out).unwrap_or_default();
        if text.lines().any(|l| l == expected) {
            Ok(())
        } else {
            Err(format!(
                "command got {text:?}, expected a line {expected:?}"
            ))
        }
    })
    .unwrap();
    assert!(!src.join("PWNED").exists() && !dir.path().join("PWNED").exists());
}

fn jsonl_lines(file: &Path) -> Vec<String> {
    fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn wait_jsonl(file: &Path, needle: &str) {
    wait_for(WAIT, || {
        let lines = jsonl_lines(file);
        if lines.iter().any(|l| l.contains(needle)) {
            Ok(())
        } else {
            Err(format!(
                "{} has no line with {needle}: {lines:?}",
                file.display()
            ))
        }
    })
    .unwrap();
}

/// sersync pushing to `www` with the JSON-lines plugin `section` enabled as `name`: a new
/// file reaches the slave, and a line naming it reaches the plugin's `output`.
fn jsonl_plugin_beside_rsync(stage: &Stage, name: &str, section: &str, output: &Path) {
    let config = stage.config("www", |c| {
        c.sersync_xml(&format!("    <plugin start=\"true\" name=\"{name}\"/>\n"))
            .head_xml(section)
    });
    let _sersync = Sersync::start(&config, &[], stage.path());
    let file = format!("from-{name}.txt");
    fs::write(stage.src.join(&file), b"x").unwrap();
    assert_converges(&stage.src, &stage.dst("www"), WAIT);
    wait_jsonl(output, &file);
}

#[test]
fn native_plugin_built_from_the_example_runs_beside_rsync() {
    let plugin = build_example("native-plugin", None, "libsersync_jsonl_native.so");
    let stage = Stage::new(&["www"]);
    let output = stage.path().join("events.jsonl");
    let section = format!(
        "<plugin name=\"jsonlog\" type=\"dylib\" path=\"{}\"><param name=\"output\" value=\"{}\"/></plugin>\n",
        plugin.display(),
        output.display()
    );
    jsonl_plugin_beside_rsync(&stage, "jsonlog", &section, &output);
}

#[test]
fn wasm_plugin_built_from_the_example_runs_sandboxed_beside_rsync() {
    if !wasm_target_installed() {
        return;
    }
    let plugin = build_example("wasm-plugin", Some(WASM_TARGET), "sersync_jsonl_wasm.wasm");
    let stage = Stage::new(&["www"]);
    // The component may write only inside the directory its <allow_dir> grants.
    let out_dir = stage.path().join("out");
    fs::create_dir(&out_dir).unwrap();
    let output = out_dir.join("events.jsonl");
    let section = format!(
        "<plugin name=\"jsonwasm\" type=\"wasm\" path=\"{}\"><allow_dir path=\"{}\"/><param name=\"output\" value=\"{}\"/></plugin>\n",
        plugin.display(),
        out_dir.display(),
        output.display()
    );
    jsonl_plugin_beside_rsync(&stage, "jsonwasm", &section, &output);
}

/// A directory of its own for a plugin that must see only what is written there.
fn own_dir(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    fs::create_dir(&path).unwrap();
    path
}

#[test]
fn misbehaving_plugins_yield_their_errors_while_rsync_keeps_syncing() {
    let native = build_example("fixtures", None, "libsersync_fixture_misbehave.so");
    let wasm = wasm_target_installed().then(|| {
        build_example(
            "fixtures",
            Some(WASM_TARGET),
            "sersync_fixture_misbehave.wasm",
        )
    });
    let stage = Stage::new(&["www"]);
    let (src, daemon, dir) = (&stage.src, &stage.daemon, &stage.dir);
    // Each misbehaving plugin watches a directory of its own, where its order is written:
    // a batch stops at its first failing event, and a native plugin told to loop would spin
    // for ever (only the WASM host can stop that).
    let mut plugins = vec![("panicky", "dylib", native, "panic", String::new())];
    if let Some(wasm) = wasm {
        plugins.push((
            "spinner",
            "wasm",
            wasm.clone(),
            "loop",
            " timeout_ms=\"300\"".to_string(),
        ));
        plugins.push((
            "hog",
            "wasm",
            wasm,
            "alloc",
            " memory_mb=\"16\"".to_string(),
        ));
    }
    let mut builder = ConfigBuilder::new(src)
        .remote(daemon, "www")
        .head_xml("<engine retryInitialMs=\"200\" retryMaxMs=\"1000\"/>\n");
    let mut orders = Vec::new();
    for (name, kind, path, order, limits) in &plugins {
        let watch = own_dir(dir.path(), name);
        builder = builder
            .sersync_xml(&format!("    <plugin start=\"true\" name=\"{name}\"/>\n"))
            .head_xml(&format!(
                "<plugin name=\"{name}\" type=\"{kind}\" path=\"{}\"{limits}><localpath watch=\"{}\"/></plugin>\n",
                path.display(),
                watch.display()
            ));
        orders.push(watch.join(order));
    }
    let config = builder.write(dir.path());
    let sersync = Sersync::start(&config, &[], dir.path());
    for order in &orders {
        fs::write(order, b"misbehave").unwrap();
    }
    for i in 0..20 {
        fs::write(src.join(format!("ordinary-{i}")), b"o").unwrap();
    }
    assert_converges(src, &daemon.module_path("www"), WAIT);
    sersync.wait_for_log("plugin panicked", WAIT).unwrap();
    if plugins.len() > 1 {
        sersync
            .wait_for_log("timed out after 300 ms", WAIT)
            .unwrap();
        sersync
            .wait_for_log("exceeded its memory limit of 16 MiB", WAIT)
            .unwrap();
    }
    // Still alive and still syncing.
    fs::write(src.join("after-the-misbehaviour"), b"a").unwrap();
    assert_converges(src, &daemon.module_path("www"), WAIT);
}

/// `GET /status` of the control endpoint on `port`: the body.
fn status_body(port: u16) -> Result<String, String> {
    use std::io::{Read, Write};
    let mut stream =
        std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).map_err(|e| e.to_string())?;
    let reply = String::from_utf8_lossy(&reply);
    match reply.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.1 200") => Ok(body.to_string()),
        _ => Err(format!("bad reply {:?}", &reply[..reply.len().min(200)])),
    }
}

/// Descriptors process `pid` holds.
fn open_fds(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// The hostile plugins: the native build and the hand-written component.
fn hostile_plugins() -> (PathBuf, PathBuf) {
    (
        build_example(
            "hostile-native-plugin",
            None,
            "libsersync_hostile_native_plugin.so",
        ),
        sersync_tests::build_wat_example("hostile-wasm-plugin", "hostile"),
    )
}

/// A `<plugin>` section for the hostile plugin `path` as `name`, watching `watch`.
fn hostile_section(
    name: &str,
    kind: &str,
    path: &Path,
    attrs: &str,
    params: &str,
    watch: &Path,
) -> String {
    format!(
        "<plugin name=\"{name}\" type=\"{kind}\" path=\"{}\"{attrs}>{params}<localpath watch=\"{}\"/></plugin>\n",
        path.display(),
        watch.display()
    )
}

#[test]
fn hostile_plugins_stay_bounded_while_rsync_keeps_syncing() {
    let (native, wasm) = hostile_plugins();
    let stage = Stage::new(&["www"]);
    let (src, dir) = (&stage.src, stage.path());
    let hoard = own_dir(dir, "hoard-grant");
    let param = |name: &str, value: &str| format!("<param name=\"{name}\" value=\"{value}\"/>");
    let attack = |a: &str| param("attack", a);
    let plugins = [
        (
            "native-huge",
            "dylib",
            &native,
            String::new(),
            attack("huge_error"),
        ),
        (
            "native-flood",
            "dylib",
            &native,
            String::new(),
            attack("log_flood") + &param("size", "2000"),
        ),
        (
            "native-forger",
            "dylib",
            &native,
            String::new(),
            attack("forged_log"),
        ),
        (
            "wasm-huge",
            "wasm",
            &wasm,
            String::new(),
            attack("huge_error"),
        ),
        (
            "wasm-flood",
            "wasm",
            &wasm,
            String::new(),
            attack("log_flood") + &param("size", "2000"),
        ),
        (
            "wasm-forger",
            "wasm",
            &wasm,
            String::new(),
            attack("forged_log"),
        ),
        (
            "wasm-sleeper",
            "wasm",
            &wasm,
            " timeout_ms=\"1000\"".into(),
            attack("sleep"),
        ),
        (
            "wasm-hoarder",
            "wasm",
            &wasm,
            String::new(),
            format!(
                "{}<allow_dir path=\"{}\"/>",
                attack("hoard_files"),
                hoard.display()
            ),
        ),
    ];
    let port = sersync_tests::free_port();
    let mut builder = ConfigBuilder::new(src)
        .remote(&stage.daemon, "www")
        .head_xml("<engine retryInitialMs=\"200\" retryMaxMs=\"1000\"/>\n")
        .head_xml(&format!("<host hostip=\"127.0.0.1\" port=\"{port}\"/>\n"));
    let mut triggers = Vec::new();
    for (name, kind, path, attrs, params) in &plugins {
        let watch = own_dir(dir, name);
        builder = builder
            .sersync_xml(&format!("    <plugin start=\"true\" name=\"{name}\"/>\n"))
            .head_xml(&hostile_section(name, kind, path, attrs, params, &watch));
        triggers.push(watch.join("trigger"));
    }
    let config = builder.write(dir);
    let sersync = Sersync::start(&config, &[], dir);
    for trigger in &triggers {
        fs::write(trigger, b"go").unwrap();
    }
    // Every attack runs (and is retried) for a while, rsync syncing meanwhile.
    for i in 0..30 {
        fs::write(src.join(format!("ordinary-{i}")), b"o").unwrap();
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_converges(src, &stage.dst("www"), WAIT);
    sersync
        .wait_for_log("wasm-sleeper: deliver timed out after 1000 ms", WAIT)
        .unwrap();
    sersync
        .wait_for_log(
            "wasm-hoarder: deliver exceeded its limit of 64 open files",
            WAIT,
        )
        .unwrap();
    sersync.wait_for_log("bytes cut)", WAIT).unwrap();

    let log = sersync.log();
    // 6 s of two 16 MB floods and two 40 MiB errors retried every second at most.
    assert!(log.len() < 4 << 20, "{} bytes of log", log.len());
    assert!(
        !log.lines().any(|l| l.starts_with("2030-01-01")),
        "a plugin forged a log line"
    );
    let status = status_body(port).unwrap();
    assert!(
        status.len() < 64 << 10,
        "a /status of {} bytes",
        status.len()
    );
    assert!(status.contains("bytes cut)"), "{status}");
    let fds = open_fds(sersync.pid());
    assert!(fds < 1000, "sersync holds {fds} descriptors");
    // Still syncing.
    fs::write(src.join("after-the-attacks"), b"a").unwrap();
    assert_converges(src, &stage.dst("www"), WAIT);
}

#[test]
fn sighup_during_a_sleeping_plugin_call_does_not_stall_rsync() {
    let (_, wasm) = hostile_plugins();
    let stage = Stage::new(&["www"]);
    let (src, dir) = (&stage.src, stage.path());
    let watch = own_dir(dir, "sleeper");
    let config = stage.config("www", |c| {
        c.sersync_xml("    <plugin start=\"true\" name=\"sleeper\"/>\n")
            .head_xml(&hostile_section(
                "sleeper",
                "wasm",
                &wasm,
                " timeout_ms=\"1000\"",
                "<param name=\"attack\" value=\"sleep\"/>",
                &watch,
            ))
    });
    let sersync = Sersync::start(&config, &[], dir);
    fs::write(watch.join("trigger"), b"go").unwrap();
    // Let the plugin fall asleep (its batch is cut after the settle window).
    std::thread::sleep(Duration::from_millis(600));
    sersync.signal(libc::SIGHUP);
    let started = std::time::Instant::now();
    // Changes all through the reload: some land while the old engine stops, and wait for it.
    sersync_tests::paced_writer(src.clone(), "during-reload-", 30, 10)
        .join()
        .unwrap();
    assert_converges(src, &stage.dst("www"), WAIT);
    let took = started.elapsed();
    sersync
        .wait_for_log("configuration reloaded", WAIT)
        .unwrap();
    // Writing takes 3 s. The reload waits for the sleeping call, which ends at its deadline
    // (1 s), or for one last retry of the same length; before the deadline held, it waited
    // for the 10 s stop deadline.
    assert!(
        took < Duration::from_secs(8),
        "rsync stalled {took:?} behind the plugin"
    );
}

#[test]
fn check_of_a_plugin_sleeping_in_init_fails_within_its_deadline() {
    let (_, wasm) = hostile_plugins();
    let stage = Stage::new(&["www"]);
    let config = stage.config("www", |c| {
        c.sersync_xml("    <plugin start=\"true\" name=\"sleeper\"/>\n")
            .head_xml(&hostile_section(
                "sleeper",
                "wasm",
                &wasm,
                " timeout_ms=\"1000\"",
                "<param name=\"attack\" value=\"sleep_in_init\"/>",
                stage.path(),
            ))
    });
    let bin = sersync_tests::sersync_bin();
    let started = std::time::Instant::now();
    let out = std::process::Command::new(bin)
        .arg("-o")
        .arg(&config)
        .arg("--check")
        .output()
        .unwrap();
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("init timed out after 1000 ms"), "{stderr}");
    assert!(took < Duration::from_secs(3), "--check ran {took:?}");
}

#[test]
fn the_daemon_raises_its_open_files_limit_to_the_hard_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain system calls on a local struct.
    assert_eq!(
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
        0
    );
    if limit.rlim_max <= 256 {
        return;
    }
    let stage = Stage::new(&["www"]);
    let config = stage.config("www", |c| c);
    // sersync inherits this process's limits: start it with a low soft limit (and put ours
    // back at once: the other tests of this binary run meanwhile).
    let low = libc::rlimit {
        rlim_cur: 256,
        rlim_max: limit.rlim_max,
    };
    // SAFETY: as above.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &low) }, 0);
    let sersync = std::panic::catch_unwind(|| Sersync::start(&config, &[], stage.path()));
    // SAFETY: as above.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0);
    let sersync = sersync.unwrap();
    let limits = fs::read_to_string(format!("/proc/{}/limits", sersync.pid())).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let numbers: Vec<&str> = line.split_whitespace().skip(3).take(2).collect();
    assert_eq!(numbers[0], numbers[1], "{line}");
}
