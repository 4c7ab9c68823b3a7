//! `berth maintenance (on|off) APP [--message TEXT]`.

use anyhow::Result;
use api::MaintenanceMode;
use api::client::{Client, read_json};
use bytes::Bytes;
use http::Method;

use crate::output;

#[derive(clap::Subcommand)]
pub enum MaintenanceCommand {
    /// Every route of the app answers 503 with Retry-After and a page: the release's own
    /// maintenance.html, or a default one saying MESSAGE. Kept across daemon restarts.
    On {
        app: String,
        /// What the default page says (HTML-escaped).
        #[arg(long, default_value = "")]
        message: String,
    },
    /// The app's routes serve again.
    Off { app: String },
}

pub async fn run(client: &Client, cmd: MaintenanceCommand) -> Result<u8> {
    let (method, app, body) = match cmd {
        MaintenanceCommand::On { app, message } => (Method::PUT, app, Bytes::from(message)),
        MaintenanceCommand::Off { app } => (Method::DELETE, app, Bytes::new()),
    };
    spec::check_app_name(&app).map_err(super::BadInput)?;
    let resp = client
        .send(
            method,
            &api::path(&["v1", "apps", &app, "maintenance"], &api::NoQuery {}),
            body,
        )
        .await?;
    let answer: MaintenanceMode = read_json(resp.into_body()).await?;
    output::line(match (answer.on, answer.was_on) {
        (true, false) => format!("{app} is in maintenance: its routes answer 503"),
        (true, true) => format!("{app} was already in maintenance; its message is replaced"),
        (false, true) => format!("{app} is out of maintenance: its routes serve again"),
        (false, false) => format!("{app} was not in maintenance (by the operator)"),
    });
    Ok(0)
}
