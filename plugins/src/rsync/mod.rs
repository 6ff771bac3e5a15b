//! The rsync sink: per batch per remote, first the move runs (renames rebuilt on the remote
//! from their old names, `--copy-dest` and `--fuzzy`, see [`plan`]), then at most four runs (one per
//! kind: rescans, changes, present, deletes), paths on stdin or as `./`-prefixed words,
//! never a shell.
//!
//! Each of the four runs is `rsync <commonParams> -R --files-from=- --from0 … ./ TARGET` in the watch
//! root, with its paths written NUL-separated to its standard input:
//! - changed paths and created files are listed as they are (one gone since is skipped,
//!   `--ignore-missing-args`: its delete is an event of its own);
//! - deletes (and the old names of moves) are applied by making the directories that held
//!   them match one level deep (`--dirs --delete`, each listed as `dir/`), not with
//!   `--delete-missing-args`, whose entries receivers with the fix for CVE-2024-12087 reject;
//! - new or moved-in directories and rescans are listed and sent recursively (`-r --delete`),
//!   with the engine's excludes passed as literal `--exclude-from` rules;
//! - a path below something that is no longer a real directory (a symlink, a file, gone) is
//!   replaced by that ancestor just before the run, since `-R` would send the ancestor as a
//!   real directory.
//!
//! See [`plan`] for the mapping from events to runs, [`command`] for the argument list,
//! [`exit`] for how rsync's exit status is classified, [`guard`] for what keeps a run from
//! wiping a remote (the root guard, the empty-root refusal, the delete budget), [`ancestry`] for the check above,
//! [`audit`] for reading a dry run's itemized changes, [`progress`] for reading rsync's
//! progress lines during the start-up full sync, and [`config`] for its part of
//! `confxml.xml`.
//!
//! Nothing here is public outside the crate: core reaches the sink only through the registry
//! (`configure_sersync`, [`crate::SinkSpec`]).

mod ancestry;
mod audit;
mod command;
pub mod config;
mod excludes;
mod exit;
mod guard;
mod limit;
mod plan;
mod progress;
mod replay;
mod sink;
mod ssh;
mod version;
mod warm;
mod watchdog;

pub use command::Target;
pub use excludes::unreadable_paths;
pub use limit::ProcessLimit;
pub use sink::RsyncSpec;

use std::path::PathBuf;

/// How rsync is run, from `<sersync><rsync>` and the parts of `<inotify>` and `<crontab>`
/// that shape its command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RsyncOptions {
    /// The rsync program. Default `rsync` (looked up in `PATH`).
    pub program: PathBuf,
    /// `<commonParams params>` split into words (default `-artuz`).
    pub common_params: Vec<String>,
    /// `<auth start="true" users passwordfile>`.
    pub auth: Option<RsyncAuth>,
    /// `<userDefinedPort start="true" port>`.
    pub port: Option<u16>,
    /// `<timeout start="true" time>`, in seconds.
    pub timeout: Option<u32>,
    /// `<ssh start="true">`: `-e ssh`, targets `host:path`.
    pub ssh: bool,
    /// `<inotify><delete start>`: propagate deletes.
    pub delete: bool,
    /// `<crontabfilter>` globs, excluded from full syncs.
    pub full_sync_excludes: Vec<String>,
    /// `<deleteSafety maxDeletes maxDeletePercent allowEmptyRoot>`: the delete budget and the empty-root
    /// refusal (see [`guard`]).
    pub safety: guard::DeleteSafety,
    /// Over ssh: the directory of the multiplexed connections' sockets (the daemon's state
    /// directory, see [`ssh`]); `None`: a new connection per run.
    pub ssh_control_dir: Option<PathBuf>,
}

impl RsyncOptions {
    /// True when `<commonParams>` already has an option starting with `prefix` (e.g.
    /// `--timeout`): the user's choice wins over sersync's default for it.
    pub fn params_set(&self, prefix: &str) -> bool {
        self.common_params.iter().any(|p| p.starts_with(prefix))
    }

    /// `<commonParams>` as passed to rsync: without `-u`/`--update` (also inside a cluster
    /// such as 2.5.4's default `-artuz`). With it rsync keeps a remote file that is newer
    /// than the source's, so a file renamed over a newer one, or restored with an old
    /// mtime, would never reach the remote, and the remote would never equal the source.
    pub fn passed_params(&self) -> Vec<String> {
        self.common_params
            .iter()
            .filter(|p| *p != "--update" && *p != "-u")
            .map(|p| without_update_flag(p))
            .collect()
    }

    /// True when `<commonParams>` asks for `--update`, which sersync does not pass.
    pub fn drops_update(&self) -> bool {
        self.passed_params() != self.common_params
    }
}

/// rsync's short options that take no argument: a cluster made only of them may lose its
/// `u` safely (in one like `-B1024u` the letters after `B` are its argument).
const FLAG_LETTERS: &str = "aAbcCdDEgHhIJklLmnNoOpPqrRsStuUvWxXz8";

fn without_update_flag(param: &str) -> String {
    match param.strip_prefix('-') {
        Some(letters)
            if !letters.starts_with('-')
                && letters.contains('u')
                && letters.chars().all(|c| FLAG_LETTERS.contains(c)) =>
        {
            format!("-{}", letters.replace('u', ""))
        }
        _ => param.to_string(),
    }
}

impl Default for RsyncOptions {
    fn default() -> Self {
        RsyncOptions {
            program: PathBuf::from("rsync"),
            common_params: vec!["-artuz".to_string()],
            auth: None,
            port: None,
            timeout: None,
            ssh: false,
            delete: true,
            full_sync_excludes: Vec::new(),
            safety: guard::DeleteSafety::default(),
            ssh_control_dir: None,
        }
    }
}

/// `<auth users passwordfile>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RsyncAuth {
    /// The rsync daemon user (`users`).
    pub user: String,
    /// The client password file (`passwordfile`).
    pub password_file: PathBuf,
}

#[cfg(test)]
mod params_tests {
    use super::*;

    #[test]
    fn update_is_never_passed_whatever_its_spelling() {
        let options = |params: &[&str]| RsyncOptions {
            common_params: params.iter().map(|p| p.to_string()).collect(),
            ..RsyncOptions::default()
        };
        assert_eq!(options(&["-artuz"]).passed_params(), ["-artz"]);
        assert_eq!(
            options(&["-a", "-u", "--update", "-z"]).passed_params(),
            ["-a", "-z"]
        );
        // A cluster with an option that takes an argument is left alone.
        assert_eq!(options(&["-B1024u"]).passed_params(), ["-B1024u"]);
        assert!(options(&["-artuz"]).drops_update());
        assert!(!options(&["-artz", "--bwlimit=100"]).drops_update());
    }
}
