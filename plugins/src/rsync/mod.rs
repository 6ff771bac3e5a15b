//! The rsync sink: one rsync process per batch per remote.

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
}

/// `<auth users passwordfile>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RsyncAuth {
    /// The rsync daemon user (`users`).
    pub user: String,
    /// The client password file (`passwordfile`).
    pub password_file: PathBuf,
}
