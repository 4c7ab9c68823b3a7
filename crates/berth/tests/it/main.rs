//! Black-box tests: the real `berth` binary, a real daemon in a temporary state directory,
//! real app processes, real HTTP over loopback.

// The tests run the berth binary and real tools (curl, wrk, promtool) with std's Command.
#![allow(clippy::disallowed_methods)]

mod harness;

mod backup;
mod check;
mod daemon;
mod demo;
mod deploy;
mod export;
mod https;
mod isolation;
mod maintenance;
mod observe;
mod release_safety;
mod remote;
mod rollout;
mod secrets;
mod static_files;
mod systemd;
mod upgrade;
