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
