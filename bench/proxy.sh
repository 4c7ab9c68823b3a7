#!/usr/bin/env bash
# berth's proxy beside nginx, Caddy and HAProxy on one backend (see shared/bench/proxy-peers.sh).
# Builds release, then runs the peers script with berth on 127.0.0.1:9105.
# Usage: bench/proxy.sh [SECONDS] [CONNECTIONS]
# Uses `berth proxy` when the binary has the subcommand, else the proxy crate's `single` example.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$repo/target}
cd "$repo"
cargo build --release -p proxy --example single >&2
cmd="$target/release/examples/single --listen 127.0.0.1:9105 --to 127.0.0.1:9101"
if cargo build --release -p berth >&2 2>/dev/null && "$target/release/berth" proxy --help >/dev/null 2>&1; then
  cmd="$target/release/berth proxy --listen 127.0.0.1:9105 --to 127.0.0.1:9101"
fi
echo "berth: $cmd" >&2
BERTH_CMD="$cmd" exec "$(dirname "$0")/../../shared/bench/proxy-peers.sh" "$@"
