//! Headless Chromium (Debian package `chromium`) driven over the DevTools protocol (CDP), for
//! tests of pages in a real browser: what the page logs, which of its requests fail, what it
//! renders, and a screenshot.
//!
//! [`Chromium::start`] runs the browser with `--remote-debugging-port=0` in a temporary
//! profile; the port it picked comes from the profile's `DevToolsActivePort` file, so no port
//! is fixed. Each [`Page`] is a tab with a WebSocket of its own, spoken to synchronously: a
//! call sends one command and reads until its answer, recording the events that came before it
//! (console messages, exceptions, network responses and failures). Since the browser sends
//! events in order, every event the page caused before a call's answer is recorded when the
//! call returns.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::json;

use cdp::Cdp;
pub use page::Page;
use record::Record;
pub use record::{ConsoleMessage, FailedRequest};

mod cdp;
mod page;
mod record;

/// How long one protocol call may take (a navigation's, a screenshot's).
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// The window of a new page until [`Page::set_viewport`] changes it.
const WINDOW: (u32, u32) = (1280, 900);

/// A headless Chromium on loopback, in a temporary profile; killed on drop with every process
/// it started.
pub struct Chromium {
    process: Process,
    port: u16,
    browser: Cdp,
}

impl Chromium {
    /// Starts Chromium (`chromium` on `PATH`); returns once its DevTools endpoint answers
    /// (blocking, up to 30 s). As root it runs with `--no-sandbox`, which Chromium insists on.
    pub fn start() -> Chromium {
        let dir = tempfile::tempdir().expect("temporary directory");
        let profile = dir.path().join("profile");
        let log = File::create(dir.path().join("chromium.log")).expect("log file");
        let mut command = Command::new(binary());
        command
            .args([
                "--headless",
                "--remote-debugging-port=0",
                "--no-first-run",
                "--no-default-browser-check",
                "--password-store=basic",
                // No GPU in a container; /dev/shm is often 64 MB there.
                "--disable-gpu",
                "--disable-dev-shm-usage",
                // Nothing but the page under test on the network.
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-extensions",
                "--disable-sync",
                "--mute-audio",
                // Overlay scrollbars, as on a phone: they take no width from the layout.
                "--hide-scrollbars",
            ])
            .arg(format!("--window-size={},{}", WINDOW.0, WINDOW.1))
            .arg(format!("--user-data-dir={}", profile.display()));
        if nix::unistd::geteuid().is_root() {
            command.arg("--no-sandbox");
        }
        let child = command
            .arg("about:blank")
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("start chromium");
        let mut process = Process { dir, child };

        // `DevToolsActivePort`: the port on the first line, the browser's path on the second.
        let active = profile.join("DevToolsActivePort");
        let (port, path) = crate::wait_for("chromium's DevTools port", CALL_TIMEOUT, || {
            if let Ok(Some(status)) = process.child.try_wait() {
                panic!("chromium exited ({status}):\n{}", process.log());
            }
            let text = std::fs::read_to_string(&active).ok()?;
            let mut lines = text.lines();
            let port = lines.next()?.trim().parse::<u16>().ok()?;
            let path = lines.next()?.trim().to_owned();
            Some((port, path))
        });
        let browser = Cdp::connect(port, &path)
            .unwrap_or_else(|err| panic!("connect to chromium: {err}\n{}", process.log()));
        Chromium {
            process,
            port,
            browser,
        }
    }

    /// A new tab, blank, its console and network recorded from now on.
    pub fn new_page(&mut self) -> Page {
        let target = self
            .browser
            .call(
                "Target.createTarget",
                json!({ "url": "about:blank" }),
                &mut |_, _| {},
            )
            .unwrap_or_else(|err| panic!("open a tab: {err}"));
        let id = target["targetId"].as_str().expect("targetId").to_owned();
        let cdp = Cdp::connect(self.port, &format!("/devtools/page/{id}"))
            .unwrap_or_else(|err| panic!("connect to the tab: {err}"));
        let mut page = Page {
            cdp,
            record: Record::default(),
        };
        for domain in ["Page", "Runtime", "Log", "Network"] {
            page.cdp(&format!("{domain}.enable"), json!({}));
        }
        page
    }

    /// Chromium's own output (stderr), for failure messages.
    pub fn log(&self) -> String {
        self.process.log()
    }
}

/// The browser process and its profile directory.
struct Process {
    dir: tempfile::TempDir,
    child: Child,
}

impl Process {
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("chromium.log")).unwrap_or_default()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // Chromium runs in a process group of its own, its renderer, GPU and zygote processes
        // with it: they all go at once, before the profile directory is removed.
        let group = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

/// `chromium` on `PATH` (Debian's name), else `chromium-browser` or `google-chrome`.
fn binary() -> PathBuf {
    let dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect())
        .unwrap_or_default();
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|name| dirs.iter().map(move |dir| dir.join(name)))
        .find(|candidate| candidate.is_file())
        .expect("chromium not found on PATH: install it with `apt-get install chromium` (scripts/test does)")
}
