//! Static files through the real binary: an app deployed to a daemon (berth.toml's
//! `cache_control`, SPA deep links, a deploy that changes a file) and `berth proxy --static`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::harness::*;

/// `curl -si URL` with `Host: example.test`: the status line, headers and body as one text.
fn curl(url: &str) -> String {
    let out = Command::new("curl")
        .args(["-si", "--max-time", "10", "-H", "host: example.test", url])
        .output()
        .expect("curl runs");
    String::from_utf8_lossy(&out.stdout).replace("\r\n", "\n")
}

fn header<'a>(response: &'a str, name: &str) -> &'a str {
    response
        .lines()
        .take_while(|l| !l.is_empty())
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
        .unwrap_or("")
}

fn body(response: &str) -> &str {
    response.split_once("\n\n").map_or("", |(_, b)| b)
}

const SITE: &str = r#"[app]
name = "site"

[[routes]]
path = "/"
static = "dist"
spa = true
cache_control = { other = "public, max-age=60" }
"#;

#[test]
fn a_static_app_serves_each_release_with_its_cache_control() {
    let d = Daemon::start();
    let url = |path: &str| format!("http://{}{path}", d.http);
    let app = app(&[
        ("berth.toml", SITE),
        ("dist/index.html", "<h1>site</h1>"),
        ("dist/app.js", "one"),
        ("dist/assets/index-BkT9x2aB.css", "body{}"),
    ]);
    let deploy = |dir: &Path| {
        let run = d.berth(&["deploy", dir.to_str().unwrap()]);
        assert_eq!(run.code, 0, "{run:?}\n{}", d.log());
    };
    deploy(app.path());

    let r = curl(&url("/app.js"));
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert_eq!(body(&r), "one");
    assert_eq!(header(&r, "cache-control"), "public, max-age=60");
    let r = curl(&url("/assets/index-BkT9x2aB.css"));
    assert_eq!(
        header(&r, "cache-control"),
        "public, max-age=31536000, immutable"
    );
    let r = curl(&url("/users/john.doe"));
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert_eq!(body(&r), "<h1>site</h1>");
    assert_eq!(header(&r, "cache-control"), "no-cache");
    let r = curl(&url("/users/john.js"));
    assert!(r.starts_with("HTTP/1.1 404"), "{r}");

    // The next release changes a file: it is served at once, nothing stale is left.
    std::fs::write(app.path().join("dist/app.js"), "two").unwrap();
    deploy(app.path());
    assert_eq!(body(&curl(&url("/app.js"))), "two");
    let run = d.berth(&["rollback", "site"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(body(&curl(&url("/app.js"))), "one");
}

#[test]
fn berth_proxy_serves_a_static_directory() {
    let dir = app(&[("index.html", "<h1>alone</h1>"), ("app.js", "let x = 1;")]);
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut child = Command::new(BERTH)
        .args(["proxy", "--listen", "127.0.0.1:0", "--static"])
        .arg(dir.path())
        .arg("--spa")
        .env("BERTH_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log.reopen().unwrap())
        .spawn()
        .unwrap();
    let addr = wait_for("berth proxy to listen", Duration::from_secs(20), || {
        let text = std::fs::read_to_string(log.path()).unwrap_or_default();
        text.lines()
            .filter(|l| l.contains("proxy listening"))
            .find_map(|l| l.split("addr=").nth(1)?.split_whitespace().next())
            .map(str::to_owned)
    });
    let r = curl(&format!("http://{addr}/app.js"));
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert_eq!(body(&r), "let x = 1;");
    assert_eq!(
        body(&curl(&format!("http://{addr}/a/deep/link"))),
        "<h1>alone</h1>"
    );
    let _ = child.kill();
    let _ = child.wait();

    // --to and --static are one or the other.
    let run = berth(
        dir.path(),
        &[
            "proxy",
            "--listen",
            "127.0.0.1:0",
            "--to",
            "127.0.0.1:1",
            "--static",
            "x",
        ],
    );
    assert_eq!(run.code, 2, "{run:?}");
}
