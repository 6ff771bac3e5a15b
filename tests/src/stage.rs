//! The setting most end-to-end tests start from: a temporary directory with a source tree
//! `src/` and a real rsync daemon serving the test's modules.

use std::fs;
use std::path::{Path, PathBuf};

use tempfile::TempDir;

use crate::{ConfigBuilder, RsyncDaemon};

/// A temporary directory, its source tree and an rsync daemon.
pub struct Stage {
    /// Holds the source tree, the configuration, logs and state.
    pub dir: TempDir,
    /// The watched tree, `dir/src`.
    pub src: PathBuf,
    /// The slave.
    pub daemon: RsyncDaemon,
}

impl Stage {
    /// An empty source tree and a daemon serving `modules` on 127.0.0.1.
    pub fn new(modules: &[&str]) -> Stage {
        let dir = tempfile::tempdir().expect("temp dir");
        let src = dir.path().join("src");
        fs::create_dir(&src).expect("source tree");
        Stage {
            dir,
            src,
            daemon: RsyncDaemon::start(modules),
        }
    }

    /// The directory the configuration, logs and state go to.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// What the slave holds in `module`.
    pub fn dst(&self, module: &str) -> PathBuf {
        self.daemon.module_path(module)
    }

    /// A configuration pushing `src` to `module`, adjusted by `configure`, written into the
    /// stage's directory.
    pub fn config(
        &self,
        module: &str,
        configure: impl FnOnce(ConfigBuilder) -> ConfigBuilder,
    ) -> PathBuf {
        configure(ConfigBuilder::new(&self.src).remote(&self.daemon, module)).write(self.dir.path())
    }
}
