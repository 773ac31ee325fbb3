//! Text that came from outside meshwait (a proxy's answer, another process's argv) made safe to
//! show on a terminal or in a line-based log.
//!
//! Neighbours in a pod are not trusted: a process may name itself `meshwait`, and a sidecar's
//! endpoints answer whatever they answer. Shown raw, such text can move the cursor or clear the
//! operator's screen (ESC and the C1 controls), split one log event or report line into two and so
//! forge the second (line feeds, NEL, U+2028/U+2029), reorder what a reader sees (bidirectional
//! overrides and isolates, the "Trojan Source" trick), or hide text (zero-width characters, tag
//! characters).

use std::fmt;

/// Whether `c` must not be shown as itself: a control (C0, DEL, C1, NEL included), or one of
/// `INVISIBLE`.
pub fn is_unsafe(c: char) -> bool {
    let c32 = c as u32;
    c.is_control()
        || INVISIBLE
            .binary_search_by(|&(first, last)| {
                if last < c32 {
                    std::cmp::Ordering::Less
                } else if first > c32 {
                    std::cmp::Ordering::Greater
                } else {
                    std::cmp::Ordering::Equal
                }
            })
            .is_ok()
}

/// Unicode's format characters (category Cf: the bidirectional marks, embeddings, overrides and
/// isolates, zero-width spaces and joiners, the soft hyphen, the byte-order mark, invisible
/// operators, the tag characters that can smuggle a hidden text) and the line and paragraph
/// separators (Zl, Zp), as first and last code point of each run, in order. A list of the whole
/// categories (Unicode 14) rather than of known tricks: none of them is visible by itself.
const INVISIBLE: [(u32, u32); 21] = [
    (0x00ad, 0x00ad),
    (0x0600, 0x0605),
    (0x061c, 0x061c),
    (0x06dd, 0x06dd),
    (0x070f, 0x070f),
    (0x0890, 0x0891),
    (0x08e2, 0x08e2),
    (0x180e, 0x180e),
    (0x200b, 0x200f),
    (0x2028, 0x202e),
    (0x2060, 0x2064),
    (0x2066, 0x206f),
    (0xfeff, 0xfeff),
    (0xfff9, 0xfffb),
    (0x110bd, 0x110bd),
    (0x110cd, 0x110cd),
    (0x13430, 0x13438),
    (0x1bca0, 0x1bca3),
    (0x1d173, 0x1d17a),
    (0xe0001, 0xe0001),
    (0xe0020, 0xe007f),
];

/// Writes `text` with every unsafe character escaped (`\n`, `\r`, `\t`, otherwise `\u{…}`), so
/// one event stays one line and a reader sees that something was there.
pub fn write_escaped(out: &mut impl fmt::Write, text: &str) -> fmt::Result {
    for c in text.chars() {
        match c {
            '\n' => out.write_str("\\n")?,
            '\r' => out.write_str("\\r")?,
            '\t' => out.write_str("\\t")?,
            c if is_unsafe(c) => write!(out, "\\u{{{:x}}}", c as u32)?,
            c => out.write_char(c)?,
        }
    }
    Ok(())
}

/// `text` escaped and cut to at most `max` characters as shown (escapes counted, never split),
/// with `…` when cut: how evidence read from a neighbour is shown, so it can neither forge nor
/// flood a report, however many escapes it needs.
pub fn shown(text: &str, max: usize) -> String {
    let mut out = String::new();
    let mut used = 0usize;
    let mut one = [0u8; 4];
    for c in text.chars() {
        let before = out.len();
        let _ = write_escaped(&mut out, c.encode_utf8(&mut one));
        // An escape is ASCII and a plain character is one: either way this counts characters.
        let width = if out.len() - before == c.len_utf8() {
            1
        } else {
            out.len() - before
        };
        if used + width > max {
            out.truncate(before);
            out.push('…');
            break;
        }
        used += width;
    }
    out
}

/// How much of one piece of text from outside (a command line, a cluster name, a body) is shown:
/// enough to recognise it, too little to flood a report or a terminal.
pub const PIECE_MAX: usize = 200;

/// One piece of text from outside, as every report shows it: `shown` at `PIECE_MAX`.
pub fn piece(text: &str) -> String {
    shown(text, PIECE_MAX)
}

/// `text` without its unsafe characters: for a one-line summary of a body, where an escape would
/// only be noise.
pub fn without_unsafe(text: &str) -> impl Iterator<Item = char> + '_ {
    text.chars().filter(|&c| !is_unsafe(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_and_line_controls_are_unsafe() {
        for c in [
            '\u{1b}',
            '\n',
            '\r',
            '\u{7f}',
            '\u{85}',
            '\u{9b}',
            '\u{2028}',
            '\u{2029}',
            '\u{202e}',
            '\u{2067}',
            '\u{200f}',
            '\u{200b}',
            '\u{feff}',
            '\u{61c}',
            '\u{ad}',
            '\u{2061}',
            '\u{180e}',
            '\u{e0041}',
            '\u{e0001}',
            '\u{e007f}',
            '\u{0600}',
            '\u{0605}',
        ] {
            assert!(is_unsafe(c), "{:x}", c as u32);
        }
        for c in [
            'a', ' ', 'é', '✓', '→', '…', '中', '\u{2027}', '\u{202f}', '\u{2065}',
        ] {
            assert!(!is_unsafe(c), "{:x}", c as u32);
        }
    }

    #[test]
    fn the_table_is_sorted_and_disjoint() {
        for pair in INVISIBLE.windows(2) {
            assert!(pair[0].0 <= pair[0].1 && pair[0].1 < pair[1].0, "{pair:x?}");
        }
    }

    #[test]
    fn escaped_keeps_one_line_and_shows_what_was_there() {
        let mut out = String::new();
        write_escaped(&mut out, "a\nb\u{1b}[2J\u{2028}c\u{202e}d\te").unwrap();
        assert_eq!(out, "a\\nb\\u{1b}[2J\\u{2028}c\\u{202e}d\\te");
    }

    #[test]
    fn shown_caps_what_is_shown_escapes_included() {
        assert_eq!(shown("abc", 3), "abc");
        assert_eq!(shown("abcd", 3), "abc…");
        assert_eq!(shown("ééé✓", 3), "ééé…");
        assert_eq!(shown("\n\n", 4), "\\n\\n");
        assert_eq!(shown("\n\n\n\n", 5), "\\n\\n…");
        // An escape is never split: `\u{202e}` is 8 characters.
        assert_eq!(shown("a\u{202e}", 8), "a…");
        assert_eq!(shown("", 0), "");
        assert_eq!(shown("x", 0), "…");
        let flood = "\u{202e}".repeat(600);
        assert_eq!(shown(&flood, 600).chars().count(), 8 * 75 + 1);
    }

    #[test]
    fn without_unsafe_drops_them() {
        let kept: String = without_unsafe("bad\u{1b}[31mcol\u{202e}our\u{2028}").collect();
        assert_eq!(kept, "bad[31mcolour");
    }
}
