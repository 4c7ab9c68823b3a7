//! Maintenance mode: an app whose routes answer `503` with `Retry-After` and a page instead of
//! reaching its instances or files.
//!
//! Two causes, kept apart in [`AppState`](crate::core::AppState): the operator
//! (`berth maintenance on APP`, stored so that it survives a restart; every route of the app)
//! and a backup restore (in memory for its duration; only the service routes, as the static
//! files do not depend on the data being restored). Each ends on its own: a restore that ends
//! leaves the operator's maintenance on.
//!
//! The page is chosen when the routes are published, never per request: the serving release's
//! own `maintenance.html` when it has one, else [`default_page`] with the operator's message.
//! Health checks are unaffected: the supervisor probes instances on their own ports, not
//! through the proxy; the control socket and the admin listener are not routes.

use std::path::Path;
use std::sync::Arc;

use crate::core::{AppState, Core};
use crate::refusal::Refusal;

/// What the proxy tells clients to wait, in seconds, while an app is under maintenance.
pub(crate) const RETRY_AFTER: u32 = 30;
/// The largest `maintenance.html` served; a larger one is ignored for the default page.
const MAX_PAGE: u64 = 1 << 20;

/// The answer of an app's routes under maintenance: its release's `maintenance.html` (a
/// regular file, not a link, at most 1 MiB) or the default page saying `message`.
pub(crate) fn answer(release_dir: &Path, message: &str) -> Arc<proxy::Maintenance> {
    let own = release_dir.join("maintenance.html");
    let page = match std::fs::symlink_metadata(&own) {
        Ok(meta) if meta.is_file() && meta.len() <= MAX_PAGE => std::fs::read(&own).ok(),
        _ => None,
    };
    Arc::new(proxy::Maintenance {
        retry_after: RETRY_AFTER,
        page: page.map_or_else(|| default_page(message).into(), Into::into),
    })
}

/// A plain page: a heading and the message (HTML-escaped), or a sentence when it is empty.
pub(crate) fn default_page(message: &str) -> String {
    let message = match message.trim() {
        "" => "This site is down for maintenance and will be back shortly.".to_owned(),
        m => escape_html(m),
    };
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>Under maintenance</title>\n</head>\n\
         <body style=\"font-family: system-ui, sans-serif; max-width: 36rem; margin: 15vh auto; padding: 0 1rem; line-height: 1.5; color: #222\">\n\
         <h1>Under maintenance</h1>\n<p>{message}</p>\n</body>\n</html>\n"
    )
}

fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// What `berth status` says of an app under maintenance: who put it there, and why.
pub(crate) fn describe(state: &AppState) -> Option<String> {
    let operator = state.maintenance.as_ref().map(|m| {
        let since = supervisor::logs::format_time(m.since);
        match m.message.as_str() {
            "" => format!("set by the operator at {since}; every route answers 503"),
            msg => format!("set by the operator at {since} (\"{msg}\"); every route answers 503"),
        }
    });
    let restore = state
        .restoring
        .as_ref()
        .map(|why| format!("{why}; its services answer 503"));
    match (operator, restore) {
        (None, None) => None,
        (Some(one), None) | (None, Some(one)) => Some(one),
        (Some(operator), Some(restore)) => Some(format!("{operator}; {restore}")),
    }
}

impl Core {
    /// `PUT` (`message: Some`) or `DELETE` (`None`) `/v1/apps/APP/maintenance`: stores the
    /// operator's maintenance mode, records it in the history and republishes the routes.
    pub async fn maintenance_mode(
        &self,
        app: &str,
        message: Option<String>,
    ) -> Result<api::MaintenanceMode, Refusal> {
        self.known_app(app).await?;
        let was_on = self
            .apps()
            .get(app)
            .is_some_and(|a| a.maintenance.is_some());
        let stored = match &message {
            Some(message) => Some(
                self.db
                    .set_maintenance(app, message)
                    .await
                    .map_err(anyhow::Error::new)?,
            ),
            None => {
                self.db
                    .clear_maintenance(app)
                    .await
                    .map_err(anyhow::Error::new)?;
                None
            }
        };
        let detail = match (&message, was_on) {
            (Some(m), _) if m.is_empty() => "on (no message)".to_owned(),
            (Some(m), _) => format!("on: {m}"),
            (None, true) => "off".to_owned(),
            (None, false) => "off (was not on)".to_owned(),
        };
        if let Err(err) = self.db.record_event(app, "maintenance", detail).await {
            tracing::error!(app, error = %err, "record an event");
        }
        self.apps().entry(app.to_owned()).or_default().maintenance = stored;
        self.publish_routes();
        tracing::info!(app, on = message.is_some(), "maintenance mode");
        Ok(api::MaintenanceMode {
            app: app.to_owned(),
            on: message.is_some(),
            message,
            was_on,
        })
    }

    /// At start, before any release is switched to: the operator's maintenance as stored.
    pub async fn load_maintenance(&self) {
        match self.db.maintenance().await {
            Ok(rows) => {
                let mut apps = self.apps();
                for m in rows {
                    tracing::warn!(app = %m.app, "under maintenance (set by the operator)");
                    let app = m.app.clone();
                    apps.entry(app).or_default().maintenance = Some(m);
                }
            }
            Err(err) => {
                tracing::error!(error = %err, "read maintenance mode; every app serves normally")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_page_escapes_the_message() {
        let page = default_page("back at 5 <script>alert('x')</script> & \"soon\"");
        assert!(
            page.contains(
                "<p>back at 5 &lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;soon&quot;</p>"
            ),
            "{page}"
        );
        assert!(!page.contains("<script>"));
        assert!(default_page("  ").contains("will be back shortly"));
    }

    #[test]
    fn the_apps_own_page_wins_unless_it_is_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let page = |d: &Path| String::from_utf8(answer(d, "msg").page.to_vec()).unwrap();
        assert!(page(dir.path()).contains("<p>msg</p>"));
        std::fs::write(dir.path().join("elsewhere.html"), "secret").unwrap();
        std::os::unix::fs::symlink("elsewhere.html", dir.path().join("maintenance.html")).unwrap();
        assert!(
            page(dir.path()).contains("<p>msg</p>"),
            "a link is not followed"
        );
        std::fs::remove_file(dir.path().join("maintenance.html")).unwrap();
        std::fs::write(dir.path().join("maintenance.html"), "<h1>ours</h1>").unwrap();
        assert_eq!(page(dir.path()), "<h1>ours</h1>");
        assert_eq!(answer(dir.path(), "").retry_after, RETRY_AFTER);
    }
}
