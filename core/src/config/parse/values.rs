//! Reading one attribute: switches, required text, bounded numbers. Messages spell element and
//! attribute names the way sersync's documentation writes them, although the tree keeps them
//! folded to lower case.
//!
//! The helpers a built-in sink also needs live in `sersync_plugins::attrs` and are re-exported
//! here; what only core reads (minutes, milliseconds, counts, optional values) stays here.

use sersync_plugin_sdk::{ConfigError, ConfigNode};

pub use sersync_plugins::attrs::{
    child_switch, enabled, number, quoted, required, spelled, switch, Bounds, PORT,
};

/// A period in minutes, at least one, at most ten years.
pub const MINUTES: Bounds = Bounds {
    meaning: "a number of minutes",
    min: 1,
    max: 5_256_000,
};

/// A number of milliseconds, at most a day.
pub const MILLISECONDS: Bounds = Bounds {
    meaning: "a number of milliseconds",
    min: 0,
    max: 86_400_000,
};

/// A number of milliseconds that must not be zero, at most a day.
pub const POSITIVE_MILLISECONDS: Bounds = Bounds {
    min: 1,
    ..MILLISECONDS
};

/// A positive count.
pub const COUNT: Bounds = Bounds {
    meaning: "a count",
    min: 1,
    max: 1_000_000_000,
};

/// Attribute `attr` of an optional element as a number within `bounds`, `default` when the
/// element or the attribute is missing.
pub fn number_or(
    node: Option<&ConfigNode>,
    attr: &str,
    bounds: &Bounds,
    default: u64,
) -> Result<u64, ConfigError> {
    Ok(node
        .map(|n| number(n, attr, bounds))
        .transpose()?
        .flatten()
        .unwrap_or(default))
}

/// A non-empty attribute of an optional element, `None` when the element or the attribute
/// is missing.
pub fn optional<'n>(
    node: Option<&'n ConfigNode>,
    attr: &str,
    example: &str,
) -> Result<Option<&'n str>, ConfigError> {
    match node {
        Some(n) if n.attribute(attr).is_some() => required(n, attr, example).map(Some),
        _ => Ok(None),
    }
}
