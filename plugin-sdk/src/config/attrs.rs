//! Reading one attribute, the same way for the engine's own elements and for every sink's:
//! switches, required text, bounded whole numbers, durations. Every message quotes the element
//! and attribute as the user wrote them, names in their documented spelling (the tree keeps
//! them folded to lower case), and says at the attribute's line and column what is wrong and,
//! in the hint, what would be right.
//!
//! The forms, documented once in `docs/config.md` ("Reading rules"):
//!
//! - a **switch** is on only when its value is exactly `true` ([`switch`], [`enabled`]);
//! - a **number** is a whole decimal number within [`Bounds`], spaces around it allowed
//!   ([`number`]);
//! - a **duration** is a whole number followed by a unit, `ms`, `s`, `m` or `h` (`500ms`, `5s`,
//!   `2m`, `1h`), or a bare whole number, which is in the attribute's own [`Unit`] (milliseconds
//!   for `settleMs`, seconds for `auditSeconds` and the sinks' `timeout`, ...), within
//!   [`Span`] ([`duration`], [`parse_duration`]).

use std::time::Duration;

use super::{Attribute, ConfigError, ConfigNode};

/// The documented spelling of a folded element or attribute name.
pub fn spelled(name: &str) -> &str {
    const MIXED_CASE: &[&str] = &[
        "fileSystem",
        "createFolder",
        "createFile",
        "closeWrite",
        "moveFrom",
        "moveTo",
        "commonParams",
        "userDefinedPort",
        "failLog",
        "timeToExecute",
        "settleMs",
        "maxDelayMs",
        "maxPending",
        "retryInitialMs",
        "retryMaxMs",
        "stateDir",
        "transfersPerRemote",
        "auditSeconds",
        // The built-in sinks' own.
        "ignoreError",
        "passEnv",
        "maxArgs",
        "maxEvents",
        "maxUrls",
    ];
    MIXED_CASE
        .iter()
        .find(|known| known.eq_ignore_ascii_case(name))
        .copied()
        .unwrap_or(name)
}

/// `<element attr="value">`, as the user wrote it (names in documented spelling).
pub fn quoted(node: &ConfigNode, attr: &Attribute) -> String {
    format!(
        "<{} {}=\"{}\">",
        spelled(&node.name),
        spelled(&attr.name),
        attr.value
    )
}

/// An error located at attribute `attr` of `node` (at the element when the attribute is absent).
pub fn attr_error(node: &ConfigNode, attr: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::at(
        node.attribute(attr).map_or(node.position, |a| a.position),
        message,
    )
}

/// A switch: on only when the attribute is exactly `true`; `default` when the element or
/// the attribute is missing.
pub fn switch(node: Option<&ConfigNode>, attr: &str, default: bool) -> bool {
    node.and_then(|n| n.attr(attr))
        .map_or(default, |value| value == "true")
}

/// `<parent><child start="…">` as a switch (see [`switch`]).
pub fn child_switch(parent: Option<&ConfigNode>, child: &str, default: bool) -> bool {
    switch(parent.and_then(|p| p.child(child)), "start", default)
}

/// The element `<parent><child start="true">`, when it is there and switched on.
pub fn enabled<'n>(parent: Option<&'n ConfigNode>, child: &str) -> Option<&'n ConfigNode> {
    parent
        .and_then(|p| p.child(child))
        .filter(|c| c.flag("start"))
}

/// `<element> needs the attribute attr="…"`, located at the element.
pub fn missing(node: &ConfigNode, attr: &str) -> ConfigError {
    node.error(format!(
        "<{}> needs the attribute {}=\"…\"",
        spelled(&node.name),
        spelled(attr)
    ))
}

/// A non-empty attribute the element cannot do without. `example` shows a correct element.
pub fn required<'n>(
    node: &'n ConfigNode,
    attr: &str,
    example: &str,
) -> Result<&'n str, ConfigError> {
    match node.attribute(attr) {
        None => Err(missing(node, attr).with_hint(format!("for example {example}"))),
        Some(a) if a.value.trim().is_empty() => Err(ConfigError::at(
            a.position,
            format!("{}: {} is empty", quoted(node, a), spelled(attr)),
        )
        .with_hint(format!("for example {example}"))),
        Some(a) => Ok(&a.value),
    }
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

/// What a number attribute means and which values it may take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    /// E.g. "a TCP port".
    pub meaning: &'static str,
    /// Smallest allowed value.
    pub min: u64,
    /// Largest allowed value.
    pub max: u64,
}

/// A TCP port.
pub const PORT: Bounds = Bounds {
    meaning: "a TCP port",
    min: 1,
    max: 65_535,
};

/// An rsync `--timeout` in seconds (0: none).
pub const SECONDS: Bounds = Bounds {
    meaning: "a number of seconds",
    min: 0,
    max: u32::MAX as u64,
};

/// A positive count.
pub const COUNT: Bounds = Bounds {
    meaning: "a count",
    min: 1,
    max: 1_000_000_000,
};

/// Attribute `attr` as a whole number within `bounds`; `Ok(None)` when absent.
pub fn number(node: &ConfigNode, attr: &str, bounds: &Bounds) -> Result<Option<u64>, ConfigError> {
    let Some(a) = node.attribute(attr) else {
        return Ok(None);
    };
    let hint = format!(
        "{} is {}: a whole number from {} to {}",
        spelled(attr),
        bounds.meaning,
        bounds.min,
        bounds.max
    );
    let problem = match a.value.trim().parse::<i128>() {
        Err(_) => format!("\"{}\" is not a whole number", a.value),
        Ok(n) if n < i128::from(bounds.min) || n > i128::from(bounds.max) => {
            format!("{n} is out of range")
        }
        Ok(n) => return Ok(Some(n as u64)),
    };
    Err(ConfigError::at(a.position, format!("{}: {problem}", quoted(node, a))).with_hint(hint))
}

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

/// A number the element cannot do without (see [`required`] and [`number`]).
pub fn required_number(
    node: &ConfigNode,
    attr: &str,
    bounds: &Bounds,
    example: &str,
) -> Result<u64, ConfigError> {
    required(node, attr, example)?;
    Ok(number(node, attr, bounds)?.expect("required() found it"))
}

/// Attribute `attr` as a count within [`COUNT`] (at least 1); `Ok(None)` when absent.
pub fn count(node: &ConfigNode, attr: &str) -> Result<Option<usize>, ConfigError> {
    Ok(number(node, attr, &COUNT)?.map(|n| n as usize))
}

/// The unit of a duration written as a bare number: the attribute's own (its name says it,
/// `settleMs`, `auditSeconds`, `timeToExecute` in minutes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// `ms`.
    Milliseconds,
    /// `s`.
    Seconds,
    /// `m`.
    Minutes,
}

impl Unit {
    fn millis(self) -> u128 {
        match self {
            Unit::Milliseconds => 1,
            Unit::Seconds => 1_000,
            Unit::Minutes => 60_000,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Unit::Milliseconds => "milliseconds",
            Unit::Seconds => "seconds",
            Unit::Minutes => "minutes",
        }
    }
}

/// The suffixes a duration may carry, with their length in milliseconds (`ms` before `m` and
/// `s`, which it ends with).
const SUFFIXES: &[(&str, u128)] = &[("ms", 1), ("s", 1_000), ("m", 60_000), ("h", 3_600_000)];

/// Why a text is not an acceptable duration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DurationError {
    /// Not a whole number with an optional unit.
    NotADuration,
    /// Well formed, but longer than a [`Duration`] can hold.
    TooLong,
}

/// `text` as a duration: a whole decimal number, then optionally (spaces allowed between, and
/// around the whole) one of the units `ms`, `s`, `m`, `h`; a bare number is in `unit`. No sign,
/// no fraction, no combinations such as `1m30s`.
pub fn parse_duration(text: &str, unit: Unit) -> Result<Duration, DurationError> {
    let text = text.trim();
    let (number, per) = SUFFIXES
        .iter()
        .find_map(|&(suffix, per)| text.strip_suffix(suffix).map(|n| (n.trim_end(), per)))
        .unwrap_or((text, unit.millis()));
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return Err(DurationError::NotADuration);
    }
    let n: u128 = number.parse().map_err(|_| DurationError::TooLong)?;
    let millis = n.checked_mul(per).ok_or(DurationError::TooLong)?;
    u64::try_from(millis)
        .map(Duration::from_millis)
        .map_err(|_| DurationError::TooLong)
}

/// What a duration attribute means, the unit of a bare number, and the durations it may take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    /// E.g. "a time limit".
    pub meaning: &'static str,
    /// The unit of a bare number.
    pub unit: Unit,
    /// Shortest allowed.
    pub min: Duration,
    /// Longest allowed.
    pub max: Duration,
}

const DAY: Duration = Duration::from_secs(86_400);

/// A sink's `timeout` (bare number: seconds): at least 1 ms, at most a day.
pub const TIMEOUT: Span = Span {
    meaning: "a time limit",
    unit: Unit::Seconds,
    min: Duration::from_millis(1),
    max: DAY,
};

/// A time limit whose bare number is milliseconds (`timeout_ms`): at least 1 ms, at most a day.
pub const TIMEOUT_MS: Span = Span {
    unit: Unit::Milliseconds,
    ..TIMEOUT
};

/// `1h`, `90s`, `250ms`, `0`: the largest unit that writes `d` exactly.
pub fn show_duration(d: Duration) -> String {
    let ms = d.as_millis();
    match SUFFIXES
        .iter()
        .rev()
        .find(|&&(_, per)| ms > 0 && ms % per == 0)
    {
        Some(&(suffix, per)) => format!("{}{suffix}", ms / per),
        None => "0".to_string(),
    }
}

/// Attribute `attr` as a duration within `span` (see [`parse_duration`]); `Ok(None)` when
/// absent.
pub fn duration(
    node: &ConfigNode,
    attr: &str,
    span: &Span,
) -> Result<Option<Duration>, ConfigError> {
    let Some(a) = node.attribute(attr) else {
        return Ok(None);
    };
    let hint = format!(
        "{} is {}: a whole number of {}, or one with a unit (500ms, 5s, 2m, 1h), from {} to {}",
        spelled(attr),
        span.meaning,
        span.unit.name(),
        show_duration(span.min),
        show_duration(span.max)
    );
    let problem = match parse_duration(&a.value, span.unit) {
        Err(DurationError::NotADuration) => format!("\"{}\" is not a duration", a.value),
        Ok(d) if (span.min..=span.max).contains(&d) => return Ok(Some(d)),
        Ok(_) | Err(DurationError::TooLong) => format!("{} is out of range", a.value.trim()),
    };
    Err(ConfigError::at(a.position, format!("{}: {problem}", quoted(node, a))).with_hint(hint))
}

/// Attribute `attr` of an optional element as a duration within `span`, `default` when the
/// element or the attribute is missing.
pub fn duration_or(
    node: Option<&ConfigNode>,
    attr: &str,
    span: &Span,
    default: Duration,
) -> Result<Duration, ConfigError> {
    Ok(node
        .map(|n| duration(n, attr, span))
        .transpose()?
        .flatten()
        .unwrap_or(default))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Position;

    fn node(attr: &str, value: &str) -> ConfigNode {
        ConfigNode {
            name: "userdefinedport".into(),
            attributes: vec![Attribute {
                name: attr.into(),
                value: value.into(),
                position: Position { line: 4, column: 7 },
            }],
            ..ConfigNode::default()
        }
    }

    #[test]
    fn switches_are_on_only_for_exactly_true() {
        assert!(switch(Some(&node("start", "true")), "start", false));
        assert!(!switch(Some(&node("start", "True")), "start", true));
        assert!(!switch(Some(&node("start", "yes")), "start", true));
        assert!(switch(Some(&node("other", "false")), "start", true));
        assert!(!switch(None, "start", false));
    }

    #[test]
    fn numbers_are_checked_for_form_and_range() {
        assert_eq!(
            number(&node("port", " 874 "), "port", &PORT).unwrap(),
            Some(874)
        );
        assert_eq!(number(&node("x", "1"), "port", &PORT).unwrap(), None);
        let err = number(&node("port", "87x"), "port", &PORT).unwrap_err();
        assert_eq!(
            err.message,
            "<userDefinedPort port=\"87x\">: \"87x\" is not a whole number"
        );
        assert_eq!(err.position, Some(Position { line: 4, column: 7 }));
        let err = number(&node("port", "70000"), "port", &PORT).unwrap_err();
        assert!(err.message.ends_with("70000 is out of range"), "{err}");
        assert_eq!(
            err.hint.as_deref(),
            Some("port is a TCP port: a whole number from 1 to 65535")
        );
        assert!(number(&node("port", "-1"), "port", &PORT).is_err());
        assert_eq!(count(&node("maxargs", "7"), "maxargs").unwrap(), Some(7));
        let err = count(&node("maxargs", "0"), "maxargs").unwrap_err();
        assert!(err
            .message
            .ends_with("<userDefinedPort maxArgs=\"0\">: 0 is out of range"));
    }

    #[test]
    fn required_refuses_missing_and_empty() {
        let err = required(&node("x", ""), "port", "<e port=\"1\"/>").unwrap_err();
        assert_eq!(
            err.message,
            "<userDefinedPort> needs the attribute port=\"…\""
        );
        let err = required(&node("port", " "), "port", "<e port=\"1\"/>").unwrap_err();
        assert!(err.message.ends_with("port is empty"), "{err}");
    }

    #[test]
    fn durations_take_a_unit_or_the_attributes_own() {
        let ms = |text| parse_duration(text, Unit::Milliseconds);
        let s = |text| parse_duration(text, Unit::Seconds);
        assert_eq!(ms("250"), Ok(Duration::from_millis(250)));
        assert_eq!(s("250"), Ok(Duration::from_secs(250)));
        assert_eq!(
            parse_duration("3", Unit::Minutes),
            Ok(Duration::from_secs(180))
        );
        for unit in [Unit::Milliseconds, Unit::Seconds, Unit::Minutes] {
            let d = |text| parse_duration(text, unit);
            assert_eq!(d("500ms"), Ok(Duration::from_millis(500)));
            assert_eq!(d(" 5s "), Ok(Duration::from_secs(5)));
            assert_eq!(d("5 s"), Ok(Duration::from_secs(5)));
            assert_eq!(d("2m"), Ok(Duration::from_secs(120)));
            assert_eq!(d("1h"), Ok(Duration::from_secs(3600)));
            assert_eq!(d("0"), Ok(Duration::ZERO));
        }
        for bad in [
            "", "s", "fast", "-1", "+1", "1.5s", "1m30s", "5 sec", "1d", "0x10",
        ] {
            assert_eq!(ms(bad), Err(DurationError::NotADuration), "{bad:?}");
        }
        assert_eq!(ms("99999999999999999999999h"), Err(DurationError::TooLong));
        assert_eq!(s(&u64::MAX.to_string()), Err(DurationError::TooLong));
    }

    #[test]
    fn duration_errors_say_what_is_accepted() {
        let d = |value: &str| duration(&node("settlems", value), "settlems", &TIMEOUT_MS);
        assert_eq!(d("2s").unwrap(), Some(Duration::from_secs(2)));
        assert_eq!(d("40").unwrap(), Some(Duration::from_millis(40)));
        assert_eq!(
            duration(&node("x", "1"), "settlems", &TIMEOUT).unwrap(),
            None
        );
        let err = d("soon").unwrap_err();
        assert_eq!(
            err.message,
            "<userDefinedPort settleMs=\"soon\">: \"soon\" is not a duration"
        );
        assert_eq!(err.position, Some(Position { line: 4, column: 7 }));
        assert_eq!(
            err.hint.as_deref(),
            Some(
                "settleMs is a time limit: a whole number of milliseconds, or one with a unit \
                 (500ms, 5s, 2m, 1h), from 1ms to 24h"
            )
        );
        assert!(d("0").unwrap_err().message.ends_with(": 0 is out of range"));
        assert!(d("25h")
            .unwrap_err()
            .message
            .ends_with(": 25h is out of range"));
        assert!(d("99999999999999999999999")
            .unwrap_err()
            .message
            .ends_with("is out of range"));
    }

    #[test]
    fn durations_are_shown_in_their_largest_exact_unit() {
        assert_eq!(show_duration(Duration::ZERO), "0");
        assert_eq!(show_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(show_duration(Duration::from_secs(90)), "90s");
        assert_eq!(show_duration(Duration::from_secs(86_400)), "24h");
    }
}
