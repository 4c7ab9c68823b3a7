//! An S3-compatible object store on loopback: moto's server (`moto_server`, Python package
//! `moto[server]`), which keeps buckets and objects in memory and accepts any access key.
//!
//! `moto_server` is looked up on `PATH`, then in `target/tools/moto/bin` of the workspace,
//! where `scripts/test` installs it into a virtualenv when the system's pip may not.

use std::net::SocketAddr;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use crate::assert_success;
use crate::port::free_port;

/// The access key the fixture signs with; moto accepts any.
const ACCESS_KEY: &str = "berth-test-key";
/// The secret key the fixture signs with; moto accepts any.
const SECRET_KEY: &str = "berth-test-secret";
/// The region the fixture signs for.
const REGION: &str = "us-east-1";

/// moto's server on 127.0.0.1, serving S3 with path-style addressing
/// (`http://127.0.0.1:PORT/BUCKET/KEY`); killed on drop, its objects with it.
pub struct S3 {
    dir: tempfile::TempDir,
    port: u16,
    /// The server; `None` once [`S3::stop`] took it.
    server: Option<Child>,
}

impl Drop for S3 {
    fn drop(&mut self) {
        self.stop();
    }
}

impl S3 {
    /// Starts moto's server; returns once it answers HTTP (blocking, up to 30 s). Takes
    /// about half a second, most of it Python importing moto.
    pub fn start() -> S3 {
        let dir = tempfile::tempdir().expect("temporary directory");
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("moto.log")).expect("log file");
        let server = Command::new(crate::pip_tool("moto_server", "moto"))
            .args(["-H", "127.0.0.1", "-p"])
            .arg(port.to_string())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("start moto_server");
        let mut s3 = S3 {
            dir,
            port,
            server: Some(server),
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let limit = Duration::from_secs(30);
        crate::wait_for("moto_server to answer", limit, || {
            if let Some(server) = &mut s3.server
                && let Ok(Some(status)) = server.try_wait()
            {
                panic!("moto_server exited ({status}):\n{}", s3.log());
            }
            crate::http_get(addr, "127.0.0.1", "/").is_some()
        });
        s3
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// An access key for clients (moto accepts any; this is the one the fixture uses).
    pub fn access_key(&self) -> &str {
        ACCESS_KEY
    }

    /// The secret key that goes with [`S3::access_key`].
    pub fn secret_key(&self) -> &str {
        SECRET_KEY
    }

    /// `us-east-1`.
    pub fn region(&self) -> &str {
        REGION
    }

    /// Creates bucket `name`.
    pub fn create_bucket(&self, name: &str) {
        let out = self.curl(&["--request", "PUT", &format!("{}/{name}", self.endpoint())]);
        assert_success(&format!("create bucket {name}"), &out);
    }

    /// The keys of the objects in `bucket`, in S3's order (lexicographic); panics when the
    /// bucket holds more than one listing page (1000 keys).
    pub fn list(&self, bucket: &str) -> Vec<String> {
        let url = format!("{}/{bucket}?list-type=2", self.endpoint());
        let out = self.curl(&[&url]);
        assert_success(&format!("list bucket {bucket}"), &out);
        let xml = String::from_utf8_lossy(&out.stdout);
        assert!(
            !xml.contains("<IsTruncated>true</IsTruncated>"),
            "bucket {bucket} holds more keys than one listing page"
        );
        xml_values(&xml, "Key")
    }

    /// Kills the server, as if it went away during an upload: connections are refused from
    /// now on and its objects are gone. Drop does the same.
    pub fn stop(&mut self) {
        if let Some(mut server) = self.server.take() {
            let _ = server.kill();
            let _ = server.wait();
        }
    }

    /// moto's log (one line per request), for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("moto.log")).unwrap_or_default()
    }

    /// curl with `args`, the request signed (AWS Signature Version 4) with the fixture's keys.
    fn curl(&self, args: &[&str]) -> Output {
        Command::new("curl")
            .args(["--silent", "--show-error", "--fail-with-body"])
            .args(["--max-time", "10"])
            .args(["--aws-sigv4", &format!("aws:amz:{REGION}:s3"), "--user"])
            .arg(format!("{ACCESS_KEY}:{SECRET_KEY}"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("curl must be installed")
    }
}

/// The text of every `<tag>…</tag>` in `xml`, its entities decoded; enough for S3's listings.
fn xml_values(xml: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut values = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        rest = &rest[start + open.len()..];
        let Some(end) = rest.find(&close) else { break };
        values.push(decode_entities(&rest[..end]));
        rest = &rest[end + close.len()..];
    }
    values
}

/// XML's five predefined entities, decoded (`&amp;` last, so `&amp;lt;` stays `&lt;`).
fn decode_entities(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_keys_from_a_listing() {
        let xml = "<ListBucketResult><Contents><Key>a/b.tar.zst</Key></Contents>\
                   <Contents><Key>x&amp;y &lt;1&gt;</Key></Contents><Name>b</Name></ListBucketResult>";
        assert_eq!(xml_values(xml, "Key"), ["a/b.tar.zst", "x&y <1>"]);
        assert_eq!(xml_values("<Prefix/>", "Key"), Vec::<String>::new());
    }
}
