//! A failed batch as a shell command a person can run by hand (the `<failLog>` script).
//!
//! sersync itself never runs it through a shell: its lanes retry on their own. The command
//! exists for admins who relied on 2.5.4's script. Every word is single-quoted, so no file
//! name, whatever bytes it holds, is interpreted by the shell that runs it.

use std::path::Path;

use sersync_plugin_sdk::Batch;

use super::command::{arguments, RunShape, Target};
use super::plan::TransferPlan;
use super::RsyncOptions;

/// At most this many paths are written per run; a larger batch says how many were left out
/// (sersync still retries all of them).
const MAX_PATHS: usize = 10_000;

/// `cd ROOT && printf '%s\0' PATH… | rsync ARGS…`, one line per run of the batch's plan.
/// Recursive runs are written without the engine's exclude rules (a temporary file).
pub fn command(options: &RsyncOptions, target: &Target, root: &Path, batch: &Batch) -> Vec<u8> {
    let plan = TransferPlan::for_batch(batch, options.delete);
    let mut out = Vec::new();
    let runs = plan.runs_by_name();
    for run in &runs {
        if run.paths.len() > MAX_PATHS {
            out.extend_from_slice(
                format!(
                    "# {} paths in this run; the first {MAX_PATHS} are listed\n",
                    run.paths.len()
                )
                .as_bytes(),
            );
        }
        out.extend_from_slice(b"cd ");
        quote(root.as_os_str().as_encoded_bytes(), &mut out);
        out.extend_from_slice(b" && printf '%s\\0'");
        for path in run.paths.iter().take(MAX_PATHS) {
            out.push(b' ');
            let mut word = if path.is_root() {
                b".".to_vec()
            } else {
                path.as_bytes().to_vec()
            };
            if run.one_level && !path.is_root() {
                word.push(b'/');
            }
            quote(&word, &mut out);
        }
        out.extend_from_slice(b" | ");
        quote(options.program.as_os_str().as_encoded_bytes(), &mut out);
        let shape = RunShape {
            recursive: run.is_recursive(),
            exclude_file: None,
            ignore_times: run.ignore_times,
            progress: false,
            // Run by hand, there is no watchdog: rsync keeps the timeout.
            rsync_keeps_timeout: true,
            one_level: run.one_level,
            // The budget holds what sersync sends; a script run by hand is the operator's.
            max_delete: None,
            // The script sends moves as plain changes (runs_by_name has no move runs).
            basis: None,
        };
        for arg in arguments(options, target, shape) {
            out.push(b' ');
            quote(arg.as_encoded_bytes(), &mut out);
        }
        out.push(b'\n');
    }
    out
}

/// Appends `word` single-quoted for `/bin/sh`: `'` becomes `'\''`; everything else, newlines
/// and bytes that are not UTF-8 included, is literal inside the quotes.
pub fn quote(word: &[u8], out: &mut Vec<u8>) {
    out.push(b'\'');
    for &b in word {
        if b == b'\'' {
            out.extend_from_slice(b"'\\''");
        } else {
            out.push(b);
        }
    }
    out.push(b'\'');
}

#[cfg(test)]
mod tests {
    use super::*;
    use sersync_plugin_sdk::{Event, EventKind, RelPath, WatchId};
    use std::process::Command;

    #[test]
    fn quoted_words_reach_the_program_unchanged() {
        let words: [&[u8]; 5] = [
            b"plain",
            b"it's",
            b"$(touch PWNED) `x`",
            b"new\nline",
            b"\xff\xfe-bytes",
        ];
        let mut script = b"printf '%s\\0'".to_vec();
        for w in words {
            script.push(b' ');
            quote(w, &mut script);
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("s.sh");
        std::fs::write(&file, &script).unwrap();
        let out = Command::new("/bin/sh")
            .arg(&file)
            .current_dir(dir.path())
            .output()
            .unwrap();
        let printed: Vec<&[u8]> = out
            .stdout
            .split(|&b| b == 0)
            .filter(|w| !w.is_empty())
            .collect();
        assert_eq!(printed, words.to_vec());
        assert!(!dir.path().join("PWNED").exists());
    }

    #[test]
    fn a_batch_becomes_one_command_per_run() {
        let batch = Batch {
            watch: WatchId(0),
            root: "/w".into(),
            events: vec![
                Event::now(
                    EventKind::CloseWrite,
                    RelPath::from("a b"),
                    false,
                    WatchId(0),
                ),
                Event::now(EventKind::Rescan, RelPath::ROOT, true, WatchId(0)),
            ],
        };
        let target = Target {
            host: "h".into(),
            module: "m".into(),
        };
        let text = String::from_utf8(command(
            &RsyncOptions::default(),
            &target,
            Path::new("/w"),
            &batch,
        ))
        .unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines.len(),
            1,
            "the rescan of the root covers the file: {text}"
        );
        assert!(
            lines[0].starts_with("cd '/w' && printf '%s\\0' '.' | 'rsync' '-artz'"),
            "{text}"
        );
        assert!(lines[0].ends_with("'./' 'h::m'"), "{text}");
    }
}
