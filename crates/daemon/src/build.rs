//! The `[build]` step: one shell command run in the new release directory, its output streamed
//! line by line to the deploying client. Started like every child of berth
//! ([`supervisor::command::Command`]): it dies with the daemon, and its whole process group is
//! killed on timeout. Its process group is recorded as a job while it runs, so that what it
//! started is swept at the next start even if the daemon is killed (a grandchild does not get
//! the daemon's death signal).

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use supervisor::command::Command;
use supervisor::{Confinement, Rlimits};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::core::Core;
use crate::users::AppUser;

/// How long a build may run before it is killed.
pub const BUILD_TIMEOUT: Duration = Duration::from_secs(30 * 60);
const TAIL: usize = 20;

pub struct BuildFailure {
    pub reason: String,
    pub tail: Vec<String>,
}

impl Core {
    /// Run `command` of `app` with `sh -c` in `dir`; `on_line` sees each line of stdout and stderr.
    pub async fn build(
        &self,
        app: &str,
        command: &str,
        dir: &Path,
        env: &BTreeMap<String, String>,
        user: Option<&AppUser>,
        mut on_line: impl FnMut(String),
    ) -> Result<(), BuildFailure> {
        // A build runs what the app's dependencies say (postinstall scripts): as the app's
        // user, without new privileges, never able to read berth's keys.
        let confinement = Confinement {
            run_as: user.map(AppUser::run_as),
            no_new_privs: true,
            limits: Rlimits {
                core: Some(0),
                ..Rlimits::default()
            },
            umask: Some(0o022),
            ..Confinement::default()
        };
        // stderr joins stdout so the lines keep their order.
        let mut child = Command::shell(format!("exec 2>&1; {command}"))
            .current_dir(dir)
            .envs(env)
            .confine(confinement)
            .stdout(Stdio::piped())
            .spawn()
            .await
            .map_err(|err| BuildFailure {
                reason: format!("could not start the build command: {err}"),
                tail: vec![],
            })?;
        let _job = self.job(app, "build", child.id()).await;
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut lines = BufReader::new(stdout).lines();
        let mut tail = VecDeque::with_capacity(TAIL);

        let read = async {
            while let Ok(Some(line)) = lines.next_line().await {
                if tail.len() == TAIL {
                    tail.pop_front();
                }
                tail.push_back(line.clone());
                on_line(line);
            }
            child.wait().await
        };
        let status = match tokio::time::timeout(BUILD_TIMEOUT, read).await {
            Ok(Ok(status)) => status,
            Ok(Err(err)) => {
                return Err(BuildFailure {
                    reason: format!("could not wait for the build command: {err}"),
                    tail: tail.into(),
                });
            }
            Err(_) => {
                child.kill();
                return Err(BuildFailure {
                    reason: format!(
                        "build did not finish within {} minutes and was killed",
                        BUILD_TIMEOUT.as_secs() / 60
                    ),
                    tail: tail.into(),
                });
            }
        };
        if status.success() {
            return Ok(());
        }
        let how = match (
            status.code(),
            std::os::unix::process::ExitStatusExt::signal(&status),
        ) {
            (Some(code), _) => format!("exited with status {code}"),
            (None, Some(sig)) => format!("was killed by signal {sig}"),
            _ => "failed".to_owned(),
        };
        Err(BuildFailure {
            reason: format!("build command `{command}` {how}"),
            tail: tail.into(),
        })
    }
}
