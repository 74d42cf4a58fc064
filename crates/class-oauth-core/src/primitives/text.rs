//! Text helpers every layer uses.

/// The first `max_chars` characters of `s` (never splits a character): error messages
/// quote server-sent text only this far.
pub(crate) fn truncate(s: &str, max_chars: usize) -> &str {
    match s.char_indices().nth(max_chars) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}
