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
# BERTH_BIN: a berth binary already built (else this builds the release one).
if [ -n "${BERTH_BIN:-}" ]; then berth=$BERTH_BIN; else
  cargo build --release -p berth >&2
  berth="$target/release/berth"
fi
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

# Rollback to a warm standby ([deploy] standby) of an app that needs 5 s to start: the whole
# `berth rollback` command (client start to its end, which comes after the switch), and when
# the switch happened on the daemon's clock since it took the command.
slow=$(mktemp -d)
trap 'kill $daemon 2>/dev/null; wait $daemon 2>/dev/null; rm -rf "$state" "$slow"' EXIT
cp -r "$repo/examples/hello/." "$slow/"
sed -i -e 's/^name = "hello"/name = "slow"/' -e 's/^command = "python3 -u web.py".*/command = "sleep 5 \&\& exec python3 -u web.py"/' \
  -e 's/^host = "\*"/host = "slow.test"/' "$slow/berth.toml"
printf '\n[deploy]\nstandby = "10m"\n' >>"$slow/berth.toml"
"$berth" deploy --state "$state" "$slow" >"$state/slow-r1.log" 2>&1 || { cat "$state/slow-r1.log"; exit 1; }
echo "# $runs" >>"$slow/berth.toml"   # a second release (another digest)
"$berth" deploy --state "$state" "$slow" >"$state/slow-r2.log" 2>&1 || { cat "$state/slow-r2.log"; exit 1; }
warm=()
for i in $(seq "$runs"); do
  # r2 is live after the two deploys: back to r1, forward to r2 (the standby each time).
  to=r$(( i % 2 ? 1 : 2 ))
  warm+=("$(python3 - "$berth" "$state" "$port" "$to" <<'PY'
import subprocess, sys, time
berth, state, port, to = sys.argv[1:]
t0 = time.monotonic()
cmd = subprocess.Popen([berth, "rollback", "--state", state, "slow", "--to", to], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
err = cmd.communicate()[1]
for line in err.splitlines():
    if "switch: traffic on" in line:
        # "[  0.01s] switch": the daemon's clock since the command reached it.
        print(f"{(time.monotonic() - t0) * 1000:.1f} {line.split('[')[1].split('s]')[0].strip()}", end="")
        break
PY
)")
done
echo "rollback to a warm standby (app start 5 s): median $(printf '%s\n' "${warm[@]}" | awk '{print $1}' | median) ms for the whole command; the switch at median $(printf '%s\n' "${warm[@]}" | awk '{print $2}' | median) s after the daemon took it"
