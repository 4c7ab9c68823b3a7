//! An SMTP server on loopback: aiosmtpd (Python package `aiosmtpd`, from pip) with its
//! `Mailbox` handler, which writes every message it accepts into a Maildir the fixture reads.
//! Plain, STARTTLS or TLS from the first byte, with a certificate for 127.0.0.1 from a CA of
//! the fixture's own ([`Smtp::ca_der`]).
//!
//! `aiosmtpd` is looked up on `PATH`, then in `target/tools/aiosmtpd/bin` of the workspace,
//! where `scripts/test` installs it into a virtualenv when the system's pip may not.

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::port::free_port;

/// How the server wants its clients to talk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain SMTP (what a local relay speaks).
    None,
    /// STARTTLS offered and required before mail is accepted.
    StartTls,
    /// TLS from the first byte ("smtps", port 465 in real life).
    Implicit,
}

/// aiosmtpd on 127.0.0.1, accepting any sender and recipient, no authentication; killed on
/// drop, its mail with it.
pub struct Smtp {
    dir: tempfile::TempDir,
    port: u16,
    tls: SmtpTls,
    ca_der: Vec<u8>,
    /// The server; `None` once [`Smtp::stop`] took it.
    server: Option<Child>,
}

/// One message as the server received it.
#[derive(Debug, Clone)]
pub struct Mail {
    /// The whole message, headers and body, with `\n` line ends.
    pub raw: String,
}

impl Drop for Smtp {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Smtp {
    /// Starts a plain SMTP server; see [`Smtp::start_with`].
    pub fn start() -> Smtp {
        Smtp::start_with(SmtpTls::None)
    }

    /// Starts the server; returns once it accepts connections (blocking, up to 30 s).
    pub fn start_with(tls: SmtpTls) -> Smtp {
        let dir = tempfile::tempdir().expect("temporary directory");
        let ca_key = rcgen::KeyPair::generate().expect("CA key");
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "berth test SMTP CA");
        let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
        let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
        let key = rcgen::KeyPair::generate().expect("key");
        let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).expect("params");
        let cert = params.signed_by(&key, &issuer).expect("certificate");
        let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&cert_path, cert.pem()).expect("write certificate");
        std::fs::write(&key_path, key.serialize_pem()).expect("write key");

        let port = free_port();
        let log = std::fs::File::create(dir.path().join("aiosmtpd.log")).expect("log file");
        let mut command = Command::new(crate::pip_tool("aiosmtpd", "aiosmtpd"));
        command
            .args(["-n", "-d", "-l", &format!("127.0.0.1:{port}")])
            .env("PYTHONUNBUFFERED", "1");
        match tls {
            SmtpTls::None => {}
            SmtpTls::StartTls => {
                command
                    .arg("--tlscert")
                    .arg(&cert_path)
                    .arg("--tlskey")
                    .arg(&key_path);
            }
            SmtpTls::Implicit => {
                command
                    .arg("--smtpscert")
                    .arg(&cert_path)
                    .arg("--smtpskey")
                    .arg(&key_path);
            }
        }
        let server = command
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(dir.path().join("maildir"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("start aiosmtpd");
        let mut smtp = Smtp {
            dir,
            port,
            tls,
            ca_der: ca.der().to_vec(),
            server: Some(server),
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        crate::wait_for(
            "aiosmtpd to accept connections",
            Duration::from_secs(30),
            || {
                if let Some(server) = &mut smtp.server
                    && let Ok(Some(status)) = server.try_wait()
                {
                    panic!("aiosmtpd exited ({status}):\n{}", smtp.log());
                }
                TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
            },
        );
        smtp
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL berth's notifier takes for this server: `smtp://127.0.0.1:PORT?tls=none`,
    /// `smtp://127.0.0.1:PORT` (STARTTLS) or `smtps://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        let port = self.port;
        match self.tls {
            SmtpTls::None => format!("smtp://127.0.0.1:{port}?tls=none"),
            SmtpTls::StartTls => format!("smtp://127.0.0.1:{port}"),
            SmtpTls::Implicit => format!("smtps://127.0.0.1:{port}"),
        }
    }

    /// DER of the CA that issued the server's certificate, for the client to trust.
    pub fn ca_der(&self) -> &[u8] {
        &self.ca_der
    }

    /// The messages received so far, oldest first.
    pub fn messages(&self) -> Vec<Mail> {
        let new = self.dir.path().join("maildir/new");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&new)
            .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        // Maildir names start with the delivery time.
        files.sort();
        files
            .iter()
            .filter_map(|path| std::fs::read_to_string(path).ok())
            .map(|raw| Mail { raw })
            .collect()
    }

    /// Waits (blocking, up to `limit`) until `count` messages have arrived; returns them.
    pub fn wait_for_messages(&self, count: usize, limit: Duration) -> Vec<Mail> {
        crate::wait_for(
            &format!("{count} message(s) at the SMTP server"),
            limit,
            || {
                let messages = self.messages();
                (messages.len() >= count).then_some(messages)
            },
        )
    }

    /// Kills the server: connections are refused from now on. Drop does the same.
    pub fn stop(&mut self) {
        if let Some(mut server) = self.server.take() {
            let _ = server.kill();
            let _ = server.wait();
        }
    }

    /// aiosmtpd's log (the SMTP dialogues, with `-d`), for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("aiosmtpd.log")).unwrap_or_default()
    }
}

impl Mail {
    /// The value of header `name` (case-insensitive), folded lines joined, as written (an
    /// encoded word stays encoded).
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.raw.split("\n\n").next().unwrap_or_default();
        let mut value: Option<String> = None;
        for line in head.lines() {
            if line.starts_with([' ', '\t']) {
                if let Some(value) = &mut value {
                    value.push(' ');
                    value.push_str(line.trim());
                }
                continue;
            }
            if value.is_some() {
                break;
            }
            if let Some((field, rest)) = line.split_once(':')
                && field.eq_ignore_ascii_case(name)
            {
                value = Some(rest.trim().to_owned());
            }
        }
        value
    }

    /// Everything after the headers, as sent (a 7-bit text body is the text itself).
    pub fn body(&self) -> &str {
        self.raw.split_once("\n\n").map_or("", |(_, body)| body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_headers_and_body() {
        let mail = Mail {
            raw: "From: berth@example.com\nTo: a@example.com,\n b@example.com\nSubject: [test] hi\n\nline 1\n\nline 2\n"
                .into(),
        };
        assert_eq!(
            mail.header("to").as_deref(),
            Some("a@example.com, b@example.com")
        );
        assert_eq!(mail.header("Subject").as_deref(), Some("[test] hi"));
        assert_eq!(mail.header("Cc"), None);
        assert_eq!(mail.body(), "line 1\n\nline 2\n");
    }
}
