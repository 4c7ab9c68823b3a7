#!/usr/bin/env bash
# berth's proxy beside nginx, Caddy and HAProxy on one backend (see shared/bench/proxy-peers.sh).
# Builds release, then runs the peers script with berth on 127.0.0.1:9105.
# Usage: bench/proxy.sh [SECONDS] [CONNECTIONS]
# berth runs with its defaults (security headers `basic`, access log and metrics on).
# BERTH_PROXY_ARGS adds `berth proxy` flags, e.g. security headers and a rate-limit zone that
# never trips (every wrk connection is one client, 127.0.0.1):
#   BERTH_PROXY_ARGS='--headers strict --rate-limit "1000000/s burst 1000000"' bench/proxy.sh
# Uses `berth proxy` (the real binary); only when it does not build falls back to the proxy
# crate's `single` example (same `proxy::run_single`, same defaults), and says so.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$repo/target}
cd "$repo"
if cargo build --release -p berth >&2 && "$target/release/berth" proxy --help >/dev/null 2>&1; then
  cmd="$target/release/berth proxy --listen 127.0.0.1:9105 --to 127.0.0.1:9101 ${BERTH_PROXY_ARGS:-}"
else
  echo "warning: berth did not build; benchmarking the proxy crate's single example" >&2
  cargo build --release -p proxy --example single >&2
  cmd="$target/release/examples/single --listen 127.0.0.1:9105 --to 127.0.0.1:9101"
fi
echo "berth: $cmd" >&2
BERTH_CMD="$cmd" exec "$(dirname "$0")/../../shared/bench/proxy-peers.sh" "$@"
