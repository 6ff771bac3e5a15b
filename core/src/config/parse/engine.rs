//! `<engine>` (an extension): batching, backlog and retry tuning, and where state is kept.

use std::time::Duration;

use sersync_plugin_sdk::{ConfigError, ConfigNode};

use super::values::{number_or, optional, Bounds, COUNT, MILLISECONDS, POSITIVE_MILLISECONDS};

/// `transfersPerRemote`: rsync processes one remote of one watch may run at once.
const TRANSFERS: Bounds = Bounds {
    meaning: "a number of concurrent transfers",
    min: 1,
    max: 16,
};
use crate::config::EngineConfig;

/// `auditSeconds`: up to a year between audits; 0 turns them off.
const AUDIT_SECONDS: Bounds = Bounds {
    meaning: "a number of seconds between audits (0: none)",
    min: 0,
    max: 31_536_000,
};

/// `<engine settleMs maxDelayMs maxPending retryInitialMs retryMaxMs transfersPerRemote
/// auditSeconds stateDir>`, each optional.
/// `stateDir` defaults to [`crate::state_dir::default_path`] (`$STATE_DIRECTORY`, else
/// `/var/lib/sersync` for root, else the user's own state directory): never a directory
/// others can write to.
pub fn engine(node: Option<&ConfigNode>) -> Result<EngineConfig, ConfigError> {
    let millis = |attr: &str, bounds: &Bounds, default: u64| {
        number_or(node, attr, bounds, default).map(Duration::from_millis)
    };
    let state_dir = optional(node, "statedir", "<engine stateDir=\"/var/lib/sersync\"/>")?;
    let engine = EngineConfig {
        settle: millis("settlems", &MILLISECONDS, 10)?,
        max_delay: millis("maxdelayms", &POSITIVE_MILLISECONDS, 40)?,
        max_pending: number_or(node, "maxpending", &COUNT, 100_000)? as usize,
        audit: Some(number_or(node, "auditseconds", &AUDIT_SECONDS, 0)?)
            .filter(|&s| s > 0)
            .map(Duration::from_secs),
        retry_initial: millis("retryinitialms", &POSITIVE_MILLISECONDS, 500)?,
        retry_max: millis("retrymaxms", &POSITIVE_MILLISECONDS, 60_000)?,
        transfers_per_remote: number_or(node, "transfersperremote", &TRANSFERS, 2)? as usize,
        state_dir: state_dir.map_or_else(crate::state_dir::default_path, Into::into),
    };
    ordered(
        node,
        ("settleMs", engine.settle),
        ("maxDelayMs", engine.max_delay),
    )?;
    ordered(
        node,
        ("retryInitialMs", engine.retry_initial),
        ("retryMaxMs", engine.retry_max),
    )?;
    Ok(engine)
}

/// An error unless the lower bound `low` is at most the upper bound `high`.
fn ordered(
    node: Option<&ConfigNode>,
    (low_name, low): (&str, Duration),
    (high_name, high): (&str, Duration),
) -> Result<(), ConfigError> {
    match node {
        Some(node) if low > high => {
            let position = node
                .attribute(&low_name.to_ascii_lowercase())
                .map_or(node.position, |a| a.position);
            Err(ConfigError::at(
                position,
                format!(
                    "<engine>: {low_name} ({} ms) is more than {high_name} ({} ms)",
                    low.as_millis(),
                    high.as_millis()
                ),
            )
            .with_hint(format!("raise {high_name} or lower {low_name}")))
        }
        _ => Ok(()),
    }
}
