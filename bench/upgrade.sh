#!/usr/bin/env bash
# The longest request across an upgrade: `berth upgrade` (the daemon hands its listeners and
# apps to a new process) against `nginx -s reload` (new workers, old ones drain), side by side
# in one run, both in front of the same app instance.
#
# For each server: wrk runs for SECONDS with CONNECTIONS keep-alive connections; at a quarter,
# half and three quarters of the run the server is upgraded (berth) or reloaded (nginx). A
# second run of the same length without any upgrade is the baseline. Per row: requests, the
# longest request seen (wrk's Max), p99, and failures (socket errors: connect, read, write,
# timeout; and non-2xx answers). The figure that matters is the longest request with upgrades
# against the baseline's: what one upgrade costs the slowest client.
#
# The app is an nginx answering a fixed body, which berth starts and supervises (a Python app's
# own pauses, ~40 ms from Nagle and the GIL, used to drown the figure); nginx proxies to the same
# instance (its port from `berth status`), with upstream keep-alive like berth's pool.
#
# Usage: bench/upgrade.sh [SECONDS] [CONNECTIONS]   (defaults 8 32; ROUNDS=3: about 2 minutes)
# BERTH=path/to/berth skips the build.
set -euo pipefail
D=${1:-8} C=${2:-32}
repo=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$repo/target}
if [ -z "${BERTH:-}" ]; then
  (cd "$repo" && cargo build --release -p berth >&2)
  BERTH=$target/release/berth
fi
for tool in nginx wrk curl python3; do
  command -v $tool >/dev/null || { echo "error: $tool is not installed" >&2; exit 2; }
done
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
W=$(mktemp -d /var/tmp/berth-upgrade-bench.XXXXXX); chmod 755 "$W"
export BERTH_STATE=$W/state
cleanup() {
  [ -f "$W/nginx.pid" ] && kill "$(cat "$W/nginx.pid")" 2>/dev/null
  # SIGINT: the daemon serving now stops its apps too.
  pid=$("$BERTH" status --json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["daemon"]["pid"])' 2>/dev/null || true)
  [ -n "$pid" ] && kill -INT "$pid" 2>/dev/null
  for _ in $(seq 100); do [ -S "$BERTH_STATE/berth.sock" ] || break; sleep 0.1; done
  wait 2>/dev/null
  rm -rf "$W"
}
trap cleanup EXIT

mkdir -p "$W/app"
cat > "$W/app/berth.toml" <<'TOML'
[app]
name = "bench"
[services.web]
command = "./run.sh"
health = { path = "/health", interval = "1s", timeout = "1s" }
[[routes]]
host = "*"
path = "/"
service = "web"
TOML
# The app: nginx as a plain HTTP server on $PORT (a fixed 19-byte answer), so its own latency
# is flat and the longest request is the proxy's and the upgrade's.
cat > "$W/app/run.sh" <<'SH'
#!/bin/sh
d=$(mktemp -d)
sed "s/@PORT@/$PORT/; s|@DIR@|$d|g" app.conf > "$d/nginx.conf"
exec nginx -e stderr -c "$d/nginx.conf" -g 'daemon off;'
SH
chmod +x "$W/app/run.sh"
cat > "$W/app/app.conf" <<'CONF'
worker_processes 1; pid @DIR@/app.pid; error_log stderr;
events { worker_connections 4096; }
http {
  access_log off; keepalive_requests 10000000;
  client_body_temp_path @DIR@/body; proxy_temp_path @DIR@/proxy; fastcgi_temp_path @DIR@/fcgi;
  uwsgi_temp_path @DIR@/uwsgi; scgi_temp_path @DIR@/scgi;
  server { listen 127.0.0.1:@PORT@; location / { return 200 "hello from the app\n"; } }
}
CONF

BERTH_PORT=$(free_port) NGX_PORT=$(free_port)
"$BERTH" serve --http "127.0.0.1:$BERTH_PORT" >"$W/berth.log" 2>&1 &
for _ in $(seq 100); do "$BERTH" status >/dev/null 2>&1 && break; sleep 0.1; done
"$BERTH" deploy "$W/app" >/dev/null 2>&1
app_pid() { "$BERTH" status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["apps"][0]["instances"][0]["pid"])'; }
APP_PID=$(app_pid)
APP_PORT=$("$BERTH" status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["apps"][0]["instances"][0]["port"])')

cat > "$W/nginx.conf" <<CONF
worker_processes 2; pid $W/nginx.pid; error_log $W/nginx-error.log; daemon on;
events { worker_connections 4096; }
http {
  access_log $W/nginx-access.log combined buffer=64k flush=1s;
  upstream app { server 127.0.0.1:$APP_PORT; keepalive 64; }
  server {
    listen 127.0.0.1:$NGX_PORT;
    location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
CONF
nginx -c "$W/nginx.conf"

wait_up() { for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$1/" && return; sleep 0.05; done; echo "error: nothing answers on port $1" >&2; exit 1; }
wait_up "$BERTH_PORT"; wait_up "$NGX_PORT"

# wrk's output -> "requests max p99 failures"
summarize() {
  awk '
    /requests in/ { req = $1 }
    /^    Latency / { max = $4 }
    /^     99%/ { p99 = $2 }
    /Socket errors/ { for (i = 3; i <= NF; i++) { gsub(",", "", $i); if ($i ~ /^[0-9]+$/) fail += $i } }
    /Non-2xx/ { fail += $NF }
    END { printf "%s %s %s %d\n", req, max, p99, fail }' "$1"
}

run() { # NAME PORT UPGRADE-COMMAND|-
  local name=$1 port=$2 cmd=$3 out=$W/$1.wrk
  wrk -t2 -c"$C" -d"${D}s" --latency --timeout 10s "http://127.0.0.1:$port/" >"$out" &
  local wrk_pid=$!
  if [ "$cmd" != - ]; then
    for q in 1 2 3; do
      sleep "$(python3 -c "print($D / 4)")"
      eval "$cmd" >>"$W/$name.upgrades" 2>&1
    done
  fi
  wait "$wrk_pid"
  read -r req max p99 fail < <(summarize "$out")
  printf '%-28s %10s %10s %10s %9s\n' "$name" "$req" "$max" "$p99" "$fail"
  echo "$max" >>"$W/$4.longest"
}

# One run's longest request is one sample of the machine's worst moment (a 2-core box pauses a
# client for 10-40 ms now and then, upgrade or not): ROUNDS rounds, and the median per row.
printf '%-28s %10s %10s %10s %9s\n' "server" "requests" "longest" "p99" "failures"
for round in $(seq "${ROUNDS:-3}"); do
  run "berth (no upgrade)" "$BERTH_PORT" - berth-base
  run "berth, 3x berth upgrade" "$BERTH_PORT" "\"$BERTH\" upgrade" berth-upgrade
  run "nginx (no reload)" "$NGX_PORT" - nginx-base
  run "nginx, 3x nginx -s reload" "$NGX_PORT" "nginx -c $W/nginx.conf -s reload" nginx-reload
done
echo
median() { python3 -c '
import sys
def ms(v):
    for unit, f in (("us", 0.001), ("ms", 1.0), ("s", 1000.0)):
        if v.endswith(unit):
            return float(v[: -len(unit)]) * f
vals = sorted(ms(l.strip()) for l in open(sys.argv[1]) if l.strip())
print("%.2fms" % vals[len(vals) // 2])' "$1"; }
for row in berth-base berth-upgrade nginx-base nginx-reload; do
  printf 'median longest, %-14s %s\n' "$row:" "$(median "$W/$row.longest")"
done
echo
echo "app instance pid before the upgrades: $APP_PID, after: $(app_pid)"
grep -h "took over" "$W/berth, 3x berth upgrade.upgrades" 2>/dev/null | sed 's/^/  /' || true
