use std::path::PathBuf;

/// What went wrong with a certificate. Messages name the file, the certificate id or the
/// ACME step, and never contain key material.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what}: no certificate found in PEM")]
    NoCertificate { what: String },
    #[error("{what}: no private key found in PEM (PKCS#8, PKCS#1 or SEC1 expected)")]
    NoKey { what: String },
    #[error("{what}: {message}")]
    BadCertificate { what: String, message: String },
    #[error("certificate id {0:?} is not usable as a file name (use [a-z0-9._-])")]
    BadId(String),
    #[error("generate certificate: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("ACME: {0}")]
    Acme(String),
    #[error("DNS hook: {0}")]
    Hook(String),
}

impl Error {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

impl From<instant_acme::Error> for Error {
    fn from(err: instant_acme::Error) -> Self {
        Error::Acme(describe(&err))
    }
}

/// The CA's words for a problem: its detail, else its type.
pub(crate) fn problem_text(problem: &instant_acme::Problem) -> String {
    match (&problem.detail, &problem.r#type) {
        (Some(detail), _) => detail.clone(),
        (None, Some(ty)) => ty.clone(),
        (None, None) => "no detail".into(),
    }
}

/// A short, single-line description of an instant-acme error (cause chain included).
pub(crate) fn describe(err: &instant_acme::Error) -> String {
    use std::error::Error as _;
    if let instant_acme::Error::Api(problem) = err {
        let kind = problem.r#type.as_deref().unwrap_or("problem");
        return format!("{} ({kind})", problem_text(problem));
    }
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text = format!("{text}: {cause_text}");
        }
        source = cause.source();
    }
    text
}
