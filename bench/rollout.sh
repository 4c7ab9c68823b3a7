#!/usr/bin/env bash
# Switch-over and rollback times of berth on examples/hello, as medians over N runs.
#   switch:   from "every new instance ready" to "traffic on the new release" (the daemon's own
#             measurement, printed in the `switch` phase)
#   rollback: wall time of `berth rollback hello`, and the part of it that is not the app's own
#             start (from the command's start to the last instance ready)
# Usage: bench/rollout.sh [RUNS]
set -euo pipefail
runs=${1:-20}
repo=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$repo/target}
cargo build --release -p berth >&2
berth="$target/release/berth"
state=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$berth" serve --state "$state" --http "127.0.0.1:$port" 2>"$state/daemon.log" &
daemon=$!
trap 'kill $daemon 2>/dev/null; wait $daemon 2>/dev/null; rm -rf "$state"' EXIT
for _ in $(seq 50); do "$berth" status --state "$state" >/dev/null 2>&1 && break; sleep 0.1; done

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
"$berth" deploy --state "$state" "$repo/examples/hello" >/dev/null 2>&1
switch=(); rb_wall=(); rb_ready=(); rb_switch=()
for _ in $(seq "$runs"); do
  out=$("$berth" deploy --state "$state" "$repo/examples/hello" 2>&1)
  switch+=("$(echo "$out" | sed -n 's/.*switch: traffic on r[0-9]* in \([0-9.]*\) ms.*/\1/p')")
done
# Back and forth between the last two releases (only keep_releases stay on disk).
last=$((runs + 1))
for i in $(seq "$runs"); do
  to=r$((i % 2 ? last - 1 : last))
  t0=$(date +%s.%N)
  out=$("$berth" rollback --state "$state" hello --to "$to" 2>&1)
  t1=$(date +%s.%N)
  rb_wall+=("$(echo "$t1 - $t0" | bc)")
  rb_ready+=("$(echo "$out" | sed -n 's/^ *\[ *\([0-9.]*\)s\] web\.[0-9]* ready.*/\1/p' | sort -n | tail -1)")
  rb_switch+=("$(echo "$out" | sed -n 's/.*switch: traffic on r[0-9]* in \([0-9.]*\) ms.*/\1/p')")
done
echo "runs=$runs"
echo "deploy switch (ready -> traffic moved): median $(printf '%s\n' "${switch[@]}" | median) ms"
echo "rollback switch:                        median $(printf '%s\n' "${rb_switch[@]}" | median) ms"
echo "rollback wall time:                     median $(printf '%s\n' "${rb_wall[@]}" | median) s"
echo "  of which the app's start to ready:    median $(printf '%s\n' "${rb_ready[@]}" | median) s"
