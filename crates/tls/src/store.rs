//! Certificates by name, resolved per ClientHello.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// ALPN protocol id of TLS-ALPN-01 (RFC 8737). A connection that negotiated it carries no
/// HTTP: the listener must close it right after the handshake.
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// Certificates keyed by an id (one per configured certificate, e.g. the app name), indexed by
/// every name they cover. Cheap to clone; all clones share the same certificates.
///
/// The handshake path does one `ArcSwap` load and a hash lookup; writers rebuild the index
/// under a mutex and swap it in, so a handshake always sees a whole table.
#[derive(Clone, Default)]
pub struct CertStore {
    inner: Arc<Inner>,
}

/// id → (names, certificate).
type Entries = BTreeMap<String, (Vec<String>, Arc<CertifiedKey>)>;

#[derive(Default)]
struct Inner {
    index: ArcSwap<HashMap<String, Arc<CertifiedKey>>>,
    entries: Mutex<Entries>,
    /// name → self-signed certificate carrying the acmeIdentifier extension.
    alpn_challenges: Mutex<HashMap<String, Arc<CertifiedKey>>>,
}

impl CertStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Serves `key` for `names` (exact, or `*.example.com`) under `id`, replacing what `id`
    /// served before. Connections already established keep their certificate.
    pub fn set(&self, id: &str, names: Vec<String>, key: Arc<CertifiedKey>) {
        let names = names.into_iter().map(|n| n.to_ascii_lowercase()).collect();
        let mut entries = self.inner.entries.lock().unwrap();
        entries.insert(id.to_owned(), (names, key));
        self.rebuild(&entries);
    }

    /// Stops serving the certificate `id`.
    pub fn remove(&self, id: &str) {
        let mut entries = self.inner.entries.lock().unwrap();
        if entries.remove(id).is_some() {
            self.rebuild(&entries);
        }
    }

    /// Ids currently served.
    pub fn ids(&self) -> Vec<String> {
        self.inner.entries.lock().unwrap().keys().cloned().collect()
    }

    fn rebuild(&self, entries: &Entries) {
        let mut index = HashMap::new();
        // Ids in order: when two certificates claim one name, the first id keeps it.
        for (names, key) in entries.values() {
            for name in names {
                index.entry(name.clone()).or_insert_with(|| key.clone());
            }
        }
        self.inner.index.store(Arc::new(index));
    }

    /// The certificate a client asking for `server_name` gets: exact name, then the wildcard
    /// one label up, then none.
    pub fn lookup(&self, server_name: &str) -> Option<Arc<CertifiedKey>> {
        let name = server_name.trim_end_matches('.').to_ascii_lowercase();
        let index = self.inner.index.load();
        if let Some(key) = index.get(&name) {
            return Some(key.clone());
        }
        let (_, parent) = name.split_once('.')?;
        if parent.contains('.') {
            return index.get(&format!("*.{parent}")).cloned();
        }
        None
    }

    /// While set, a ClientHello for `name` offering ALPN `acme-tls/1` gets `key`.
    pub(crate) fn set_alpn_challenge(&self, name: &str, key: Arc<CertifiedKey>) {
        let mut challenges = self.inner.alpn_challenges.lock().unwrap();
        challenges.insert(name.to_ascii_lowercase(), key);
    }

    pub(crate) fn clear_alpn_challenge(&self, name: &str) {
        let mut challenges = self.inner.alpn_challenges.lock().unwrap();
        challenges.remove(&name.to_ascii_lowercase());
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = hello.server_name()?;
        let acme = hello
            .alpn()
            .is_some_and(|mut protocols| protocols.any(|p| p == ACME_TLS_ALPN));
        if acme {
            // RFC 8737: only the challenge certificate answers acme-tls/1, never a real one.
            let challenges = self.inner.alpn_challenges.lock().unwrap();
            return challenges.get(&name.to_ascii_lowercase()).cloned();
        }
        self.lookup(name)
    }
}

impl fmt::Debug for CertStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let index = self.inner.index.load();
        let mut names: Vec<_> = index.keys().collect();
        names.sort();
        f.debug_struct("CertStore").field("names", &names).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::self_signed;

    fn store_with(certs: &[(&str, &[&str])]) -> CertStore {
        let store = CertStore::new();
        for (id, names) in certs {
            let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
            let (key, _) = self_signed(&names).unwrap();
            store.set(id, names, key);
        }
        store
    }

    fn check(store: &CertStore, sni: &str, expected: Option<&str>) {
        let got = store.lookup(sni).map(|key| {
            crate::parse::CertInfo::from_der(&key.cert[0])
                .unwrap()
                .names
                .join(",")
        });
        assert_eq!(got.as_deref(), expected, "SNI {sni}");
    }

    #[test]
    fn exact_then_wildcard_then_none() {
        let store = store_with(&[
            ("a", &["shop.example.com"]),
            ("b", &["*.example.com"]),
            ("c", &["example.org", "www.example.org"]),
        ]);
        check(&store, "shop.example.com", Some("shop.example.com"));
        check(&store, "SHOP.Example.com.", Some("shop.example.com"));
        check(&store, "api.example.com", Some("*.example.com"));
        check(&store, "example.com", None);
        check(&store, "a.b.example.com", None);
        check(
            &store,
            "www.example.org",
            Some("example.org,www.example.org"),
        );
        check(&store, "other.net", None);
        check(&store, "com", None);
    }

    #[test]
    fn replace_and_remove() {
        let store = store_with(&[("a", &["one.test"])]);
        let (key, _) = self_signed(&["two.test".to_string()]).unwrap();
        store.set("a", vec!["two.test".into()], key);
        check(&store, "one.test", None);
        check(&store, "two.test", Some("two.test"));
        store.remove("a");
        check(&store, "two.test", None);
        assert!(store.ids().is_empty());
    }
}
