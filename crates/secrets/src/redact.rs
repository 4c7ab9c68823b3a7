//! Replacing known secret values in text berth shows (its logs, errors, API answers, the log
//! viewer's output).

use std::borrow::Cow;
use std::fmt;

use aho_corasick::{AhoCorasick, MatchKind};

/// Replaces every occurrence of a known value with `[redacted NAME]`, in one pass over the text
/// for any number of values (Aho-Corasick).
///
/// Only the exact value is matched, not encodings of it (base64, URL-encoded). Values shorter
/// than [`Redactor::MIN_LEN`] characters are not redacted: replacing every `abc` or `1234` in
/// a log would mangle ordinary text, and such a value is no secret worth the name (generated
/// ones are at least 8 characters). When values overlap, the longest match wins.
#[derive(Clone, Default)]
pub struct Redactor {
    matcher: Option<AhoCorasick>,
    replacements: Vec<String>,
}

impl Redactor {
    pub const MIN_LEN: usize = 6;

    /// From `(name, value)` pairs, e.g. every secret of every app.
    pub fn new<N, V>(pairs: impl IntoIterator<Item = (N, V)>) -> Self
    where
        N: AsRef<str>,
        V: AsRef<str>,
    {
        let mut values = Vec::new();
        let mut replacements = Vec::new();
        for (name, value) in pairs {
            let value = value.as_ref();
            if value.chars().count() < Self::MIN_LEN {
                continue;
            }
            values.push(value.to_owned());
            replacements.push(format!("[redacted {}]", name.as_ref()));
        }
        if values.is_empty() {
            return Redactor::default();
        }
        let matcher = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&values)
            .expect("a few thousand literal patterns always build");
        Redactor {
            matcher: Some(matcher),
            replacements,
        }
    }

    /// Whether there is nothing to redact.
    pub fn is_empty(&self) -> bool {
        self.matcher.is_none()
    }

    /// `text` with every known value replaced; borrowed when nothing matched.
    pub fn redact<'t>(&self, text: &'t str) -> Cow<'t, str> {
        let Some(matcher) = &self.matcher else {
            return Cow::Borrowed(text);
        };
        let mut matches = matcher.find_iter(text).peekable();
        if matches.peek().is_none() {
            return Cow::Borrowed(text);
        }
        let mut out = String::with_capacity(text.len());
        let mut last = 0;
        for m in matches {
            out.push_str(&text[last..m.start()]);
            out.push_str(&self.replacements[m.pattern().as_usize()]);
            last = m.end();
        }
        out.push_str(&text[last..]);
        Cow::Owned(out)
    }
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Redactor({} values)", self.replacements.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_every_occurrence_of_every_value() {
        let r = Redactor::new([
            ("SESSION_KEY", "c2VjcmV0LWtleQ=="),
            ("DATABASE_URL", "postgres://u:pw@db/shop"),
            ("PIN", "1234"),
        ]);
        let line =
            "connect postgres://u:pw@db/shop key=c2VjcmV0LWtleQ== again c2VjcmV0LWtleQ== pin 1234";
        assert_eq!(
            r.redact(line),
            "connect [redacted DATABASE_URL] key=[redacted SESSION_KEY] again [redacted SESSION_KEY] pin 1234"
        );
        assert!(matches!(r.redact("nothing here"), Cow::Borrowed(_)));
        assert_eq!(format!("{r:?}"), "Redactor(2 values)");
    }

    #[test]
    fn longest_value_wins_and_unicode_is_kept_intact() {
        let r = Redactor::new([("SHORT", "abcdef"), ("LONG", "abcdefghij")]);
        assert_eq!(
            r.redact("é abcdefghij ü abcdef"),
            "é [redacted LONG] ü [redacted SHORT]"
        );
    }

    #[test]
    fn empty_redactor_borrows() {
        let r = Redactor::new(Vec::<(String, String)>::new());
        assert!(r.is_empty());
        assert!(matches!(r.redact("x"), Cow::Borrowed("x")));
        let r = Redactor::new([("A", "12345")]);
        assert!(r.is_empty(), "values under MIN_LEN are not redacted");
    }

    #[test]
    fn many_values_many_lines() {
        let values: Vec<(String, String)> = (0..1000)
            .map(|i| (format!("S{i}"), crate::generate(spec::SecretKind::Hex, 16)))
            .collect();
        let r = Redactor::new(values.iter().map(|(n, v)| (n, v)));
        let text: String = values
            .iter()
            .map(|(_, v)| format!("log line with {v} inside\n"))
            .collect();
        let out = r.redact(&text);
        for (name, value) in &values {
            assert!(!out.contains(value.as_str()));
            assert!(out.contains(&format!("[redacted {name}]")));
        }
    }
}
