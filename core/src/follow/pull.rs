//! The pulls: rsync from the source into the local tree, an argument vector and the paths
//! on standard input (`--files-from=- --from0`), never a shell.

use std::collections::BTreeSet;
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
        self.run(&["-r", "--delete"], None).map(|_| ())
    }

    /// `paths` recursively with `--delete`, by the quick check.
    pub fn whole<'p>(&self, paths: impl IntoIterator<Item = &'p RelPath>) -> Result<(), String> {
        let listed = paths.into_iter().map(|p| Listed::name(p.clone())).collect();
        self.deleting(
            &["-r", "--delete", "--ignore-missing-args"],
            listed,
            DELETE_RETRIES,
        )
    }

    /// The directories `dirs` made to match the source one level deep, deleting only (nothing
    /// is sent or updated: `--existing --ignore-existing`).
    pub fn prune<'p>(&self, dirs: impl IntoIterator<Item = &'p RelPath>) -> Result<(), String> {
        let listed = dirs
            .into_iter()
            .map(|d| Listed::contents(d.clone()))
            .collect();
        self.delete_only("--dirs", listed)
    }

    /// Deletes below each of `dirs`, recursively, what the source no longer has; nothing is
    /// sent or updated (`--existing --ignore-existing`). See `heal.rs`.
    pub fn heal<'p>(&self, dirs: impl IntoIterator<Item = &'p RelPath>) -> Result<(), String> {
        let listed = dirs.into_iter().map(|d| Listed::name(d.clone())).collect();
        self.delete_only("-r", listed)
    }

    /// A run that only deletes (`--existing --ignore-existing`: nothing sent or updated),
    /// `recursion` deep (`--dirs`: one level; `-r`: all of it), below what is `listed`.
    fn delete_only(&self, recursion: &str, listed: Vec<Listed>) -> Result<(), String> {
        self.deleting(
            &[
                recursion,
                "--delete",
                "--existing",
                "--ignore-existing",
                "--ignore-missing-args",
            ],
            listed,
            DELETE_RETRIES,
        )
    }

    /// `paths` one by one (directories without their contents), always compared by content.
    pub fn files<'p>(&self, paths: impl IntoIterator<Item = &'p RelPath>) -> Result<(), String> {
        let listed: Vec<Listed> = paths.into_iter().map(|p| Listed::name(p.clone())).collect();
        self.run(
            &["--ignore-times", "--ignore-missing-args"],
            Some(list(&listed)),
        )
        .map(|_| ())
    }

    /// A run that deletes (`--delete`): rsync skips *every* deletion of a run in which the
    /// sender reported an I/O error ("IO error encountered -- skipping file deletion"), and a
    /// listed name below something that is no longer a directory on the source is one
    /// (`link_stat … Not a directory`). Such a name is as gone as a missing one, and its
    /// ancestor's own change is in the stream; so when deletions were skipped for gone names,
    /// the run is made again without them (`retries` times at most), so that the other names'
    /// deletions are done. A gone name that only matches ambiguously (`b` and `a/b` both end
    /// the reported `…/a/b`) is tried again on its own.
    fn deleting(&self, extra: &[&str], listed: Vec<Listed>, retries: usize) -> Result<(), String> {
        let report = self.run(extra, Some(list(&listed)))?;
        if !report.deletions_skipped || report.gone.is_empty() {
            return Ok(());
        }
        let matching: Vec<Vec<usize>> = report
            .gone
            .iter()
            .map(|name| {
                (0..listed.len())
                    .filter(|&i| listed[i].reported_as(name))
                    .collect()
            })
            .collect();
        let failed: BTreeSet<usize> = matching.iter().flatten().copied().collect();
        if failed.len() == listed.len() {
            // Every name is gone: nothing of this run had anything to delete.
            return Ok(());
        }
        if failed.is_empty() || retries == 0 {
            tracing::warn!(
                "rsync from {} skipped its deletions (a listed name is below what is no longer a directory there); the next change of those directories deletes",
                self.source.url
            );
            return Ok(());
        }
        let surely: BTreeSet<usize> = matching
            .iter()
            .filter(|m| m.len() == 1)
            .map(|m| m[0])
            .collect();
        tracing::debug!(
            gone = report.gone.len(),
            "deletions skipped for names gone on the source: again without them"
        );
        let (rest, doubtful): (Vec<usize>, Vec<usize>) = (0..listed.len())
            .filter(|i| !surely.contains(i))
            .partition(|i| !failed.contains(i));
        let take = |indices: &[usize]| -> Vec<Listed> {
            indices.iter().map(|&i| listed[i].clone()).collect()
        };
        if !rest.is_empty() {
            self.deleting(extra, take(&rest), retries - 1)?;
        }
        for &i in doubtful.iter().take(MAX_DOUBTFUL) {
            self.deleting(extra, take(&[i]), 0)?;
        }
        if doubtful.len() > MAX_DOUBTFUL {
            tracing::warn!(
                "rsync from {}: {} names matched a name gone there ambiguously and were not pulled again; their next change does",
                self.source.url,
                doubtful.len() - MAX_DOUBTFUL
            );
        }
        Ok(())
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

    fn run(&self, extra: &[&str], paths: Option<Vec<u8>>) -> Result<Report, String> {
        if paths.as_ref().is_some_and(|p| p.is_empty()) {
            return Ok(Report::default());
        }
        let mut child = Command::new(&self.source.program)
            .args(self.arguments(extra, paths.is_some()))
            .stdin(if paths.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.source.program.display()))?;
        let writer = paths.map(|bytes| {
            let mut stdin = child.stdin.take().expect("piped");
            std::thread::spawn(move || stdin.write_all(&bytes))
        });
        // Without -v rsync writes little on stdout (its notices: "IO error encountered --
        // skipping file deletion"); read beside stderr so that neither pipe can fill.
        let out_reader = child.stdout.take().map(|mut pipe| {
            std::thread::spawn(move || {
                let mut out = Vec::new();
                let _ = pipe.read_to_end(&mut out);
                out
            })
        });
        let mut stderr = Vec::new();
        if let Some(mut pipe) = child.stderr.take() {
            let _ = pipe.read_to_end(&mut stderr);
        }
        let stdout = out_reader.and_then(|t| t.join().ok()).unwrap_or_default();
        let status = child
            .wait()
            .map_err(|e| format!("waiting for rsync: {e}"))?;
        if let Some(writer) = writer {
            let _ = writer.join();
        }
        let text = String::from_utf8_lossy(&stderr);
        let notices = String::from_utf8_lossy(&stdout);
        let report = Report {
            deletions_skipped: notices.contains(DELETIONS_SKIPPED)
                || text.contains(DELETIONS_SKIPPED),
            gone: gone_names(&text),
        };
        match status.code() {
            // 24: files vanished on the source while it sent; their deletes come as changes.
            Some(0 | 24) => Ok(report),
            Some(23) if only_sender_side(&text) => {
                if !only_gone_names(&text) {
                    tracing::warn!(
                        "rsync from {} could not send some paths (left as they are here until they change again): {}",
                        self.source.url,
                        tail(&text)
                    );
                }
                Ok(report)
            }
            code => Err(format!(
                "rsync from {} exited with {}: {}",
                self.source.url,
                code.map_or("a signal".to_string(), |c| c.to_string()),
                tail(&text)
            )),
        }
    }
}

/// How many times a deleting run is made again without the names it found gone.
const DELETE_RETRIES: usize = 3;
/// How many names that matched a reported gone name ambiguously are tried one by one.
const MAX_DOUBTFUL: usize = 16;
/// What rsync says when the sender's I/O error made it skip the run's deletions.
const DELETIONS_SKIPPED: &str = "IO error encountered -- skipping file deletion";

/// What a run said beyond its exit status.
#[derive(Debug, Default)]
struct Report {
    /// rsync skipped every deletion of the run.
    deletions_skipped: bool,
    /// The names it reported gone below a non-directory (or a loop of links), unescaped.
    gone: Vec<Vec<u8>>,
}

/// One name on a run's list: `path` itself, or (`contents`) the directory's entries, `DIR/.`.
#[derive(Clone, Debug)]
struct Listed {
    path: RelPath,
    contents: bool,
}

impl Listed {
    fn name(path: RelPath) -> Listed {
        Listed {
            path,
            contents: false,
        }
    }

    fn contents(path: RelPath) -> Listed {
        Listed {
            path,
            contents: true,
        }
    }

    /// Its bytes on rsync's list.
    fn listed(&self) -> Vec<u8> {
        match (self.path.is_root(), self.contents) {
            (true, _) => b".".to_vec(),
            (false, false) => self.path.as_bytes().to_vec(),
            (false, true) => [self.path.as_bytes(), b"/."].concat(),
        }
    }

    /// Whether rsync's `name` (the source's path of it: `/module-dir/PATH`, `/abs/dir/PATH`,
    /// `PATH`, rsync dropping a trailing `/.`) can be this one.
    fn reported_as(&self, name: &[u8]) -> bool {
        let own = self.path.as_bytes();
        !self.path.is_root()
            && (name == own
                || (name.ends_with(own) && name[..name.len() - own.len()].ends_with(b"/")))
    }
}

/// The names of rsync's "gone" errors in `stderr` ([`only_gone_names`]'s kinds, and a loop of
/// links), with rsync's escapes (`\#ooo`) undone.
fn gone_names(stderr: &str) -> Vec<Vec<u8>> {
    stderr
        .lines()
        .filter(|l| {
            l.starts_with("rsync: [sender] link_stat ")
                && (l.ends_with("failed: Not a directory (20)")
                    || l.ends_with("failed: Too many levels of symbolic links (40)"))
        })
        .filter_map(|l| {
            let quoted = l.strip_prefix("rsync: [sender] link_stat \"")?;
            let end = quoted.rfind("\" ")?;
            Some(unescape(&quoted.as_bytes()[..end]))
        })
        .collect()
}

/// rsync's output escaping undone: `\#ooo` (three octal digits) is that byte.
fn unescape(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        if text[i] == b'\\'
            && text.get(i + 1) == Some(&b'#')
            && text.len() >= i + 5
            && text[i + 2..i + 5].iter().all(|d| (b'0'..=b'7').contains(d))
        {
            let value = text[i + 2..i + 5]
                .iter()
                .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
            out.push(value as u8);
            i += 5;
        } else {
            out.push(text[i]);
            i += 1;
        }
    }
    out
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
/// files/attrs were not transferred") is `wanted`. When *every* listed name failed on a
/// daemon's side, the daemon ends the connection before the receiver has read its goodbye,
/// and the receiver adds "read error: Connection reset by peer" to the sender's errors: an
/// echo of those, not an error of its own (rsync exits 23 for the sender's errors all the
/// same; a connection really lost mid-transfer is exit 12 or 10).
fn every_error_is(stderr: &str, wanted: impl Fn(&str) -> bool) -> bool {
    let mut errors = stderr
        .lines()
        .filter(|l| l.starts_with("rsync: ") || l.starts_with("rsync error: "))
        .filter(|l| *l != "rsync: [Receiver] read error: Connection reset by peer (104)")
        .peekable();
    errors.peek().is_some()
        && errors.all(|l| {
            wanted(l) || l.starts_with("rsync error: some files/attrs were not transferred")
        })
}

/// The names as rsync's `--from0` list; the root is `.`.
fn list(listed: &[Listed]) -> Vec<u8> {
    let mut out = Vec::new();
    for name in listed {
        out.extend_from_slice(&name.listed());
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
        let names = [
            Listed::name(RelPath::ROOT),
            Listed::name(RelPath::new(&b"-rf\n$(x)"[..])),
            Listed::contents(RelPath::new(&b"d"[..])),
            Listed::contents(RelPath::ROOT),
        ];
        assert_eq!(list(&names), b".\0-rf\n$(x)\0d/.\0.\0");
    }

    fn local_source(dir: &Path) -> Source {
        Source {
            url: format!("{}/", dir.display()),
            password_file: None,
            rsh: None,
            timeout: 0,
            program: PathBuf::from("rsync"),
        }
    }

    #[test]
    fn gone_names_are_read_back_byte_for_byte() {
        let stderr = "rsync: [sender] link_stat \"/new\\#012line/\\#377\\#376-bin/x\" (in src) failed: Not a directory (20)\n\
            rsync: [sender] link_stat \"/m/a\\#134#123 b/c\" failed: Too many levels of symbolic links (40)\n\
            rsync: [sender] link_stat \"/m/other\" failed: Permission denied (13)\n\
            rsync error: some files/attrs were not transferred (see previous errors) (code 23)\n";
        assert_eq!(
            gone_names(stderr),
            vec![
                b"/new\nline/\xff\xfe-bin/x".to_vec(),
                b"/m/a\\#123 b/c".to_vec()
            ]
        );
        let x = Listed::name(RelPath::new(&b"\xff\xfe-bin/x"[..]));
        assert!(x.reported_as(b"/new\nline/\xff\xfe-bin/x"));
        assert!(x.reported_as(b"\xff\xfe-bin/x"));
        assert!(!x.reported_as(b"/new\nline/a\xff\xfe-bin/x"));
        assert!(Listed::contents(RelPath::new(&b"d"[..])).reported_as(b"/src/d"));
    }

    /// One listed name below what is a file on the source made rsync skip every deletion of
    /// the run (`IO error encountered -- skipping file deletion`): a directory pulled whole
    /// beside it kept a name the source no longer has.
    #[test]
    fn a_name_gone_below_a_file_does_not_stop_the_other_names_deletions() {
        let dir = tempfile::tempdir().unwrap();
        let (src, local) = (dir.path().join("src"), dir.path().join("local"));
        std::fs::create_dir_all(src.join("d")).unwrap();
        std::fs::write(src.join("f"), "now a file").unwrap();
        std::fs::write(src.join("d/kept"), "k").unwrap();
        std::fs::create_dir_all(local.join("d")).unwrap();
        std::fs::create_dir_all(local.join("f/x")).unwrap();
        std::fs::write(local.join("d/old"), "gone on the source").unwrap();
        let puller = Puller::new(local_source(&src), &local);
        let listed = [RelPath::new(&b"f/x"[..]), RelPath::new(&b"d"[..])];
        puller.whole(listed.iter()).unwrap();
        assert!(
            !local.join("d/old").exists(),
            "the deletion in d was skipped"
        );
        assert_eq!(std::fs::read(local.join("d/kept")).unwrap(), b"k");
        // Pruning too: `f/x/.` cannot be listed, `d/.` is pruned.
        std::fs::write(local.join("d/old"), "again").unwrap();
        puller.prune([&listed[0], &listed[1]]).unwrap();
        assert!(!local.join("d/old").exists(), "the prune of d was skipped");
    }
}
