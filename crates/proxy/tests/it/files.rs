//! Static files (`proxy::files`) and compression (`proxy::compress`), driven directly with
//! request parts over a temporary directory.

use std::path::Path;
use std::time::Duration;

use async_compression::tokio::bufread::{BrotliDecoder, GzipDecoder};
use bytes::Bytes;
use http::header::{
    ACCEPT_RANGES, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE,
    ETAG, LAST_MODIFIED, VARY,
};
use http::{HeaderValue, Response, StatusCode};
use http_body::{Body as _, Frame};
use http_body_util::{BodyExt, Full, StreamBody};
use proxy::compress::{Encoding, accepted_encodings, maybe_compress};
use proxy::files::{self, CACHE_IMMUTABLE, CACHE_REVALIDATE};
use proxy::{Body, BoxError};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

// ---- helpers ---------------------------------------------------------------------------

fn parts(method: &str, path: &str, headers: &[(&str, &str)]) -> http::request::Parts {
    let mut builder = http::Request::builder().method(method).uri(path);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(()).unwrap().into_parts().0
}

/// `serve` as the router would call it: the path part of the URI, still percent-encoded.
async fn request(
    root: &Path,
    spa: bool,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Response<Body> {
    let req = parts(method, path, headers);
    let rel = req.uri.path().to_owned();
    files::serve(root, spa, &rel, &req).await
}

async fn get(root: &Path, path: &str, headers: &[(&str, &str)]) -> Response<Body> {
    request(root, false, "GET", path, headers).await
}

async fn bytes(resp: Response<Body>) -> Bytes {
    resp.into_body().collect().await.unwrap().to_bytes()
}

fn header(resp: &Response<Body>, name: impl http::header::AsHeaderName) -> &str {
    resp.headers().get(name).map_or("", |v| v.to_str().unwrap())
}

fn write(dir: &Path, rel: &str, contents: impl AsRef<[u8]>) {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, contents).unwrap();
}

/// Text that compresses well and is above the compression threshold.
fn text(len: usize) -> Vec<u8> {
    let line = b"berth serves static files and compresses them on the fly. ";
    line.iter().copied().cycle().take(len).collect()
}

async fn decode(encoding: &str, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match encoding {
        "br" => BrotliDecoder::new(data)
            .read_to_end(&mut out)
            .await
            .unwrap(),
        "gzip" => GzipDecoder::new(data).read_to_end(&mut out).await.unwrap(),
        other => panic!("unexpected encoding {other}"),
    };
    out
}

fn site() -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "index.html", "<h1>home</h1>");
    write(root, "docs/index.html", "<h1>docs</h1>");
    write(root, "app.js", "console.log(1)");
    write(root, "style.css", "body{}");
    write(root, "data.json", "{}");
    write(root, "logo.svg", "<svg/>");
    write(root, "mod.wasm", b"\0asm");
    write(root, "font.woff2", "w");
    write(root, "img.png", "p");
    write(root, "blob.unknownext", "x");
    write(root, "digits.txt", "0123456789".repeat(10));
    dir
}

// ---- content types, HEAD, methods ----------------------------------------------------

#[tokio::test]
async fn content_types_and_length() {
    let dir = site();
    for (path, expected) in [
        ("/index.html", "text/html; charset=utf-8"),
        ("/app.js", "text/javascript; charset=utf-8"),
        ("/style.css", "text/css; charset=utf-8"),
        ("/data.json", "application/json"),
        ("/logo.svg", "image/svg+xml"),
        ("/mod.wasm", "application/wasm"),
        ("/font.woff2", "font/woff2"),
        ("/img.png", "image/png"),
        ("/digits.txt", "text/plain; charset=utf-8"),
        ("/blob.unknownext", "application/octet-stream"),
    ] {
        let resp = get(dir.path(), path, &[]).await;
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        assert_eq!(header(&resp, CONTENT_TYPE), expected, "{path}");
        assert_eq!(header(&resp, ACCEPT_RANGES), "bytes", "{path}");
        let len: usize = header(&resp, CONTENT_LENGTH).parse().unwrap();
        let file_len = std::fs::metadata(dir.path().join(&path[1..]))
            .unwrap()
            .len();
        assert_eq!(len as u64, file_len, "{path}");
        assert_eq!(bytes(resp).await.len(), len, "{path}");
    }
}

#[tokio::test]
async fn head_has_headers_and_no_body() {
    let dir = site();
    let resp = request(dir.path(), false, "HEAD", "/digits.txt", &[]).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, CONTENT_LENGTH), "100");
    assert!(!header(&resp, ETAG).is_empty());
    assert!(bytes(resp).await.is_empty());
}

#[tokio::test]
async fn other_methods_get_405_with_allow() {
    let dir = site();
    for method in ["POST", "PUT", "DELETE", "OPTIONS"] {
        let resp = request(dir.path(), false, method, "/index.html", &[]).await;
        assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED, "{method}");
        assert_eq!(header(&resp, "allow"), "GET, HEAD");
    }
}

// ---- validators --------------------------------------------------------------------------

#[tokio::test]
async fn validators_give_304() {
    let dir = site();
    let first = get(dir.path(), "/app.js", &[]).await;
    let etag = header(&first, ETAG).to_owned();
    let last_modified = header(&first, LAST_MODIFIED).to_owned();
    assert!(etag.starts_with('"'), "strong etag: {etag}");
    assert!(!last_modified.is_empty());

    let weak = format!("W/{etag}");
    let list = format!("\"other\", {etag}");
    for inm in [etag.as_str(), weak.as_str(), list.as_str(), "*"] {
        let resp = get(dir.path(), "/app.js", &[("if-none-match", inm)]).await;
        assert_eq!(resp.status(), StatusCode::NOT_MODIFIED, "{inm}");
        assert_eq!(header(&resp, ETAG), etag);
        assert!(bytes(resp).await.is_empty());
    }
    let resp = get(dir.path(), "/app.js", &[("if-none-match", "\"nope\"")]).await;
    assert_eq!(resp.status(), StatusCode::OK);

    let resp = get(
        dir.path(),
        "/app.js",
        &[("if-modified-since", &last_modified)],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);
    let old = "Sun, 06 Nov 1994 08:49:37 GMT";
    let resp = get(dir.path(), "/app.js", &[("if-modified-since", old)]).await;
    assert_eq!(resp.status(), StatusCode::OK);

    // If-None-Match wins over If-Modified-Since.
    let resp = get(
        dir.path(),
        "/app.js",
        &[
            ("if-none-match", "\"nope\""),
            ("if-modified-since", &last_modified),
        ],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
}

// ---- ranges --------------------------------------------------------------------------------

#[tokio::test]
async fn ranges() {
    let dir = site();
    let all = "0123456789".repeat(10);
    let cases: &[(&str, StatusCode, &str, &str)] = &[
        (
            "bytes=0-9",
            StatusCode::PARTIAL_CONTENT,
            "bytes 0-9/100",
            &all[0..10],
        ),
        (
            "bytes=90-",
            StatusCode::PARTIAL_CONTENT,
            "bytes 90-99/100",
            &all[90..],
        ),
        (
            "bytes=-5",
            StatusCode::PARTIAL_CONTENT,
            "bytes 95-99/100",
            &all[95..],
        ),
        (
            "bytes=-500",
            StatusCode::PARTIAL_CONTENT,
            "bytes 0-99/100",
            &all,
        ),
        (
            "bytes=95-200",
            StatusCode::PARTIAL_CONTENT,
            "bytes 95-99/100",
            &all[95..],
        ),
        (
            "bytes=100-",
            StatusCode::RANGE_NOT_SATISFIABLE,
            "bytes */100",
            "",
        ),
        (
            "bytes=-0",
            StatusCode::RANGE_NOT_SATISFIABLE,
            "bytes */100",
            "",
        ),
        // Several ranges: answered whole, which RFC 9110 allows.
        ("bytes=0-1,5-6", StatusCode::OK, "", &all),
        // Invalid syntax is ignored.
        ("bytes=5-2", StatusCode::OK, "", &all),
        ("items=0-1", StatusCode::OK, "", &all),
        ("bytes=x-y", StatusCode::OK, "", &all),
    ];
    for &(range, status, content_range, body) in cases {
        let resp = get(dir.path(), "/digits.txt", &[("range", range)]).await;
        assert_eq!(resp.status(), status, "{range}");
        assert_eq!(header(&resp, CONTENT_RANGE), content_range, "{range}");
        if status != StatusCode::RANGE_NOT_SATISFIABLE {
            assert_eq!(
                header(&resp, CONTENT_LENGTH),
                body.len().to_string(),
                "{range}"
            );
            assert_eq!(bytes(resp).await, body.as_bytes(), "{range}");
        }
    }
}

#[tokio::test]
async fn if_range() {
    let dir = site();
    let first = get(dir.path(), "/digits.txt", &[]).await;
    let etag = header(&first, ETAG).to_owned();
    let date = header(&first, LAST_MODIFIED).to_owned();
    let weak = format!("W/{etag}");
    for (if_range, expected) in [
        (etag.as_str(), StatusCode::PARTIAL_CONTENT),
        (date.as_str(), StatusCode::PARTIAL_CONTENT),
        ("\"stale\"", StatusCode::OK),
        (weak.as_str(), StatusCode::OK), // If-Range needs a strong validator
        ("Sun, 06 Nov 1994 08:49:37 GMT", StatusCode::OK),
        ("garbage", StatusCode::OK),
    ] {
        let headers = [("range", "bytes=0-1"), ("if-range", if_range)];
        let resp = get(dir.path(), "/digits.txt", &headers).await;
        assert_eq!(resp.status(), expected, "{if_range}");
    }
}

#[tokio::test]
async fn head_with_range() {
    let dir = site();
    let resp = request(
        dir.path(),
        false,
        "HEAD",
        "/digits.txt",
        &[("range", "bytes=-10")],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(header(&resp, CONTENT_LENGTH), "10");
    assert!(bytes(resp).await.is_empty());
}

// ---- caching -------------------------------------------------------------------------------

#[test]
fn hashed_names() {
    // (name, hashed, who makes such names / why not)
    let table: &[(&str, bool, &str)] = &[
        // Real bundler output.
        ("index-BkT9x2aB.css", true, "Vite (Rollup, 8 base64url)"),
        ("index-BX8kP2Qa.css", true, "Vite"),
        (
            "index-C_7D-rZx.js",
            true,
            "Vite, `_` and `-` inside the hash",
        ),
        ("vendor-Dx-8aQ_f.js", true, "Vite"),
        ("chunk-5JS3F7RA.js", true, "esbuild (8 base32)"),
        ("main-5JS3F7RA.js", true, "Angular 17+ (esbuild)"),
        ("app.3f9a1c2b.js", true, "Parcel, webpack [contenthash:8]"),
        (
            "main.3f9a1c2b4d5e6f708a9b.js",
            true,
            "webpack 5 [contenthash] (20 hex)",
        ),
        ("main.3f9a1c2b.chunk.js", true, "Create React App"),
        (
            "logo.6ce24c58023cc2f8fd88fe9393f4d5ab.svg",
            true,
            "Create React App media",
        ),
        ("main.3f9a1c2b4d5e6f70.js", true, "Angular (16 hex)"),
        ("vendor-4f3a2b1c.js", true, "webpack [name]-[contenthash:8]"),
        ("_app-3f9a1c2b4d5e6f70.js", true, "Next.js pages"),
        ("a1b2c3d4e5f6a7b8.css", true, "Next.js CSS: the whole name"),
        ("c9a5bc6a7c948fb0-s.p.woff2", true, "Next.js fonts"),
        ("logo.a1b2c3d4.svg", true, "asset modules"),
        ("search-63369b7b.js", true, "rustdoc"),
        // Ordinary names.
        ("main.js", false, "no token"),
        ("app.js", false, "no token"),
        ("index.html", false, "no token"),
        ("jquery-3.7.1.min.js", false, "a version"),
        ("jquery-3.6.0.min.js", false, "a version"),
        ("bootstrap-5.3.2.min.css", false, "a version"),
        ("font-awesome-4.7.0.css", false, "a version"),
        ("vue.runtime.esm-bundler.js", false, "words"),
        ("react-dom.production.min.js", false, "words"),
        ("bootstrap5.css", false, "a word with a digit"),
        ("my-component2.js", false, "a word with a digit"),
        ("roboto-v30-latin-regular.woff2", false, "words"),
        ("favicon-32x32.png", false, "a size"),
        ("android-chrome-512x512.png", false, "a size"),
        ("icon-1024x1024.png", false, "a size"),
        ("report-20240101.pdf", false, "a date"),
        ("photo-2024-01-01.jpg", false, "a date"),
        ("IMG_20240101_123456.jpg", false, "a camera name"),
        ("icon-arrowUp2.png", false, "camelCase word with a digit"),
        ("logo-WhiteBg2.png", false, "camelCase word with a digit"),
        ("theme-DarkMode.css", false, "camelCase words, no digit"),
        ("Component2-Widget.js", false, "a word after the dash"),
        ("app.deadbeef.js", false, "hex without a digit"),
        (
            "3f9a1c2b.js",
            false,
            "8 hex as the whole name could be anything",
        ),
        ("app.1a2b3c.js", false, "too short"),
        (
            "index-BkT9x2.css",
            false,
            "6 characters: shorter than any bundler's hash",
        ),
        (
            "app.3f9a_1c2b.js",
            false,
            "neither hex nor base64url-looking",
        ),
        (
            "LICENSE-3f9a1c2b",
            false,
            "no extension: the token is the stem",
        ),
    ];
    for &(name, expected, why) in table {
        assert_eq!(files::is_hashed_name(name), expected, "{name}: {why}");
    }
}

#[tokio::test]
async fn cache_control_rules() {
    let dir = site();
    write(dir.path(), "assets/app.3f9a1c2b.js", "x");
    write(dir.path(), "assets/index-BX8kP2Qa.css", "x");
    write(dir.path(), "page.3f9a1c2b.html", "x");
    for (path, expected) in [
        ("/assets/app.3f9a1c2b.js", CACHE_IMMUTABLE),
        ("/assets/index-BX8kP2Qa.css", CACHE_IMMUTABLE),
        ("/page.3f9a1c2b.html", CACHE_REVALIDATE), // HTML always revalidates
        ("/index.html", CACHE_REVALIDATE),
        ("/", CACHE_REVALIDATE),
        ("/app.js", CACHE_REVALIDATE),
        ("/img.png", CACHE_REVALIDATE),
    ] {
        let resp = get(dir.path(), path, &[]).await;
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        assert_eq!(header(&resp, CACHE_CONTROL), expected, "{path}");
    }
    assert_eq!(CACHE_IMMUTABLE, "public, max-age=31536000, immutable");
    assert_eq!(CACHE_REVALIDATE, "no-cache");
}

// ---- precompressed siblings ------------------------------------------------------------------

#[tokio::test]
async fn precompressed_siblings() {
    let dir = site();
    write(dir.path(), "bundle.js", "identity bytes");
    write(dir.path(), "bundle.js.br", "brotli bytes");
    write(dir.path(), "bundle.js.gz", "gzip bytes");
    write(dir.path(), "only-gz.css", "identity");
    write(dir.path(), "only-gz.css.gz", "gz");

    let cases: &[(&str, &str, &str, &str)] = &[
        ("/bundle.js", "gzip, deflate, br", "br", "brotli bytes"),
        ("/bundle.js", "gzip", "gzip", "gzip bytes"),
        ("/bundle.js", "br;q=0.5, gzip", "gzip", "gzip bytes"),
        ("/bundle.js", "br;q=0, gzip;q=0", "", "identity bytes"),
        ("/bundle.js", "identity", "", "identity bytes"),
        ("/bundle.js", "", "", "identity bytes"),
        ("/only-gz.css", "br, gzip", "gzip", "gz"),
    ];
    let mut etags = Vec::new();
    for &(path, accept, encoding, body) in cases {
        let headers: &[(&str, &str)] = if accept.is_empty() {
            &[]
        } else {
            &[("accept-encoding", accept)]
        };
        let resp = get(dir.path(), path, headers).await;
        assert_eq!(resp.status(), StatusCode::OK, "{accept}");
        assert_eq!(header(&resp, CONTENT_ENCODING), encoding, "{accept}");
        let expected_type = if path.ends_with(".js") {
            "text/javascript; charset=utf-8"
        } else {
            "text/css; charset=utf-8"
        };
        assert_eq!(header(&resp, CONTENT_TYPE), expected_type, "{accept}");
        assert_eq!(header(&resp, VARY), "accept-encoding", "{accept}");
        if encoding.is_empty() {
            assert_eq!(header(&resp, ACCEPT_RANGES), "bytes");
        } else {
            assert_eq!(header(&resp, ACCEPT_RANGES), "");
        }
        assert_eq!(header(&resp, CONTENT_LENGTH), body.len().to_string());
        if path == "/bundle.js" {
            etags.push((encoding, header(&resp, ETAG).to_owned()));
        }
        // maybe_compress leaves an already-encoded (or identity-requested) response alone.
        let accept_value = HeaderValue::from_str(accept).unwrap();
        let resp = maybe_compress(Some(&accept_value), resp);
        assert_eq!(header(&resp, CONTENT_ENCODING), encoding, "{accept}");
        assert_eq!(bytes(resp).await, body.as_bytes(), "{accept}");
    }
    // Each representation has its own validator.
    let br = &etags.iter().find(|(e, _)| *e == "br").unwrap().1;
    let gz = &etags.iter().find(|(e, _)| *e == "gzip").unwrap().1;
    let id = &etags.iter().find(|(e, _)| e.is_empty()).unwrap().1;
    assert!(br != gz && gz != id && br != id);

    // A range request gets the identity file, so ranges never mix representations.
    let resp = get(
        dir.path(),
        "/bundle.js",
        &[("accept-encoding", "br"), ("range", "bytes=0-7")],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(header(&resp, CONTENT_ENCODING), "");
    assert_eq!(bytes(resp).await, "identity".as_bytes());

    // Not-modified works on the precompressed representation's own ETag.
    let resp = get(
        dir.path(),
        "/bundle.js",
        &[("accept-encoding", "br"), ("if-none-match", br)],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);
}

// ---- directories and SPA -------------------------------------------------------------------

#[tokio::test]
async fn directories_serve_index_html() {
    let dir = site();
    let resp = get(dir.path(), "/", &[]).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, CONTENT_TYPE), "text/html; charset=utf-8");
    assert_eq!(bytes(resp).await, "<h1>home</h1>");

    let resp = get(dir.path(), "/docs/", &[]).await;
    assert_eq!(bytes(resp).await, "<h1>docs</h1>");

    let resp = get(dir.path(), "/docs?x=1", &[]).await;
    assert_eq!(resp.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(header(&resp, "location"), "./docs/?x=1");

    // A file named with a trailing slash is not a directory.
    let resp = get(dir.path(), "/app.js/", &[]).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);

    // A directory without index.html.
    std::fs::create_dir(dir.path().join("empty")).unwrap();
    let resp = get(dir.path(), "/empty/", &[]).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn not_found_is_short_and_marked() {
    let dir = site();
    let resp = get(dir.path(), "/missing.js", &[]).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(header(&resp, "x-berth-error"), "not found");
    assert_eq!(header(&resp, CONTENT_TYPE), "text/plain; charset=utf-8");
    assert_eq!(bytes(resp).await, "not found\n");
}

#[tokio::test]
async fn spa_fallback_only_for_paths_without_extension() {
    let dir = site();
    for path in ["/dashboard", "/users/42/settings", "/deep/route/"] {
        let resp = request(dir.path(), true, "GET", path, &[]).await;
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        assert_eq!(header(&resp, CACHE_CONTROL), "no-cache", "{path}");
        assert_eq!(header(&resp, CONTENT_TYPE), "text/html; charset=utf-8");
        assert_eq!(bytes(resp).await, "<h1>home</h1>", "{path}");
    }
    for path in ["/missing.js", "/assets/app.3f9a1c2b.css", "/favicon.ico"] {
        let resp = request(dir.path(), true, "GET", path, &[]).await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{path}");
        assert_eq!(header(&resp, "x-berth-error"), "not found");
    }
    // Existing files and directories still win.
    let resp = request(dir.path(), true, "GET", "/docs/", &[]).await;
    assert_eq!(bytes(resp).await, "<h1>docs</h1>");
    // Without spa, no fallback.
    let resp = request(dir.path(), false, "GET", "/dashboard", &[]).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}

// ---- traversal -----------------------------------------------------------------------------

#[tokio::test]
async fn nothing_escapes_the_root() {
    let outer = tempfile::tempdir().unwrap();
    let secret = "TOP SECRET CONTENTS";
    write(outer.path(), "secret.txt", secret);
    write(outer.path(), "outside/passwd", secret);
    write(outer.path(), "root/index.html", "<h1>home</h1>");
    write(outer.path(), "root/a/b/file.txt", "inner");
    write(outer.path(), "root/.env", secret);
    write(outer.path(), "root/.git/config", secret);
    write(outer.path(), "root/.well-known/security.txt", "contact");
    let root = outer.path().join("root");
    std::os::unix::fs::symlink(outer.path().join("secret.txt"), root.join("leak.txt")).unwrap();
    std::os::unix::fs::symlink(outer.path().join("outside"), root.join("leakdir")).unwrap();
    std::os::unix::fs::symlink("../secret.txt", root.join("a/rel-leak")).unwrap();
    // A symlink inside the tree is fine.
    std::os::unix::fs::symlink(root.join("a/b/file.txt"), root.join("inner-link.txt")).unwrap();

    let attempts = [
        "/../secret.txt",
        "/../../../../etc/passwd",
        "/%2e%2e/secret.txt",
        "/%2E%2e/secret.txt",
        "/..%2fsecret.txt",
        "/..%2f..%2fetc/passwd",
        "/..%2F..%2Fsecret.txt",
        "/a/%2E%2E/%2E%2E/secret.txt",
        "/a/b/%2e%2e%2f%2e%2e%2f%2e%2e%2fsecret.txt",
        "/..\\secret.txt",
        "/a%5c..%5c..%5csecret.txt",
        "/%5c%5c..%5csecret.txt",
        "/index.html%00.png",
        "/%00",
        "/./index.html/../../secret.txt",
        "//etc/passwd",
        "/%2fetc/passwd",
        "/leak.txt",
        "/leakdir/passwd",
        "/leakdir/",
        "/a/rel-leak",
        "/.env",
        "/.git/config",
        "/a/../.env",
        "/%2eenv",
        "/%ff%fe",
    ];
    for spa in [false, true] {
        for path in attempts {
            let req = parts("GET", "/", &[]);
            let resp = files::serve(&root, spa, path, &req).await;
            let status = resp.status();
            let body = bytes(resp).await;
            let text = String::from_utf8_lossy(&body);
            assert!(
                !text.contains(secret),
                "{path} (spa {spa}) leaked the secret"
            );
            assert!(
                !text.contains("/tmp"),
                "{path} (spa {spa}) leaked a path: {text}"
            );
            if !spa {
                assert!(
                    status == StatusCode::NOT_FOUND || status == StatusCode::BAD_REQUEST,
                    "{path}: {status}"
                );
            }
        }
    }
    // Special files are never opened (a FIFO would block the open).
    let fifo = std::process::Command::new("mkfifo")
        .arg(root.join("pipe.txt"))
        .status()
        .is_ok_and(|s| s.success());
    if fifo {
        let resp = get(&root, "/pipe.txt", &[]).await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    }
    let resp = get(&root, "/inner-link.txt", &[]).await;
    assert_eq!(bytes(resp).await, "inner");
    let resp = get(&root, "/.well-known/security.txt", &[]).await;
    assert_eq!(bytes(resp).await, "contact");
    let resp = get(&root, "/a//b/file.txt", &[]).await;
    assert_eq!(bytes(resp).await, "inner");
    let resp = get(&root, "/a/b/file%2etxt", &[]).await;
    assert_eq!(bytes(resp).await, "inner");
}

// ---- streaming -----------------------------------------------------------------------------

#[tokio::test]
async fn large_file_streams_in_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let size = 20 * 1024 * 1024;
    let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    write(dir.path(), "big.bin", &data);

    let resp = get(dir.path(), "/big.bin", &[]).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, CONTENT_LENGTH), size.to_string());
    let mut body = resp.into_body();
    let (mut frames, mut largest, mut received) = (0usize, 0usize, Vec::with_capacity(size));
    while let Some(frame) = body.frame().await {
        let chunk = frame.unwrap().into_data().unwrap();
        frames += 1;
        largest = largest.max(chunk.len());
        received.extend_from_slice(&chunk);
    }
    assert!(largest <= 64 * 1024, "a chunk of {largest} bytes");
    assert!(frames >= size / (64 * 1024), "{frames} frames");
    assert!(received == data, "content differs");

    // A range in the middle of the big file.
    let resp = get(
        dir.path(),
        "/big.bin",
        &[("range", "bytes=10000000-10000099")],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(bytes(resp).await, &data[10_000_000..10_000_100]);
}

// ---- compression ---------------------------------------------------------------------------

#[test]
fn negotiation() {
    #[track_caller]
    fn check(accept: Option<&str>, expected: &[Encoding]) {
        let value = accept.map(|a| HeaderValue::from_str(a).unwrap());
        assert_eq!(accepted_encodings(value.as_ref()), expected, "{accept:?}");
    }
    use Encoding::{Br, Gzip};
    check(None, &[]);
    check(Some(""), &[]);
    check(Some("gzip, deflate, br"), &[Br, Gzip]);
    check(Some("gzip, deflate, br, zstd"), &[Br, Gzip]);
    check(Some("gzip"), &[Gzip]);
    check(Some("GZIP"), &[Gzip]);
    check(Some("br;q=0.5, gzip;q=0.8"), &[Gzip, Br]);
    check(Some("br;q=0, gzip"), &[Gzip]);
    check(Some("br; q=0.000, gzip;q=0"), &[]);
    check(Some("identity"), &[]);
    check(Some("deflate"), &[]);
    check(Some("*"), &[Br, Gzip]);
    check(Some("*;q=0"), &[]);
    check(Some("*, br;q=0"), &[Gzip]);
    check(Some("gzip;q=0.5, identity;q=1"), &[]);
    check(Some("gzip;q=1.0, identity;q=0.5"), &[Gzip]);
    check(Some("gzip;q=2, br;q=abc"), &[]); // malformed q-values are ignored
}

fn response(content_type: &str, body: Vec<u8>, headers: &[(&str, &str)]) -> Response<Body> {
    let mut builder = Response::builder()
        .header(CONTENT_TYPE, content_type)
        .header(CONTENT_LENGTH, body.len());
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let body = Full::new(Bytes::from(body))
        .map_err(|never| match never {})
        .boxed_unsync();
    builder.body(body).unwrap()
}

async fn compress(accept: &str, resp: Response<Body>) -> Response<Body> {
    maybe_compress(Some(&HeaderValue::from_str(accept).unwrap()), resp)
}

#[tokio::test]
async fn compresses_and_round_trips() {
    let input = text(50_000);
    for (accept, expected) in [
        ("gzip, deflate, br", "br"),
        ("br", "br"),
        ("gzip", "gzip"),
        ("br;q=0.1, gzip", "gzip"),
        ("*", "br"),
    ] {
        let resp = response(
            "text/html; charset=utf-8",
            input.clone(),
            &[("etag", "\"abc\""), ("accept-ranges", "bytes")],
        );
        let resp = compress(accept, resp).await;
        assert_eq!(header(&resp, CONTENT_ENCODING), expected, "{accept}");
        assert_eq!(header(&resp, CONTENT_LENGTH), "", "{accept}");
        assert_eq!(header(&resp, ACCEPT_RANGES), "", "{accept}");
        assert_eq!(header(&resp, VARY), "accept-encoding", "{accept}");
        assert_eq!(header(&resp, ETAG), "W/\"abc\"", "{accept}");
        let compressed = bytes(resp).await;
        assert!(
            compressed.len() < input.len() / 10,
            "{accept}: {}",
            compressed.len()
        );
        assert_eq!(decode(expected, &compressed).await, input, "{accept}");
    }
}

#[tokio::test]
async fn compressible_types() {
    for content_type in [
        "text/css",
        "text/plain; charset=utf-8",
        "application/json",
        "application/ld+json",
        "application/javascript",
        "text/javascript; charset=utf-8",
        "application/xml",
        "application/rss+xml",
        "image/svg+xml",
        "application/wasm",
        "TEXT/HTML",
    ] {
        let resp = compress("gzip", response(content_type, text(4096), &[])).await;
        assert_eq!(header(&resp, CONTENT_ENCODING), "gzip", "{content_type}");
        assert_eq!(decode("gzip", &bytes(resp).await).await, text(4096));
    }
}

#[tokio::test]
async fn left_alone() {
    let big = text(4096);
    let cases: Vec<(&str, Response<Body>)> = vec![
        ("small body", response("text/html", text(1023), &[])),
        ("image", response("image/png", big.clone(), &[])),
        ("video", response("video/mp4", big.clone(), &[])),
        ("zip", response("application/zip", big.clone(), &[])),
        ("woff2", response("font/woff2", big.clone(), &[])),
        ("no content type", {
            let mut r = response("x/x", big.clone(), &[]);
            r.headers_mut().remove(CONTENT_TYPE);
            r
        }),
        (
            "event stream",
            response("text/event-stream", big.clone(), &[]),
        ),
        (
            "already encoded",
            response("text/html", big.clone(), &[("content-encoding", "gzip")]),
        ),
        (
            "identity encoding",
            response(
                "text/html",
                big.clone(),
                &[("content-encoding", "identity")],
            ),
        ),
        (
            "no-transform",
            response(
                "text/html",
                big.clone(),
                &[("cache-control", "public, no-transform")],
            ),
        ),
        ("partial", {
            let mut r = response(
                "text/html",
                big.clone(),
                &[("content-range", "bytes 0-4095/9999")],
            );
            *r.status_mut() = StatusCode::PARTIAL_CONTENT;
            r
        }),
        ("no content", {
            let mut r = response("text/html", Vec::new(), &[]);
            *r.status_mut() = StatusCode::NO_CONTENT;
            r
        }),
        ("not modified", {
            let mut r = response("text/html", Vec::new(), &[("content-length", "4096")]);
            *r.status_mut() = StatusCode::NOT_MODIFIED;
            r
        }),
        ("head response: length but no body", {
            let mut r = response("text/html", Vec::new(), &[]);
            r.headers_mut()
                .insert(CONTENT_LENGTH, HeaderValue::from_static("4096"));
            r
        }),
    ];
    for (what, resp) in cases {
        let before_length = header(&resp, CONTENT_LENGTH).to_owned();
        let before_encoding = header(&resp, CONTENT_ENCODING).to_owned();
        let resp = compress("br, gzip", resp).await;
        assert_eq!(header(&resp, CONTENT_ENCODING), before_encoding, "{what}");
        assert_eq!(header(&resp, CONTENT_LENGTH), before_length, "{what}");
    }
    // Not accepted by the client: identity, but still marked as varying.
    for accept in ["identity", "deflate", "br;q=0, gzip;q=0"] {
        let resp = compress(accept, response("text/html", big.clone(), &[])).await;
        assert_eq!(header(&resp, CONTENT_ENCODING), "", "{accept}");
        assert_eq!(header(&resp, CONTENT_LENGTH), "4096", "{accept}");
        assert_eq!(header(&resp, VARY), "accept-encoding", "{accept}");
        assert_eq!(bytes(resp).await, big, "{accept}");
    }
    let resp = maybe_compress(None, response("text/html", big.clone(), &[]));
    assert_eq!(header(&resp, CONTENT_ENCODING), "");
    // An existing Vary is extended, not duplicated.
    let resp = compress(
        "gzip",
        response("text/html", big.clone(), &[("vary", "Origin")]),
    )
    .await;
    let vary: Vec<_> = resp.headers().get_all(VARY).iter().collect();
    assert_eq!(vary, ["Origin", "accept-encoding"]);
    let resp = compress(
        "gzip",
        response("text/html", big, &[("vary", "Accept-Encoding")]),
    )
    .await;
    assert_eq!(resp.headers().get_all(VARY).iter().count(), 1);
}

/// A streamed body from a channel: the sender decides when chunks arrive.
fn channel_body() -> (tokio::sync::mpsc::Sender<Bytes>, Body) {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    let frames = futures_util::stream::unfold(rx, |mut rx| async move {
        let chunk = rx.recv().await?;
        Some((Ok::<_, BoxError>(Frame::data(chunk)), rx))
    });
    (tx, StreamBody::new(frames).boxed_unsync())
}

#[tokio::test]
async fn streamed_chunks_are_flushed_when_upstream_pauses() {
    for encoding in ["br", "gzip"] {
        let (tx, body) = channel_body();
        let upstream = Response::builder()
            .header(CONTENT_TYPE, "application/x-ndjson")
            .body(body)
            .unwrap();
        // Unknown length: compressed even though each chunk is small.
        let resp = compress(encoding, upstream).await;
        assert_eq!(header(&resp, CONTENT_ENCODING), encoding);
        let mut body = resp.into_body();
        assert!(body.size_hint().exact().is_none());

        let mut seen = Vec::new();
        let mut decoded = Vec::new();
        for i in 0..3 {
            let line = format!("{{\"event\":{i}}}\n");
            tx.send(Bytes::from(line.clone())).await.unwrap();
            decoded.extend_from_slice(line.as_bytes());
            // The sender now pauses: the line must come out without more input.
            loop {
                let frame = tokio::time::timeout(Duration::from_secs(10), body.frame())
                    .await
                    .unwrap_or_else(|_| panic!("{encoding}: chunk {i} was held back"))
                    .unwrap()
                    .unwrap();
                seen.extend_from_slice(&frame.into_data().unwrap());
                if partial_decode(encoding, &seen).await == decoded {
                    break;
                }
            }
        }
        drop(tx);
        while let Some(frame) = body.frame().await {
            seen.extend_from_slice(&frame.unwrap().into_data().unwrap());
        }
        assert_eq!(decode(encoding, &seen).await, decoded, "{encoding}");
    }
}

/// Decodes a stream that may not be finished yet, returning what is decodable so far.
async fn partial_decode(encoding: &str, data: &[u8]) -> Vec<u8> {
    use async_compression::tokio::write;
    let mut out = Vec::new();
    match encoding {
        "br" => {
            let mut decoder = write::BrotliDecoder::new(&mut out);
            decoder.write_all(data).await.unwrap();
            decoder.flush().await.unwrap();
        }
        _ => {
            let mut decoder = write::GzipDecoder::new(&mut out);
            decoder.write_all(data).await.unwrap();
            decoder.flush().await.unwrap();
        }
    }
    out
}

#[tokio::test]
async fn static_file_compressed_once() {
    let dir = tempfile::tempdir().unwrap();
    let input = text(200_000);
    write(dir.path(), "app.js", &input);
    let identity = get(dir.path(), "/app.js", &[]).await;
    let strong = header(&identity, ETAG).to_owned();
    for encoding in ["gzip", "br"] {
        // No sibling: files compresses the file itself, once, with a length and a strong
        // validator of its own; maybe_compress leaves it alone.
        let resp = get(dir.path(), "/app.js", &[("accept-encoding", encoding)]).await;
        assert_eq!(header(&resp, CONTENT_ENCODING), encoding);
        let etag = header(&resp, ETAG).to_owned();
        assert_eq!(
            etag,
            format!("{}-{encoding}\"", strong.trim_end_matches('"'))
        );
        assert_eq!(header(&resp, VARY), "accept-encoding");
        assert_eq!(header(&resp, ACCEPT_RANGES), "");
        let len: usize = header(&resp, CONTENT_LENGTH).parse().unwrap();
        assert!(len < input.len() / 10, "{encoding}: {len}");
        let resp = compress(encoding, resp).await;
        assert_eq!(header(&resp, CONTENT_ENCODING), encoding);
        let body = bytes(resp).await;
        assert_eq!(body.len(), len);
        assert_eq!(decode(encoding, &body).await, input);

        // A 304 for that representation's own validator.
        let headers = [
            ("accept-encoding", encoding),
            ("if-none-match", etag.as_str()),
        ];
        let resp = get(dir.path(), "/app.js", &headers).await;
        assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(header(&resp, ETAG), etag);
    }
}
