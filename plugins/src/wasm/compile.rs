//! Compiling a component once per file: several `<plugin>` elements naming the same file (and
//! a reload that did not change it) share one compiled [`Component`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{LazyLock, Mutex};
use std::time::SystemTime;

use wasmtime::component::Component;
use wasmtime::Engine;

/// What identifies a file's contents well enough: its path, length and modification time.
type Key = (PathBuf, u64, Option<SystemTime>);

/// The compiled component of `path`, from the cache when the file has not changed.
pub(super) fn compile(engine: &Engine, path: &Path) -> wasmtime::Result<Component> {
    static CACHE: LazyLock<Mutex<HashMap<Key, Component>>> = LazyLock::new(Default::default);
    let meta = std::fs::metadata(path)?;
    let key = (path.to_path_buf(), meta.len(), meta.modified().ok());
    // Held while compiling, so that loads of the same file at once compile it once.
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(component) = cache.get(&key) {
        return Ok(component.clone());
    }
    let component = Component::from_file(engine, path)?;
    cache.insert(key, component.clone());
    Ok(component)
}
