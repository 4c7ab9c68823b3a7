//! Paths and query strings of the control API, built and parsed in one place so that both
//! sides encode the same way (`serde_urlencoded` for queries, percent-encoded path segments).

use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};
use serde::{Deserialize, Serialize};

/// What a path segment must escape (RFC 3986 `pchar` minus what would end or split it).
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}');

/// `/seg/seg/...` with every segment percent-encoded, then `?query` when `query` is not empty.
pub fn path<Q: Serialize>(segments: &[&str], query: &Q) -> String {
    let mut out = String::new();
    for s in segments {
        out.push('/');
        out.extend(utf8_percent_encode(s, SEGMENT));
    }
    // Serializing a struct of strings, bools and numbers cannot fail.
    let q = serde_urlencoded::to_string(query).unwrap_or_default();
    if !q.is_empty() {
        out.push('?');
        out.push_str(&q);
    }
    out
}

/// The decoded segments of a request path; `None` when a segment is not UTF-8 once decoded.
pub fn segments(path: &str) -> Option<Vec<String>> {
    path.trim_matches('/')
        .split('/')
        .map(|s| {
            percent_decode_str(s)
                .decode_utf8()
                .ok()
                .map(|c| c.into_owned())
        })
        .collect()
}

/// A query string into `Q`; the error says which parameter is wrong.
pub fn parse<Q: for<'de> Deserialize<'de>>(query: Option<&str>) -> Result<Q, String> {
    serde_urlencoded::from_str(query.unwrap_or("")).map_err(|e| format!("bad query: {e}"))
}

/// No query parameters.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct NoQuery {}

/// `GET /v1/status`, `GET /v1/history`: one app, or all.
#[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AppQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
}

/// `POST /v1/upgrade`: hand the daemon over to `binary` (default: the one it runs).
#[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UpgradeQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binary: Option<String>,
}

/// `POST /v1/deploy` (body: the source archive).
#[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DeployQuery {
    /// Validate and answer a [`crate::Plan`]; change nothing.
    #[serde(default, skip_serializing_if = "is_false")]
    pub dry_run: bool,
    /// Queue behind a running rollout of the app instead of refusing.
    #[serde(default, skip_serializing_if = "is_false")]
    pub wait: bool,
    /// The `[environments.NAME]` overlay to deploy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
}

/// `POST /v1/apps/APP/backups/run`, `…/verify`, `…/restore`.
#[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BackupQuery {
    /// The `[backups.NAME]`; may be left out when the app has only one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The backup (verify, restore); the newest good one when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Restore: answer a [`crate::RestorePlan`]; change nothing.
    #[serde(default, skip_serializing_if = "is_false")]
    pub dry_run: bool,
}

/// `POST /v1/apps/APP/rollback`.
#[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RollbackQuery {
    /// The release to go to; the previous live one when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub wait: bool,
}

/// `GET /v1/apps/APP/logs`.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LogsQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Only lines newer than this many milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since_ms: Option<u64>,
    /// Keep the stream open for new lines.
    #[serde(default, skip_serializing_if = "is_false")]
    pub follow: bool,
    /// Replace known secret values with `[redacted NAME]`.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub redact: bool,
}

impl Default for LogsQuery {
    fn default() -> Self {
        LogsQuery {
            service: None,
            since_ms: None,
            follow: false,
            redact: true,
        }
    }
}

/// `PUT /v1/apps/APP/secrets/NAME` (body: the value).
#[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SetSecretQuery {
    /// The app has not been deployed yet: set its secret ahead of the first deploy.
    #[serde(default, skip_serializing_if = "is_false")]
    pub new: bool,
}

/// `PUT /v1/secrets/key` (body: the key).
#[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ImportKeyQuery {
    /// Import even if stored secrets do not decrypt with the new key.
    #[serde(default, skip_serializing_if = "is_false")]
    pub force: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_true(b: &bool) -> bool {
    *b
}

fn yes() -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_queries_round_trip() {
        let q = LogsQuery {
            service: Some("web & co".into()),
            since_ms: Some(600_000),
            follow: true,
            redact: false,
        };
        let p = path(&["v1", "apps", "shop.staging", "logs"], &q);
        assert_eq!(
            p,
            "/v1/apps/shop.staging/logs?service=web+%26+co&since_ms=600000&follow=true&redact=false"
        );
        let (path_part, query) = p.split_once('?').unwrap();
        assert_eq!(
            segments(path_part).unwrap(),
            ["v1", "apps", "shop.staging", "logs"]
        );
        assert_eq!(parse::<LogsQuery>(Some(query)).unwrap(), q);
        assert_eq!(parse::<LogsQuery>(None).unwrap(), LogsQuery::default());
        assert_eq!(path(&["v1", "status"], &AppQuery::default()), "/v1/status");
    }

    #[test]
    fn segments_are_escaped() {
        let p = path(&["v1", "apps", "a/b?c", "secrets"], &NoQuery {});
        assert_eq!(p, "/v1/apps/a%2Fb%3Fc/secrets");
        assert_eq!(segments(&p).unwrap()[2], "a/b?c");
    }

    #[test]
    fn bad_queries_name_the_parameter() {
        let err = parse::<LogsQuery>(Some("since_ms=soon")).unwrap_err();
        assert!(
            err.contains("since_ms") || err.contains("invalid digit"),
            "{err}"
        );
        let err = parse::<DeployQuery>(Some("dryrun=true")).unwrap_err();
        assert!(err.contains("dryrun"), "{err}");
    }
}
