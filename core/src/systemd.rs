//! systemd's service notification protocol (sd_notify(3)), without libsystemd: one datagram
//! per state change to the socket named by `$NOTIFY_SOCKET`, when there is one.
//!
//! With `Type=notify`, systemd counts the service as started only when sersync says
//! `READY=1`, which it does once every watch is established and the lanes run; `RELOADING=1`
//! and `STOPPING=1` frame a reload and a shutdown.

use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixDatagram;

/// Every watch is established and the lanes deliver; `status` is shown by `systemctl status`.
pub fn ready(status: &str) {
    send(&format!("READY=1\nSTATUS={status}"));
}

/// A reload (SIGHUP) begins; [`ready`] ends it, whether it was accepted or refused.
pub fn reloading() {
    send(&format!("RELOADING=1\nMONOTONIC_USEC={}", monotonic_usec()));
}

/// Shutdown begins: pending changes are being delivered.
pub fn stopping() {
    send("STOPPING=1");
}

fn send(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    if let Err(error) = send_to(path.as_bytes(), state.as_bytes()) {
        tracing::warn!(socket = %path.to_string_lossy(), %error, "cannot notify systemd");
    }
}

/// Sends `message` to the datagram socket `path`; a leading `@` names an abstract socket.
fn send_to(path: &[u8], message: &[u8]) -> io::Result<usize> {
    let socket = UnixDatagram::unbound()?;
    match path.strip_prefix(b"@") {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            let address = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            socket.send_to_addr(message, &address)
        }
        None => socket.send_to(message, std::ffi::OsStr::from_bytes(path)),
    }
}

/// CLOCK_MONOTONIC in microseconds, as systemd wants it with `RELOADING=1`.
fn monotonic_usec() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as u64 * 1_000_000 + now.tv_nsec as u64 / 1_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_reach_path_and_abstract_sockets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        send_to(path.as_os_str().as_bytes(), b"READY=1").unwrap();
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");

        use std::os::linux::net::SocketAddrExt;
        let name = format!("sersync-test-{}", std::process::id());
        let address = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let listener = UnixDatagram::bind_addr(&address).unwrap();
        send_to(format!("@{name}").as_bytes(), b"STOPPING=1").unwrap();
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1");
    }
}
