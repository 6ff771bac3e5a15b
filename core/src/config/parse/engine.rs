//! `<engine>` (an extension): batching, backlog and retry tuning, and where state is kept.

use std::time::Duration;

use sersync_plugin_sdk::config::attrs::{duration_or, Span, Unit};
use sersync_plugin_sdk::{ConfigError, ConfigNode};

use crate::config::EngineConfig;
use sersync_plugin_sdk::config::attrs::{number_or, optional, switch, Bounds, COUNT};

/// `transfersPerRemote`: rsync processes one remote of one watch may run at once.
const TRANSFERS: Bounds = Bounds {
    meaning: "a number of concurrent transfers",
    min: 1,
    max: 16,
};

const DAY: Duration = Duration::from_secs(86_400);

/// `idleSettleMs` when not given: the settle window of an idle lane's finished changes.
const IDLE_SETTLE: Duration = Duration::from_millis(2);

/// `settleMs`, `idleSettleMs`: a bare number is milliseconds; zero (no settle window) allowed,
/// at most a day.
const SETTLE: Span = Span {
    meaning: "a time",
    unit: Unit::Milliseconds,
    min: Duration::ZERO,
    max: DAY,
};

/// `maxDelayMs`, `busyMaxDelayMs`, `retryInitialMs`, `retryMaxMs`: like [`SETTLE`], but
/// never zero.
const POSITIVE: Span = Span {
    min: Duration::from_millis(1),
    ..SETTLE
};

/// `auditSeconds`: a bare number is seconds; up to a year between audits; 0 turns them off.
const AUDIT: Span = Span {
    meaning: "a period between audits (0: none)",
    unit: Unit::Seconds,
    min: Duration::ZERO,
    max: Duration::from_secs(31_536_000),
};

/// `<engine settleMs idleSettleMs maxDelayMs busyMaxDelayMs maxPending retryInitialMs
/// retryMaxMs transfersPerRemote warmTransfers auditSeconds stateDir>`, each optional.
/// `idleSettleMs` defaults to 2 ms (no more than `settleMs`), `busyMaxDelayMs` to `maxDelayMs`
/// (off: measured, 300 ms took a quarter off the CPU at 1,000 files/s but doubled or tripled p50).
/// `stateDir` defaults to [`crate::state_dir::default_path`] (`$STATE_DIRECTORY`, else
/// `/var/lib/sersync` for root, else the user's own state directory): never a directory
/// others can write to.
pub fn engine(node: Option<&ConfigNode>) -> Result<EngineConfig, ConfigError> {
    let millis = |attr: &str, span: &Span, default: u64| {
        duration_or(node, attr, span, Duration::from_millis(default))
    };
    let state_dir = optional(node, "statedir", "<engine stateDir=\"/var/lib/sersync\"/>")?;
    let settle = millis("settlems", &SETTLE, 10)?;
    let max_delay = millis("maxdelayms", &POSITIVE, 40)?;
    let engine = EngineConfig {
        settle,
        idle_settle: duration_or(node, "idlesettlems", &SETTLE, IDLE_SETTLE.min(settle))?,
        max_delay,
        busy_max_delay: duration_or(node, "busymaxdelayms", &POSITIVE, max_delay)?,
        max_pending: number_or(node, "maxpending", &COUNT, 100_000)? as usize,
        audit: Some(duration_or(node, "auditseconds", &AUDIT, Duration::ZERO)?)
            .filter(|d| !d.is_zero()),
        retry_initial: millis("retryinitialms", &POSITIVE, 500)?,
        retry_max: millis("retrymaxms", &POSITIVE, 60_000)?,
        transfers_per_remote: number_or(node, "transfersperremote", &TRANSFERS, 2)? as usize,
        warm_transfers: switch(node, "warmtransfers", true),
        state_dir: state_dir.map_or_else(crate::state_dir::default_path, Into::into),
    };
    ordered(
        node,
        ("settleMs", engine.settle),
        ("maxDelayMs", engine.max_delay),
    )?;
    ordered(
        node,
        ("idleSettleMs", engine.idle_settle),
        ("settleMs", engine.settle),
    )?;
    ordered(
        node,
        ("maxDelayMs", engine.max_delay),
        ("busyMaxDelayMs", engine.busy_max_delay),
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
