//! The pulls: rsync from the source into the local tree, an argument vector and the paths
//! on standard input (`--files-from=- --from0`), never a shell.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use sersync_plugin_sdk::RelPath;

use super::config::Source;

/// What rsync's stderr is kept of for an error message.
const STDERR_TAIL: usize = 2048;

/// Pulls from one source into one tree.
#[derive(Clone, Debug)]
pub struct Puller {
    source: Source,
    local: OsString,
}

impl Puller {
    /// Pulls from `source` into `local`.
    pub fn new(source: Source, local: &Path) -> Puller {
        let mut local = local.as_os_str().to_owned();
        local.push("/");
        Puller { source, local }
    }

    /// The whole tree: `rsync -a --delete SOURCE/ LOCAL/`.
    pub fn full(&self) -> Result<(), String> {
        self.run(&["-r", "--delete"], None)
    }

    /// `paths` recursively with `--delete`, by the quick check.
    pub fn whole<'p>(&self, paths: impl IntoIterator<Item = &'p RelPath>) -> Result<(), String> {
        self.run(
            &["-r", "--delete", "--ignore-missing-args"],
            Some(list(paths)),
        )
    }

    /// The directories `dirs` made to match the source one level deep, deleting only (nothing
    /// is sent or updated: `--existing --ignore-existing`).
    pub fn prune<'p>(&self, dirs: impl IntoIterator<Item = &'p RelPath>) -> Result<(), String> {
        let mut entries = Vec::new();
        for dir in dirs {
            if !dir.is_root() {
                entries.extend_from_slice(dir.as_bytes());
                entries.push(b'/');
            }
            entries.extend_from_slice(b".\0");
        }
        self.run(
            &[
                "--dirs",
                "--delete",
                "--existing",
                "--ignore-existing",
                "--ignore-missing-args",
            ],
            Some(entries),
        )
    }

    /// `paths` one by one (directories without their contents), always compared by content.
    pub fn files<'p>(&self, paths: impl IntoIterator<Item = &'p RelPath>) -> Result<(), String> {
        self.run(
            &["--ignore-times", "--ignore-missing-args"],
            Some(list(paths)),
        )
    }

    /// The argument vector of one run (without the program).
    pub fn arguments(&self, extra: &[&str], listed: bool) -> Vec<OsString> {
        // --force: a non-empty directory here that is a file or link on the source is replaced.
        let mut args: Vec<OsString> = ["-a", "--numeric-ids", "--force"]
            .iter()
            .map(OsString::from)
            .collect();
        args.extend(extra.iter().map(OsString::from));
        if listed {
            args.push("--files-from=-".into());
            args.push("--from0".into());
        }
        if self.source.timeout > 0 {
            args.push(format!("--timeout={}", self.source.timeout).into());
        }
        if self.source.is_daemon() {
            args.push("--contimeout=10".into());
        }
        if let Some(file) = &self.source.password_file {
            let mut a = OsString::from("--password-file=");
            a.push(file);
            args.push(a);
        }
        if let Some(rsh) = &self.source.rsh {
            args.push("-e".into());
            args.push(rsh.into());
        }
        args.push("--".into());
        args.push(self.source.url.clone().into());
        args.push(self.local.clone());
        args
    }

    fn run(&self, extra: &[&str], paths: Option<Vec<u8>>) -> Result<(), String> {
        if paths.as_ref().is_some_and(|p| p.is_empty()) {
            return Ok(());
        }
        let mut child = Command::new(&self.source.program)
            .args(self.arguments(extra, paths.is_some()))
            .stdin(if paths.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.source.program.display()))?;
        let writer = paths.map(|bytes| {
            let mut stdin = child.stdin.take().expect("piped");
            std::thread::spawn(move || stdin.write_all(&bytes))
        });
        let mut stderr = Vec::new();
        if let Some(mut pipe) = child.stderr.take() {
            let _ = pipe.read_to_end(&mut stderr);
        }
        let status = child
            .wait()
            .map_err(|e| format!("waiting for rsync: {e}"))?;
        if let Some(writer) = writer {
            let _ = writer.join();
        }
        match status.code() {
            // 24: files vanished on the source while it sent; their deletes come as changes.
            Some(0 | 24) => Ok(()),
            Some(23) if only_sender_side(&String::from_utf8_lossy(&stderr)) => {
                let text = String::from_utf8_lossy(&stderr);
                if !only_gone_names(&text) {
                    tracing::warn!(
                        "rsync from {} could not send some paths (left as they are here until they change again): {}",
                        self.source.url,
                        tail(&text)
                    );
                }
                Ok(())
            }
            code => {
                let text = String::from_utf8_lossy(&stderr);
                let start = text.len().saturating_sub(STDERR_TAIL);
                let start = (start..text.len())
                    .find(|&i| text.is_char_boundary(i))
                    .unwrap_or(0);
                Err(format!(
                    "rsync from {} exited with {}: {}",
                    self.source.url,
                    code.map_or("a signal".to_string(), |c| c.to_string()),
                    text[start..].trim()
                ))
            }
        }
    }
}

/// The last [`STDERR_TAIL`] bytes of `text`, trimmed.
fn tail(text: &str) -> &str {
    let start = text.len().saturating_sub(STDERR_TAIL);
    let start = (start..text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0);
    text[start..].trim()
}

/// True when every error rsync reported is the sender's (the source could not read or find
/// a listed name: a loop of links, a name unreadable there). Retrying cannot help, and a
/// group that never succeeds would hold the stream back for ever; the next change of such a
/// path is pulled again. A receiver's error (this tree: disk full, no permission) is not.
fn only_sender_side(stderr: &str) -> bool {
    every_error_is(stderr, |l| l.starts_with("rsync: [sender] "))
}

/// True when every error rsync reported is a listed name that is not on the source because
/// an ancestor of it is no longer a directory there (`--ignore-missing-args` covers only a
/// name that is missing itself): as much gone as a missing name, and its own change (the
/// ancestor's) is in the stream.
fn only_gone_names(stderr: &str) -> bool {
    every_error_is(stderr, |l| {
        l.contains("link_stat") && l.ends_with("failed: Not a directory (20)")
    })
}

/// True when rsync reported at least one error and each one (besides its closing "some
/// files/attrs were not transferred") is `wanted`.
fn every_error_is(stderr: &str, wanted: impl Fn(&str) -> bool) -> bool {
    let mut errors = stderr
        .lines()
        .filter(|l| l.starts_with("rsync: ") || l.starts_with("rsync error: "))
        .peekable();
    errors.peek().is_some()
        && errors.all(|l| {
            wanted(l) || l.starts_with("rsync error: some files/attrs were not transferred")
        })
}

/// The paths as rsync's `--from0` list; the root is `.`.
fn list<'p>(paths: impl IntoIterator<Item = &'p RelPath>) -> Vec<u8> {
    let mut out = Vec::new();
    for path in paths {
        out.extend_from_slice(if path.is_root() {
            b"."
        } else {
            path.as_bytes()
        });
        out.push(0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn source(url: &str) -> Source {
        Source {
            url: url.into(),
            password_file: Some(PathBuf::from("/etc/p")),
            rsh: None,
            timeout: 60,
            program: PathBuf::from("rsync"),
        }
    }

    #[test]
    fn names_go_on_stdin_and_the_source_after_a_double_dash() {
        let p = Puller::new(source("rsync://h:1/m/"), Path::new("/srv/www"));
        let args: Vec<String> = p
            .arguments(&["-r"], true)
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            [
                "-a",
                "--numeric-ids",
                "--force",
                "-r",
                "--files-from=-",
                "--from0",
                "--timeout=60",
                "--contimeout=10",
                "--password-file=/etc/p",
                "--",
                "rsync://h:1/m/",
                "/srv/www/"
            ]
        );
        let gone = "rsync: [sender] link_stat \"/a\\#012b/c\" (in src) failed: Not a directory (20)\nrsync error: some files/attrs were not transferred (see previous errors) (code 23) at main.c(1874) [generator=3.2.7]\n";
        assert!(only_gone_names(gone));
        assert!(!only_gone_names(
            &gone.replace("Not a directory (20)", "Permission denied (13)")
        ));
        assert!(!only_gone_names(""));
        assert!(only_sender_side(&gone.replace(
            "Not a directory (20)",
            "Too many levels of symbolic links (40)"
        )));
        assert!(!only_sender_side(
            "rsync: [receiver] mkstemp \"x\" failed: No space left on device (28)\n"
        ));
        let names = [RelPath::ROOT, RelPath::new(&b"-rf\n$(x)"[..])];
        assert_eq!(list(names.iter()), b".\0-rf\n$(x)\0");
    }
}
