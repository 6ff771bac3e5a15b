//! Where a stream is: the servers, the credentials, the stream and its subject. Read from the
//! attributes of one element (the sink's `<plugin>`, the follower's `<nats>`) the same way on
//! both sides.

use std::path::PathBuf;
use std::time::Duration;

use async_nats::{Client, ConnectOptions, ServerAddr};
use sersync_plugin_sdk::config::attrs::{attr_error, duration, required, TIMEOUT};
use sersync_plugin_sdk::{ConfigError, ConfigNode};

/// How long one connection attempt, request or publish may take by default.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The NATS servers and how to log in to them.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// `servers="nats://a:4222,nats://b:4222"`: tried in turn, and for reconnects.
    pub servers: Vec<ServerAddr>,
    /// `credentials="FILE"`: a `.creds` file (JWT and nkey seed); none for an open server.
    pub credentials: Option<PathBuf>,
    /// `timeout`: the bound of a connection attempt, a request, a publish's ack.
    pub timeout: Duration,
}

/// A JetStream stream and the subject sersync's changes go to.
#[derive(Clone, Debug)]
pub struct StreamAddress {
    /// The servers.
    pub endpoint: Endpoint,
    /// `stream="SERSYNC"`: the stream's name.
    pub stream: String,
    /// `subject="sersync.www"`: the subject of the messages (one watch, one subject).
    pub subject: String,
}

impl StreamAddress {
    /// Reads `servers`, `credentials`, `timeout`, `stream` and `subject` of `node`.
    pub fn parse(node: &ConfigNode) -> Result<StreamAddress, ConfigError> {
        Ok(StreamAddress {
            endpoint: Endpoint::parse(node)?,
            stream: name(node, "stream", "stream=\"SERSYNC\"", &['.', '*', '>'])?,
            subject: name(node, "subject", "subject=\"sersync.www\"", &['*', '>'])?,
        })
    }

    /// `stream SERSYNC (subject sersync.www) at nats://…`, for logs and errors.
    pub fn describe(&self) -> String {
        format!(
            "stream {} (subject {}) at {}",
            self.stream,
            self.subject,
            self.endpoint.describe()
        )
    }
}

/// A stream or subject name: no white space, no character in `refused`.
fn name(
    node: &ConfigNode,
    attr: &str,
    example: &str,
    refused: &[char],
) -> Result<String, ConfigError> {
    let value = required(node, attr, example)?;
    if value
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || refused.contains(&c))
    {
        return Err(attr_error(
            node,
            attr,
            format!("{attr}=\"{value}\": white space and {refused:?} are not allowed here"),
        )
        .with_hint(format!("for example {example}")));
    }
    Ok(value.to_string())
}

impl Endpoint {
    /// Reads `servers`, `credentials` and `timeout` of `node`; the credentials file must exist.
    pub fn parse(node: &ConfigNode) -> Result<Endpoint, ConfigError> {
        let example = "servers=\"nats://127.0.0.1:4222\"";
        let text = required(node, "servers", example)?;
        let servers = text
            .split([',', ' '])
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<ServerAddr>().map_err(|e| {
                    attr_error(
                        node,
                        "servers",
                        format!("servers: \"{s}\" is not a server: {e}"),
                    )
                    .with_hint(format!("a comma-separated list, for example {example}"))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let credentials = match node.attr("credentials") {
            None => None,
            Some(file) => {
                let path = PathBuf::from(file);
                if !path.is_file() {
                    return Err(attr_error(
                        node,
                        "credentials",
                        format!("credentials=\"{file}\": no such file"),
                    )
                    .with_hint("a NATS .creds file (nsc generate creds), readable by sersync"));
                }
                Some(path)
            }
        };
        Ok(Endpoint {
            servers,
            credentials,
            timeout: duration(node, "timeout", &TIMEOUT)?.unwrap_or(DEFAULT_TIMEOUT),
        })
    }

    /// The servers, comma-separated, for logs and errors.
    pub fn describe(&self) -> String {
        self.servers
            .iter()
            .map(|s| format!("{}:{}", s.host(), s.port()))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Connects to the first server that answers (the client reconnects on its own later).
    /// The error names the servers.
    pub async fn connect(&self, client_name: &str) -> Result<Client, String> {
        let mut options = ConnectOptions::new()
            .name(client_name)
            .connection_timeout(self.timeout)
            .request_timeout(Some(self.timeout));
        if let Some(file) = &self.credentials {
            options = options
                .credentials_file(file)
                .await
                .map_err(|e| format!("NATS credentials file {}: {e}", file.display()))?;
        }
        options
            .connect(self.servers.clone())
            .await
            .map_err(|e| format!("cannot connect to NATS at {}: {e}", self.describe()))
    }
}
