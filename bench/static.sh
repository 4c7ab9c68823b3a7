#!/usr/bin/env bash
# Static files: nginx (`root`) and `berth proxy --static` serving the same directory, side by side
# in one run, over HTTP/1.1 (wrk) and h2c (h2load, prior knowledge; the same for both).
#
# Cases (the same URL on both servers):
#   small   1 KiB  /small.css
#   medium  50 KiB /medium.js
#   gzip    50 KiB /assets/app.3f9a1c2b.js with its precompressed app.3f9a1c2b.js.gz sibling,
#           asked with `Accept-Encoding: gzip` (nginx: gzip_static on; berth finds siblings itself)
#
# nginx is set up the way a production site would be: 2 workers (one per core), sendfile and
# tcp_nopush on, gzip_static on, an access log (buffered, its cheapest form), and keep-alive
# connections that are not closed every 1000 requests (berth never closes them either), so
# neither server pays for reconnecting. No open_file_cache: that is nginx `root` as shipped.
# berth runs with its defaults (access log on, to a file here; `basic` security headers).
#
# Per row: requests/s, latency (wrk: p50/p99; h2load: mean), and CPU microseconds per request of
# the server alone (its utime+stime over the run / requests) — on a shared machine the CPU figure
# is the stable one; requests/s moves with the neighbours. Compare within one run.
#
# Usage: bench/static.sh [SECONDS] [CONNECTIONS] [REPS]   (defaults 5 64 1: about 2 minutes)
# BERTH=path/to/berth skips the build.
set -euo pipefail
D=${1:-5} C=${2:-64} R=${3:-1}
repo=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$repo/target}
if [ -z "${BERTH:-}" ]; then
  (cd "$repo" && cargo build --release -p berth >&2)
  BERTH=$target/release/berth
fi
for tool in nginx wrk h2load curl; do
  command -v $tool >/dev/null || { echo "error: $tool is not installed" >&2; exit 2; }
done
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
W=$(mktemp -d); chmod 755 "$W"
pids=()
cleanup() {
  [ -f "$W/nginx.pid" ] && kill "$(cat "$W/nginx.pid")" 2>/dev/null
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$W"
}
trap cleanup EXIT

# The site: text that compresses like real CSS/JS.
site=$W/site
mkdir -p "$site/assets"
gen() { # BYTES
  awk -v size="$1" 'BEGIN { out = ""; for (i = 0; length(out) < size; i++)
    out = out sprintf(".c%05d { margin: 0 %dpx; color: #%06x; } /* berth static bench */\n", i, i % 97, i * 7919 % 16777216)
    printf "%s", substr(out, 1, size) }'
}
gen 1024 > "$site/small.css"
gen 51200 > "$site/medium.js"
gen 51200 > "$site/assets/app.3f9a1c2b.js"
gzip -9 -k -n "$site/assets/app.3f9a1c2b.js"
chmod -R a+rX "$site"

NGX_H1=$(free_port) NGX_H2=$(free_port) BERTH_PORT=$(free_port)
cat > "$W/nginx.conf" <<CONF
worker_processes 2; pid $W/nginx.pid; error_log $W/nginx-error.log; daemon on;
events { worker_connections 4096; }
http {
  include /etc/nginx/mime.types;
  access_log $W/nginx-access.log combined buffer=64k flush=1s;
  sendfile on; tcp_nopush on; gzip_static on;
  keepalive_requests 100000000; keepalive_timeout 60s;
  server { listen 127.0.0.1:$NGX_H1; listen 127.0.0.1:$NGX_H2 http2; root $site; }
}
CONF
nginx -c "$W/nginx.conf"
"$BERTH" proxy --listen "127.0.0.1:$BERTH_PORT" --static "$site" >"$W/berth-access.log" 2>"$W/berth.log" &
pids+=($!)
berth_pid=$!

wait_up() { for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$1/small.css" && return; sleep 0.05; done; echo "error: nothing answers on port $1" >&2; exit 1; }
wait_up "$NGX_H1"; wait_up "$BERTH_PORT"

# Both must give the same representation of every case before anything is measured.
check() { # PORT PATH ENCODING -> "status length encoding"
  curl -s --http1.1 -o /dev/null -H "Accept-Encoding: ${3:-identity}" \
    -w '%{http_code} %{size_download} %header{content-encoding}' "http://127.0.0.1:$1$2"
}
for case in "/small.css" "/medium.js" "/assets/app.3f9a1c2b.js gzip"; do
  set -- $case
  a=$(check "$NGX_H1" "$1" "${2:-}") b=$(check "$BERTH_PORT" "$1" "${2:-}")
  if [ "$a" != "$b" ]; then echo "error: $1 differs: nginx '$a', berth '$b'" >&2; exit 1; fi
done
check_h2() { curl -s --http2-prior-knowledge -o /dev/null -w '%{http_version}' "http://127.0.0.1:$1/small.css"; }
[ "$(check_h2 "$NGX_H2")" = 2 ] && [ "$(check_h2 "$BERTH_PORT")" = 2 ] || { echo "error: h2c not answered" >&2; exit 1; }

server_pids() { # NAME
  case $1 in
    nginx) m=$(cat "$W/nginx.pid"); echo "$m" $(pgrep -P "$m");;
    berth) echo "$berth_pid";;
  esac
}
ticks() { local s=0; for p in "$@"; do [ -r "/proc/$p/stat" ] && s=$((s + $(awk '{print $14+$15}' "/proc/$p/stat"))); done; echo $s; }
HZ=$(getconf CLK_TCK)

run() { # NAME PROTO PORT PATH ENC
  local name=$1 proto=$2 port=$3 path=$4 enc=$5 hdr=() out rps lat reqs
  [ -n "$enc" ] && hdr=(-H "Accept-Encoding: $enc")
  local pp; pp=$(server_pids "$name")
  local t0; t0=$(ticks $pp)
  if [ "$proto" = h1 ]; then
    out=$(wrk -t1 -c"$C" -d"${D}s" --latency "${hdr[@]}" "http://127.0.0.1:$port$path" 2>&1)
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    reqs=$(echo "$out" | awk '/requests in/ {print $1}')
    lat="p50=$(echo "$out" | awk '$1=="50%" {print $2}') p99=$(echo "$out" | awk '$1=="99%" {print $2}')"
    bad=$(echo "$out" | awk '/Non-2xx|Socket errors/ {printf "%s ", $0}')
  else
    # h2: C/8 connections with 8 streams each (browsers multiplex a handful of connections).
    out=$(h2load -t1 -c"$(( C / 8 ))" -m8 -D "$D" "${hdr[@]}" "http://127.0.0.1:$port$path" 2>&1)
    rps=$(echo "$out" | awk '/^finished in/ {gsub(",", "", $4); print $4}')
    reqs=$(echo "$out" | awk '/^requests:/ {print $8}')
    lat="mean=$(echo "$out" | awk '/^time for request:/ {print $6}')"
    bad=$(echo "$out" | awk '/^status codes:/ && ($5+0 > 0 || $7+0 > 0 || $9+0 > 0) {print}')
  fi
  local t1; t1=$(ticks $pp)
  awk -v n="$name" -v p="$proto" -v c="$CASE" -v rps="$rps" -v lat="$lat" -v reqs="$reqs" -v t=$((t1 - t0)) -v hz="$HZ" -v bad="$bad" \
    'BEGIN { printf "%-7s %-3s %-6s rps=%8.0f %-26s cpu_us/req=%5.1f %s\n", c, p, n, rps, lat, (reqs > 0 ? t / hz * 1e6 / reqs : 0), bad }'
}

echo "# $(date -u +%FT%TZ) $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); ${D}s per row, $C connections (h2: $((C / 8)) x 8 streams)"
for rep in $(seq "$R"); do
  [ "$R" -gt 1 ] && echo "# rep $rep"
  for case in "small /small.css" "medium /medium.js" "gzip /assets/app.3f9a1c2b.js gzip"; do
    set -- $case
    CASE=$1
    for proto in h1 h2; do
      if [ $proto = h1 ]; then np=$NGX_H1; else np=$NGX_H2; fi
      run nginx $proto "$np" "$2" "${3:-}"
      run berth $proto "$BERTH_PORT" "$2" "${3:-}"
    done
  done
done
