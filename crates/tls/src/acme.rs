//! One ACME order, start to finish, with instant-acme over our own rustls client (ring).

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, BodyWrapper, BytesResponse, ChallengeType,
    HttpClient, Identifier, NewAccount, NewOrder, OrderStatus, RetryPolicy,
};
use rustls::pki_types::CertificateDer;
use tracing::{debug, info};

use crate::error::{Error, describe, problem_text};
use crate::http01::Http01Challenges;
use crate::parse::alpn_challenge_cert;
use crate::persist::{read_optional, write_private};
use crate::provider::client_config;
use crate::store::CertStore;
use crate::types::ChallengeKind;

/// instant-acme's [`HttpClient`] on hyper-rustls with our provider and roots.
struct Https(Client<hyper_rustls::HttpsConnector<HttpConnector>, BodyWrapper<Bytes>>);

impl HttpClient for Https {
    fn request(
        &self,
        req: Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let fut = self.0.request(req);
        Box::pin(async move {
            match fut.await {
                Ok(rsp) => Ok(BytesResponse::from(rsp)),
                Err(err) => Err(instant_acme::Error::Other(Box::new(err))),
            }
        })
    }
}

fn http_client(extra_roots: &[CertificateDer<'static>]) -> Result<Box<dyn HttpClient>, Error> {
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(client_config(extra_roots)?)
        .https_only()
        .enable_http1()
        .enable_http2()
        .build();
    let client = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector);
    Ok(Box::new(Https(client)))
}

/// The account for `directory`, from `certs/account-HASH.json` or registered now (and saved,
/// 0600). One account per directory URL; the contact is set at registration.
pub(crate) async fn account(
    certs_dir: &Path,
    directory: &str,
    email: &str,
    extra_roots: &[CertificateDer<'static>],
) -> Result<Account, Error> {
    use sha2::Digest;
    let hash = hex::encode(&sha2::Sha256::digest(directory.as_bytes())[..8]);
    let path = certs_dir.join(format!("account-{hash}.json"));
    if let Some(saved) = read_optional(&path)? {
        let credentials: AccountCredentials = serde_json::from_slice(&saved)
            .map_err(|err| Error::Acme(format!("read account {}: {err}", path.display())))?;
        let account = Account::builder_with_http(http_client(extra_roots)?)
            .from_credentials(credentials)
            .await?;
        return Ok(account);
    }
    let contact = format!("mailto:{email}");
    let contacts: Vec<&str> = if email.is_empty() {
        vec![]
    } else {
        vec![&contact]
    };
    let (account, credentials) = Account::builder_with_http(http_client(extra_roots)?)
        .create(
            &NewAccount {
                contact: &contacts,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            directory.to_owned(),
            None,
        )
        .await?;
    let json = serde_json::to_vec_pretty(&credentials)
        .map_err(|err| Error::Acme(format!("serialize account: {err}")))?;
    write_private(&path, &json)?;
    info!(directory, account = account.id(), "registered ACME account");
    Ok(account)
}

/// Where challenge answers go while an order is pending.
#[derive(Clone)]
pub(crate) struct Responders {
    pub(crate) store: CertStore,
    pub(crate) http01: Http01Challenges,
    pub(crate) dns_hook: Option<String>,
    /// How long to wait for the CA to validate and to issue.
    pub(crate) order_timeout: Duration,
}

/// A challenge answer to undo when the order ends, whatever the outcome.
enum Pending {
    Http01(String),
    TlsAlpn01(String),
    Dns01 { record: String, value: String },
}

/// Orders a certificate for `names` and returns (chain PEM, key PEM). The key is a fresh
/// ECDSA P-256 key.
pub(crate) async fn obtain(
    account: &Account,
    names: &[String],
    kind: ChallengeKind,
    responders: &Responders,
) -> Result<(String, String), Error> {
    let mut pending = Vec::new();
    let result = order(account, names, kind, responders, &mut pending).await;
    for answer in pending {
        match answer {
            Pending::Http01(token) => responders.http01.remove(&token),
            Pending::TlsAlpn01(name) => responders.store.clear_alpn_challenge(&name),
            Pending::Dns01 { record, value } => {
                if let Err(err) = run_hook(responders, "clear", &record, &value).await {
                    tracing::warn!(record, error = %err, "DNS hook could not clear the record");
                }
            }
        }
    }
    result
}

async fn order(
    account: &Account,
    names: &[String],
    kind: ChallengeKind,
    responders: &Responders,
    pending: &mut Vec<Pending>,
) -> Result<(String, String), Error> {
    let identifiers: Vec<Identifier> = names.iter().map(|n| Identifier::Dns(n.clone())).collect();
    let mut order = account.new_order(&NewOrder::new(&identifiers)).await?;
    let mut used = Vec::new();

    let mut authorizations = order.authorizations();
    while let Some(authz) = authorizations.next().await {
        let mut authz = authz?;
        match authz.status {
            AuthorizationStatus::Valid => continue,
            AuthorizationStatus::Pending => {}
            status => {
                return Err(Error::Acme(format!(
                    "authorization for {} is {status:?}",
                    authz.identifier()
                )));
            }
        }
        // Wildcards can only be proven in DNS.
        let kind = if authz.wildcard {
            ChallengeKind::Dns01
        } else {
            kind
        };
        let ty = match kind {
            ChallengeKind::Http01 => ChallengeType::Http01,
            ChallengeKind::TlsAlpn01 => ChallengeType::TlsAlpn01,
            ChallengeKind::Dns01 => ChallengeType::Dns01,
        };
        let label = authz.identifier().to_string();
        let mut challenge = authz.challenge(ty.clone()).ok_or_else(|| {
            Error::Acme(format!(
                "the CA offers no {} challenge for {label}",
                kind.as_str()
            ))
        })?;
        let Identifier::Dns(domain) = challenge.identifier().identifier.clone() else {
            return Err(Error::Acme(format!(
                "{label}: only DNS names are supported"
            )));
        };
        let key_auth = challenge.key_authorization();
        match kind {
            ChallengeKind::Http01 => {
                responders
                    .http01
                    .insert(&challenge.token, key_auth.as_str());
                pending.push(Pending::Http01(challenge.token.clone()));
            }
            ChallengeKind::TlsAlpn01 => {
                let cert = alpn_challenge_cert(&domain, key_auth.digest().as_ref())?;
                responders.store.set_alpn_challenge(&domain, cert);
                pending.push(Pending::TlsAlpn01(domain.clone()));
            }
            ChallengeKind::Dns01 => {
                let record = format!("_acme-challenge.{domain}");
                let value = key_auth.dns_value();
                pending.push(Pending::Dns01 {
                    record: record.clone(),
                    value: value.clone(),
                });
                run_hook(responders, "set", &record, &value).await?;
            }
        }
        debug!(name = %label, challenge = kind.as_str(), "challenge ready");
        // With a fast CA the validation result comes back right here.
        challenge.set_ready().await.map_err(|err| {
            Error::Acme(format!("{} for {label}: {}", kind.as_str(), describe(&err)))
        })?;
        used.push((label, kind, ty));
    }

    let retry = RetryPolicy::new()
        .initial_delay(Duration::from_millis(250))
        .backoff(1.5)
        .timeout(responders.order_timeout);
    match order.poll_ready(&retry).await {
        Ok(OrderStatus::Ready) => {}
        Ok(status) => {
            let fallback = format!("order is {status:?}");
            return Err(Error::Acme(
                challenge_errors(&mut order, fallback, &used).await,
            ));
        }
        Err(instant_acme::Error::Api(problem)) => {
            let fallback = problem_text(&problem);
            return Err(Error::Acme(
                challenge_errors(&mut order, fallback, &used).await,
            ));
        }
        Err(err) => return Err(err.into()),
    }

    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let params = rcgen::CertificateParams::new(names.to_vec())?;
    let csr = params.serialize_request(&key)?;
    order.finalize_csr(csr.der()).await?;
    let chain = order.poll_certificate(&retry).await?;
    Ok((chain, key.serialize_pem()))
}

/// Why an order did not become ready, in the CA's words: "http-01 for a.test: 127.0.0.1:
/// Invalid response from http://a.test/.well-known/acme-challenge/…: 404".
async fn challenge_errors(
    order: &mut instant_acme::Order,
    fallback: String,
    used: &[(String, ChallengeKind, ChallengeType)],
) -> String {
    let mut reasons = Vec::new();
    let mut authorizations = order.authorizations();
    while let Some(Ok(authz)) = authorizations.next().await {
        let label = authz.identifier().to_string();
        for challenge in &authz.challenges {
            let Some(problem) = &challenge.error else {
                continue;
            };
            let used = used
                .iter()
                .find(|(l, _, ty)| *l == label && *ty == challenge.r#type);
            if let Some((_, kind, _)) = used {
                reasons.push(format!(
                    "{} for {label}: {}",
                    kind.as_str(),
                    problem_text(problem)
                ));
            }
        }
    }
    if reasons.is_empty() {
        fallback
    } else {
        reasons.join("; ")
    }
}

/// Whether the CA said to slow down (rate limits): the caller backs off to its maximum.
pub(crate) fn is_rate_limited(message: &str) -> bool {
    message.contains("rateLimited")
}

/// How long the DNS hook may take to set or clear a record.
const HOOK_TIMEOUT: Duration = Duration::from_secs(300);

/// `sh -c HOOK` with `BERTH_DNS_ACTION`, `BERTH_DNS_NAME`, `BERTH_DNS_VALUE` on top of
/// [`supervisor::command::base_env`] (nothing else of the daemon's environment). It must exit
/// 0 once the TXT record is set (or cleared) and visible.
async fn run_hook(
    responders: &Responders,
    action: &str,
    record: &str,
    value: &str,
) -> Result<(), Error> {
    let Some(hook) = &responders.dns_hook else {
        return Err(Error::Hook(format!(
            "{record}: DNS-01 needs a DNS hook command (wildcard names can only be validated in DNS)"
        )));
    };
    let hook = supervisor::command::Command::shell(hook)
        .env("BERTH_DNS_ACTION", action)
        .env("BERTH_DNS_NAME", record)
        .env("BERTH_DNS_VALUE", value)
        .output();
    // On timeout the hook's future is dropped, and with it the hook's whole process group.
    let output = tokio::time::timeout(HOOK_TIMEOUT, hook)
        .await
        .map_err(|_| {
            let secs = HOOK_TIMEOUT.as_secs();
            Error::Hook(format!("{action} {record}: no exit within {secs} s"))
        })?
        .map_err(|err| Error::Hook(format!("{action} {record}: {err}")))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        return Err(Error::Hook(format!(
            "{action} {record}: exited with {}{}{}",
            output.status,
            if last.is_empty() { "" } else { ": " },
            last.trim()
        )));
    }
    Ok(())
}
