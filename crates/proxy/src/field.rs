//! Header field values read as raw bytes, the way `http::HeaderValue` would read them.

/// The value as text when `HeaderValue::to_str` would accept it (visible ASCII, space, tab).
pub(crate) fn visible_ascii(value: &[u8]) -> Option<&str> {
    value
        .iter()
        .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b))
        .then(|| std::str::from_utf8(value).ok())
        .flatten()
}

/// The comma-separated tokens of a field value, trimmed, empty ones skipped (none when the
/// value is not [`visible_ascii`]).
pub(crate) fn tokens(value: &[u8]) -> impl DoubleEndedIterator<Item = &str> {
    visible_ascii(value)
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// `name: value\r\n` at the end of a head being written.
pub(crate) fn write(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_header_value() {
        for bytes in [&b"a, b"[..], b"\tx", b"caf\xc3\xa9", b"a\x7fb", b""] {
            let expected = http::HeaderValue::from_bytes(bytes)
                .ok()
                .and_then(|v| v.to_str().ok().map(str::to_owned));
            assert_eq!(
                visible_ascii(bytes).map(str::to_owned),
                expected,
                "{bytes:?}"
            );
        }
        assert_eq!(tokens(b" a ,, B,").collect::<Vec<_>>(), ["a", "B"]);
        assert_eq!(tokens(b"caf\xc3\xa9, x").count(), 0);
    }
}
