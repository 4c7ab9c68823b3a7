#!/usr/bin/env bash
# berth's proxy beside nginx over TLS, same certificate, same backend, in one run: h2load over
# HTTP/2 and over HTTP/1.1, with requests/s and the proxy's CPU microseconds per request.
# The backend is nginx serving a fixed 1 KiB body on 127.0.0.1:9101; berth (the proxy crate's
# `single` example with --tls, which writes its self-signed certificate for nginx to share)
# listens on 9443, nginx (worker_processes auto, keep-alive to the backend) on 9444.
# Usage: bench/proxy-tls.sh [REQUESTS] [REPS]
set -euo pipefail
N=${1:-200000} R=${2:-3}
repo=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$repo/target}
(cd "$repo" && cargo build --release -p proxy --example single >&2)
W=$(mktemp -d); chmod 755 "$W"
trap 'for f in "$W"/*.pid; do [ -f "$f" ] && kill $(cat "$f") 2>/dev/null; done; sleep 0.3' EXIT
head -c 768 /dev/urandom | base64 -w0 | head -c 1024 > "$W/body"; chmod 644 "$W/body"
cat > "$W/backend.conf" <<C
worker_processes 1; pid $W/nginx-b.pid; error_log $W/eb.log; daemon on;
events { worker_connections 4096; }
http { access_log off; server { listen 127.0.0.1:9101; location / { root $W; try_files /body =404; } } }
C
nginx -c "$W/backend.conf"
"$target/release/examples/single" --listen 127.0.0.1:9443 --to 127.0.0.1:9101 --tls "$W" \
  >"$W/berth.log" 2>&1 & echo $! > "$W/berth.pid"
for _ in $(seq 50); do [ -s "$W/key.pem" ] && break; sleep 0.1; done
cat > "$W/front.conf" <<C
worker_processes auto; pid $W/nginx-f.pid; error_log $W/ef.log; daemon on;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 10000000; http2_max_requests 10000000;
  upstream b { server 127.0.0.1:9101; keepalive 64; }
  server { listen 127.0.0.1:9444 ssl http2; ssl_certificate $W/cert.pem; ssl_certificate_key $W/key.pem;
    location / { proxy_pass http://b; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
C
nginx -c "$W/front.conf"
sleep 0.5
for p in 9443 9444; do curl -skf -o /dev/null "https://localhost:$p/" || { echo "nothing on $p"; tail "$W"/*.log; exit 1; }; done
ticks() { local s=0; for p in "$@"; do [ -r /proc/$p/stat ] && s=$((s + $(awk '{print $14+$15}' /proc/$p/stat))); done; echo $s; }
HZ=$(getconf CLK_TCK)
for rep in $(seq "$R"); do
  for proto in h2 http/1.1; do
    for name in berth nginx; do
      if [ $name = berth ]; then port=9443; pids=$(cat "$W/berth.pid"); else port=9444; m=$(cat "$W/nginx-f.pid"); pids="$m $(pgrep -P "$m" | tr '\n' ' ')"; fi
      if [ $proto = h2 ]; then args=(-c 16 -m 10); else args=(--h1 -c 64); fi
      a0=$(ticks $pids)
      out=$(h2load -n "$N" "${args[@]}" -t 1 "https://localhost:$port/" 2>&1)
      a1=$(ticks $pids)
      rps=$(echo "$out" | awk '/^finished in/ {gsub(",","",$4); print $4}')
      ok=$(echo "$out" | awk '/^requests:/ {print $8}')
      fail=$(echo "$out" | awk '/^requests:/ {print $10}')
      p_max=$(echo "$out" | awk '/^time for request:/ {print $5}')
      mean=$(echo "$out" | awk '/^time for request:/ {print $6}')
      awk -v n=$name -v pr=$proto -v r=$rep -v rps="$rps" -v ok="$ok" -v f="$fail" -v mean="$mean" -v mx="$p_max" -v a=$((a1-a0)) -v hz=$HZ \
        'BEGIN{printf "%-6s %-8s rep%d req/s=%8s ok=%s failed=%s mean=%-8s max=%-8s proxy_us/req=%5.1f\n", n, pr, r, rps, ok, f, mean, mx, a/hz*1e6/(ok>0?ok:1)}'
    done
  done
done
