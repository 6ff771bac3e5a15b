//! Making untrusted bytes and text safe to show on one line of a log, an error message or a
//! terminal: a file name holding a newline, an escape sequence or invalid UTF-8, or a plugin's
//! message with a right-to-left override, must neither forge a second line nor reorder this one.
//!
//! Two jobs, two forms:
//!
//! - [`escape_bytes`]: raw bytes (paths, a peer's reply) where every byte matters and the
//!   reader may want to reconstruct them: printable ASCII as is, `\` as `\\`, any other byte as
//!   `\xNN`. Unambiguous, ASCII only. [`RelPath`](crate::RelPath)'s `Display` is this.
//! - [`one_line`]: text that is already characters (a configuration value, a plugin's message),
//!   where non-ASCII letters should stay readable: only the characters that break or reorder a
//!   line ([`breaks_line`]) are escaped, as Rust writes them (`\n`, `\u{202e}`).

use std::fmt;

/// Writes `bytes` to `out` as [`escape_bytes`] does.
pub fn write_escaped_bytes(out: &mut impl fmt::Write, bytes: &[u8]) -> fmt::Result {
    for &b in bytes {
        match b {
            b'\\' => out.write_str("\\\\")?,
            0x20..=0x7e => out.write_char(b as char)?,
            _ => write!(out, "\\x{b:02x}")?,
        }
    }
    Ok(())
}

/// `bytes` for a log line or an error message: printable ASCII as is, `\` as `\\`, every other
/// byte as `\xNN`.
pub fn escape_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    let _ = write_escaped_bytes(&mut out, bytes);
    out
}

/// True for the characters that end a line or reorder it on a terminal: controls (newline,
/// escape, ...), the bidirectional marks, embeddings, overrides and isolates, and the Unicode
/// line and paragraph separators.
pub fn breaks_line(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` with every character that [`breaks_line`] escaped as Rust writes it (`\n`, `\t`,
/// `\u{1b}`, `\u{202e}`); everything else, non-ASCII letters included, as is.
pub fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if breaks_line(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_ascii_and_reversible() {
        assert_eq!(escape_bytes(b"a b/c.txt"), "a b/c.txt");
        assert_eq!(escape_bytes(b"a\nb\\c\xff\x1b"), "a\\x0ab\\\\c\\xff\\x1b");
        assert_eq!(escape_bytes("é".as_bytes()), "\\xc3\\xa9");
    }

    #[test]
    fn text_keeps_letters_and_escapes_what_breaks_a_line() {
        assert_eq!(one_line("café 图片"), "café 图片");
        assert_eq!(one_line("a\nb\tc\u{1b}[31m"), "a\\nb\\tc\\u{1b}[31m");
        assert_eq!(one_line("x\u{202e}y\u{2028}"), "x\\u{202e}y\\u{2028}");
        assert!(!breaks_line('é') && breaks_line('\r') && breaks_line('\u{2067}'));
    }
}
