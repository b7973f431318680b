//! Byte searches in `&str`, shared by every parser on a push's path.
//!
//! `str::find(char)`, `str::split_once(char)` and `str::split(char)` inline a char searcher
//! (and memchr) at every call site: code that V8 compiles, function by function, on each
//! isolate's first request. Every delimiter these parsers look for is ASCII, so a plain byte
//! loop in one shared function finds the same position.

/// The position of the first `byte` in `s`; `byte` must be ASCII (so the position is a char
/// boundary).
#[inline(never)]
pub fn find_byte(s: &str, byte: u8) -> Option<usize> {
    debug_assert!(byte.is_ascii());
    s.bytes().position(|b| b == byte)
}

/// `s` around its first `byte` (ASCII), which neither side keeps: `str::split_once(byte as char)`.
pub fn split_at_byte(s: &str, byte: u8) -> Option<(&str, &str)> {
    let at = find_byte(s, byte)?;
    Some((s.get(..at)?, s.get(at + 1..)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_cut_as_split_once() {
        for s in ["", "a", "=", "a=b", "a=b=c", "==", "ключ=значение", "名=值&x", "é=", "=é"] {
            assert_eq!(split_at_byte(s, b'='), s.split_once('='), "{s:?}");
            assert_eq!(find_byte(s, b'='), s.find('='), "{s:?}");
            assert_eq!(split_at_byte(s, b'&'), s.split_once('&'), "{s:?}");
        }
    }
}
