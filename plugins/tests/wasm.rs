//! WASM plugins, built from `examples/` for wasm32-wasip2 and loaded through
//! `configure_plugin` + `start`. Each test is skipped, with a message, when the target is not
//! installed.

#![cfg(feature = "wasm")]

mod dylib_wasm_common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use dylib_wasm_common::*;
use sersync_plugin_sdk::ErrorClass;
use sersync_tests::{wasm_target_installed, WASM_TARGET};

/// The WASM JSON-lines example, or `None` (with a message) when the target is missing.
fn wasm_example() -> Option<PathBuf> {
    wasm_target_installed()
        .then(|| build("wasm-plugin", Some(WASM_TARGET), "sersync_jsonl_wasm.wasm"))
}

/// The WASM misbehaving fixture, or `None` (with a message) when the target is missing.
fn wasm_misbehave() -> Option<PathBuf> {
    wasm_target_installed().then(|| {
        build(
            "fixtures",
            Some(WASM_TARGET),
            "sersync_fixture_misbehave.wasm",
        )
    })
}

/// `<plugin type="wasm">` for the JSON-lines example writing to `dir/events.jsonl`, with
/// `dir` granted.
fn example_node(wasm: &std::path::Path, dir: &std::path::Path) -> sersync_plugin_sdk::ConfigNode {
    let output = dir.join("events.jsonl");
    plugin_node(
        "wasm",
        wasm,
        &[],
        &[("output", output.to_str().unwrap())],
        vec![element(
            "allow_dir",
            &[("path", dir.to_str().unwrap())],
            vec![],
        )],
    )
}

#[test]
fn wasm_example_writes_the_same_lines_as_the_native_one() {
    let Some(wasm) = wasm_example() else { return };
    let dir = tempfile::tempdir().unwrap();
    let spec = configure(&example_node(&wasm, dir.path())).unwrap();
    assert!(
        spec.summary().starts_with("WASM plugin "),
        "{}",
        spec.summary()
    );
    let mut sink = spec.start(&ctx()).unwrap();
    let output = dir.path().join("events.jsonl");
    let logs = capture_logs(|| sink.deliver(&awkward_batch()).unwrap());
    assert_eq!(
        logs,
        [format!(
            "DEBUG sersync::plugin message=appended 4 events to {} plugin=under-test",
            output.display()
        )]
    );
    sink.deliver(&batch(vec![])).unwrap();
    assert_eq!(std::fs::read_to_string(&output).unwrap(), AWKWARD_LINES);

    // Byte for byte what the native build of the same logic writes.
    let native_out = dir.path().join("native.jsonl");
    let native = configure(&plugin_node(
        "dylib",
        &native_example(),
        &[],
        &[("output", native_out.to_str().unwrap())],
        vec![],
    ))
    .unwrap();
    native
        .start(&ctx())
        .unwrap()
        .deliver(&awkward_batch())
        .unwrap();
    assert_eq!(
        std::fs::read(&native_out).unwrap(),
        std::fs::read(&output).unwrap()
    );
}

#[test]
fn wasm_plugin_gets_no_directory_unless_granted() {
    let Some(wasm) = wasm_example() else { return };
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("events.jsonl");
    let node = plugin_node(
        "wasm",
        &wasm,
        &[],
        &[("output", output.to_str().unwrap())],
        vec![],
    );
    let err = configure(&node).unwrap_err().to_string();
    assert!(err.contains("sersync_jsonl_wasm.wasm"), "{err}");
    assert!(
        err.contains("rejected its configuration: cannot open"),
        "{err}"
    );
    assert!(!output.exists());

    // A read-only grant is not enough either.
    let readonly = element(
        "allow_dir",
        &[("path", dir.path().to_str().unwrap()), ("readonly", "true")],
        vec![],
    );
    let node = plugin_node(
        "wasm",
        &wasm,
        &[],
        &[("output", output.to_str().unwrap())],
        vec![readonly],
    );
    assert!(configure(&node).is_err());
    assert!(!output.exists());
}

#[test]
fn own_watches_come_from_localpath_children() {
    let Some(wasm) = wasm_misbehave() else { return };
    let watch = element("localpath", &[("watch", "/srv/www")], vec![]);
    let spec = configure(&plugin_node("wasm", &wasm, &[], &[], vec![watch])).unwrap();
    assert_eq!(spec.own_watches(), vec![PathBuf::from("/srv/www")]);
}

#[test]
fn bad_limits_and_missing_grants_are_config_errors() {
    let Some(wasm) = wasm_misbehave() else { return };
    let param_error = |name: &str, value: &str| {
        configure(&plugin_node("wasm", &wasm, &[(name, value)], &[], vec![])).unwrap_err()
    };
    let err = param_error("timeout_ms", "0");
    assert!(err.message.ends_with("0 is out of range"), "{err}");
    assert_eq!(
        configure(&plugin_node(
            "wasm",
            &wasm,
            &[("timeout_ms", "2s")],
            &[],
            vec![]
        ))
        .map(|_| ())
        .map_err(|e| e.to_string()),
        Ok(()),
        "timeout_ms takes the one duration syntax"
    );
    let err = param_error("memory_mb", "lots");
    assert!(err.message.contains("is not a whole number"), "{err}");
    assert!(err.to_string().contains("a number of MiB"), "{err}");
    let err = param_error("memory_mb", "18446744073709551615");
    assert!(err.message.ends_with("out of range"), "{err}");
    let grant = element("allow_dir", &[("path", "/nonexistent/dir")], vec![]);
    let err = configure(&plugin_node("wasm", &wasm, &[], &[], vec![grant])).unwrap_err();
    assert!(err.message.contains("no such directory"), "{err}");
}

#[test]
fn files_that_are_not_components_are_config_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let core = dir.path().join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    let err = configure(&plugin_node("wasm", &core, &[], &[], vec![])).unwrap_err();
    assert!(err.to_string().contains("core.wasm"), "{err}");
    assert!(
        err.hint
            .as_deref()
            .unwrap()
            .contains("core WebAssembly module"),
        "{err}"
    );

    let garbage = dir.path().join("garbage.wasm");
    std::fs::write(&garbage, b"hello").unwrap();
    let err = config_error("wasm", &garbage, &[], &[], vec![]);
    assert!(
        err.contains("garbage.wasm") && err.contains("not a loadable WASM component"),
        "{err}"
    );

    let missing = dir.path().join("missing.wasm");
    let err = config_error("wasm", &missing, &[], &[], vec![]);
    assert!(
        err.contains("no such file") && err.contains("missing.wasm"),
        "{err}"
    );
}

#[test]
fn init_rejecting_or_panicking_is_a_config_error() {
    let Some(wasm) = wasm_misbehave() else { return };
    let err = config_error("wasm", &wasm, &[], &[("reject", "x")], vec![]);
    assert!(
        err.contains("rejected its configuration: rejected on request: x"),
        "{err}"
    );
    let err = config_error("wasm", &wasm, &[], &[("panic_in_init", "")], vec![]);
    assert!(
        err.contains("init panicked: panicked at") && err.contains("panic in init on request"),
        "{err}"
    );
}

/// Delivers `order` to a fresh lane of the misbehaving fixture, expects a retryable error
/// containing `expected`, then checks that the same lane and a healthy plugin still work.
fn misbehaves(extra: &[(&str, &str)], order_path: &str, expected: &str) -> Duration {
    let wasm = wasm_misbehave().unwrap();
    let spec = configure(&plugin_node("wasm", &wasm, extra, &[], vec![])).unwrap();
    let mut sink = spec.start(&ctx()).unwrap();
    let started = Instant::now();
    let err = sink.deliver(&order(order_path)).unwrap_err();
    let took = started.elapsed();
    assert!(err.message.contains("the instance is re-created"), "{err}");
    assert_eq!(err.class, ErrorClass::Retryable, "{err}");
    assert!(err.message.contains(expected), "{err}");
    // The instance was re-created: the lane goes on.
    sink.deliver(&order("fine")).unwrap();
    // Another plugin is unaffected.
    let example = wasm_example().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let healthy = configure(&example_node(&example, dir.path())).unwrap();
    healthy
        .start(&ctx())
        .unwrap()
        .deliver(&awkward_batch())
        .unwrap();
    took
}

#[test]
fn panic_is_retryable_with_its_message_and_the_instance_is_recreated() {
    if wasm_misbehave().is_none() {
        return;
    }
    misbehaves(
        &[],
        "panic",
        "plugin under-test: deliver panicked: panicked at",
    );
    misbehaves(&[], "panic", "panic on request");
}

#[test]
fn endless_loop_is_stopped_by_the_deadline() {
    if wasm_misbehave().is_none() {
        return;
    }
    let took = misbehaves(
        &[("timeout_ms", "200")],
        "loop",
        "plugin under-test: deliver timed out after 200 ms",
    );
    assert!(took >= Duration::from_millis(200), "{took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
}

#[test]
fn unbounded_allocation_is_stopped_by_the_memory_cap() {
    if wasm_misbehave().is_none() {
        return;
    }
    misbehaves(
        &[("memory_mb", "16")],
        "alloc",
        "plugin under-test: deliver exceeded its memory limit of 16 MiB",
    );
}

#[test]
fn plugin_errors_keep_their_class() {
    let Some(wasm) = wasm_misbehave() else { return };
    let spec = configure(&plugin_node("wasm", &wasm, &[], &[], vec![])).unwrap();
    let mut sink = spec.start(&ctx()).unwrap();
    let err = sink.deliver(&order("retryable")).unwrap_err();
    assert_eq!(err.class, ErrorClass::Retryable);
    assert_eq!(err.message, "plugin under-test: failing on request");
    let err = sink.deliver(&order("fatal")).unwrap_err();
    assert_eq!(err.class, ErrorClass::Fatal);
    assert_eq!(err.message, "plugin under-test: failing on request");
}

#[test]
fn wasm_call_overhead_and_instantiate_time() {
    let Some(wasm) = wasm_misbehave() else { return };
    let started = Instant::now();
    let spec = configure(&plugin_node("wasm", &wasm, &[], &[], vec![])).unwrap();
    println!(
        "wasm plugin: configured (compile + link + first instance) in {:?}; {}",
        started.elapsed(),
        spec.summary()
    );
    let mut sink = spec.start(&ctx()).unwrap();
    for size in [1, 100] {
        let b = many(size);
        let t = mean_time(2_000, || sink.deliver(&b).unwrap());
        println!("wasm plugin: {size:>3}-event batch delivered in {t:?} (mean of 2000)");
    }
    let t = mean_time(50, || drop(spec.start(&ctx()).unwrap()));
    println!("wasm plugin: instance created (store + instantiate + init) in {t:?} (mean of 50)");
}

/// The hostile component (`examples/hostile-wasm-plugin`). Written in the component text
/// format, it needs no wasm32 target: these tests always run.
fn wasm_hostile() -> PathBuf {
    sersync_tests::build_wat_example("hostile-wasm-plugin", "hostile")
}

#[test]
fn huge_wasm_error_is_cut_and_escaped() {
    huge_error_is_cut("wasm", &wasm_hostile());
}

#[test]
fn wasm_log_line_cannot_forge_lines() {
    forged_log_lines_are_escaped("wasm", &wasm_hostile());
}

#[test]
fn wasm_log_flood_is_rate_limited() {
    log_floods_are_rate_limited("wasm", &wasm_hostile());
}

#[test]
fn a_sleep_in_deliver_is_stopped_by_the_deadline() {
    let node = hostile_node(
        "wasm",
        &wasm_hostile(),
        &[("timeout_ms", "500")],
        "sleep",
        None,
        vec![],
    );
    let mut sink = configure(&node).unwrap().start(&ctx()).unwrap();
    for _ in 0..2 {
        let started = Instant::now();
        let err = sink.deliver(&order("x")).unwrap_err();
        let took = started.elapsed();
        assert!(took < Duration::from_millis(1500), "deliver ran {took:?}");
        assert_eq!(err.class, ErrorClass::Retryable, "{err}");
        assert!(
            err.message.contains("deliver timed out after 500 ms")
                && err.message.contains("the instance is re-created"),
            "{err}"
        );
    }
}

#[test]
fn a_sleep_in_init_is_a_config_error_within_the_deadline() {
    let node = hostile_node(
        "wasm",
        &wasm_hostile(),
        &[("timeout_ms", "500")],
        "sleep_in_init",
        None,
        vec![],
    );
    let started = Instant::now();
    let err = configure(&node).unwrap_err().to_string();
    let took = started.elapsed();
    assert!(took < Duration::from_millis(1500), "init ran {took:?}");
    assert!(
        err.contains("hostile.wasm") && err.contains("init timed out after 500 ms"),
        "{err}"
    );
}

/// Descriptors this process holds now.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[test]
fn a_plugin_cannot_hoard_descriptors() {
    let err = configure(&plugin_node(
        "wasm",
        &wasm_hostile(),
        &[("max_files", "0")],
        &[],
        vec![],
    ));
    assert!(err.unwrap_err().message.ends_with("0 is out of range"));
    let dir = tempfile::tempdir().unwrap();
    let grant = || {
        element(
            "allow_dir",
            &[("path", dir.path().to_str().unwrap())],
            vec![],
        )
    };
    for (limit, expected) in [(None, 64), (Some("16"), 16)] {
        let extra: Vec<(&str, &str)> = limit.map(|l| ("max_files", l)).into_iter().collect();
        let node = hostile_node(
            "wasm",
            &wasm_hostile(),
            &extra,
            "hoard_files",
            Some("3000"),
            vec![grant()],
        );
        let mut sink = configure(&node).unwrap().start(&ctx()).unwrap();
        let before = open_fds();
        let err = sink.deliver(&order("x")).unwrap_err();
        // Other tests of this binary open and close descriptors meanwhile: a loose bound.
        let held = open_fds().saturating_sub(before);
        assert!(held < 200, "the plugin left {held} descriptors open");
        assert_eq!(err.class, ErrorClass::Retryable, "{err}");
        assert!(
            err.message.contains(&format!(
                "deliver exceeded its limit of {expected} open files"
            )),
            "{err}"
        );
    }
}
