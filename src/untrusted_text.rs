//! Text that came from outside meshwait (a proxy's answer, another process's argv) made safe to
//! show on a terminal or in a line-based log.
//!
//! Neighbours in a pod are not trusted: a process may name itself `meshwait`, and a sidecar's
//! endpoints answer whatever they answer. Shown raw, such text can move the cursor or clear the
//! operator's screen (ESC and the C1 controls), split one log event or report line into two and so
//! forge the second (line feeds, NEL, U+2028/U+2029), reorder what a reader sees (bidirectional
//! overrides and isolates, the "Trojan Source" trick), or hide text (zero-width characters).

use std::fmt;

/// Whether `c` must not be shown as itself.
pub fn is_unsafe(c: char) -> bool {
    // is_control covers C0, DEL and C1 (which includes U+0085, NEL).
    c.is_control()
        || matches!(
            c,
            // Line and paragraph separators: some viewers and JSON-unaware tools break lines there.
            '\u{2028}' | '\u{2029}'
            // Bidirectional marks, embeddings, overrides and isolates.
            | '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
            // Zero-width characters and the byte-order mark: invisible, so they can hide a change.
            | '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}'
        )
}

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

/// `text` escaped and cut to at most `max` characters of the original, with `…` when cut: how
/// evidence read from a neighbour is shown, so it can neither forge nor flood a report.
pub fn shown(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max.saturating_mul(4)) + 3);
    let mut chars = text.char_indices();
    let end = chars.nth(max).map_or(text.len(), |(i, _)| i);
    let _ = write_escaped(&mut out, &text[..end]);
    if end < text.len() {
        out.push('…');
    }
    out
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
            '\u{1b}', '\n', '\r', '\u{7f}', '\u{85}', '\u{9b}', '\u{2028}', '\u{2029}', '\u{202e}',
            '\u{2067}', '\u{200f}', '\u{200b}', '\u{feff}', '\u{61c}',
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
    fn escaped_keeps_one_line_and_shows_what_was_there() {
        let mut out = String::new();
        write_escaped(&mut out, "a\nb\u{1b}[2J\u{2028}c\u{202e}d\te").unwrap();
        assert_eq!(out, "a\\nb\\u{1b}[2J\\u{2028}c\\u{202e}d\\te");
    }

    #[test]
    fn shown_caps_by_characters_of_the_original() {
        assert_eq!(shown("abc", 3), "abc");
        assert_eq!(shown("abcd", 3), "abc…");
        assert_eq!(shown("ééé✓", 3), "ééé…");
        assert_eq!(shown("\n\n\n\n", 2), "\\n\\n…");
        assert_eq!(shown("", 0), "");
        assert_eq!(shown("x", 0), "…");
    }

    #[test]
    fn without_unsafe_drops_them() {
        let kept: String = without_unsafe("bad\u{1b}[31mcol\u{202e}our\u{2028}").collect();
        assert_eq!(kept, "bad[31mcolour");
    }
}
