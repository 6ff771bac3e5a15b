//! Byte-for-byte comparison of two directory trees.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

#[derive(Debug, PartialEq, Eq)]
enum Entry {
    Dir { mode: u32 },
    File { mode: u32, contents: Vec<u8> },
    Symlink { target: Vec<u8> },
    Other,
}

impl Entry {
    /// What it is, briefly: type, mode, size and the start of the contents or target.
    fn describe(&self) -> String {
        let start = |bytes: &[u8]| bytes[..bytes.len().min(24)].escape_ascii().to_string();
        match self {
            Entry::Dir { mode } => format!("directory {mode:o}"),
            Entry::File { mode, contents } => format!(
                "file {mode:o}, {} bytes \"{}\"",
                contents.len(),
                start(contents)
            ),
            Entry::Symlink { target } => format!("symlink to \"{}\"", start(target)),
            Entry::Other => "neither file, directory nor symlink".to_string(),
        }
    }
}

fn snapshot(root: &Path) -> Result<BTreeMap<Vec<u8>, Entry>, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| e.to_string())?;
            let path = entry.path();
            let rel = path
                .strip_prefix(root)
                .expect("below root")
                .as_os_str()
                .as_bytes()
                .to_vec();
            let meta = match fs::symlink_metadata(&path) {
                Ok(m) => m,
                Err(_) => continue, // vanished while reading
            };
            let mode = meta.permissions().mode() & 0o7777;
            let item = if meta.file_type().is_symlink() {
                Entry::Symlink {
                    target: fs::read_link(&path)
                        .map(|t| t.as_os_str().as_bytes().to_vec())
                        .unwrap_or_default(),
                }
            } else if meta.is_dir() {
                stack.push(path.clone());
                Entry::Dir { mode }
            } else if meta.is_file() {
                Entry::File {
                    mode,
                    contents: fs::read(&path).unwrap_or_default(),
                }
            } else {
                Entry::Other
            };
            out.insert(rel, item);
        }
    }
    Ok(out)
}

/// `Ok` when `dst` holds exactly what `src` holds (names, types, contents, permission bits,
/// symlink targets); otherwise the first few differences, named (bytes outside printable
/// ASCII escaped, so a name with a newline stays on one line).
pub fn tree_diff(src: &Path, dst: &Path) -> Result<(), String> {
    let (a, b) = (snapshot(src)?, snapshot(dst)?);
    if a == b {
        return Ok(());
    }
    let mut problems = Vec::new();
    for (name, entry) in &a {
        match b.get(name) {
            None => problems.push(format!("missing on the remote: {}", name.escape_ascii())),
            Some(other) if other != entry => problems.push(format!(
                "differs: {} (source {}, remote {})",
                name.escape_ascii(),
                entry.describe(),
                other.describe()
            )),
            _ => {}
        }
    }
    for name in b.keys().filter(|n| !a.contains_key(*n)) {
        problems.push(format!("extra on the remote: {}", name.escape_ascii()));
    }
    let total = problems.len();
    problems.truncate(8);
    Err(format!("{total} differences: {}", problems.join("; ")))
}
