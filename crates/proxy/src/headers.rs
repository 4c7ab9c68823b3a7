//! Security headers added to a route's responses: presets (`strict`, `basic`, `off`) and
//! overrides, resolved by the daemon into a [`HeaderPolicy`] per route.
//!
//! Names and values are parsed once, when the daemon builds the route table; the hot path only
//! looks up and inserts (a `HeaderValue` clone is a reference-count increment at most).

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// One of the built-in sets of security headers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Preset {
    /// No headers added.
    Off,
    /// Headers that break no ordinary site; the default.
    #[default]
    Basic,
    /// For sites that load everything from their own origin and are never framed.
    Strict,
}

/// One header the policy sets (or removes) on responses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderEntry {
    pub name: HeaderName,
    /// `None` removes the header: the app's own one when `force`, otherwise it only keeps a
    /// preset from adding it.
    pub value: Option<HeaderValue>,
    /// The route's value replaces the one the app set itself.
    pub force: bool,
    /// Sent only on HTTPS connections (Strict-Transport-Security: RFC 6797 §7.2 forbids it
    /// over plain HTTP, where an attacker could forge or strip it anyway).
    pub https_only: bool,
}

/// The headers berth adds to every response of a route: upstream answers, static files, and
/// berth's own error responses on that route. A header the app set itself wins unless the
/// entry is `force`d.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderPolicy {
    entries: Vec<HeaderEntry>,
    /// Set by [`HeaderPolicy::force`]: entries added later are forced too.
    forced: bool,
}

impl Default for HeaderPolicy {
    /// [`Preset::Basic`]: an app that says nothing still gets the safe minimum.
    fn default() -> Self {
        HeaderPolicy::preset(Preset::Basic)
    }
}

/// Two years: what Mozilla's guidelines recommend and the HSTS preload list requires.
const HSTS_BASIC: &str = "max-age=63072000";
const HSTS_STRICT: &str = "max-age=63072000; includeSubDomains";
const CSP_STRICT: &str = "default-src 'self'; frame-ancestors 'none'; base-uri 'self'; object-src 'none'; form-action 'self'";
const PERMISSIONS_STRICT: &str = "camera=(), microphone=(), geolocation=(), payment=(), usb=()";

impl HeaderPolicy {
    /// The headers of `preset`:
    ///
    /// - `basic`: `X-Content-Type-Options: nosniff` (no MIME sniffing of uploads),
    ///   `X-Frame-Options: SAMEORIGIN` (no clickjacking by other sites, own frames still
    ///   work), `Referrer-Policy: strict-origin-when-cross-origin` (no paths or queries leak
    ///   to other sites; browsers' own default, made explicit), and over HTTPS
    ///   `Strict-Transport-Security: max-age=63072000` (two years, as Mozilla's guidelines and
    ///   the preload list ask; this host only: a subdomain still on plain HTTP keeps working).
    ///   Nothing here can break a site that works today.
    /// - `strict`: `basic` tightened — HSTS with `includeSubDomains`, `X-Frame-Options: DENY`,
    ///   a same-origin `Content-Security-Policy` (no inline scripts, no framing, no plugins, no
    ///   `<base>` or form hijacking), a `Permissions-Policy` that switches off camera,
    ///   microphone, geolocation, payment and USB, and `Cross-Origin-Opener-Policy:
    ///   same-origin` (no cross-window access by pages this one opens). Sites that load
    ///   scripts from a CDN loosen the CSP with an override.
    /// - `off`: nothing.
    pub fn preset(preset: Preset) -> HeaderPolicy {
        let basic = [
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::X_FRAME_OPTIONS, "SAMEORIGIN"),
            (header::REFERRER_POLICY, "strict-origin-when-cross-origin"),
            (header::STRICT_TRANSPORT_SECURITY, HSTS_BASIC),
        ];
        let strict = [
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::REFERRER_POLICY, "strict-origin-when-cross-origin"),
            (header::STRICT_TRANSPORT_SECURITY, HSTS_STRICT),
            (header::CONTENT_SECURITY_POLICY, CSP_STRICT),
            (
                HeaderName::from_static("permissions-policy"),
                PERMISSIONS_STRICT,
            ),
            (
                HeaderName::from_static("cross-origin-opener-policy"),
                "same-origin",
            ),
        ];
        let list: &[(HeaderName, &'static str)] = match preset {
            Preset::Off => &[],
            Preset::Basic => &basic,
            Preset::Strict => &strict,
        };
        let mut policy = HeaderPolicy {
            entries: Vec::with_capacity(list.len()),
            forced: false,
        };
        for (name, value) in list {
            policy.set(name.clone(), Some(HeaderValue::from_static(value)));
        }
        policy
    }

    /// Sets `name` to `value` (`None`: remove), replacing what the policy had for it.
    /// Strict-Transport-Security is always HTTPS-only.
    pub fn set(&mut self, name: HeaderName, value: Option<HeaderValue>) -> &mut Self {
        let https_only = name == header::STRICT_TRANSPORT_SECURITY;
        self.entries.retain(|e| e.name != name);
        self.entries.push(HeaderEntry {
            name,
            value,
            force: self.forced,
            https_only,
        });
        self
    }

    /// Every entry, now and later, replaces (or removes) what the app set itself.
    pub fn force(&mut self) -> &mut Self {
        for e in &mut self.entries {
            e.force = true;
        }
        self.forced = true;
        self
    }

    pub fn entries(&self) -> &[HeaderEntry] {
        &self.entries
    }

    /// Adds the policy's headers to a response's `headers` (`https`: the client connection is
    /// TLS). Absent headers are set; present ones only when forced.
    pub fn apply(&self, headers: &mut HeaderMap, https: bool) {
        for e in &self.entries {
            if e.https_only && !https {
                continue;
            }
            match &e.value {
                Some(v) => {
                    if e.force || !headers.contains_key(&e.name) {
                        headers.insert(e.name.clone(), v.clone());
                    }
                }
                None => {
                    if e.force && headers.contains_key(&e.name) {
                        headers.remove(&e.name);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn applied(
        policy: &HeaderPolicy,
        app: &[(&'static str, &'static str)],
        https: bool,
    ) -> Vec<String> {
        let mut h = HeaderMap::new();
        for (k, v) in app {
            h.insert(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        policy.apply(&mut h, https);
        let mut out: Vec<String> = h
            .iter()
            .map(|(k, v)| format!("{k}: {}", v.to_str().unwrap()))
            .collect();
        out.sort();
        out
    }

    #[test]
    fn hsts_only_over_https() {
        for preset in [Preset::Basic, Preset::Strict] {
            let p = HeaderPolicy::preset(preset);
            let http = applied(&p, &[], false);
            assert!(
                !http
                    .iter()
                    .any(|h| h.starts_with("strict-transport-security"))
            );
            let https = applied(&p, &[], true);
            assert!(
                https
                    .iter()
                    .any(|h| h.starts_with("strict-transport-security"))
            );
        }
        // an override of HSTS stays HTTPS-only, even forced
        let mut p = HeaderPolicy::preset(Preset::Off);
        p.set(
            header::STRICT_TRANSPORT_SECURITY,
            Some(HeaderValue::from_static("max-age=60")),
        )
        .force();
        assert_eq!(applied(&p, &[], false), Vec::<String>::new());
        assert_eq!(
            applied(&p, &[], true),
            ["strict-transport-security: max-age=60"]
        );
    }

    #[test]
    fn presets() {
        assert_eq!(
            applied(&HeaderPolicy::preset(Preset::Basic), &[], true),
            [
                "referrer-policy: strict-origin-when-cross-origin",
                "strict-transport-security: max-age=63072000",
                "x-content-type-options: nosniff",
                "x-frame-options: SAMEORIGIN",
            ]
        );
        let strict = applied(&HeaderPolicy::preset(Preset::Strict), &[], true);
        assert_eq!(strict.len(), 7);
        assert!(
            strict.contains(
                &"strict-transport-security: max-age=63072000; includeSubDomains".to_owned()
            ),
            "{strict:?}"
        );
        assert!(HeaderPolicy::preset(Preset::Off).entries().is_empty());
        assert_eq!(HeaderPolicy::default(), HeaderPolicy::preset(Preset::Basic));
    }

    #[test]
    fn app_wins_unless_forced() {
        let mut p = HeaderPolicy::preset(Preset::Basic);
        p.set(header::X_CONTENT_TYPE_OPTIONS, None);
        p.set(
            header::CONTENT_SECURITY_POLICY,
            Some(HeaderValue::from_static("default-src 'self'")),
        );
        let app = [
            ("x-frame-options", "ALLOW"),
            ("x-content-type-options", "app"),
        ];
        assert_eq!(
            applied(&p, &app, false),
            [
                "content-security-policy: default-src 'self'",
                "referrer-policy: strict-origin-when-cross-origin",
                "x-content-type-options: app",
                "x-frame-options: ALLOW",
            ]
        );
        p.force();
        assert_eq!(
            applied(&p, &app, false),
            [
                "content-security-policy: default-src 'self'",
                "referrer-policy: strict-origin-when-cross-origin",
                "x-frame-options: SAMEORIGIN",
            ]
        );
        // entries set after `force` are forced too
        p.set(
            header::REFERRER_POLICY,
            Some(HeaderValue::from_static("no-referrer")),
        );
        let app = [("referrer-policy", "unsafe-url")];
        assert!(applied(&p, &app, false).contains(&"referrer-policy: no-referrer".to_owned()));
    }
}
