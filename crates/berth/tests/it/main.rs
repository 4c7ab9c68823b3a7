//! Black-box tests: the real `berth` binary, a real daemon in a temporary state directory,
//! real app processes, real HTTP over loopback.

mod harness;

mod check;
mod daemon;
mod demo;
mod deploy;
mod https;
mod rollout;
mod secrets;
