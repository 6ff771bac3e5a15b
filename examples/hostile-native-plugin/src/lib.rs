//! A native plugin that attacks its host through what it says, for sersync's security tests:
//! `<param name="attack">` selects the attack, `<param name="size">` sizes it (see README.md).
//! The WASM twin, which can also sleep and hoard files, is `examples/hostile-wasm-plugin`.

use sersync_plugin_sdk::{log, Batch, Level, Plugin, Sink, SinkError};

/// A newline followed by what looks like one of sersync's own lines, and escape sequences
/// that would recolour or erase a terminal's line.
const FORGED: &str =
    "all good\n2030-01-01T00:00:00.000000Z  INFO sersync: configuration reloaded\x1b[2K\x1b[31m";

/// What the plugin does to its host.
enum Attack {
    HugeError(usize),
    LogFlood(usize),
    ForgedLog,
}

/// The hostile sink.
struct Hostile {
    attack: Attack,
}

impl Plugin for Hostile {
    fn from_params(params: &[(String, String)]) -> Result<Self, String> {
        let param = |name: &str| {
            params
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        let size = |default: usize| match param("size") {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| format!("size=\"{v}\": not a number")),
        };
        let attack = match param("attack").unwrap_or("") {
            "huge_error" => Attack::HugeError(size(40 << 20)?),
            "log_flood" => Attack::LogFlood(size(10_000)?),
            "forged_log" => Attack::ForgedLog,
            other => return Err(format!("unknown attack \"{other}\"")),
        };
        Ok(Hostile { attack })
    }
}

impl Sink for Hostile {
    fn deliver(&mut self, _batch: &Batch) -> Result<(), SinkError> {
        match &self.attack {
            Attack::HugeError(size) => {
                let mut message = FORGED.repeat(size / FORGED.len() + 1);
                message.truncate(*size);
                Err(SinkError::retryable(message))
            }
            Attack::LogFlood(lines) => {
                let line = "flood ".repeat(8 * 1024 / 6);
                for _ in 0..*lines {
                    log(Level::Warn, &line);
                }
                Ok(())
            }
            Attack::ForgedLog => {
                log(Level::Warn, FORGED);
                Err(SinkError::retryable(FORGED))
            }
        }
    }
}

sersync_plugin_sdk::export_sink!(Hostile);
