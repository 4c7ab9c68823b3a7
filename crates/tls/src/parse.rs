//! PEM in, [`CertifiedKey`] and [`CertInfo`] out; self-signed certificates.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

use crate::error::Error;
use crate::provider::provider;

/// What berth shows about a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// DNS names of the subjectAltName extension (the subject CN when there is none).
    pub names: Vec<String>,
    /// The issuer's distinguished name, e.g. `CN=Pebble Intermediate CA 1a2b3c`.
    pub issuer: String,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    /// Serial number, lowercase hex.
    pub serial: String,
}

impl CertInfo {
    pub fn from_der(der: &CertificateDer<'_>) -> Result<CertInfo, Error> {
        let bad = |message: String| Error::BadCertificate {
            what: "certificate".into(),
            message,
        };
        let (_, cert) =
            x509_parser::parse_x509_certificate(der).map_err(|err| bad(err.to_string()))?;
        let mut names = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                if let x509_parser::extensions::GeneralName::DNSName(dns) = name {
                    names.push(dns.to_ascii_lowercase());
                }
            }
        }
        if names.is_empty() {
            for cn in cert.subject().iter_common_name() {
                if let Ok(cn) = cn.as_str() {
                    names.push(cn.to_ascii_lowercase());
                }
            }
        }
        let time = |t: x509_parser::time::ASN1Time| {
            let secs = t.timestamp();
            if secs >= 0 {
                UNIX_EPOCH + Duration::from_secs(secs as u64)
            } else {
                UNIX_EPOCH
            }
        };
        Ok(CertInfo {
            names,
            issuer: cert.issuer().to_string(),
            not_before: time(cert.validity().not_before),
            not_after: time(cert.validity().not_after),
            serial: hex::encode(cert.raw_serial()),
        })
    }
}

/// Every certificate in a PEM document, in order (leaf first for a chain).
pub fn certs_from_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, Error> {
    CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| Error::BadCertificate {
            what: "PEM".into(),
            message: err.to_string(),
        })
}

/// A chain (leaf first) and its private key, as rustls serves them. `what` names the source in
/// errors (a file path, a certificate id). The key must match the leaf.
pub fn certified_key_from_pem(
    what: &str,
    chain_pem: &[u8],
    key_pem: &[u8],
) -> Result<Arc<CertifiedKey>, Error> {
    let chain = certs_from_pem(chain_pem).map_err(|err| match err {
        Error::BadCertificate { message, .. } => Error::BadCertificate {
            what: what.into(),
            message,
        },
        other => other,
    })?;
    if chain.is_empty() {
        return Err(Error::NoCertificate { what: what.into() });
    }
    let key =
        PrivateKeyDer::from_pem_slice(key_pem).map_err(|_| Error::NoKey { what: what.into() })?;
    certified_key(what, chain, key)
}

/// Without the key/certificate match check, which parses the leaf with webpki: that refuses
/// the critical acmeIdentifier extension of TLS-ALPN-01 certificates.
fn certified_key_unchecked(
    what: &str,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<CertifiedKey>, Error> {
    let bad = |message: String| Error::BadCertificate {
        what: what.into(),
        message,
    };
    CertInfo::from_der(&chain[0]).map_err(|err| bad(err.to_string()))?;
    let signing_key = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|err| bad(format!("private key: {err}")))?;
    Ok(Arc::new(CertifiedKey::new(chain, signing_key)))
}

pub(crate) fn certified_key(
    what: &str,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<CertifiedKey>, Error> {
    let certified = certified_key_unchecked(what, chain, key)?;
    certified
        .keys_match()
        .map_err(|err| Error::BadCertificate {
            what: what.into(),
            message: match err {
                rustls::Error::InconsistentKeys(_) => {
                    "the key does not belong to the certificate".into()
                }
                other => format!("unusable certificate: {other}"),
            },
        })?;
    Ok(certified)
}

/// A certificate and key in PEM.
#[derive(Clone)]
pub struct Pem {
    pub cert: String,
    pub key: String,
}

/// A self-signed ECDSA P-256 certificate for `names` (development; no CA), valid for a year.
pub fn self_signed(names: &[String]) -> Result<(Arc<CertifiedKey>, Pem), Error> {
    let mut params = rcgen::CertificateParams::new(names.to_vec())?;
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        names.first().cloned().unwrap_or_default(),
    );
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "berth self-signed");
    let now = SystemTime::now();
    params.not_before = (now - Duration::from_secs(3600)).into();
    params.not_after = (now + Duration::from_secs(365 * 24 * 3600)).into();
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let cert = params.self_signed(&key)?;
    let pem = Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    };
    let certified = certified_key(
        "self-signed certificate",
        vec![cert.der().clone()],
        PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )?;
    Ok((certified, pem))
}

/// The TLS-ALPN-01 certificate for `name`: self-signed, that one name, and the critical
/// acmeIdentifier extension holding SHA-256 of the key authorization (RFC 8737).
pub(crate) fn alpn_challenge_cert(name: &str, digest: &[u8]) -> Result<Arc<CertifiedKey>, Error> {
    let mut params = rcgen::CertificateParams::new(vec![name.to_owned()])?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let cert = params.self_signed(&key)?;
    certified_key_unchecked(
        "TLS-ALPN-01 challenge certificate",
        vec![cert.der().clone()],
        PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_round_trips_through_pem() {
        let names = vec!["dev.test".to_string(), "*.dev.test".to_string()];
        let (_, pem) = self_signed(&names).unwrap();
        let key = certified_key_from_pem("x", pem.cert.as_bytes(), pem.key.as_bytes()).unwrap();
        let info = CertInfo::from_der(&key.cert[0]).unwrap();
        assert_eq!(info.names, names);
        assert!(info.issuer.contains("berth self-signed"), "{}", info.issuer);
        assert!(info.not_after > SystemTime::now());
    }

    #[test]
    fn key_of_another_certificate_is_refused() {
        let (_, a) = self_signed(&["a.test".to_string()]).unwrap();
        let (_, b) = self_signed(&["b.test".to_string()]).unwrap();
        let err = certified_key_from_pem("a.pem", a.cert.as_bytes(), b.key.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("does not belong"), "{err}");
        let err = certified_key_from_pem("a.pem", b"", a.key.as_bytes()).unwrap_err();
        assert!(matches!(err, Error::NoCertificate { .. }), "{err}");
        let err = certified_key_from_pem("a.pem", a.cert.as_bytes(), b"nope").unwrap_err();
        assert!(matches!(err, Error::NoKey { .. }), "{err}");
    }
}
