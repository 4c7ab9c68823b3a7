//! The fixtures start real servers that do what the backup and dashboard tests will ask of
//! them.

// The tests drive psql and curl as a client would.
#![allow(clippy::disallowed_methods)]

use std::net::TcpStream;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use testkit::{Chromium, Postgres, S3, Smtp, SmtpTls};

/// Starts `what` and reports how long it took (shown with `--no-capture`).
#[allow(clippy::print_stderr)]
fn timed<T>(what: &str, start: impl FnOnce() -> T) -> T {
    let began = Instant::now();
    let value = start();
    eprintln!("{what} started in {:?}", began.elapsed());
    value
}

/// psql against `url`, the password only in the URL.
fn psql_url(pg: &Postgres, url: &str, sql: &str) -> Output {
    Command::new(pg.bin_dir().join("psql"))
        .args(["--no-psqlrc", "-Atqc", sql, url])
        .env_remove("PGPASSWORD")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn postgres_holds_pgbench_tables() {
    let pg = timed("postgres", Postgres::start);
    pg.create_db("bench");
    pg.pgbench_init("bench", 1);
    assert_eq!(pg.count("bench", "pgbench_accounts"), 100_000);
}

#[test]
fn postgres_asks_for_the_password_over_tcp() {
    let pg = Postgres::start();
    let url = pg.url("postgres");
    assert!(url.contains(&format!(":{}@", pg.password())), "{url}");
    let right = psql_url(&pg, &url, "SELECT current_user");
    assert!(right.status.success(), "{right:?}");
    assert_eq!(String::from_utf8_lossy(&right.stdout).trim(), "postgres");

    let wrong_url = url.replace(pg.password(), "not-the-password");
    let wrong = psql_url(&pg, &wrong_url, "SELECT 1");
    assert!(!wrong.status.success());
    let err = String::from_utf8_lossy(&wrong.stderr);
    assert!(err.contains("password authentication failed"), "{err}");
}

#[test]
fn postgres_takes_a_writing_load() {
    let pg = Postgres::start();
    pg.pgbench_init("postgres", 1);
    let load = pg.pgbench_load("postgres", Duration::from_secs(1));
    let out = load.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(pg.count("postgres", "pgbench_history") > 0);
}

#[test]
fn postgres_killed_refuses_connections() {
    let mut pg = Postgres::start();
    assert!(pg.ready());
    pg.kill();
    assert!(!pg.ready());
    let out = psql_url(&pg, &pg.url("postgres"), "SELECT 1");
    assert!(!out.status.success());
    assert!(TcpStream::connect(("127.0.0.1", pg.port())).is_err());
}

#[test]
fn s3_stores_signed_uploads() {
    let s3 = timed("moto_server", S3::start);
    s3.create_bucket("backups");
    assert_eq!(s3.list("backups"), Vec::<String>::new());

    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), "a dump").unwrap();
    let put = Command::new("curl")
        .args(["--silent", "--show-error", "--fail-with-body"])
        .arg("--aws-sigv4")
        .arg(format!("aws:amz:{}:s3", s3.region()))
        .arg("--user")
        .arg(format!("{}:{}", s3.access_key(), s3.secret_key()))
        .arg("--upload-file")
        .arg(file.path())
        .arg(format!("{}/backups/app/2026-01-01.sql.zst", s3.endpoint()))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(put.status.success(), "{put:?}");
    assert_eq!(s3.list("backups"), ["app/2026-01-01.sql.zst"]);
}

#[test]
fn s3_stopped_refuses_connections() {
    let mut s3 = S3::start();
    assert!(TcpStream::connect(("127.0.0.1", s3.port())).is_ok());
    s3.stop();
    assert!(TcpStream::connect(("127.0.0.1", s3.port())).is_err());
}

#[test]
fn chromium_reports_what_a_page_did() {
    let mut chromium = timed("chromium", Chromium::start);
    let mut page = chromium.new_page();
    // Nothing listens on the port: the fetch is refused.
    let refused = format!("http://127.0.0.1:{}/refused", testkit::free_port());
    let html = format!(
        "<p id=p>hello</p><script>console.error('boom'); \
         fetch('{refused}').finally(() => {{ document.title = 'done'; }}); null.x;</script>"
    );
    page.goto(&format!("data:text/html,{html}"));
    page.wait_for("document.title === 'done'", Duration::from_secs(10));
    assert_eq!(page.text("#p"), "hello");
    assert_eq!(page.eval("1 + 1"), 2);

    let errors: Vec<String> = page
        .console_errors()
        .iter()
        .map(|m| m.text.clone())
        .collect();
    assert!(errors.iter().any(|e| e == "boom"), "{errors:?}");
    assert!(
        errors.iter().any(|e| e.starts_with("TypeError")),
        "{errors:?}"
    );
    let failed = page.failed_requests();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].url, refused);
    assert_eq!(
        failed[0].error.as_deref(),
        Some("net::ERR_CONNECTION_REFUSED")
    );
    page.expect_failure("/refused");
    assert!(page.failed_requests().is_empty());

    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("shot/page.png");
    page.screenshot(&png);
    let bytes = std::fs::read(&png).unwrap();
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
}

/// One SMTP command and the server's whole reply (the last line has a space after its code).
fn smtp_say(stream: &mut std::io::BufReader<TcpStream>, line: &str) -> String {
    use std::io::{BufRead, Write};
    if !line.is_empty() {
        stream
            .get_mut()
            .write_all(format!("{line}\r\n").as_bytes())
            .unwrap();
    }
    let mut reply = String::new();
    loop {
        let mut got = String::new();
        stream.read_line(&mut got).unwrap();
        reply.push_str(&got);
        if got.len() < 4 || got.as_bytes()[3] == b' ' {
            return reply;
        }
    }
}

#[test]
fn smtp_keeps_what_it_receives() {
    let smtp = timed("aiosmtpd", Smtp::start);
    assert_eq!(
        smtp.url(),
        format!("smtp://127.0.0.1:{}?tls=none", smtp.port())
    );
    let stream = TcpStream::connect(("127.0.0.1", smtp.port())).unwrap();
    let mut stream = std::io::BufReader::new(stream);
    assert!(smtp_say(&mut stream, "").starts_with("220"));
    assert!(smtp_say(&mut stream, "EHLO test").starts_with("250"));
    assert!(smtp_say(&mut stream, "MAIL FROM:<berth@example.com>").starts_with("250"));
    assert!(smtp_say(&mut stream, "RCPT TO:<ops@example.com>").starts_with("250"));
    assert!(smtp_say(&mut stream, "DATA").starts_with("354"));
    let data = "To: ops@example.com\r\nSubject: hello\r\n\r\nfirst line\r\n.";
    assert!(
        smtp_say(&mut stream, data).starts_with("250"),
        "{}",
        smtp.log()
    );
    let _ = smtp_say(&mut stream, "QUIT");
    let mail = smtp.wait_for_messages(1, Duration::from_secs(10));
    assert_eq!(mail[0].header("subject").as_deref(), Some("hello"));
    assert_eq!(mail[0].header("To").as_deref(), Some("ops@example.com"));
    assert_eq!(mail[0].body().trim(), "first line");
}

#[test]
fn smtp_speaks_tls_with_its_own_ca() {
    for tls in [SmtpTls::StartTls, SmtpTls::Implicit] {
        let smtp = Smtp::start_with(tls);
        assert!(!smtp.ca_der().is_empty());
        let scheme = if tls == SmtpTls::Implicit {
            "smtps"
        } else {
            "smtp"
        };
        assert_eq!(smtp.url(), format!("{scheme}://127.0.0.1:{}", smtp.port()));
        assert!(smtp.messages().is_empty());
    }
}

#[test]
fn smtp_stopped_refuses_connections() {
    let mut smtp = Smtp::start();
    let port = smtp.port();
    smtp.stop();
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
}
