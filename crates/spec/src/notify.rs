//! `[[notify]]`: where alerts and events are sent, one channel per entry. URLs are templates
//! checked like a database `url`: references defined, and no token written in the file — a
//! literal URL that carries one (a Slack or Discord webhook path, user info, a query string)
//! must come from a secret instead.

use std::ops::Range;

use toml::de::DeValue;

use crate::databases::no_literal_password;
use crate::diagnostic::Diagnostic;
use crate::observe_model::{NotifyChannel, NotifyEvent, NotifySpec};
use crate::secrets::{Defined, check_template, inner_span};
use crate::walk::{Problem, Table, Value, Walker, backticked, or_default, type_name};

const NOTIFY_KEYS: &[&str] = &["webhook", "slack", "discord", "ntfy", "email", "events"];
const CHANNELS: &[&str] = &["webhook", "slack", "discord", "ntfy", "email"];
const EMAIL_KEYS: &[&str] = &["to", "smtp"];
const EMAIL_EXAMPLE: &str = "email = { to = \"ops@example.com\", smtp = \"${SMTP_URL}\" }";

/// `[[notify]]`: the valid entries, in file order.
pub(crate) fn notify(
    w: &mut Walker<'_>,
    value: &Value<'_>,
    defined: &Defined<'_>,
) -> Vec<NotifySpec> {
    let mut out = Vec::new();
    let DeValue::Array(items) = value.get_ref() else {
        let help = match value.get_ref() {
            DeValue::Table(_) => "write [[notify]] (with double brackets): one entry per channel",
            _ => {
                "write [[notify]] and below it webhook = \"${WEBHOOK_URL}\", one entry per channel"
            }
        };
        w.report(
            Diagnostic::error("`notify` must be an array of tables")
                .at(
                    value.span(),
                    format!("found {}", type_name(value.get_ref())),
                )
                .help(help),
        );
        return out;
    };
    for (i, item) in items.iter().enumerate() {
        let ctx = format!("[[notify]] #{}", i + 1);
        let Some(t) = w.table(item, &ctx, NOTIFY_KEYS) else {
            w.report(
                Diagnostic::error("each [[notify]] entry must be a table")
                    .at(item.span(), format!("found {}", type_name(item.get_ref())))
                    .help(
                        "write [[notify]] tables, or notify = [{ webhook = \"${WEBHOOK_URL}\" }]",
                    ),
            );
            continue;
        };
        if let Some(entry) = entry(w, &t, defined) {
            out.push(entry);
        }
    }
    out
}

fn entry(w: &mut Walker<'_>, t: &Table<'_, '_>, defined: &Defined<'_>) -> Option<NotifySpec> {
    let written: Vec<(&str, Range<usize>)> = CHANNELS
        .iter()
        .filter_map(|c| t.entry(c).map(|(span, _)| (*c, span)))
        .collect();
    // Every channel written is checked, so one pass finds every problem.
    let channels: Vec<Option<NotifyChannel>> = written
        .iter()
        .map(|(key, _)| channel(w, t, key, defined))
        .collect();
    let events = or_default(t, "events", NotifyEvent::ALL.to_vec(), |k| events(w, t, k));
    let channel = match (written.as_slice(), channels.as_slice()) {
        ([], _) => {
            if !CHANNELS.iter().any(|c| t.has_typo_of(c)) {
                w.report(
                    Diagnostic::error(format!("{} names no channel", t.ctx))
                        .at(t.span.clone(), "where are notifications sent?")
                        .help(format!(
                            "add one of {}: e.g. slack = \"${{SLACK_WEBHOOK_URL}}\", ntfy = \"https://ntfy.sh/TOPIC\" or {EMAIL_EXAMPLE}",
                            backticked(CHANNELS.iter().copied())
                        )),
                );
            }
            None
        }
        ([_], [channel]) => channel.clone(),
        ([(first, _), (second, span), ..], _) => {
            w.report(
                Diagnostic::error(format!("{} has more than one channel", t.ctx))
                    .at(span.clone(), format!("`{second}` after `{first}`"))
                    .help(format!(
                        "write one [[notify]] entry per channel: move `{second}` (and its own `events`) into a [[notify]] of its own"
                    )),
            );
            None
        }
        _ => None,
    };
    Some(NotifySpec {
        channel: channel?,
        events: events?,
    })
}

fn channel(
    w: &mut Walker<'_>,
    t: &Table<'_, '_>,
    key: &str,
    defined: &Defined<'_>,
) -> Option<NotifyChannel> {
    let url = |w: &mut Walker<'_>| url(w, t, key, defined);
    match key {
        "webhook" => url(w).map(NotifyChannel::Webhook),
        "slack" => url(w).map(NotifyChannel::Slack),
        "discord" => url(w).map(NotifyChannel::Discord),
        "ntfy" => url(w).map(NotifyChannel::Ntfy),
        _ => email(w, t, defined),
    }
}

/// The secret a channel's URL is best kept in.
fn secret_for(key: &str) -> &'static str {
    match key {
        "slack" => "SLACK_WEBHOOK_URL",
        "discord" => "DISCORD_WEBHOOK_URL",
        "ntfy" => "NTFY_URL",
        "smtp" => "SMTP_URL",
        _ => "WEBHOOK_URL",
    }
}

fn from_secret(key: &str) -> String {
    let secret = secret_for(key);
    format!(
        "write {key} = \"${{{secret}}}\" and declare {secret} = {{ required = true }} in [secrets]; set it with `berth secrets set`"
    )
}

/// `webhook`, `slack`, `discord` or `ntfy`: a template whose references are defined; unless
/// it starts with one, an http(s) URL with no token written in it.
fn url(w: &mut Walker<'_>, t: &Table<'_, '_>, key: &str, defined: &Defined<'_>) -> Option<String> {
    let (url, span) = w.non_empty_string(t, key)?;
    let owner = format!("`{key}`{}", t.in_ctx());
    check_template(w, &owner, url, &span, defined)?;
    if !url.starts_with("${") && !url.starts_with("https://") && !url.starts_with("http://") {
        w.report(
            Diagnostic::error(format!("{owner} is not an http(s) URL"))
                .at(span, "must start with https:// or http://")
                .help(format!(
                    "write {key} = \"https://{}\"",
                    url.split_once("://").map_or(url, |(_, rest)| rest)
                )),
        );
        return None;
    }
    if let Some((range, what, label)) = literal_token(url) {
        w.report(
            Diagnostic::error(format!("{owner} has {what} written in the file"))
                .at(inner_span(w.source, &span, url, range), label)
                .help(from_secret(key)),
        );
        return None;
    }
    Some(url.to_owned())
}

/// The part of `url` that carries a token written as is, with what it is and a label: the
/// path of a Slack (`hooks.slack.com/services/...`) or Discord (`/api/webhooks/...`) webhook,
/// user info, or a query string. A part holding a `${NAME}` reference comes from elsewhere
/// and is fine.
fn literal_token(url: &str) -> Option<(Range<usize>, &'static str, &'static str)> {
    let authority_start = url.find("://")? + 3;
    let rest = &url[authority_start..];
    let authority_end = authority_start + rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let path_end = authority_end
        + url[authority_end..]
            .find(['?', '#'])
            .unwrap_or(url.len() - authority_end);
    let literal = |r: &Range<usize>| !r.is_empty() && !url[r.clone()].contains("${");
    let authority = &url[authority_start..authority_end];
    let host_start = match authority.rfind('@') {
        Some(at) => {
            let user_info = authority_start..authority_start + at;
            if literal(&user_info) {
                return Some((
                    user_info,
                    "credentials",
                    "user info in a URL is a credential: it must come from a secret",
                ));
            }
            authority_start + at + 1
        }
        None => authority_start,
    };
    let host = &url[host_start..authority_end];
    let host = host.split(':').next().unwrap_or_default();
    let path = &url[authority_end..path_end];
    let slack = "/services/";
    if host.eq_ignore_ascii_case("hooks.slack.com") && path.starts_with(slack) {
        let token = authority_end + slack.len()..path_end;
        if literal(&token) {
            return Some((
                token,
                "a Slack webhook token",
                "the path after /services/ is the token: it must come from a secret",
            ));
        }
    }
    let discord = "/api/webhooks/";
    if let Some(i) = path.find(discord) {
        let token = authority_end + i + discord.len()..path_end;
        if literal(&token) {
            return Some((
                token,
                "a Discord webhook token",
                "the path after /api/webhooks/ is the token: it must come from a secret",
            ));
        }
    }
    if url[path_end..].starts_with('?') {
        let query_end = url[path_end..]
            .find('#')
            .map_or(url.len(), |i| path_end + i);
        let query = path_end + 1..query_end;
        if literal(&query) {
            return Some((
                query,
                "a query string",
                "a query string may carry a token: it must come from a secret",
            ));
        }
    }
    None
}

/// `email = { to, smtp }`.
fn email(w: &mut Walker<'_>, t: &Table<'_, '_>, defined: &Defined<'_>) -> Option<NotifyChannel> {
    let value = t.get("email")?;
    let ctx = format!("`email` of {}", t.ctx);
    let Some(e) = w.table(value, &ctx, EMAIL_KEYS) else {
        let help = match value.get_ref() {
            DeValue::String(to) => {
                format!("write email = {{ to = \"{to}\", smtp = \"${{SMTP_URL}}\" }}")
            }
            _ => format!("write {EMAIL_EXAMPLE}"),
        };
        w.wrong_type(t, "email", value, "a table", Some(help));
        return None;
    };
    let to = w
        .required(&e, "to", "to = \"ops@example.com\"")
        .and_then(|_| w.checked(&e, "to", "email address", check_address));
    let smtp = w
        .required(&e, "smtp", "smtp = \"${SMTP_URL}\"")
        .and_then(|_| smtp(w, &e, defined));
    Some(NotifyChannel::Email {
        to: to?,
        smtp: smtp?,
    })
}

/// `smtp`: a template; unless it starts with a reference, an `smtp://` or `smtps://` URL with
/// no password written in it.
fn smtp(w: &mut Walker<'_>, e: &Table<'_, '_>, defined: &Defined<'_>) -> Option<String> {
    let (url, span) = w.non_empty_string(e, "smtp")?;
    let owner = format!("`smtp`{}", e.in_ctx());
    check_template(w, &owner, url, &span, defined)?;
    if !url.starts_with("${") && !url.starts_with("smtp://") && !url.starts_with("smtps://") {
        w.report(
            Diagnostic::error(format!("{owner} is not an SMTP URL"))
                .at(span, "must start with smtp:// or smtps://")
                .help(format!(
                    "e.g. smtps://USER:${{SMTP_PASSWORD}}@mail.example.com:465; or {}",
                    from_secret("smtp")
                )),
        );
        return None;
    }
    no_literal_password(w, &owner, url, &span, from_secret("smtp"))?;
    Some(url.to_owned())
}

/// One plausible address: something, one `@`, a domain with a dot inside; no spaces.
fn check_address(to: &str) -> Result<(), Problem> {
    let help = || Some("write one address, e.g. to = \"ops@example.com\"".to_owned());
    if to.contains(|c: char| c.is_whitespace() || c == ',' || c == ';') {
        return Err((
            "one address, without spaces".to_owned(),
            Some(
                "for more recipients, add a [[notify]] entry per address, or use a list address"
                    .to_owned(),
            ),
        ));
    }
    let Some((local, domain)) = to.split_once('@') else {
        return Err(("no `@`".to_owned(), help()));
    };
    if domain.contains('@') {
        return Err(("more than one `@`".to_owned(), help()));
    }
    if local.is_empty() {
        return Err(("nothing before `@`".to_owned(), help()));
    }
    let dot_inside = domain
        .find('.')
        .is_some_and(|i| i > 0 && !domain.ends_with('.'));
    if !dot_inside {
        return Err(("the domain has no dot".to_owned(), help()));
    }
    Ok(())
}

/// `events = [...]`: known names, each once, not none; returned in [`NotifyEvent::ALL`] order.
fn events(w: &mut Walker<'_>, t: &Table<'_, '_>, key: &str) -> Option<Vec<NotifyEvent>> {
    let value = t.get(key)?;
    let all = backticked(NotifyEvent::ALL.map(NotifyEvent::as_str));
    let DeValue::Array(items) = value.get_ref() else {
        let help = match value.get_ref() {
            DeValue::String(s) => format!("write a list: {key} = [\"{s}\"]"),
            _ => format!("write a list of {all}; leave `{key}` out for all of them"),
        };
        w.wrong_type(t, key, value, "an array of event names", Some(help));
        return None;
    };
    if items.is_empty() {
        w.report(
            Diagnostic::error(format!("empty `{key}`{}", t.in_ctx()))
                .at(value.span(), "the channel would get nothing")
                .help(format!(
                    "leave `{key}` out for every event, or list some of {all}; to send nothing, remove the [[notify]] entry"
                )),
        );
        return None;
    }
    let choices = NotifyEvent::ALL.map(|e| (e.as_str(), e));
    let mut out = Vec::new();
    let mut ok = true;
    for item in items {
        let DeValue::String(name) = item.get_ref() else {
            w.report(
                Diagnostic::error(format!("wrong type in `{key}`{}", t.in_ctx()))
                    .at(
                        item.span(),
                        format!(
                            "expected an event name, found {}",
                            type_name(item.get_ref())
                        ),
                    )
                    .help(format!("events are strings: {all}")),
            );
            ok = false;
            continue;
        };
        match w.one_of("event", name, item.span(), &choices, &t.in_ctx()) {
            Some(e) if out.contains(&e) => {
                w.report(
                    Diagnostic::error(format!("`{name}` is listed twice in `{key}`{}", t.in_ctx()))
                        .at(item.span(), "listed already")
                        .help("remove one"),
                );
                ok = false;
            }
            Some(e) => out.push(e),
            None => ok = false,
        }
    }
    out.sort();
    ok.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_in_urls() {
        fn token(url: &str) -> Option<&str> {
            literal_token(url).map(|(r, _, _)| &url[r])
        }
        assert_eq!(
            token("https://hooks.slack.com/services/T0/B0/XyZ"),
            Some("T0/B0/XyZ")
        );
        assert_eq!(
            token("https://discord.com/api/webhooks/123/abc?wait=true"),
            Some("123/abc")
        );
        assert_eq!(
            token("https://ops:s3cret@example.com/hook"),
            Some("ops:s3cret")
        );
        assert_eq!(
            token("https://example.com/hook?token=abc#x"),
            Some("token=abc")
        );
        assert_eq!(token("https://ntfy.sh/shop-alerts"), None);
        assert_eq!(token("https://example.com/hook"), None);
        assert_eq!(token("https://example.com/hook?"), None);
        assert_eq!(
            token("https://hooks.slack.com/services/${SLACK_TOKEN}"),
            None
        );
        assert_eq!(token("https://${AUTH}@example.com/hook"), None);
        assert_eq!(token("https://example.com/hook?token=${TOKEN}"), None);
        assert_eq!(token("${WEBHOOK_URL}"), None);
    }

    #[test]
    fn addresses() {
        let problem = |to| check_address(to).err().map(|(label, _)| label);
        assert_eq!(problem("ops@example.com"), None);
        assert_eq!(problem("ops+alerts@mail.example.co.uk"), None);
        assert_eq!(problem("ops"), Some("no `@`".to_owned()));
        assert_eq!(
            problem("@example.com"),
            Some("nothing before `@`".to_owned())
        );
        assert_eq!(
            problem("ops@localhost"),
            Some("the domain has no dot".to_owned())
        );
        assert_eq!(
            problem("ops@example."),
            Some("the domain has no dot".to_owned())
        );
        assert_eq!(
            problem("ops@.com"),
            Some("the domain has no dot".to_owned())
        );
        assert_eq!(
            problem("a@b@example.com"),
            Some("more than one `@`".to_owned())
        );
        assert_eq!(
            problem("a@example.com, b@example.com"),
            Some("one address, without spaces".to_owned())
        );
    }
}
