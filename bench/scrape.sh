#!/usr/bin/env bash
# The cost of a /metrics scrape with many routes and instances, and the daemon's idle memory.
#   one app with INSTANCES instances of a tiny service and ROUTES routes to it, some requests
#   on every route (so each has its series), then SCRAPES scrapes timed by curl.
# Usage: bench/scrape.sh [ROUTES] [INSTANCES] [SCRAPES]
set -euo pipefail
routes=${1:-100} instances=${2:-50} scrapes=${3:-50}
repo=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$repo/target}
cargo build --release -p berth >&2
berth="$target/release/berth"
work=$(mktemp -d /var/tmp/berth-scrape-XXXX); chmod 755 "$work"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
http=$(free_port); admin=$(free_port)
"$berth" serve --state "$work/state" --http "127.0.0.1:$http" --admin "127.0.0.1:$admin" 2>"$work/daemon.log" &
daemon=$!
trap 'kill $daemon 2>/dev/null; wait $daemon 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do "$berth" status --state "$work/state" >/dev/null 2>&1 && break; sleep 0.1; done
rss() { awk '$1 == "VmRSS:" {print int($2/1024)}' "/proc/$daemon/status"; }
echo "daemon RSS, no app: $(rss) MB"

mkdir "$work/one"
cat > "$work/one/berth.toml" <<T
[app]
name = "one"
[services.web]
command = "python3 -m http.server \$PORT --bind 127.0.0.1"
[[routes]]
host = "one.test"
path = "/"
service = "web"
T
"$berth" deploy --state "$work/state" "$work/one" >/dev/null 2>&1
sleep 25
echo "daemon RSS, one app, idle 25 s: $(rss) MB"

mkdir "$work/app"
{
  echo '[app]'; echo 'name = "many"'
  echo '[services.web]'; echo 'command = "python3 -m http.server $PORT --bind 127.0.0.1"'; echo "instances = $instances"
  for i in $(seq "$routes"); do
    echo '[[routes]]'; echo "host = \"r$i.test\""; echo 'path = "/"'; echo 'service = "web"'
  done
} > "$work/app/berth.toml"
"$berth" deploy --state "$work/state" "$work/app" >/dev/null 2>&1
for i in $(seq "$routes"); do curl -s -o /dev/null -H "Host: r$i.test" "http://127.0.0.1:$http/"; done
series=$(curl -s "http://127.0.0.1:$admin/metrics" | grep -vc '^#')
times=$(for _ in $(seq "$scrapes"); do curl -s -o /dev/null -w '%{time_total}\n' "http://127.0.0.1:$admin/metrics"; done | sort -n)
median=$(echo "$times" | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]*1000}')
p90=$(echo "$times" | awk '{a[NR]=$1} END {print a[int(NR*0.9)]*1000}')
echo "scrape with $routes routes, $instances instances ($series samples): median ${median} ms, p90 ${p90} ms (curl time_total, loopback)"
echo "daemon RSS with both apps: $(rss) MB"
