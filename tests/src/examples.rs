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
