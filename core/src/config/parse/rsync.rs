//! `<sersync><rsync>`: how rsync is run.

use std::path::PathBuf;

use sersync_plugin_sdk::{ConfigError, ConfigNode};
use sersync_plugins::rsync::{RsyncAuth, RsyncOptions};

use super::values::{
    child_switch, enabled, quoted, required, required_number, spelled, Bounds, PORT, SECONDS,
};

/// A `<remote ip name>` attribute that becomes part of rsync's destination argument
/// (`host::module`, `host:path`): required, and refused when rsync or ssh could read it as
/// something else — empty, starting with `-` (an option), holding whitespace (a second word
/// to ssh) or control characters.
pub fn destination_word<'n>(
    node: &'n ConfigNode,
    attr: &str,
    example: &str,
) -> Result<&'n str, ConfigError> {
    let value = required(node, attr, example)?;
    let problem = if value.starts_with('-') {
        "starts with '-', which rsync would take for an option"
    } else if value.chars().any(char::is_whitespace) {
        "holds whitespace"
    } else if value.chars().any(char::is_control) {
        "holds a control character"
    } else {
        return Ok(value);
    };
    let a = node.attribute(attr).expect("required checked it is there");
    Err(ConfigError::at(
        a.position,
        format!("{}: {} {problem}", one_line(&quoted(node, a)), spelled(attr)),
    )
    .with_hint(format!(
        "a host name or address and a module name (a path over ssh), one word each, for example {example}"
    )))
}

/// `text` with its control characters escaped (`\n`, `\u{1b}`), so a message stays on one line.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// rsync's options from `<rsync>`; `delete` and `full_sync_excludes` come from `<inotify>` and
/// `<crontabfilter>`.
pub fn rsync_options(
    rsync: Option<&ConfigNode>,
    delete: bool,
    full_sync_excludes: Vec<String>,
) -> Result<RsyncOptions, ConfigError> {
    let ssh = child_switch(rsync, "ssh", false);
    Ok(RsyncOptions {
        program: program(rsync)?,
        common_params: common_params(rsync)?,
        auth: enabled(rsync, "auth").map(|a| auth(a, ssh)).transpose()?,
        port: switched_number(rsync, "userdefinedport", "port", &PORT, "874")?
            .map(|port| port as u16),
        timeout: switched_number(rsync, "timeout", "time", &SECONDS, "100")?
            .map(|seconds| seconds as u32),
        ssh,
        delete,
        full_sync_excludes,
    })
}

/// `<program path>` (extension): the rsync binary. Default `rsync`, looked up in `PATH`.
fn program(rsync: Option<&ConfigNode>) -> Result<PathBuf, ConfigError> {
    match rsync.and_then(|r| r.child("program")) {
        Some(p) => Ok(PathBuf::from(required(
            p,
            "path",
            "<program path=\"/usr/bin/rsync\"/>",
        )?)),
        None => Ok(PathBuf::from("rsync")),
    }
}

/// `<commonParams params>` split into words the way a shell would (quotes, backslashes), with
/// no expansion of any kind. Default `-artuz`.
fn common_params(rsync: Option<&ConfigNode>) -> Result<Vec<String>, ConfigError> {
    let node = rsync.and_then(|r| r.child("commonparams"));
    let Some((node, attr)) = node.and_then(|n| Some((n, n.attribute("params")?))) else {
        return Ok(vec!["-artuz".to_string()]);
    };
    shell_words::split(&attr.value).map_err(|e| {
        ConfigError::at(attr.position, format!("{}: {e}", quoted(node, attr))).with_hint(
            "params is split into words like a shell would: close every quote, \
             or write a literal quote as \\\" (nothing is expanded)",
        )
    })
}

/// `<auth start="true" users passwordfile>`; not with ssh, where rsync refuses a password file.
fn auth(node: &ConfigNode, ssh: bool) -> Result<RsyncAuth, ConfigError> {
    if ssh {
        return Err(node
            .error("<auth start=\"true\"> cannot be used with <ssh start=\"true\">")
            .with_hint(
                "rsync takes a password file only for an rsync daemon (host::module); over ssh, \
                 log in with a key and set <auth start=\"false\">",
            ));
    }
    let example = "<auth start=\"true\" users=\"root\" passwordfile=\"/etc/rsync.pas\"/>";
    Ok(RsyncAuth {
        user: required(node, "users", example)?.to_string(),
        password_file: PathBuf::from(required(node, "passwordfile", example)?),
    })
}

/// `<rsync><element start="true" attr="N">`: the number, which the switched-on element needs
/// (`example` is a valid value); `None` when the element is off or missing. The bounds keep
/// the value within the caller's integer type.
fn switched_number(
    rsync: Option<&ConfigNode>,
    element: &str,
    attr: &str,
    bounds: &Bounds,
    example: &str,
) -> Result<Option<u64>, ConfigError> {
    let Some(node) = enabled(rsync, element) else {
        return Ok(None);
    };
    let example = format!(
        "<{} start=\"true\" {attr}=\"{example}\"/>",
        spelled(element)
    );
    required_number(node, attr, bounds, &example).map(Some)
}
