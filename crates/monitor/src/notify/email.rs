//! Email through an SMTP server, with lettre (tokio, rustls on ring).
//!
//! The SMTP URL:
//!
//! | URL                                   | connection                         | default port |
//! | ------------------------------------- | ---------------------------------- | ------------ |
//! | `smtp://user:pass@host[:port]`        | STARTTLS, required                 | 587          |
//! | `smtps://user:pass@host[:port]`       | TLS from the first byte            | 465          |
//! | `smtp://host[:port]?tls=none`         | plain, for a relay on this machine | 25           |
//!
//! User and password are optional and percent-decoded; a password is refused with
//! `tls=none`. `?from=berth@example.com` sets the sender; without it, the user when it is an
//! address, else `berth@HOSTNAME`. `to` is one address or several separated by commas.

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Mailboxes};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use rustls::pki_types::CertificateDer;
use url::Url;

use super::channel::decode;
use super::{Failure, Message};

/// A parsed SMTP channel.
#[derive(Debug, Clone)]
pub(crate) struct Smtp {
    host: String,
    port: u16,
    security: Security,
    credentials: Option<(String, String)>,
    from: Mailbox,
    to: Mailboxes,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Security {
    StartTls,
    Tls,
    None,
}

/// A ready transport and its addresses.
pub(crate) struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Mailboxes,
}

impl Smtp {
    /// Reads `to` and the SMTP URL (see the module's doc); no IO.
    pub(crate) fn parse(to: &str, smtp_url: &str) -> Result<Smtp, String> {
        let url = Url::parse(smtp_url).map_err(|err| format!("not a URL ({err})"))?;
        let host = url
            .host_str()
            .filter(|host| !host.is_empty())
            .ok_or("the SMTP URL has no host")?;
        // lettre wants an IPv6 address without its brackets.
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let mut plain = false;
        let mut from = None;
        for (name, value) in url.query_pairs() {
            match (&*name, &*value) {
                ("tls", "none") => plain = true,
                ("tls", other) => {
                    return Err(format!(
                        "tls={other} is not known: smtp:// is STARTTLS, smtps:// is TLS, smtp://…?tls=none is plain"
                    ));
                }
                ("from", address) => from = Some(address.to_owned()),
                (other, _) => {
                    return Err(format!("unknown parameter {other:?} (known: tls, from)"));
                }
            }
        }
        let (security, port) = match (url.scheme(), plain) {
            ("smtp", false) => (Security::StartTls, 587),
            ("smtps", false) => (Security::Tls, 465),
            ("smtp", true) => (Security::None, 25),
            ("smtps", true) => return Err("smtps:// is TLS: it cannot have tls=none".into()),
            (other, _) => {
                return Err(format!(
                    "the URL must start with smtp:// or smtps://, not {other}://"
                ));
            }
        };
        let user = decode(url.username());
        let credentials = url
            .password()
            .map(|password| (user.clone(), decode(password)));
        if credentials.is_some() && security == Security::None {
            return Err("a password would travel unencrypted with tls=none: use smtp:// (STARTTLS) or smtps://".into());
        }
        let from = match from {
            Some(from) => from,
            None if user.contains('@') => user,
            None => format!("berth@{}", ClientId::default()),
        };
        let from: Mailbox = from
            .parse()
            .map_err(|err| format!("sender {from:?} is not an address ({err})"))?;
        let to: Mailboxes = to
            .parse()
            .map_err(|err| format!("recipient {to:?} is not an address ({err})"))?;
        if to.iter().next().is_none() {
            return Err("no recipient".into());
        }
        Ok(Smtp {
            host,
            port: url.port().unwrap_or(port),
            security,
            credentials,
            from,
            to,
        })
    }

    /// The transport for this server, trusting the Mozilla roots plus `extra_roots`.
    pub(crate) fn mailer(
        &self,
        extra_roots: &[CertificateDer<'static>],
        timeout: Duration,
    ) -> Result<Mailer, String> {
        let tls = || -> Result<TlsParameters, String> {
            let mut params = TlsParameters::builder(self.host.clone());
            for root in extra_roots {
                let root = Certificate::from_der(root.to_vec())
                    .map_err(|err| format!("extra root: {err}"))?;
                params = params.add_root_certificate(root);
            }
            params.build_rustls().map_err(|err| format!("TLS: {err}"))
        };
        let tls = match self.security {
            Security::StartTls => Tls::Required(tls()?),
            Security::Tls => Tls::Wrapper(tls()?),
            Security::None => Tls::None,
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&self.host)
            .port(self.port)
            .tls(tls)
            .timeout(Some(timeout));
        if let Some((user, password)) = &self.credentials {
            builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
        }
        Ok(Mailer {
            transport: builder.build(),
            from: self.from.clone(),
            to: self.to.clone(),
        })
    }
}

impl Mailer {
    /// One message: the headline as the subject, the details as a plain-text body. SMTP's
    /// permanent (5xx) refusals, TLS failures and what this server does not offer are not
    /// worth retrying.
    pub(crate) async fn send(&self, message: &Message) -> Result<(), Failure> {
        let mut email = lettre::Message::builder()
            .from(self.from.clone())
            .subject(message.headline())
            .date(message.at)
            .header(ContentType::TEXT_PLAIN);
        for to in self.to.iter() {
            email = email.to(to.clone());
        }
        let email = email
            .body(message.details())
            .map_err(|err| Failure::permanent(format!("build the email: {err}")))?;
        match self.transport.send(email).await {
            Ok(_) => Ok(()),
            Err(err) => Err(Failure {
                reason: super::describe(&err),
                // A 5xx, a TLS failure, or what the client cannot do with this server
                // (no STARTTLS offered, no common AUTH mechanism): retrying changes nothing.
                retry: !(err.is_permanent()
                    || err.is_tls()
                    || err.is_client()
                    || super::refused_by_tls(&err)),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_forms() {
        let smtp = Smtp::parse("ops@example.com", "smtp://apikey:p%40ss@smtp.example.com").unwrap();
        assert_eq!(
            (smtp.host.as_str(), smtp.port, smtp.security),
            ("smtp.example.com", 587, Security::StartTls)
        );
        assert_eq!(smtp.credentials, Some(("apikey".into(), "p@ss".into())));
        assert!(smtp.from.to_string().starts_with("berth@"), "{}", smtp.from);

        let smtp = Smtp::parse(
            "a@example.com, b@example.com",
            "smtps://alerts@example.com:pw@mail.example.com",
        )
        .unwrap();
        assert_eq!((smtp.port, smtp.security), (465, Security::Tls));
        assert_eq!(smtp.from.to_string(), "alerts@example.com");
        assert_eq!(smtp.to.iter().count(), 2);

        let smtp = Smtp::parse(
            "ops@example.com",
            "smtp://127.0.0.1:2525?tls=none&from=berth@shop.example",
        )
        .unwrap();
        assert_eq!(
            (smtp.host.as_str(), smtp.port, smtp.security),
            ("127.0.0.1", 2525, Security::None)
        );
        assert_eq!(smtp.from.to_string(), "berth@shop.example");
        assert_eq!(smtp.credentials, None);
    }

    #[test]
    fn refusals() {
        let refused = |to: &str, url: &str| Smtp::parse(to, url).unwrap_err();
        assert!(
            refused("ops@example.com", "smtp://u:pw@127.0.0.1?tls=none").contains("unencrypted")
        );
        assert!(refused("ops@example.com", "smtps://host?tls=none").contains("cannot"));
        assert!(refused("ops@example.com", "smtp://host?tls=maybe").contains("not known"));
        assert!(refused("ops@example.com", "http://host").contains("smtp://"));
        assert!(refused("not an address", "smtp://host").contains("recipient"));
        assert!(refused("ops@example.com", "smtp://host?port=1").contains("unknown parameter"));
    }
}
