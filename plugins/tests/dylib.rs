//! Native plugins, built from `examples/` and loaded through `configure_plugin` + `start`.

mod dylib_wasm_common;

use std::path::PathBuf;

use dylib_wasm_common::*;
use sersync_plugin_sdk::ErrorClass;

/// The native misbehaving fixture.
fn native_misbehave() -> PathBuf {
    build("fixtures", None, "libsersync_fixture_misbehave.so")
}

/// The native fixture that claims another ABI version.
fn native_wrong_abi() -> PathBuf {
    build("fixtures", None, "libsersync_fixture_wrong_abi.so")
}

#[test]
fn native_example_appends_json_lines_for_awkward_names() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("events.jsonl");
    let node = plugin_node(
        "dylib",
        &native_example(),
        &[],
        &[("output", output.to_str().unwrap())],
        vec![],
    );
    let spec = configure(&node).unwrap();
    assert_eq!(spec.name(), "under-test");
    assert!(spec.summary().starts_with("native plugin "));
    let mut sink = spec.start(&ctx()).unwrap();
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
    sink.deliver(&awkward_batch()).unwrap();
    assert_eq!(
        std::fs::read_to_string(&output).unwrap(),
        AWKWARD_LINES.repeat(2)
    );
}

#[test]
fn native_example_rejects_missing_output_at_configuration() {
    let node = plugin_node("dylib", &native_example(), &[], &[], vec![]);
    let err = configure(&node).unwrap_err().to_string();
    assert!(err.contains("libsersync_jsonl_native.so"), "{err}");
    assert!(
        err.contains("rejected its configuration: missing <param name=\"output\""),
        "{err}"
    );
}

#[test]
fn wrong_abi_version_is_refused_before_any_other_call() {
    // The fixture's vtable symbol aborts the process: reaching this test's end proves the
    // host stopped at the version check.
    let path = native_wrong_abi();
    let err = config_error("dylib", &path, &[], &[], vec![]);
    let needed = sersync_plugin_sdk::abi::ABI_VERSION;
    assert!(err.contains(path.to_str().unwrap()), "{err}");
    assert!(
        err.contains(&format!(
            "built for sersync plugin ABI version {}, but this sersync needs version {needed}",
            needed + 1
        )),
        "{err}"
    );
}

#[test]
fn missing_file_and_non_plugin_files_are_config_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.so");
    let err = config_error("dylib", &missing, &[], &[], vec![]);
    assert!(
        err.contains("no such file") && err.contains("nope.so"),
        "{err}"
    );

    let garbage = dir.path().join("garbage.so");
    std::fs::write(&garbage, b"not an ELF file").unwrap();
    let err = config_error("dylib", &garbage, &[], &[], vec![]);
    assert!(
        err.contains("garbage.so") && err.contains("cannot load"),
        "{err}"
    );

    // A real shared library that is not a sersync plugin (where the system has it there).
    let libm = std::path::Path::new("/lib/x86_64-linux-gnu/libm.so.6");
    if libm.is_file() {
        let err = config_error("dylib", libm, &[], &[], vec![]);
        assert!(
            err.contains("does not export sersync_plugin_abi_version: not a sersync plugin"),
            "{err}"
        );
    }
}

#[test]
fn unknown_type_is_refused() {
    let err = configure(&plugin_node("jar", &native_misbehave(), &[], &[], vec![])).unwrap_err();
    assert!(err.message.contains("unknown plugin type"), "{err}");
}

#[test]
fn rejected_or_panicking_configuration_is_a_config_error() {
    let path = native_misbehave();
    let err = config_error("dylib", &path, &[], &[("reject", "x")], vec![]);
    assert!(
        err.contains("rejected its configuration: rejected on request: x"),
        "{err}"
    );
    let err = config_error("dylib", &path, &[], &[("panic_in_init", "")], vec![]);
    assert!(
        err.contains("plugin panicked: panic in init on request"),
        "{err}"
    );
}

#[test]
fn panic_in_deliver_is_retryable_and_the_next_batch_goes_through() {
    let spec = configure(&plugin_node("dylib", &native_misbehave(), &[], &[], vec![])).unwrap();
    let mut sink = spec.start(&ctx()).unwrap();
    let err = sink.deliver(&order("panic")).unwrap_err();
    assert_eq!(err.class, ErrorClass::Retryable);
    assert!(
        err.message.contains("plugin panicked: panic on request"),
        "{err}"
    );
    sink.deliver(&order("fine")).unwrap();
    // Another plugin loaded from another library is unaffected.
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out.jsonl");
    let healthy = configure(&plugin_node(
        "dylib",
        &native_example(),
        &[],
        &[("output", output.to_str().unwrap())],
        vec![],
    ))
    .unwrap();
    healthy
        .start(&ctx())
        .unwrap()
        .deliver(&awkward_batch())
        .unwrap();
    assert_eq!(std::fs::read_to_string(&output).unwrap(), AWKWARD_LINES);
}

#[test]
fn plugin_errors_keep_their_class_and_message() {
    let spec = configure(&plugin_node("dylib", &native_misbehave(), &[], &[], vec![])).unwrap();
    let mut sink = spec.start(&ctx()).unwrap();
    let err = sink.deliver(&order("retryable")).unwrap_err();
    assert_eq!(err.class, ErrorClass::Retryable);
    assert_eq!(err.message, "plugin under-test: failing on request");
    let err = sink.deliver(&order("fatal")).unwrap_err();
    assert_eq!(err.class, ErrorClass::Fatal);
    assert_eq!(err.message, "plugin under-test: failing on request");
    sink.deliver(&order("fine")).unwrap();
}

#[test]
fn native_call_overhead() {
    let spec = configure(&plugin_node("dylib", &native_misbehave(), &[], &[], vec![])).unwrap();
    let mut sink = spec.start(&ctx()).unwrap();
    for size in [1, 100] {
        let b = many(size);
        let t = mean_time(2_000, || sink.deliver(&b).unwrap());
        println!("native plugin: {size:>3}-event batch delivered in {t:?} (mean of 2000)");
    }
    let t = mean_time(200, || drop(spec.start(&ctx()).unwrap()));
    println!("native plugin: instance created and dropped in {t:?} (mean of 200)");
}

/// The hostile native plugin.
fn native_hostile() -> PathBuf {
    build(
        "hostile-native-plugin",
        None,
        "libsersync_hostile_native_plugin.so",
    )
}

#[test]
fn huge_native_error_is_cut_and_escaped() {
    huge_error_is_cut("dylib", &native_hostile());
}

#[test]
fn native_log_line_cannot_forge_lines() {
    forged_log_lines_are_escaped("dylib", &native_hostile());
}

#[test]
fn native_log_flood_is_rate_limited() {
    // A copy, loaded apart: a library keeps the host (and so the log budget) of its first
    // load, which the other tests of this binary share.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("libflood.so");
    std::fs::copy(native_hostile(), &copy).unwrap();
    log_floods_are_rate_limited("dylib", &copy);
}
