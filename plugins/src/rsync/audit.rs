//! Reading what a dry run says it would change (`--dry-run --out-format='%i %n'`).
//!
//! Each line is rsync's 11-character change summary, a space and the name, with bytes that
//! are not printable written `\#ooo` (octal; a backslash that would read as one is written
//! `\#134`). Directories end in `/`. Lines of any other shape (what `-v` in `<commonParams>`
//! adds) are not changes and are skipped.

use sersync_plugin_sdk::RelPath;

use crate::audit::{Drift, DriftKind};

/// The differences a dry run's output lists. A directory whose only difference is its
/// modification time is not one (its entries are what matters, and they are listed).
pub fn parse_itemized(out: &[u8]) -> Vec<Drift> {
    out.split(|&b| b == b'\n').filter_map(parse_line).collect()
}

fn parse_line(line: &[u8]) -> Option<Drift> {
    if line.len() < 13 || line[11] != b' ' {
        return None;
    }
    let (code, name) = (&line[..11], unescape(&line[12..]));
    let deleting = code.starts_with(b"*deleting");
    let is_dir = name.ends_with(b"/") || (!deleting && code[1] == b'd');
    let name = name.strip_suffix(b"/").unwrap_or(&name);
    let path = if name == b"." {
        RelPath::ROOT
    } else {
        RelPath::new(name.strip_prefix(b"./").unwrap_or(name))
    };
    let kind = if deleting {
        DriftKind::Extra
    } else {
        match code[0] {
            b'<' | b'>' | b'c' | b'h' => DriftKind::Differs,
            b'.' if code[1] == b'd' && only_time_differs(code) => return None,
            b'.' if b"fdLDS".contains(&code[1]) => DriftKind::Differs,
            _ => return None,
        }
    };
    Some(Drift { path, is_dir, kind })
}

/// `.d..t......`: the attribute letters say only the modification time differs.
fn only_time_differs(code: &[u8]) -> bool {
    code[2..]
        .iter()
        .enumerate()
        .all(|(i, &c)| matches!(c, b'.' | b' ') || (i == 2 && c == b't'))
}

/// `\#ooo` → the byte `ooo` (octal).
fn unescape(name: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len());
    let mut i = 0;
    while i < name.len() {
        let escape = name.get(i..i + 5).filter(|e| {
            e[0] == b'\\' && e[1] == b'#' && e[2..].iter().all(|d| (b'0'..=b'7').contains(d))
        });
        match escape {
            Some(e) => {
                out.push((e[2] - b'0') * 64 + (e[3] - b'0') * 8 + (e[4] - b'0'));
                i += 5;
            }
            None => {
                out.push(name[i]);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drift(path: &[u8], is_dir: bool, kind: DriftKind) -> Drift {
        Drift {
            path: RelPath::new(path),
            is_dir,
            kind,
        }
    }

    /// Captured from rsync 3.x: a dry run of `./` against a slave with an extra file, a
    /// changed directory time, a missing file with a newline and one with `\#` in its name.
    #[test]
    fn a_real_dry_run_is_read_into_differences() {
        let out = b"sending incremental file list\n\
*deleting   extra\n\
.d..t...... ./\n\
<f+++++++++ back\\#134#012slash\n\
<f+++++++++ nl\\#012x\n\
cd+++++++++ new dir/\n\
.f...p..... mode\n\
cL+++++++++ link\n\
*deleting   gone dir/\n\
.d..t...... d/\n\
\n\
sent 1,234 bytes  received 56 bytes  2,580.00 bytes/sec\n";
        assert_eq!(
            parse_itemized(out),
            vec![
                drift(b"extra", false, DriftKind::Extra),
                drift(b"back\\#012slash", false, DriftKind::Differs),
                drift(b"nl\nx", false, DriftKind::Differs),
                drift(b"new dir", true, DriftKind::Differs),
                drift(b"mode", false, DriftKind::Differs),
                drift(b"link", false, DriftKind::Differs),
                drift(b"gone dir", true, DriftKind::Extra),
            ]
        );
    }
}
