//! Where notifications go, how a channel is shown, and the secrets in its URL that nothing
//! may show.

use url::Url;

/// A notification channel, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Channel {
    /// POST of Alertmanager's webhook JSON to this URL.
    Webhook(String),
    /// A Slack incoming webhook (`{"text": …}`).
    Slack(String),
    /// A Discord webhook (`{"content": …}`).
    Discord(String),
    /// An ntfy topic URL (`https://ntfy.sh/TOPIC`): the text as the body, `Title`,
    /// `Priority` and `Tags` headers. `https://user:token@host/topic` sends basic auth.
    Ntfy(String),
    /// Email through an SMTP server; see [`Notifier`](crate::Notifier) for the URL forms.
    Email { to: String, smtp_url: String },
}

/// A channel whose configuration cannot work; the message names it as [`Channel::shown`]
/// does, never with its secrets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{channel}: {reason}")]
pub struct InvalidChannel {
    pub channel: String,
    pub reason: String,
}

/// A URL path shorter than this is not hinted at by [`Channel::shown`]: four characters of
/// it would give too much of it away.
const HINT_MIN_PATH: usize = 12;

impl Channel {
    /// `"webhook"`, `"slack"`, `"discord"`, `"ntfy"` or `"email"`.
    pub fn kind(&self) -> &'static str {
        match self {
            Channel::Webhook(_) => "webhook",
            Channel::Slack(_) => "slack",
            Channel::Discord(_) => "discord",
            Channel::Ntfy(_) => "ntfy",
            Channel::Email { .. } => "email",
        }
    }

    /// The channel as status, logs and errors name it, without its secrets: the kind and at
    /// most the last 4 characters of the URL's path (`slack (…/AbCd)`, and only when the path
    /// is 12 characters or longer), or for email the recipients and the SMTP host
    /// (`email ops@example.com via smtp.example.com`).
    pub fn shown(&self) -> String {
        match self {
            Channel::Email { to, smtp_url } => {
                let url = Url::parse(smtp_url).ok();
                let host = url.as_ref().and_then(Url::host_str).unwrap_or("?");
                format!("email {to} via {host}")
            }
            Channel::Webhook(url)
            | Channel::Slack(url)
            | Channel::Discord(url)
            | Channel::Ntfy(url) => {
                let kind = self.kind();
                let path = Url::parse(url)
                    .map(|url| url.path().trim_matches('/').to_owned())
                    .unwrap_or_default();
                let chars: Vec<char> = path.chars().collect();
                if chars.len() >= HINT_MIN_PATH {
                    let tail: String = chars[chars.len() - 4..].iter().collect();
                    format!("{kind} (…/{tail})")
                } else {
                    kind.to_owned()
                }
            }
        }
    }

    /// Checks the channel without any IO: an http(s) URL with a host; for email, the SMTP
    /// URL's form and the addresses.
    pub fn validate(&self) -> Result<(), InvalidChannel> {
        let checked = match self {
            Channel::Email { to, smtp_url } => super::email::Smtp::parse(to, smtp_url).map(drop),
            Channel::Webhook(url)
            | Channel::Slack(url)
            | Channel::Discord(url)
            | Channel::Ntfy(url) => super::http::Target::parse(url).map(drop),
        };
        checked.map_err(|reason| self.invalid(reason))
    }

    pub(crate) fn invalid(&self, reason: String) -> InvalidChannel {
        InvalidChannel {
            channel: self.shown(),
            reason: Secrets::of(self).scrub(&reason),
        }
    }

    fn url(&self) -> &str {
        match self {
            Channel::Webhook(url)
            | Channel::Slack(url)
            | Channel::Discord(url)
            | Channel::Ntfy(url) => url,
            Channel::Email { smtp_url, .. } => smtp_url,
        }
    }
}

/// The parts of a channel's URL that no message may contain: the whole URL, its path and
/// query, its last path segment, its user and password (as written and percent-decoded).
/// Parts shorter than 3 characters are left alone: they carry no secret worth the name, and
/// replacing them would garble the text around them.
#[derive(Debug, Clone)]
pub(crate) struct Secrets(Vec<String>);

impl Secrets {
    pub(crate) fn of(channel: &Channel) -> Secrets {
        let raw = channel.url();
        let mut parts = vec![raw.to_owned()];
        if let Ok(url) = Url::parse(raw) {
            parts.push(url.to_string());
            let path = url.path();
            parts.push(path.to_owned());
            parts.push(path.trim_matches('/').to_owned());
            if let Some(last) = url
                .path_segments()
                .and_then(|mut s| s.rfind(|s| !s.is_empty()))
            {
                parts.push(last.to_owned());
            }
            if let Some(query) = url.query() {
                parts.push(query.to_owned());
                parts.push(format!("{path}?{query}"));
            }
            for userinfo in [url.username(), url.password().unwrap_or_default()] {
                parts.push(userinfo.to_owned());
                parts.push(decode(userinfo));
            }
        }
        parts.retain(|part| part.chars().count() >= 3);
        // Longest first, so the whole URL goes before its parts.
        parts.sort_by_key(|part| std::cmp::Reverse(part.len()));
        parts.dedup();
        Secrets(parts)
    }

    /// `text` with every secret part replaced by `…`.
    pub(crate) fn scrub(&self, text: &str) -> String {
        self.0.iter().fold(text.to_owned(), |text, secret| {
            text.replace(secret.as_str(), "…")
        })
    }
}

/// Percent-decoded `text` (lossy), as a URL's user and password are used.
pub(crate) fn decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_hides_everything_but_a_hint() {
        let check = |channel: Channel, expected: &str| assert_eq!(channel.shown(), expected);
        check(
            Channel::Slack("https://hooks.slack.com/services/T000/B000/XXXXAbCd".into()),
            "slack (…/AbCd)",
        );
        check(
            Channel::Discord("https://discord.com/api/webhooks/123/tok-en_9xY2/".into()),
            "discord (…/9xY2)",
        );
        check(
            Channel::Ntfy("https://ntfy.sh/berth-alerts-x7Qp".into()),
            "ntfy (…/x7Qp)",
        );
        // A short path is not hinted at, and the host is not shown (it may be the secret).
        check(
            Channel::Webhook("https://abc123.hooks.example.net/berth".into()),
            "webhook",
        );
        check(Channel::Webhook("not a url".into()), "webhook");
        check(
            Channel::Email {
                to: "ops@example.com".into(),
                smtp_url: "smtp://apikey:s3cret@smtp.example.com:587".into(),
            },
            "email ops@example.com via smtp.example.com",
        );
    }

    #[test]
    fn scrub_removes_every_secret_part() {
        let channel = Channel::Ntfy(
            "https://alice:p%40ss+word@ntfy.example.com/topic-secret?auth=tok123".into(),
        );
        let secrets = Secrets::of(&channel);
        let text = "POST https://alice:p%40ss+word@ntfy.example.com/topic-secret?auth=tok123 failed; \
                    topic-secret, /topic-secret, auth=tok123, alice, p@ss+word, p%40ss+word";
        let scrubbed = secrets.scrub(text);
        for secret in ["topic-secret", "tok123", "alice", "p@ss+word", "p%40ss"] {
            assert!(!scrubbed.contains(secret), "{secret} in {scrubbed}");
        }
        assert!(scrubbed.contains("failed"), "{scrubbed}");
    }

    #[test]
    fn validate_names_the_channel_without_its_secret() {
        let channel = Channel::Slack("ftp://hooks.slack.com/services/T000/B000/XXXXsecret".into());
        let err = channel.validate().unwrap_err();
        assert_eq!(err.channel, "slack (…/cret)");
        assert!(!err.to_string().contains("XXXXsecret"), "{err}");
        assert!(
            Channel::Webhook("http://127.0.0.1:9/hook".into())
                .validate()
                .is_ok()
        );
    }
}
