//! The request path of a static route: decoded once, checked, and turned into the cache key.

use std::borrow::Cow;

/// A request path that is safe to look up under a root.
///
/// Its key is the decoded path without leading or repeated slashes, keeping one trailing slash:
/// `/assets//app.js` → `assets/app.js`, `/docs/` → `docs/`, `/` → `` (the root). The same
/// name always gives the same key, so a file is cached once however it is spelled.
#[derive(Debug)]
pub(crate) struct RequestPath<'a> {
    key: Cow<'a, str>,
}

impl<'a> RequestPath<'a> {
    /// `None` when the path is malformed or tries to climb: `.`/`..` segments (also encoded,
    /// `%2e%2e`, `..%2f`), backslashes, NUL, or bytes that are not UTF-8. A `%2f` is a `/`: it
    /// separates segments like any other.
    pub fn parse(raw: &'a str) -> Option<RequestPath<'a>> {
        let raw = raw.split(['?', '#']).next().unwrap_or("");
        let decoded = if raw.contains('%') {
            percent_encoding::percent_decode_str(raw)
                .decode_utf8()
                .ok()?
        } else {
            Cow::Borrowed(raw)
        };
        if decoded.contains(['\\', '\0']) {
            return None;
        }
        if decoded.split('/').any(|seg| seg == "." || seg == "..") {
            return None;
        }
        Some(RequestPath {
            key: normalize(decoded),
        })
    }

    /// A path from a key [`RequestPath::key`] gave (already decoded and checked).
    pub fn from_key(key: &'a str) -> RequestPath<'a> {
        RequestPath {
            key: Cow::Borrowed(key),
        }
    }

    /// The cache key (see the type's doc).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The path segments, none empty.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.key.split('/').filter(|s| !s.is_empty())
    }

    /// The root, or a path ending in `/`: names a directory.
    pub fn is_dir_form(&self) -> bool {
        self.key.is_empty() || self.key.ends_with('/')
    }

    /// The last segment (`None` for the root).
    pub fn last(&self) -> Option<&str> {
        self.segments().last()
    }

    /// Dotfiles and dot-directories (`.env`, `.git/`), except `.well-known/`.
    pub fn has_hidden_segment(&self) -> bool {
        self.segments()
            .any(|s| s.starts_with('.') && s != ".well-known")
    }
}

fn normalize(decoded: Cow<'_, str>) -> Cow<'_, str> {
    let trimmed = decoded.trim_start_matches('/');
    if !trimmed.contains("//") {
        let start = decoded.len() - trimmed.len();
        return match decoded {
            Cow::Borrowed(s) => Cow::Borrowed(&s[start..]),
            Cow::Owned(mut s) => {
                s.drain(..start);
                Cow::Owned(s)
            }
        };
    }
    let mut key = trimmed
        .split('/')
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("/");
    if decoded.ends_with('/') && !key.is_empty() {
        key.push('/');
    }
    Cow::Owned(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(raw: &str, expected: Option<&str>) {
        let got = RequestPath::parse(raw);
        assert_eq!(got.as_ref().map(RequestPath::key), expected, "{raw}");
    }

    #[test]
    fn keys() {
        check("/", Some(""));
        check("//", Some(""));
        check("/app.js", Some("app.js"));
        check("/assets//app.js", Some("assets/app.js"));
        check("//assets/app.js", Some("assets/app.js"));
        check("/docs/", Some("docs/"));
        check("/a//b//", Some("a/b/"));
        check("/a%2fb", Some("a/b"));
        check("/file%2etxt", Some("file.txt"));
        check("/caf%C3%A9", Some("café"));
        check("/x?y=1", Some("x"));
        check("/%2e%2e/secret", None);
        check("/..%2fsecret", None);
        check("/a/./b", None);
        check("/a\\b", None);
        check("/%00", None);
        check("/%ff", None);
    }

    #[test]
    fn shapes() {
        let p = RequestPath::parse("/a/.well-known/b").unwrap();
        assert!(!p.has_hidden_segment());
        assert_eq!(p.last(), Some("b"));
        assert!(!p.is_dir_form());
        let p = RequestPath::parse("/a/.git/").unwrap();
        assert!(p.has_hidden_segment());
        assert!(p.is_dir_form());
        let p = RequestPath::parse("/").unwrap();
        assert!(p.is_dir_form());
        assert_eq!(p.last(), None);
    }
}
