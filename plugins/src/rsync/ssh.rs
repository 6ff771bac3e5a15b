//! The remote shell of ssh remotes (`<ssh start="true">`): OpenSSH, with one multiplexed
//! connection per remote when the daemon has a state directory.
//!
//! Every rsync over ssh costs a new ssh connection (key exchange, authentication, a session:
//! ~465 ms per `ssh host true` measured on a loaded 2-core box, 190 ms over an existing
//! ControlMaster connection). So rsync is given `-e "ssh -o ControlMaster=auto -o
//! ControlPath=DIR/ssh-%C -o ControlPersist=60"`: the first run's ssh becomes the master
//! (in the background, its standard streams on `/dev/null`), later runs open sessions on its
//! connection, and it ends after 60 s without one. `%C` is ssh's hash of the local host, the
//! remote host, port and user, so remotes never share a connection by mistake. The socket
//! lives in the state directory, which only sersync's user can write to (created 0700,
//! refused otherwise: then no multiplexing), so no one else can plant a socket there.
//!
//! The value is one argument word for rsync, which splits it at spaces itself; a directory
//! whose path needs quoting (a space, a quote, `%`, which ssh expands) or is too long for a
//! Unix socket's name is not used: such remotes get plain `ssh`. A user's own `-e`/`--rsh`
//! in `<commonParams>` always wins.

use std::ffi::OsString;
use std::path::Path;

use super::RsyncOptions;

/// Seconds a master connection outlives its last session.
pub const PERSIST_SECS: u32 = 60;

/// The longest socket path (`sun_path` holds 108 bytes with its NUL; ssh first binds a
/// temporary name 17 bytes longer than the final one).
const MAX_SOCKET_PATH: usize = 107 - 17;

/// `ssh-` and the 40 hex digits of `%C`.
const SOCKET_NAME_LEN: usize = 4 + 40;

/// The program (and its options) rsync is given with `-e` to reach an ssh remote.
pub fn remote_shell(options: &RsyncOptions) -> OsString {
    match options.ssh_control_dir.as_deref().and_then(control_path) {
        Some(path) => format!(
            "ssh -o ControlMaster=auto -o ControlPath={path} -o ControlPersist={PERSIST_SECS}"
        )
        .into(),
        None => "ssh".into(),
    }
}

/// `DIR/ssh-%C`, when `dir` can be written into rsync's `-e` word as it is and the socket's
/// name fits.
fn control_path(dir: &Path) -> Option<String> {
    let dir = dir.to_str()?.trim_end_matches('/');
    let plain = dir
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/._-+,".contains(&b));
    (plain && dir.starts_with('/') && dir.len() + 1 + SOCKET_NAME_LEN <= MAX_SOCKET_PATH)
        .then(|| format!("{dir}/ssh-%C"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shell(dir: Option<&str>) -> String {
        let options = RsyncOptions {
            ssh: true,
            ssh_control_dir: dir.map(Into::into),
            ..RsyncOptions::default()
        };
        remote_shell(&options).into_string().unwrap()
    }

    #[test]
    fn a_state_directory_gives_one_master_connection_per_remote() {
        assert_eq!(
            shell(Some("/var/lib/sersync/")),
            "ssh -o ControlMaster=auto -o ControlPath=/var/lib/sersync/ssh-%C -o ControlPersist=60"
        );
        assert_eq!(shell(None), "ssh");
    }

    #[test]
    fn a_directory_that_would_need_quoting_or_is_too_long_is_not_used() {
        for dir in [
            "/srv/state dir",
            "/srv/it's",
            "/srv/100%",
            "relative/state",
            "/srv/\"q\"",
        ] {
            assert_eq!(shell(Some(dir)), "ssh", "{dir}");
        }
        let long = format!("/{}", "d".repeat(60));
        assert_eq!(shell(Some(&long)), "ssh");
    }
}
