//! The one body type the proxy hands to hyper, for requests and responses alike.

use http_body_util::BodyExt;

/// Error type of every body that passes through the proxy.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The one body type the proxy hands to hyper, for requests and responses alike.
pub type Body = http_body_util::combinators::UnsyncBoxBody<bytes::Bytes, BoxError>;

/// An empty [`Body`] (no allocation).
pub fn empty_body() -> Body {
    http_body_util::Empty::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A [`Body`] holding `bytes` in one frame.
pub fn full_body(bytes: impl Into<bytes::Bytes>) -> Body {
    http_body_util::Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}
