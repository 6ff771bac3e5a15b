//! Log output through `tracing`: human-readable by default, JSON on request.

use std::path::Path;
use std::sync::Arc;

use sersync::cli::LogFormat;
use sersync::progress::ProgressBoard;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `verbosity` is `-v` count minus `-q` count; `debug` is
/// `<debug start="true">`. `RUST_LOG`, when set, overrides both. `progress` is the board
/// drawn on standard error, if any: log lines written there go above it.
pub fn init(
    format: LogFormat,
    verbosity: i8,
    debug: bool,
    file: Option<&Path>,
    progress: Option<&Arc<ProgressBoard>>,
) -> std::io::Result<()> {
    let level = match verbosity.max(if debug { 1 } else { i8::MIN }) {
        i8::MIN..=-2 => "error",
        -1 => "warn",
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let writer = match (file, progress) {
        (Some(path), _) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?;
            tracing_subscriber::fmt::writer::BoxMakeWriter::new(std::sync::Mutex::new(file))
        }
        (None, Some(board)) => {
            let board = board.clone();
            tracing_subscriber::fmt::writer::BoxMakeWriter::new(move || board.log_writer())
        }
        (None, None) => tracing_subscriber::fmt::writer::BoxMakeWriter::new(std::io::stderr),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(file.is_none() && std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    Ok(())
}
