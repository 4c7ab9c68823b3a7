//! The proxy driven over real sockets by real clients (hyper, tungstenite, promtool).

// The tests run real tools (curl, wrk, promtool, mkfifo) with std's Command.
#![allow(clippy::disallowed_methods)]

mod support;

mod drain;
mod fast_path;
mod files;
mod forwarding;
mod head;
mod headers;
mod hosts;
mod https;
mod limits;
mod maintenance;
mod observe;
mod ratelimit;
mod routing;
mod static_site;
mod upstreams;
mod websocket;
