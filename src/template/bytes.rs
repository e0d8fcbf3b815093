//! Go templates work on bytes; gtmpl's strings are Rust `String`s, which must be
//! UTF-8. A binary value (a PKCS#12 file, a `b64dec` result) has to cross the
//! engine unchanged, so bytes that are not UTF-8 are carried as characters of a
//! private-use range, one per byte, and turned back into those bytes when the
//! output (or a function that reads bytes) takes them.
//!
//! The encoding is exact both ways: characters of that range found in real text
//! are themselves carried byte by byte, so every byte string survives a round trip.

/// First of the 256 characters that stand for the bytes 0x00..=0xFF.
const BASE: u32 = 0x10_FF00;

/// `bytes` as an engine string: valid UTF-8 as it is, every other byte escaped.
pub(crate) fn to_text(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if is_escape(c) {
                let mut buf = [0u8; 4];
                c.encode_utf8(&mut buf)
                    .bytes()
                    .for_each(|b| out.push(escape(b)));
            } else {
                out.push(c);
            }
        }
        chunk.invalid().iter().for_each(|b| out.push(escape(*b)));
    }
    out
}

/// The bytes an engine string stands for.
pub(crate) fn to_bytes(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut buf = [0u8; 4];
    for c in text.chars() {
        match u8::try_from(u32::from(c).wrapping_sub(BASE)) {
            Ok(byte) if is_escape(c) => out.push(byte),
            _ => out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes()),
        }
    }
    out
}

fn is_escape(c: char) -> bool {
    (BASE..=BASE + 0xFF).contains(&u32::from(c))
}

fn escape(byte: u8) -> char {
    char::from_u32(BASE + u32::from(byte)).unwrap_or(char::REPLACEMENT_CHARACTER)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_string_round_trips() {
        let samples: Vec<Vec<u8>> = vec![
            b"plain text".to_vec(),
            "ünïcödé ✓".as_bytes().to_vec(),
            (0..=255u8).collect(),
            vec![0xff, 0xfe, b'a', 0xc3],
            "\u{10FF41} is an escape character in real text"
                .as_bytes()
                .to_vec(),
        ];
        for bytes in samples {
            assert_eq!(to_bytes(&to_text(&bytes)), bytes);
        }
        assert_eq!(to_text(b"abc"), "abc", "text stays text");
    }
}
