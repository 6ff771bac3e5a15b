//! The follower's own file (`sersync follow -o follow.xml`):
//!
//! ```xml
//! <follow>
//!     <nats servers="nats://10.0.0.5:4222" stream="SERSYNC" subject="sersync.www"
//!           consumer="edge-1" [credentials="FILE"] [timeout="10s"] [ackWait="60s"] [batch="256"]/>
//!     <source url="rsync://10.0.0.5:873/www" [passwordFile="FILE"] [rsh="ssh -i KEY"]
//!             [timeout="60"] [rsync="rsync"]/>
//!     <local path="/srv/www" [healAfter="5s"]/>
//!     <host hostip="localhost" port="8009"/>
//! </follow>
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use sersync::config::ControlAddress;
use sersync_plugin_sdk::config::attrs::{
    attr_error, count, duration_or, number_or, optional, required, Span, Unit, SECONDS,
};
use sersync_plugin_sdk::config::xml::parse_tree_of;
use sersync_plugin_sdk::{ConfigError, ConfigNode};
use sersync_plugins::stream::StreamAddress;

/// How long a delivered message may stay unacked before JetStream sends it again.
const DEFAULT_ACK_WAIT: Duration = Duration::from_secs(60);
/// Messages applied together (one rsync run for all their paths) at most.
const DEFAULT_BATCH: usize = 256;
/// rsync's `--timeout` (I/O stall) by default, in seconds.
const DEFAULT_RSYNC_TIMEOUT: u64 = 60;
/// How long after a recursive pull its directories are looked at again (see `heal.rs`).
const DEFAULT_HEAL_AFTER: Duration = Duration::from_secs(5);

const HEAL_AFTER: Span = Span {
    meaning: "how long after a recursive pull its directories are pruned again",
    unit: Unit::Seconds,
    min: Duration::ZERO,
    max: Duration::from_secs(3_600),
};

const ACK_WAIT: Span = Span {
    meaning: "how long a message may stay unacked",
    unit: Unit::Seconds,
    min: Duration::from_secs(1),
    max: Duration::from_secs(86_400),
};

/// The follower's validated configuration.
#[derive(Clone, Debug)]
pub struct FollowConfig {
    /// The file it was read from.
    pub file: PathBuf,
    /// `<nats>`: the stream.
    pub stream: StreamAddress,
    /// `<nats consumer>`: the durable consumer's name, this follower's position in the stream.
    pub consumer: String,
    /// `<nats ackWait>`.
    pub ack_wait: Duration,
    /// `<nats batch>`.
    pub batch: usize,
    /// `<source>`: where files are pulled from.
    pub source: Source,
    /// `<local path>`: the tree kept equal to the source.
    pub local: PathBuf,
    /// `<local healAfter>`: how long after a recursive pull its directories are pruned
    /// again, recursively, deleting only (0: never).
    pub heal_after: Duration,
    /// `<host>`: the control endpoint (`/status`, `/metrics`, `POST /sync` for a full pull).
    pub control: ControlAddress,
}

/// `<source>`: an rsync daemon module (`rsync://host[:port]/module[/dir]`, `host::module`)
/// or, with `rsh`, a remote shell path (`user@host:/dir`).
#[derive(Clone, Debug)]
pub struct Source {
    /// The source, ending in `/` (its contents, not the directory itself).
    pub url: String,
    /// `passwordFile`: rsync's `--password-file` (daemon sources only).
    pub password_file: Option<PathBuf>,
    /// `rsh`: rsync's `-e` (remote shell sources), split by rsync itself, never by a shell.
    pub rsh: Option<String>,
    /// `timeout`: rsync's `--timeout` in seconds (0: none).
    pub timeout: u64,
    /// `rsync`: the program.
    pub program: PathBuf,
}

impl Source {
    /// Whether the source is an rsync daemon (`rsync://` or `host::module`).
    pub fn is_daemon(&self) -> bool {
        self.url.starts_with("rsync://") || self.url.contains("::")
    }
}

/// Reads and checks the follower's file.
pub fn load(file: &Path) -> Result<FollowConfig, ConfigError> {
    let text = std::fs::read_to_string(file).map_err(|e| {
        ConfigError::new(format!("cannot read {}: {e}", file.display()))
            .with_hint("sersync follow -o FILE names the follower's configuration")
    })?;
    parse(&text, file).map_err(|e| e.in_file(file))
}

/// Parses the text of a follower's file.
pub fn parse(text: &str, file: &Path) -> Result<FollowConfig, ConfigError> {
    let root = parse_tree_of(text, "follow")?;
    let nats = child(&root, "nats", "<nats servers=\"nats://127.0.0.1:4222\" stream=\"SERSYNC\" subject=\"sersync.www\" consumer=\"edge-1\"/>")?;
    let consumer = required(nats, "consumer", "consumer=\"edge-1\"")?;
    if consumer.contains(|c: char| c.is_whitespace() || ".*>".contains(c)) {
        return Err(attr_error(
            nats,
            "consumer",
            format!("consumer=\"{consumer}\": white space, '.', '*' and '>' are not allowed"),
        ));
    }
    let source = child(&root, "source", "<source url=\"rsync://10.0.0.5/www\"/>")?;
    let local = child(&root, "local", "<local path=\"/srv/www\"/>")?;
    let local_path = PathBuf::from(required(local, "path", "path=\"/srv/www\"")?);
    if !local_path.is_absolute() {
        return Err(attr_error(local, "path", "<local path>: must be absolute"));
    }
    Ok(FollowConfig {
        file: file.to_path_buf(),
        stream: StreamAddress::parse(nats)?,
        consumer: consumer.to_string(),
        ack_wait: duration_or(Some(nats), "ackwait", &ACK_WAIT, DEFAULT_ACK_WAIT)?,
        batch: count(nats, "batch")?.unwrap_or(DEFAULT_BATCH),
        source: source_of(source)?,
        local: local_path,
        heal_after: duration_or(Some(local), "healafter", &HEAL_AFTER, DEFAULT_HEAL_AFTER)?,
        control: sersync::config::parse_control(root.child("host"), &root)?,
    })
}

fn child<'n>(
    root: &'n ConfigNode,
    name: &str,
    example: &str,
) -> Result<&'n ConfigNode, ConfigError> {
    root.child(name).ok_or_else(|| {
        root.error(format!("<follow> has no <{name}>"))
            .with_hint(format!("add {example}"))
    })
}

fn source_of(node: &ConfigNode) -> Result<Source, ConfigError> {
    let mut url = required(node, "url", "url=\"rsync://10.0.0.5/www\"")?.to_string();
    if url.starts_with('-') {
        return Err(attr_error(
            node,
            "url",
            "<source url>: must not start with '-'",
        ));
    }
    if !url.ends_with('/') {
        url.push('/');
    }
    let source = Source {
        url,
        password_file: optional(
            Some(node),
            "passwordfile",
            "passwordFile=\"/etc/rsync.pass\"",
        )?
        .map(PathBuf::from),
        rsh: optional(Some(node), "rsh", "rsh=\"ssh -i /etc/sersync/key\"")?.map(str::to_string),
        timeout: number_or(Some(node), "timeout", &SECONDS, DEFAULT_RSYNC_TIMEOUT)?,
        program: PathBuf::from(node.attr("rsync").unwrap_or("rsync")),
    };
    if source.is_daemon() && source.rsh.is_some() {
        return Err(attr_error(
            node,
            "rsh",
            "<source rsh>: a daemon source (rsync://, host::module) is not reached through a remote shell",
        ));
    }
    if !source.is_daemon() && source.password_file.is_some() {
        return Err(attr_error(
            node,
            "passwordfile",
            "<source passwordFile>: only an rsync daemon source takes a password file",
        ));
    }
    Ok(source)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"<follow>
        <nats servers="nats://127.0.0.1:4222" stream="S" subject="sersync.www" consumer="edge-1" ackWait="30s"/>
        <source url="rsync://127.0.0.1:8730/www" passwordFile="/etc/p"/>
        <local path="/srv/www"/>
        <host hostip="127.0.0.1" port="8009"/>
    </follow>"#;

    #[test]
    fn a_follower_file_reads_with_defaults() {
        let c = parse(GOOD, Path::new("f.xml")).unwrap();
        assert_eq!(c.consumer, "edge-1");
        assert_eq!(c.ack_wait, Duration::from_secs(30));
        assert_eq!(c.batch, DEFAULT_BATCH);
        assert_eq!(c.source.url, "rsync://127.0.0.1:8730/www/");
        assert!(c.source.is_daemon());
        assert_eq!(c.control.port, 8009);
        assert_eq!(c.heal_after, DEFAULT_HEAL_AFTER);
        let off = parse(
            &GOOD.replace(r#"path="/srv/www""#, r#"path="/srv/www" healAfter="0""#),
            Path::new("f.xml"),
        )
        .unwrap();
        assert_eq!(off.heal_after, Duration::ZERO);
    }

    #[test]
    fn mistakes_are_located_and_explained() {
        for (from, to, needle) in [
            ("<follow>", "<head>", "expected <follow>"),
            (r#" consumer="edge-1""#, "", "consumer"),
            (r#"consumer="edge-1""#, r#"consumer="a.b""#, "not allowed"),
            ("/srv/www", "srv", "absolute"),
            (r#" passwordFile="/etc/p""#, r#" rsh="ssh""#, "remote shell"),
            ("rsync://127.0.0.1:8730/www", "-x", "'-'"),
        ] {
            let text = GOOD.replace(from, to).replace("</head>", "</follow>");
            let text = if from == "<follow>" {
                GOOD.replace("<follow>", "<head>")
                    .replace("</follow>", "</head>")
            } else {
                text
            };
            let e = parse(&text, Path::new("f.xml")).unwrap_err();
            assert!(e.to_string().contains(needle), "{from}: {e}");
            assert!(e.position.is_some(), "{from}: {e}");
        }
    }
}
