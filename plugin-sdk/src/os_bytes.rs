//! Raw path bytes to and from [`OsStr`] on every target the SDK builds for: Unix hosts and the
//! `wasm32-wasip2` guests that WASM plugins are compiled to.

use std::ffi::OsStr;

/// The bytes as an [`OsStr`], unchanged.
#[cfg(unix)]
pub(crate) fn os_str(bytes: &[u8]) -> &OsStr {
    std::os::unix::ffi::OsStrExt::from_bytes(bytes)
}

/// The bytes as an [`OsStr`], unchanged.
#[cfg(target_os = "wasi")]
pub(crate) fn os_str(bytes: &[u8]) -> &OsStr {
    // SAFETY: on WASI, as on Unix, std stores an `OsStr` as plain bytes with no invariant (the
    // `wasi` extension trait that says so is not stable on wasip2 yet), so any byte sequence is a
    // valid encoding. The bytes are Linux file names the host read from the kernel.
    unsafe { OsStr::from_encoded_bytes_unchecked(bytes) }
}

/// The raw bytes of an [`OsStr`] (a file name exactly as the kernel has it).
#[cfg(unix)]
pub(crate) fn bytes(os: &OsStr) -> &[u8] {
    std::os::unix::ffi::OsStrExt::as_bytes(os)
}

/// The raw bytes of an [`OsStr`] (a file name exactly as the host passed it in).
#[cfg(target_os = "wasi")]
pub(crate) fn bytes(os: &OsStr) -> &[u8] {
    // On WASI the encoded bytes are the bytes themselves (see `os_str`).
    os.as_encoded_bytes()
}
