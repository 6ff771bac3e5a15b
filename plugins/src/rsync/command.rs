//! The rsync argument list for one run. No shell is involved: these are `execve` arguments.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::Path;

use sersync_plugin_sdk::RelPath;

use super::RsyncOptions;

/// Where a lane sends: one `<remote ip name>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Host name or address.
    pub host: String,
    /// rsync module (daemon mode) or remote path (ssh mode).
    pub module: String,
}

impl Target {
    /// The destination argument: `[user@]host::module`, or `[user@]host:path` over ssh.
    /// An IPv6 address is bracketed.
    pub fn destination(&self, options: &RsyncOptions) -> String {
        let user = options
            .auth
            .as_ref()
            .map(|a| format!("{}@", a.user))
            .unwrap_or_default();
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let separator = if options.ssh { ":" } else { "::" };
        format!("{user}{host}{separator}{}", self.module)
    }

    /// The destination argument for the directory `dir` of the module (or remote path), with
    /// a trailing `/`: rsync makes that directory match the source's contents.
    fn destination_of(&self, options: &RsyncOptions, dir: &RelPath) -> OsString {
        let mut bytes = self.destination(options).into_bytes();
        if bytes.last() != Some(&b'/') {
            bytes.push(b'/');
        }
        bytes.extend_from_slice(dir.as_bytes());
        bytes.push(b'/');
        OsString::from_vec(bytes)
    }

    /// The `--copy-dest` directory naming `from` on the remote, when one can be written. The
    /// receiver resolves a relative one from the transfer's destination directory, but rsync
    /// 3.2.7 reaches files below it by another path in its generator and receiver, so that
    /// relative ones fail verification (seen locally: "failed verification -- update
    /// discarded"); so the directory is absolute: for a daemon, `/` is the module's root
    /// (chrooted or not: the daemon resolves absolute basis directories inside the module);
    /// over ssh it is the remote path's, only when that path is absolute.
    pub fn basis_directory(&self, options: &RsyncOptions, from: &RelPath) -> Option<OsString> {
        let mut bytes = if options.ssh {
            if !self.module.starts_with('/') {
                return None;
            }
            self.module.trim_end_matches('/').as_bytes().to_vec()
        } else {
            // `module/sub` sends into a directory of the module: `/` is the module's root.
            match self.module.split_once('/') {
                Some((_, sub)) if !sub.trim_matches('/').is_empty() => {
                    format!("/{}", sub.trim_matches('/')).into_bytes()
                }
                _ => Vec::new(),
            }
        };
        bytes.push(b'/');
        bytes.extend_from_slice(from.as_bytes());
        Some(OsString::from_vec(bytes))
    }
}

/// How a move run finds what the remote already has (see [`super::plan::Basis`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BasisShape<'a> {
    /// `--fuzzy`, the file list on stdin as for other runs.
    Fuzzy,
    /// The directory `dir` sent whole, without `-R`, each file built from the same file below
    /// `basis` on the remote (`--copy-dest`, an argument of [`Target::basis_directory`]).
    Tree {
        /// The directory sent.
        dir: &'a RelPath,
        /// The `--copy-dest` directory.
        basis: &'a std::ffi::OsStr,
    },
    /// Files listed on stdin relative to `dir`, sent from it into its place on the remote,
    /// each built from a file of the same size and mtime in one of `bases` (`--fuzzy
    /// --fuzzy --copy-dest=…`, arguments of [`Target::basis_directory`]).
    Into {
        /// The directory the files are sent from and into.
        dir: &'a RelPath,
        /// The `--copy-dest` directories.
        bases: &'a [OsString],
    },
}

fn copy_dest(basis: &std::ffi::OsStr) -> OsString {
    let mut arg = OsString::from("--copy-dest=");
    arg.push(basis);
    arg
}

/// Seconds rsync waits for a daemon to accept the connection when the config sets no timeout.
const DEFAULT_CONNECT_TIMEOUT_SECS: u32 = 10;
/// I/O inactivity timeout when the config sets none, so that a hung peer ends the run.
const DEFAULT_IO_TIMEOUT_SECS: u32 = 120;

/// What varies between runs of one lane.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunShape<'a> {
    /// Recurse into listed directories (and delete extraneous files inside them).
    pub recursive: bool,
    /// A file of NUL-separated exclude rules, for recursive runs.
    pub exclude_file: Option<&'a Path>,
    /// Skip rsync's quick check (`--ignore-times`): the listed files are known to have
    /// changed, even when size and whole-second mtime match.
    pub ignore_times: bool,
    /// rsync enforces the I/O inactivity timeout itself (`--timeout`). Off when sersync's
    /// watchdog keeps it ([`watchdog::limit`](super::watchdog::limit)), which spares every
    /// run a delayed-ACK stall.
    pub rsync_keeps_timeout: bool,
    /// Report progress on standard output (`--info=progress2`), and nothing else there.
    pub progress: bool,
    /// The listed directories are made to match one level deep (`--dirs --delete`).
    pub one_level: bool,
    /// rsync's `--max-delete=N` on a run that deletes: `0` counts (nothing is deleted), else
    /// the delete budget (exit 25, or the receiver's warning, when it stopped deletions).
    pub max_delete: Option<u64>,
    /// A move run's basis on the remote.
    pub basis: Option<BasisShape<'a>>,
}

/// Seconds without I/O after which a run is abandoned: `<timeout time>`, or 120.
pub fn io_timeout_secs(options: &RsyncOptions) -> u32 {
    options.timeout.unwrap_or(DEFAULT_IO_TIMEOUT_SECS)
}

/// The arguments (after the program name) for one run that reads its file list from stdin.
pub fn arguments(options: &RsyncOptions, target: &Target, shape: RunShape<'_>) -> Vec<OsString> {
    let mut args: Vec<OsString> = options.passed_params().iter().map(OsString::from).collect();
    let user_sets = |prefix: &str| options.params_set(prefix);
    // The directory the run is sent from and into, when not the root.
    let rooted = match shape.basis {
        Some(BasisShape::Tree { dir, .. } | BasisShape::Into { dir, .. }) => Some(dir),
        _ => None,
    };
    if !matches!(shape.basis, Some(BasisShape::Tree { .. })) {
        args.extend(
            ["-R", "--files-from=-", "--from0"]
                .iter()
                .map(OsString::from),
        );
    }
    // The user's params decide how files are copied; recursion is decided per batch.
    args.push(if shape.recursive { "-r" } else { "--no-r" }.into());
    if let Some(basis) = shape.basis {
        // A basis is only of use to the delta algorithm (a user's -W turns it off).
        args.push("--no-whole-file".into());
        match basis {
            BasisShape::Fuzzy => args.push("--fuzzy".into()),
            BasisShape::Tree { basis, .. } => args.push(copy_dest(basis)),
            BasisShape::Into { bases, .. } => {
                // Twice: the fuzzy scan also looks in the basis directories.
                args.extend(["--fuzzy", "--fuzzy"].iter().map(OsString::from));
                args.extend(bases.iter().map(|basis| copy_dest(basis)));
            }
        }
        if options.ssh {
            // The paths are operands here: the remote shell must not split them.
            args.push("--protect-args".into());
        }
    }
    if shape.one_level {
        // Delete only: nothing is sent or updated. What this run sees of a directory's other
        // entries may be newer than what the lane has been told; sending it would leave the
        // remote with things the lane cannot know to take back.
        args.extend(
            ["--dirs", "--existing", "--ignore-existing"]
                .iter()
                .map(OsString::from),
        );
    }
    if shape.ignore_times {
        args.push("--ignore-times".into());
    }
    if shape.progress {
        // Only the whole run's progress on stdout, whatever the user's -v/-h/--progress: no
        // file name, and plain numbers (-h's suffixes would be 1000- or 1024-based).
        args.extend(
            [
                "--info=none,progress2",
                "--debug=none",
                "--no-human-readable",
            ]
            .iter()
            .map(OsString::from),
        );
    }
    // A listed path gone since is skipped: its delete is an event of its own. (Not
    // --delete-missing-args: see plan.rs.)
    args.push("--ignore-missing-args".into());
    if options.delete {
        args.push("--force".into());
        if shape.recursive || shape.one_level {
            args.push("--delete".into());
            if let Some(max) = shape.max_delete {
                args.push(format!("--max-delete={max}").into());
            }
        }
    }
    if let Some(file) = shape.exclude_file {
        let mut arg = OsString::from("--exclude-from=");
        arg.push(file);
        args.push(arg);
    }
    if shape.recursive {
        for glob in &options.full_sync_excludes {
            args.push(format!("--exclude={glob}").into());
        }
    }
    if let Some(port) = options.port {
        args.push(format!("--port={port}").into());
    }
    if shape.rsync_keeps_timeout && !user_sets("--timeout") {
        args.push(format!("--timeout={}", io_timeout_secs(options)).into());
    }
    if options.ssh {
        if !user_sets("-e") && !user_sets("--rsh") {
            args.push("-e".into());
            args.push(super::ssh::remote_shell(options, &target.host));
        }
    } else {
        if !user_sets("--contimeout") {
            let connect = options.timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT_SECS);
            args.push(format!("--contimeout={connect}").into());
        }
        // Without TCP_NODELAY every round trip to a daemon waits ~40 ms for a delayed ACK.
        if !user_sets("--sockopts") {
            args.push("--sockopts=TCP_NODELAY".into());
        }
    }
    if let Some(auth) = &options.auth {
        let mut arg = OsString::from("--password-file=");
        arg.push(&auth.password_file);
        args.push(arg);
    }
    match rooted.filter(|dir| !dir.is_root()) {
        Some(dir) => {
            // `./` first: a name starting with `-` is no option.
            let mut source = b"./".to_vec();
            source.extend_from_slice(dir.as_bytes());
            source.push(b'/');
            args.push(OsString::from_vec(source));
            args.push(target.destination_of(options, dir));
        }
        None => {
            args.push("./".into());
            args.push(target.destination(options).into());
        }
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rsync::RsyncAuth;

    fn target() -> Target {
        Target {
            host: "127.0.0.1".into(),
            module: "www".into(),
        }
    }

    fn strings(args: Vec<OsString>) -> Vec<String> {
        args.into_iter().map(|a| a.into_string().unwrap()).collect()
    }

    #[test]
    fn daemon_push_with_auth_port_and_timeout() {
        let options = RsyncOptions {
            auth: Some(RsyncAuth {
                user: "backup".into(),
                password_file: "/etc/rsync.pas".into(),
            }),
            port: Some(874),
            timeout: Some(100),
            ..RsyncOptions::default()
        };
        let shape = RunShape {
            rsync_keeps_timeout: true,
            ..RunShape::default()
        };
        let args = strings(arguments(&options, &target(), shape));
        assert_eq!(
            args,
            [
                "-artz",
                "-R",
                "--files-from=-",
                "--from0",
                "--no-r",
                "--ignore-missing-args",
                "--force",
                "--port=874",
                "--timeout=100",
                "--contimeout=100",
                "--sockopts=TCP_NODELAY",
                "--password-file=/etc/rsync.pas",
                "./",
                "backup@127.0.0.1::www",
            ]
        );
    }

    #[test]
    fn recursive_run_deletes_inside_and_excludes() {
        let options = RsyncOptions {
            full_sync_excludes: vec!["*.php".into()],
            ..RsyncOptions::default()
        };
        let args = strings(arguments(
            &options,
            &target(),
            RunShape {
                recursive: true,
                exclude_file: Some(Path::new("/tmp/x")),
                ..RunShape::default()
            },
        ));
        for expected in ["-r", "--delete", "--exclude-from=/tmp/x", "--exclude=*.php"] {
            assert!(
                args.iter().any(|a| a == expected),
                "{expected} missing from {args:?}"
            );
        }
    }

    #[test]
    fn ssh_targets_and_no_deletes_when_delete_is_off() {
        let options = RsyncOptions {
            ssh: true,
            delete: false,
            ..RsyncOptions::default()
        };
        let target = Target {
            host: "::1".into(),
            module: "/srv/www".into(),
        };
        let args = strings(arguments(&options, &target, RunShape::default()));
        assert!(args.contains(&"--ignore-missing-args".to_string()));
        assert!(!args.iter().any(|a| a.starts_with("--delete")));
        assert!(!args.iter().any(|a| a.starts_with("--sockopts")));
        assert_eq!(args[args.len() - 3..], ["ssh", "./", "[::1]:/srv/www"]);
    }

    #[test]
    fn progress_runs_print_only_the_whole_runs_progress() {
        let options = RsyncOptions {
            common_params: vec!["-avh".into(), "--progress".into()],
            ..RsyncOptions::default()
        };
        let shape = RunShape {
            recursive: true,
            progress: true,
            ..RunShape::default()
        };
        let args = strings(arguments(&options, &target(), shape));
        let at = |arg: &str| args.iter().position(|a| a == arg).unwrap();
        assert!(at("--info=none,progress2") > at("--progress"));
        assert!(at("--no-human-readable") > at("-avh"));
        assert!(args.contains(&"--debug=none".to_string()));
        let quiet = strings(arguments(&options, &target(), RunShape::default()));
        assert!(!quiet.iter().any(|a| a.starts_with("--info")));
    }

    #[test]
    fn the_timeout_is_left_to_the_watchdog_unless_rsync_must_keep_it() {
        let options = RsyncOptions::default();
        let watched = strings(arguments(&options, &target(), RunShape::default()));
        assert!(!watched.iter().any(|a| a.starts_with("--timeout")));
        let kept = strings(arguments(
            &options,
            &target(),
            RunShape {
                rsync_keeps_timeout: true,
                ..RunShape::default()
            },
        ));
        assert!(kept.contains(&"--timeout=120".to_string()));
    }

    #[test]
    fn user_socket_options_win() {
        let options = RsyncOptions {
            common_params: vec!["-a".into(), "--sockopts=SO_SNDBUF=65536".into()],
            ..RsyncOptions::default()
        };
        let args = strings(arguments(&options, &target(), RunShape::default()));
        assert_eq!(
            args.iter().filter(|a| a.starts_with("--sockopts")).count(),
            1
        );
    }

    fn tree_args(
        options: &RsyncOptions,
        target: &Target,
        dir: &[u8],
        from: &[u8],
    ) -> Vec<OsString> {
        let dir = RelPath::new(dir);
        let basis = target
            .basis_directory(options, &RelPath::new(from))
            .expect("a basis directory");
        arguments(
            options,
            target,
            RunShape {
                recursive: true,
                ignore_times: true,
                basis: Some(BasisShape::Tree {
                    dir: &dir,
                    basis: &basis,
                }),
                ..RunShape::default()
            },
        )
    }

    #[test]
    fn a_tree_move_is_sent_without_r_into_its_place_built_from_the_old_name() {
        let args = strings(tree_args(
            &RsyncOptions::default(),
            &target(),
            b"p/release-2",
            b"release",
        ));
        for expected in [
            "-r",
            "--ignore-times",
            "--no-whole-file",
            "--copy-dest=/release",
            "--delete",
        ] {
            assert!(args.iter().any(|a| a == expected), "{expected}: {args:?}");
        }
        assert!(!args
            .iter()
            .any(|a| a == "-R" || a.starts_with("--files-from") || a == "--no-r"));
        assert_eq!(
            args[args.len() - 2..],
            ["./p/release-2/", "127.0.0.1::www/p/release-2/"]
        );
    }

    #[test]
    fn into_a_directory_of_a_module_the_basis_is_below_it() {
        let options = RsyncOptions::default();
        let target = Target {
            host: "h".into(),
            module: "www/site/".into(),
        };
        let basis = target.basis_directory(&options, &RelPath::from("old"));
        assert_eq!(basis, Some(OsString::from("/site/old")));
        let args = strings(tree_args(&options, &target, b"new", b"old"));
        assert_eq!(args[args.len() - 1], "h::www/site/new/");
    }

    #[test]
    fn a_tree_moves_hostile_names_stay_single_words_and_no_options() {
        let options = RsyncOptions::default();
        let args = tree_args(&options, &target(), b"-n\nx y/\xffz", b"-o\n\xfe");
        let bytes: Vec<&[u8]> = args.iter().map(|a| a.as_encoded_bytes()).collect();
        assert!(bytes.contains(&&b"--copy-dest=/-o\n\xfe"[..]));
        assert_eq!(bytes[bytes.len() - 2], b"./-n\nx y/\xffz/");
        assert_eq!(bytes[bytes.len() - 1], b"127.0.0.1::www/-n\nx y/\xffz/");
    }

    #[test]
    fn over_ssh_the_basis_is_absolute_on_the_remote_and_arguments_are_protected() {
        let options = RsyncOptions {
            ssh: true,
            ..RsyncOptions::default()
        };
        let absolute = Target {
            host: "h".into(),
            module: "/srv/www/".into(),
        };
        let args = strings(tree_args(&options, &absolute, b"new", b"a/old"));
        assert!(args.contains(&"--copy-dest=/srv/www/a/old".to_string()));
        assert!(args.contains(&"--protect-args".to_string()));
        assert_eq!(args[args.len() - 1], "h:/srv/www/new/");
        let relative = Target {
            host: "h".into(),
            module: "www".into(),
        };
        assert_eq!(
            relative.basis_directory(&options, &RelPath::from("a")),
            None
        );
    }

    #[test]
    fn files_moved_into_a_directory_are_sent_from_it_built_from_their_old_directories() {
        let options = RsyncOptions::default();
        let bases: Vec<OsString> = ["a", "-c\nd"]
            .iter()
            .map(|d| {
                target()
                    .basis_directory(&options, &RelPath::from(*d))
                    .unwrap()
            })
            .collect();
        let into = |dir: &RelPath| {
            strings(arguments(
                &options,
                &target(),
                RunShape {
                    ignore_times: true,
                    basis: Some(BasisShape::Into { dir, bases: &bases }),
                    ..RunShape::default()
                },
            ))
        };
        let args = into(&RelPath::from("-b"));
        for expected in [
            "-R",
            "--files-from=-",
            "--no-r",
            "--no-whole-file",
            "--copy-dest=/a",
            "--copy-dest=/-c\nd",
        ] {
            assert!(args.iter().any(|a| a == expected), "{expected}: {args:?}");
        }
        assert_eq!(args.iter().filter(|a| *a == "--fuzzy").count(), 2);
        assert_eq!(args[args.len() - 2..], ["./-b/", "127.0.0.1::www/-b/"]);
        let args = into(&RelPath::ROOT);
        assert_eq!(args[args.len() - 2..], ["./", "127.0.0.1::www"]);
    }

    #[test]
    fn a_fuzzy_run_reads_its_list_as_other_runs_do() {
        let args = strings(arguments(
            &RsyncOptions::default(),
            &target(),
            RunShape {
                ignore_times: true,
                basis: Some(BasisShape::Fuzzy),
                ..RunShape::default()
            },
        ));
        for expected in [
            "-R",
            "--files-from=-",
            "--no-r",
            "--fuzzy",
            "--no-whole-file",
        ] {
            assert!(args.iter().any(|a| a == expected), "{expected}: {args:?}");
        }
        assert_eq!(args[args.len() - 2..], ["./", "127.0.0.1::www"]);
    }
}
