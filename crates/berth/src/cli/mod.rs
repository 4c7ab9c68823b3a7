//! Client subcommands. Each returns the process exit code or an error for [`report`].

use anyhow::Error;

use crate::{EXIT_BAD_INPUT, EXIT_FAILED, output};

pub mod backup;
pub mod check;
pub mod demo;
pub mod deploy;
pub mod export;
pub mod history;
pub mod install;
pub mod logs;
pub mod maintenance;
pub mod observe;
pub mod proxy;
pub mod secrets;
pub mod status;
pub mod upgrade;

/// Bad input from the user (exit 2), as opposed to an operation that failed (exit 1).
#[derive(Debug)]
pub struct BadInput(pub String);

impl std::fmt::Display for BadInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadInput {}

/// Print an error with its hint and return the exit code it deserves.
pub fn report(err: &Error) -> u8 {
    output::error(err);
    if let Some(api::client::Error::Daemon { status, body }) =
        err.downcast_ref::<api::client::Error>()
    {
        if let Some(hint) = &body.hint {
            output::hint(hint);
        }
        return if status.is_client_error() {
            EXIT_BAD_INPUT
        } else {
            EXIT_FAILED
        };
    }
    // The way to a remote daemon failed (ssh, the remote berth): what to do about it.
    let remote = match err.downcast_ref::<api::client::Error>() {
        Some(api::client::Error::Transport(why)) => why.downcast_ref::<crate::remote::Failure>(),
        _ => err.downcast_ref::<crate::remote::Failure>(),
    };
    if let Some(hint) = remote.and_then(|f| f.hint.as_ref()) {
        output::hint(hint);
    }
    if err.downcast_ref::<BadInput>().is_some() {
        return EXIT_BAD_INPUT;
    }
    EXIT_FAILED
}
