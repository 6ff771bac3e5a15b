//! Building the example and fixture plugins under `examples/` from source, the way their
//! authors would (each is a cargo workspace of its own).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// One target dir for every example and fixture build, under the workspace's target dir.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"))
        .join("plugin-examples")
}

/// Builds (once per test binary; cargo makes later builds no-ops) the workspace at
/// `examples/<dir>` for `target` (`None`: the host) and returns the artifact `file`.
pub fn build_example(dir: &str, target: Option<&str>, file: &str) -> PathBuf {
    static BUILT: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    let key = format!("{dir} {}", target.unwrap_or("host"));
    let out = target_dir()
        .join(target.unwrap_or(""))
        .join("debug")
        .join(file);
    if built.contains(&key) {
        return out;
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.arg("build")
        .arg("--quiet")
        .arg("--manifest-path")
        .arg(workspace().join("examples").join(dir).join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir());
    if let Some(target) = target {
        cmd.args(["--target", target]);
    }
    let status = cmd.status().expect("running cargo");
    assert!(status.success(), "building examples/{dir} failed");
    assert!(out.is_file(), "{} was not built", out.display());
    built.push(key);
    out
}

/// Turns the hand-written component `examples/<dir>/<name>.wat` into the binary component
/// `<name>.wasm` in the examples' target dir, and returns its path. Needs no wasm32 target:
/// such components are what the WASM tests run when the target is missing.
pub fn build_wat_example(dir: &str, name: &str) -> PathBuf {
    static BUILT: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    let out_dir = target_dir().join("wat");
    let out = out_dir.join(format!("{name}.wasm"));
    if built.contains(&out) {
        return out;
    }
    let source = workspace()
        .join("examples")
        .join(dir)
        .join(format!("{name}.wat"));
    let binary = wat::parse_file(&source)
        .unwrap_or_else(|e| panic!("{} is not a valid component: {e}", source.display()));
    std::fs::create_dir_all(&out_dir).expect("creating the examples' target dir");
    // Written under a name of its own first: other test binaries may build it at the same
    // time, and may be loading it.
    let partial = out_dir.join(format!("{name}.wasm.{}", std::process::id()));
    std::fs::write(&partial, binary).expect("writing the component");
    std::fs::rename(&partial, &out).expect("renaming the component");
    built.push(out.clone());
    out
}

/// The WASM target the example and fixture plugins are built for.
pub const WASM_TARGET: &str = "wasm32-wasip2";

/// True when rustc has the standard library for [`WASM_TARGET`] (no rustup needed to tell).
/// When not, says so on standard error: a test that needs it is skipped with that message
/// (CI installs the target, so there it always runs).
pub fn wasm_target_installed() -> bool {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let installed = Command::new(rustc)
        .args(["--print", "target-libdir", "--target", WASM_TARGET])
        .output()
        .is_ok_and(|out| {
            let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            out.status.success()
                && std::fs::read_dir(dir).is_ok_and(|mut d| {
                    d.any(|e| {
                        e.is_ok_and(|e| e.file_name().to_string_lossy().starts_with("libstd-"))
                    })
                })
        });
    if !installed {
        // Straight to stderr, not through `eprintln!`, which the test harness captures.
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            format!("SKIPPED: the {WASM_TARGET} target is not installed (rustup target add {WASM_TARGET})\n").as_bytes(),
        );
    }
    installed
}
