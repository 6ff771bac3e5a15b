//! The rsync sink's part of `confxml.xml`, read from the positioned nodes core hands over:
//! `<sersync><rsync>` (how rsync runs), the `<remote>`s of each `<sersync><localpath>` (where
//! it sends), `<inotify><delete>` (whether deletes reach the remotes) and
//! `<sersync><crontab><crontabfilter>` (globs full syncs leave out). Parsing, defaults,
//! validation, the file checks (the password file) and the `--check` lines all live here;
//! core keeps the watch roots.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sersync_plugin_sdk::text::one_line;
use sersync_plugin_sdk::{ConfigError, ConfigNode, Position};

use super::guard::{DeleteSafety, DEFAULT_MAX_DELETES};
use super::{ProcessLimit, RsyncAuth, RsyncOptions, RsyncSpec, Target};
use crate::registry::SinkSetup;
use crate::SinkSpec;
use sersync_plugin_sdk::config::attrs::{
    self, child_switch, duration, enabled, missing, number_or, quoted, required, required_number,
    spelled, switch, Bounds, Span, Unit, PORT,
};

/// What the file says about rsync.
#[derive(Clone, Debug)]
pub struct RsyncConfig {
    /// How rsync is run.
    pub options: RsyncOptions,
    /// The `<remote>`s of each `<sersync><localpath>`, in file order.
    pub remotes: Vec<Vec<Target>>,
    /// Where `<auth passwordfile>` is written, for the password file's checks.
    password_file_at: Option<Position>,
}

/// Reads rsync's configuration from `<sersync>` and `<inotify>` (either may be missing: every
/// element is optional).
pub fn parse(
    sersync: Option<&ConfigNode>,
    inotify: Option<&ConfigNode>,
) -> Result<RsyncConfig, ConfigError> {
    let crontab = sersync.and_then(|s| s.child("crontab"));
    let full_sync_excludes = crontab_excludes(crontab)?;
    let mut remotes = Vec::new();
    for localpath in sersync
        .into_iter()
        .flat_map(|s| s.children_named("localpath"))
    {
        remotes.push(
            localpath
                .children_named("remote")
                .map(remote)
                .collect::<Result<Vec<_>, _>>()?,
        );
    }
    let rsync = sersync.and_then(|s| s.child("rsync"));
    let options = rsync_options(
        rsync,
        child_switch(inotify, "delete", true),
        full_sync_excludes,
    )?;
    let password_file_at = enabled(rsync, "auth")
        .and_then(|a| a.attribute("passwordfile"))
        .map(|a| a.position);
    Ok(RsyncConfig {
        options,
        remotes,
        password_file_at,
    })
}

impl RsyncConfig {
    /// The remotes of the `watch`-th `<localpath>` (none when it has none).
    fn remotes_of(&self, watch: usize) -> &[Target] {
        self.remotes.get(watch).map_or(&[], Vec::as_slice)
    }

    /// True when the `watch`-th `<localpath>` has a remote.
    pub fn serves(&self, watch: usize) -> bool {
        !self.remotes_of(watch).is_empty()
    }

    /// One rsync spec per remote of each watch; `roots[i]` is the `i`-th `<localpath>`'s
    /// directory. Every spec shares one bound on the rsync processes (`setup.workers`).
    pub fn specs(&self, roots: &[PathBuf], setup: &SinkSetup) -> Vec<(usize, Box<dyn SinkSpec>)> {
        let limit = Arc::new(ProcessLimit::new(setup.workers));
        let mut options = self.options.clone();
        if options.ssh {
            options.ssh_control_dir = setup.state_dir.clone();
        }
        let mut specs: Vec<(usize, Box<dyn SinkSpec>)> = Vec::new();
        for (watch, root) in roots.iter().enumerate() {
            for target in self.remotes_of(watch) {
                let mut spec =
                    RsyncSpec::new(options.clone(), target.clone(), root.clone(), limit.clone());
                if let Some(display) = &setup.progress {
                    spec = spec.with_progress(display);
                }
                spec = spec.with_warm_transfers(setup.warm_transfers);
                specs.push((watch, Box::new(spec)));
            }
        }
        specs
    }

    /// The `--check` lines under the `watch`-th `<localpath>`: the exact destination of each
    /// remote.
    pub fn describe_watch(&self, watch: usize) -> Vec<String> {
        match self.remotes_of(watch) {
            [] => vec!["no remote".to_string()],
            remotes => remotes
                .iter()
                .map(|r| format!("rsync to {}", r.destination(&self.options)))
                .collect(),
        }
    }

    /// The `--check` line of rsync's program and the options every run gets, as a shell
    /// would show them: what is really passed (without `-u`/`--update`, which is said).
    pub fn describe(&self) -> String {
        let rsync = &self.options;
        let mut words = vec![rsync.program.display().to_string()];
        words.extend(rsync.passed_params());
        words.extend(rsync.port.map(|p| format!("--port={p}")));
        words.extend(rsync.timeout.map(|t| format!("--timeout={t}")));
        if rsync.ssh {
            words.extend(["-e".to_string(), "ssh".to_string()]);
        }
        words.extend(
            rsync
                .auth
                .as_ref()
                .map(|a| format!("--password-file={}", a.password_file.display())),
        );
        let mut notes = if rsync.delete {
            "deletes propagated".to_string()
        } else {
            "deletes not propagated".to_string()
        };
        if rsync.drops_update() {
            notes.push_str(
                "; -u/--update from <commonParams> is not passed: it would keep remote files newer than the source's",
            );
        }
        let words: Vec<_> = words.iter().map(|w| shell_word(w)).collect();
        format!("rsync: {} ({notes})", words.join(" "))
    }

    /// What full syncs leave out, for the `--check` crontab line; `None` when nothing.
    pub fn describe_full_syncs(&self) -> Option<String> {
        match self.options.full_sync_excludes.as_slice() {
            [] => None,
            globs => Some(format!("full syncs exclude {}", globs.join(" "))),
        }
    }

    /// Makes the password file and a `program` given with a `/` absolute, against the
    /// current directory (the one 2.5.4 resolved them against).
    pub fn absolute_paths(&mut self) -> io::Result<()> {
        if let Some(auth) = &mut self.options.auth {
            absolute(&mut auth.password_file)?;
        }
        if self.options.program.components().count() > 1 {
            absolute(&mut self.options.program)?;
        }
        Ok(())
    }

    /// What the configuration names on the file system: the password file, with
    /// `<auth start="true">`.
    pub fn check_files(&self) -> Result<(), ConfigError> {
        match &self.options.auth {
            Some(auth) => password_file(auth, self.password_file_at),
            None => Ok(()),
        }
    }
}

fn absolute(path: &mut PathBuf) -> io::Result<()> {
    if path.is_relative() {
        *path = std::path::absolute(&*path)?;
    }
    Ok(())
}

/// `word` as a shell would need it: unquoted when it has only characters no shell treats
/// specially (so `--port=874` stays readable), else single-quoted.
fn shell_word(word: &str) -> std::borrow::Cow<'_, str> {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        word.into()
    } else {
        shell_words::quote(word)
    }
}

/// `<crontab><crontabfilter start="true"><exclude expression="GLOB">`: rsync `--exclude` globs.
fn crontab_excludes(crontab: Option<&ConfigNode>) -> Result<Vec<String>, ConfigError> {
    let Some(filter) = enabled(crontab, "crontabfilter") else {
        return Ok(Vec::new());
    };
    filter
        .children_named("exclude")
        .map(|e| Ok(required(e, "expression", "<exclude expression=\"*.php\"/>")?.to_string()))
        .collect()
}

/// `<remote ip name>`: both needed.
fn remote(node: &ConfigNode) -> Result<Target, ConfigError> {
    let example = "<remote ip=\"192.168.0.2\" name=\"module\"/>";
    Ok(Target {
        host: destination_word(node, "ip", example)?.to_string(),
        module: destination_word(node, "name", example)?.to_string(),
    })
}

/// A `<remote ip name>` attribute that becomes part of rsync's destination argument
/// (`host::module`, `host:path`): required, and refused when rsync or ssh could read it as
/// something else — empty, starting with `-` (an option), holding whitespace (a second word
/// to ssh) or control characters.
fn destination_word<'n>(
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

/// rsync's options from `<rsync>`; `delete` and `full_sync_excludes` come from `<inotify>` and
/// `<crontabfilter>`.
fn rsync_options(
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
        timeout: io_timeout(rsync)?,
        ssh,
        delete,
        full_sync_excludes,
        safety: delete_safety(rsync)?,
        ssh_control_dir: None,
    })
}

/// `<deleteSafety maxDeletes="10000" maxDeletePercent="" allowEmptyRoot="false"/>`
/// (extension): the delete budget (`0`: none), the share of the remote a full sync may delete
/// (unset: no such limit) and whether a full sync of an empty root may delete what the remote
/// holds.
fn delete_safety(rsync: Option<&ConfigNode>) -> Result<DeleteSafety, ConfigError> {
    const MAX_DELETES: Bounds = Bounds {
        meaning: "entries one delivery may delete on a remote without approval (0: no budget)",
        min: 0,
        max: u32::MAX as u64,
    };
    let node = rsync.and_then(|r| r.child("deletesafety"));
    const PERCENT: Bounds = Bounds {
        meaning: "percentage of a remote's entries a full sync may delete without approval",
        min: 0,
        max: 100,
    };
    let max = number_or(node, "maxdeletes", &MAX_DELETES, DEFAULT_MAX_DELETES)?;
    let percent = node
        .map(|n| attrs::number(n, "maxdeletepercent", &PERCENT))
        .transpose()?
        .flatten()
        .map(|p| p as u8);
    Ok(DeleteSafety {
        max_deletes: (max > 0).then_some(max),
        max_delete_percent: percent,
        allow_empty_root: switch(node, "allowemptyroot", false),
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

/// `<timeout start="true" time>`: a [duration](sersync_plugin_sdk::config::attrs::duration)
/// whose bare number is seconds, rounded up to whole seconds (rsync counts in seconds); 0
/// means none. `None` when the element is off or missing.
fn io_timeout(rsync: Option<&ConfigNode>) -> Result<Option<u32>, ConfigError> {
    const IO_TIMEOUT: Span = Span {
        meaning: "a time without any data moving",
        unit: Unit::Seconds,
        min: Duration::ZERO,
        max: Duration::from_secs(86_400),
    };
    let Some(node) = enabled(rsync, "timeout") else {
        return Ok(None);
    };
    let time = duration(node, "time", &IO_TIMEOUT)?.ok_or_else(|| {
        missing(node, "time").with_hint("for example <timeout start=\"true\" time=\"100\"/>")
    })?;
    Ok(Some(time.as_millis().div_ceil(1_000) as u32))
}

/// rsync's password file exists, can be read, and passes rsync's own checks: not accessible
/// by others (`mode & 0o006`), and owned by root when we run as root. `at` is where
/// `passwordfile` is written.
fn password_file(auth: &RsyncAuth, at: Option<Position>) -> Result<(), ConfigError> {
    let file = auth.password_file.display();
    let fail = |message: String, hint: String| {
        let error = ConfigError::new(message).with_hint(hint);
        Err(ConfigError {
            position: at,
            ..error
        })
    };
    let meta = match fs::metadata(&auth.password_file) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return fail(
                format!("the rsync password file {file} does not exist"),
                format!(
                    "write the rsync password of user {} as its only line, then chmod 600 {file}",
                    auth.user
                ),
            )
        }
        Err(e) => {
            return fail(
                format!("the rsync password file {file} cannot be accessed: {e}"),
                readable_hint(),
            )
        }
        Ok(meta) => meta,
    };
    if !meta.is_file() {
        return fail(
            format!("the rsync password file {file} is not a regular file"),
            "passwordfile names a file holding the rsync password".into(),
        );
    }
    if meta.mode() & 0o006 != 0 {
        return fail(
            format!(
                "the rsync password file {file} is accessible by other users (mode {:04o}); rsync refuses it",
                meta.mode() & 0o7777
            ),
            format!("chmod 600 {file}"),
        );
    }
    if running_as_root() && meta.uid() != 0 {
        return fail(
            format!(
                "the rsync password file {file} is not owned by root; rsync run as root refuses it"
            ),
            format!("chown root {file}"),
        );
    }
    readable(&auth.password_file).or_else(|e| {
        fail(
            format!("the rsync password file {file} cannot be read: {e}"),
            readable_hint(),
        )
    })
}

fn readable(file: &Path) -> io::Result<()> {
    fs::File::open(file).map(drop)
}

fn readable_hint() -> String {
    "sersync runs rsync as its own user, which must be able to read the file".into()
}

fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sersync_plugin_sdk::config::xml::parse_tree;

    fn safety(xml: &str) -> Result<DeleteSafety, ConfigError> {
        let head = parse_tree(&format!("<head><rsync>{xml}</rsync></head>")).unwrap();
        delete_safety(head.child("rsync"))
    }

    #[test]
    fn delete_safety_defaults_and_reads_its_three_attributes() {
        assert_eq!(safety("").unwrap(), DeleteSafety::default());
        assert_eq!(
            safety(r#"<deleteSafety maxDeletes="0" maxDeletePercent="30" allowEmptyRoot="true"/>"#)
                .unwrap(),
            DeleteSafety {
                max_deletes: None,
                max_delete_percent: Some(30),
                allow_empty_root: true,
            }
        );
        assert!(safety(r#"<deleteSafety maxDeletePercent="101"/>"#).is_err());
    }
}
