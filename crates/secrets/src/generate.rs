//! New secret values from the OS CSPRNG (`getrandom`: `getrandom(2)` on Linux).

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use spec::SecretKind;

const ALNUM: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// A new value of `kind`. `len` is as in `generate = "KIND:LEN"`: random bytes for `hex`,
/// `base64` and `base64url` (so `hex` gives `2 * len` characters), characters for `alnum`;
/// ignored for `uuid` (a random version-4 UUID). `alnum` draws without modulo bias.
///
/// Panics only if the OS random source fails, which on Linux it does not once the system has
/// booted; berth would rather stop than make a weak secret.
pub fn generate(kind: SecretKind, len: u32) -> String {
    let len = len as usize;
    match kind {
        SecretKind::Hex => hex(&random(len)),
        SecretKind::Base64 => STANDARD.encode(random(len)),
        SecretKind::Base64Url => URL_SAFE_NO_PAD.encode(random(len)),
        SecretKind::Alnum => alnum(len),
        SecretKind::Uuid => uuid(),
    }
}

fn random(n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    getrandom::fill(&mut buf).expect("the OS random number generator failed");
    buf
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn alnum(len: usize) -> String {
    // 248 = 4 * 62: bytes at or above it are dropped so every character is equally likely.
    let mut out = String::with_capacity(len);
    while out.len() < len {
        for b in random(len - out.len() + 8) {
            if b < 248 && out.len() < len {
                out.push(ALNUM[(b % 62) as usize] as char);
            }
        }
    }
    out
}

fn uuid() -> String {
    let mut b = random(16);
    b[6] = (b[6] & 0x0f) | 0x40; // version 4
    b[8] = (b[8] & 0x3f) | 0x80; // RFC 4122 variant
    let h = hex(&b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn check(kind: SecretKind, len: u32, chars: usize, alphabet: &str) {
        let mut seen = HashSet::new();
        for _ in 0..200 {
            let v = generate(kind, len);
            assert_eq!(v.len(), chars, "{kind} {len}: {v}");
            assert!(v.chars().all(|c| alphabet.contains(c)), "{kind}: {v}");
            assert!(seen.insert(v), "{kind}: repeated value");
        }
    }

    const B64: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=";
    const B64URL: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

    #[test]
    fn lengths_and_alphabets() {
        let alnum = std::str::from_utf8(ALNUM).unwrap();
        check(SecretKind::Alnum, 8, 8, alnum);
        check(SecretKind::Alnum, 40, 40, alnum);
        check(SecretKind::Alnum, 256, 256, alnum);
        check(SecretKind::Hex, 16, 32, "0123456789abcdef");
        check(SecretKind::Base64, 32, 44, B64);
        check(SecretKind::Base64, 8, 12, B64);
        check(SecretKind::Base64Url, 32, 43, B64URL);
        check(SecretKind::Uuid, 16, 36, "0123456789abcdef-");
    }

    #[test]
    fn decodes_to_the_requested_bytes() {
        assert_eq!(
            STANDARD
                .decode(generate(SecretKind::Base64, 32))
                .unwrap()
                .len(),
            32
        );
        let url = generate(SecretKind::Base64Url, 17);
        assert_eq!(URL_SAFE_NO_PAD.decode(url).unwrap().len(), 17);
    }

    #[test]
    fn uuid_is_version_4() {
        for _ in 0..50 {
            let u = generate(SecretKind::Uuid, 16);
            let parts: Vec<_> = u.split('-').map(str::len).collect();
            assert_eq!(parts, [8, 4, 4, 4, 12], "{u}");
            assert_eq!(&u[14..15], "4", "{u}");
            assert!("89ab".contains(&u[19..20]), "{u}");
        }
    }

    #[test]
    fn alnum_uses_the_whole_alphabet() {
        let all: HashSet<char> = generate(SecretKind::Alnum, 256)
            .chars()
            .chain(generate(SecretKind::Alnum, 256).chars())
            .chain(generate(SecretKind::Alnum, 256).chars())
            .collect();
        // 768 draws from 62 symbols: missing even one is vanishingly unlikely.
        assert_eq!(all.len(), 62);
    }
}
