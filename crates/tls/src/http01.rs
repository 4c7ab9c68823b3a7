use std::collections::HashMap;
use std::sync::{Arc, RwLock};

const PREFIX: &str = "/.well-known/acme-challenge/";

/// Pending HTTP-01 challenges: token → key authorization. Cheap to clone; the plain HTTP
/// listener holds one clone and the [`crate::Manager`] another.
#[derive(Clone, Default, Debug)]
pub struct Http01Challenges {
    tokens: Arc<RwLock<HashMap<String, String>>>,
}

impl Http01Challenges {
    pub fn new() -> Self {
        Self::default()
    }

    /// The body to answer `GET path` with (`200`, `text/plain`), when `path` is
    /// `/.well-known/acme-challenge/TOKEN` for a pending token. `None`: not a challenge path or
    /// an unknown token — the listener answers as it would any other request (404 for
    /// unknown tokens under the prefix is right too).
    pub fn response(&self, path: &str) -> Option<String> {
        let token = path.strip_prefix(PREFIX)?;
        self.tokens.read().unwrap().get(token).cloned()
    }

    /// Whether `path` is under `/.well-known/acme-challenge/`: such requests must not be
    /// redirected to HTTPS.
    pub fn is_challenge_path(path: &str) -> bool {
        path.starts_with(PREFIX)
    }

    /// Answer `token` with `key_authorization` until [`Http01Challenges::remove`]; the
    /// [`crate::Manager`] calls this while an order is validated.
    pub fn insert(&self, token: &str, key_authorization: &str) {
        let mut tokens = self.tokens.write().unwrap();
        tokens.insert(token.to_owned(), key_authorization.to_owned());
    }

    pub fn remove(&self, token: &str) {
        self.tokens.write().unwrap().remove(token);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_pending_tokens_only() {
        let challenges = Http01Challenges::new();
        challenges.insert("tok", "tok.thumb");
        assert_eq!(
            challenges
                .response("/.well-known/acme-challenge/tok")
                .as_deref(),
            Some("tok.thumb")
        );
        assert_eq!(
            challenges.response("/.well-known/acme-challenge/other"),
            None
        );
        assert_eq!(challenges.response("/tok"), None);
        assert!(Http01Challenges::is_challenge_path(
            "/.well-known/acme-challenge/x"
        ));
        challenges.remove("tok");
        assert_eq!(challenges.response("/.well-known/acme-challenge/tok"), None);
    }
}
