//! The `Cache-Control` a static route sends, by kind of file.

use http::HeaderValue;

use super::names::Kind;

/// For names with a content hash: the bytes behind such a URL never change.
pub const CACHE_IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// HTML, and every other name without a hash. A deploy replaces the static directory at once,
/// so an un-hashed URL (`/favicon.ico`, `/robots.txt`, `/logo.png`) may mean new bytes after
/// any deploy; `no-cache` lets browsers keep the copy but revalidate it (a cheap 304 thanks to
/// the ETag), so nobody sees a stale file after a deploy. A max-age would trade that for one
/// saved round trip.
pub const CACHE_REVALIDATE: &str = "no-cache";

/// `Cache-Control` of a static route's files, by kind; `None` sends no `Cache-Control`. A
/// file is HTML (by its Content-Type, the SPA fallback included) before it is hashed: a page's
/// URL is the one thing that must show a new deploy at once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CachePolicy {
    /// Names with a content hash ([`crate::files::is_hashed_name`]). Default
    /// [`CACHE_IMMUTABLE`].
    pub hashed: Option<HeaderValue>,
    /// HTML. Default [`CACHE_REVALIDATE`].
    pub html: Option<HeaderValue>,
    /// Every other file. Default [`CACHE_REVALIDATE`].
    pub other: Option<HeaderValue>,
}

impl Default for CachePolicy {
    fn default() -> Self {
        CachePolicy {
            hashed: Some(HeaderValue::from_static(CACHE_IMMUTABLE)),
            html: Some(HeaderValue::from_static(CACHE_REVALIDATE)),
            other: Some(HeaderValue::from_static(CACHE_REVALIDATE)),
        }
    }
}

impl CachePolicy {
    pub(crate) fn for_kind(&self, kind: Kind) -> Option<&HeaderValue> {
        match kind {
            Kind::Html => self.html.as_ref(),
            Kind::Hashed => self.hashed.as_ref(),
            Kind::Other => self.other.as_ref(),
        }
    }
}
