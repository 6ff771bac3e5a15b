//! `<host hostip port tokenFile readsNeedToken>`: the control endpoint's address and who may
//! use it.

use std::fs;
use std::io::Read;
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;

use sersync_plugin_sdk::ConfigError;

use super::ControlAddress;
use crate::control::{Access, Token};

/// The environment variable that holds the token when `<host tokenFile>` is not given.
pub const TOKEN_ENV: &str = "SERSYNC_CONTROL_TOKEN";

/// The longest token file read.
const MAX_TOKEN_FILE: u64 = 4096;

impl ControlAddress {
    /// Whether the endpoint listens on the loopback only: `localhost` or a loopback address
    /// (`127.0.0.0/8`, `::1`). Any other name counts as reachable from elsewhere.
    pub fn is_loopback(&self) -> bool {
        let host = self
            .host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(&self.host);
        host.eq_ignore_ascii_case("localhost")
            || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }

    /// The bearer token: the first line of `tokenFile` when given (which must be readable,
    /// not readable by every user, and not empty), else `SERSYNC_CONTROL_TOKEN` when set and
    /// not empty, else none.
    pub fn token(&self) -> Result<Option<Token>, ConfigError> {
        let Some(file) = &self.token_file else {
            return Ok(std::env::var(TOKEN_ENV).ok().and_then(Token::new));
        };
        let shown = file.display();
        let fail = |message: String, hint: &str| {
            Err(ConfigError::at(self.position, message).with_hint(hint))
        };
        let opened = fs::File::open(file).and_then(|f| f.metadata().map(|m| (f, m)));
        let (handle, meta) = match opened {
            Ok(opened) => opened,
            Err(e) => {
                return fail(
                    format!("<host tokenFile=\"{shown}\">: cannot read the token file: {e}"),
                    "create it with: (umask 077; openssl rand -hex 32 > FILE); `sersync status` must be able to read it too",
                )
            }
        };
        if meta.mode() & 0o004 != 0 {
            return fail(
                format!(
                    "<host tokenFile=\"{shown}\">: every user can read the token file (mode {:04o})",
                    meta.mode() & 0o7777
                ),
                "chmod o-rwx it (group read is fine for the operators who run sersync status)",
            );
        }
        let mut text = String::new();
        if let Err(e) = handle.take(MAX_TOKEN_FILE).read_to_string(&mut text) {
            return fail(
                format!("<host tokenFile=\"{shown}\">: cannot read the token file: {e}"),
                "the file holds the token on its first line, as text",
            );
        }
        match Token::new(text.lines().next().unwrap_or_default().trim()) {
            Some(token) => Ok(Some(token)),
            None => fail(
                format!("<host tokenFile=\"{shown}\">: the token file's first line is empty"),
                "write the token on its first line, e.g. (umask 077; openssl rand -hex 32 > FILE)",
            ),
        }
    }

    /// What the endpoint asks of each request. Refuses an address other than the loopback
    /// without a token: anyone who can reach it could trigger full syncs, and `<host>`'s
    /// default (`localhost`) is what 2.5.4 configurations rely on.
    pub fn access(&self) -> Result<Access, ConfigError> {
        let token = self.token()?;
        if token.is_none() && !self.is_loopback() {
            return Err(ConfigError::at(
                self.position,
                format!(
                    "<host hostip=\"{}\">: the control endpoint would be reachable from other hosts without a token",
                    self.host
                ),
            )
            .with_hint(format!(
                "add tokenFile=\"/etc/sersync/token\" (or set {TOKEN_ENV}), or listen on hostip=\"localhost\""
            )));
        }
        if token.is_none() && self.reads_need_token {
            return Err(ConfigError::at(
                self.position,
                "<host readsNeedToken=\"true\"> needs a token",
            )
            .with_hint(format!(
                "add tokenFile=\"/etc/sersync/token\" (or set {TOKEN_ENV})"
            )));
        }
        Ok(Access {
            token,
            reads_need_token: self.reads_need_token,
        })
    }
}
