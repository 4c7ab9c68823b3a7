//! Static files served by the proxy itself from a release's static directory, like a CDN: what
//! each path names is found on disk once per root and cached (the release tree never changes),
//! small files and the encodings made from them are answered from memory, precompressed
//! siblings are found once, and the little file IO left (a miss, a large file) runs on tokio's
//! blocking pool, never on the runtime's workers.
//!
//! How a request path maps to a file: the path after the route's prefix (all of it, or the part
//! after `path` with `strip_prefix`) is decoded once and looked up under the root; a directory
//! asked for with a trailing slash serves its `index.html`, without one it is redirected (308)
//! to the slash. With `spa`, a path that names nothing gets the root's `index.html`, unless
//! its last segment has an asset extension ([`names::is_asset_name`]: `.js`, `.css`, `.png`,
//! …), which stays a 404 — like nginx's `try_files $uri $uri/ /index.html` with assets
//! excluded.
//!
//! Invariants, stated as absences:
//! - no response ever comes from outside the root: the request path is decoded once, `.`/`..`
//!   segments, backslashes and NUL are refused, and every file is canonicalized and must still
//!   lie under the canonicalized root (a symlink pointing out of the tree is a 404);
//! - dotfiles (`.env`, `.git/…`) are never served, except under `.well-known/`;
//! - no FIFO, device or socket is ever read;
//! - no filesystem path appears in a response; errors are short bodies with `x-berth-error`;
//! - no file larger than `MEMORY_FILE_MAX` is read whole to answer for it: it streams in
//!   64 KiB pieces;
//! - HEAD and GET never describe different representations.
//!
//! Modules, from the top down: `respond` (one answer), `cache` (the roots and their paths),
//! `load` (the blocking lookup), `asset` (representations, the memory budget), `conditional`
//! (304, ranges), `policy` (Cache-Control by kind), `names`, `path`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use http::{Method, Response, StatusCode};

mod asset;
mod cache;
mod conditional;
mod load;
mod names;
mod path;
mod policy;
mod respond;

pub(crate) use cache::Sites;
pub use names::{content_type, is_hashed_name};
pub use policy::{CACHE_IMMUTABLE, CACHE_REVALIDATE, CachePolicy};

use crate::body::Body;
use cache::Site;
use load::Found;
use path::RequestPath;
use respond::{error, method_not_allowed, redirect_to_dir, respond};

/// A static route ready for requests: its root's cache and the route's settings.
pub(crate) struct StaticRoute {
    site: Arc<Site>,
    spa: bool,
    cache: CachePolicy,
}

impl StaticRoute {
    pub fn new(sites: &Sites, root: &Path, spa: bool, cache: CachePolicy) -> StaticRoute {
        StaticRoute {
            site: sites.site(root),
            spa,
            cache,
        }
    }

    /// Serve `rel_path` (the request path after route-prefix handling, still percent-encoded,
    /// starting with '/').
    pub async fn serve(&self, rel_path: &str, req: &http::request::Parts) -> Response<Body> {
        serve_site(&self.site, self.spa, &self.cache, rel_path, req).await
    }
}

/// Serve `rel_path` from `root` with the default cache policy and nothing kept between calls
/// (tests, one-off use); routes go through the proxy's cache.
pub async fn serve(
    root: &Path,
    spa: bool,
    rel_path: &str,
    req: &http::request::Parts,
) -> Response<Body> {
    let site = Arc::new(Site::new(PathBuf::from(root), asset::Budget::new(64 << 20)));
    serve_site(&site, spa, &CachePolicy::default(), rel_path, req).await
}

async fn serve_site(
    site: &Arc<Site>,
    spa: bool,
    cache: &CachePolicy,
    rel_path: &str,
    req: &http::request::Parts,
) -> Response<Body> {
    if req.method != Method::GET && req.method != Method::HEAD {
        return method_not_allowed();
    }
    let Some(path) = RequestPath::parse(rel_path) else {
        return error(StatusCode::BAD_REQUEST, "bad path");
    };
    if path.has_hidden_segment() {
        return not_found();
    }
    match site.find(&path).await {
        Found::File(asset) => respond(&asset, cache, req).await,
        Found::Redirect => redirect_to_dir(rel_path, req),
        Found::Missing if spa && !path.last().is_some_and(names::is_asset_name) => {
            match site.find(&RequestPath::from_key("index.html")).await {
                Found::File(index) => respond(&index, cache, req).await,
                _ => not_found(),
            }
        }
        Found::Missing => not_found(),
    }
}

fn not_found() -> Response<Body> {
    error(StatusCode::NOT_FOUND, "not found")
}
