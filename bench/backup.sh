#!/usr/bin/env bash
# berth's PostgreSQL backup and restore against the hand-made pipeline, in one run:
#   backup:  `pg_dump -Fc -Z0 | zstd -T0 > file`        vs `berth backup run` (to a local dir)
#   restore: `pg_restore -j 2` into a fresh database      vs berth's drill (restore into a scratch
#            database + row counts) and `berth backup restore` (safety backup + restore)
# plus the daemon's peak extra memory during the backup (VmHWM reset before it).
# Usage: bench/backup.sh [SCALE] (pgbench scale; 50 is about 750 MB of tables). Run as root.
set -euo pipefail
scale=${1:-50}
repo=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$repo/target}
cargo build --release -p berth >&2
berth="$target/release/berth"
pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
work=$(mktemp -d /var/tmp/berth-bench-XXXX); chmod 755 "$work"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pgport=$(free_port); http=$(free_port)
as_pg() { runuser -u postgres -- "$@"; }
cleanup() {
  [ -n "${daemon:-}" ] && kill "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null
  as_pg "$pgbin/pg_ctl" -D "$work/pg" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
secs() { python3 -c "import sys; print(f'{float(sys.argv[2])-float(sys.argv[1]):.2f}')" "$1" "$2"; }
now() { date +%s.%N; }

echo "== PostgreSQL $("$pgbin/postgres" --version | awk '{print $3}'), pgbench scale $scale" >&2
mkdir "$work/pg" && touch "$work/pg.log" && chown postgres "$work/pg" "$work/pg.log"
as_pg "$pgbin/initdb" -D "$work/pg" -U postgres --auth=trust --no-sync >/dev/null
as_pg "$pgbin/pg_ctl" -D "$work/pg" -l "$work/pg.log" -w \
  -o "-p $pgport -k $work/pg -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" start >/dev/null
export PGHOST=127.0.0.1 PGPORT=$pgport PGUSER=postgres
"$pgbin/createdb" shop
"$pgbin/pgbench" -i -q -s "$scale" shop 2>/dev/null
size=$("$pgbin/psql" -Atc "SELECT pg_size_pretty(pg_database_size('shop'))" shop)
echo "database: $size" >&2

# The pipeline operators write by hand.
t0=$(now); "$pgbin/pg_dump" -Fc -Z0 shop | zstd -q -T0 > "$work/shop.dump.zst"; t1=$(now)
pipe_backup=$(secs "$t0" "$t1")
pipe_size=$(stat -c %s "$work/shop.dump.zst")
zstd -q -d "$work/shop.dump.zst" -o "$work/shop.dump"
"$pgbin/createdb" peer_restore
t0=$(now); "$pgbin/pg_restore" -j 2 --no-owner -d peer_restore "$work/shop.dump"; t1=$(now)
pipe_restore=$(secs "$t0" "$t1")

# berth: a daemon, an app whose berth.toml backs up the database, to a local directory.
state="$work/state"
"$berth" serve --state "$state" --http "127.0.0.1:$http" 2>"$work/daemon.log" &
daemon=$!
for _ in $(seq 100); do "$berth" status --state "$state" >/dev/null 2>&1 && break; sleep 0.1; done
mkdir "$work/app"
cat > "$work/app/berth.toml" <<T
[app]
name = "shop"
[secrets]
DATABASE_URL = { required = true }
[services.web]
command = "python3 -m http.server \$PORT --bind 127.0.0.1"
[[routes]]
host = "shop.test"
path = "/"
service = "web"
[databases.main]
engine = "postgres"
url = "\${DATABASE_URL}"
[backups.nightly]
database = "main"
verify = "off"
T
echo "postgres://postgres@127.0.0.1:$pgport/shop" | "$berth" secrets set --state "$state" shop DATABASE_URL --new >/dev/null
"$berth" deploy --state "$state" "$work/app" >/dev/null 2>&1
rss() { awk -v k="$1:" '$1 == k {print $2}' "/proc/$daemon/status"; }
echo 5 > "/proc/$daemon/clear_refs"
base=$(rss VmRSS)
t0=$(now); "$berth" backup run --state "$state" shop >/dev/null 2>"$work/run.log"; t1=$(now)
berth_backup=$(secs "$t0" "$t1")
peak=$(rss VmHWM)
json=$("$berth" backup list --state "$state" shop --json)
berth_size=$(echo "$json" | python3 -c 'import json,sys; print(json.load(sys.stdin)["backups"][0]["size"])')
t0=$(now); "$berth" backup verify --state "$state" shop >/dev/null 2>&1; t1=$(now)
berth_drill=$(secs "$t0" "$t1")
drill_ms=$("$berth" backup list --state "$state" shop --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["backups"][0]["drill"]["duration_ms"])')
t0=$(now); "$berth" backup restore --state "$state" shop --yes >/dev/null 2>&1; t1=$(now)
berth_restore=$(secs "$t0" "$t1")

ratio() { python3 -c "import sys; print(f'{float(sys.argv[1])/float(sys.argv[2]):.2f}')" "$1" "$2"; }
mb() { python3 -c 'import sys; print("%.1f MB" % (int(sys.argv[1]) / 1e6))' "$1"; }
echo "backup   pg_dump -Fc -Z0 | zstd -T0:  ${pipe_backup}s, $(mb "$pipe_size")"
echo "backup   berth backup run:            ${berth_backup}s, $(mb "$berth_size") (zstd + age + sha256 + read-back)  = $(ratio "$berth_backup" "$pipe_backup")x"
echo "memory   berth daemon peak extra:     $(( (peak - base) / 1024 )) MB (VmHWM $((peak / 1024)) MB - VmRSS before $((base / 1024)) MB)"
echo "restore  pg_restore -j 2:             ${pipe_restore}s"
echo "restore  berth drill (scratch db):    ${berth_drill}s wall, restore part $(python3 -c "print(f'{$drill_ms/1000:.2f}')")s = $(ratio "$(python3 -c "print($drill_ms/1000)")" "$pipe_restore")x"
echo "restore  berth backup restore:        ${berth_restore}s (safety backup + restore + app restart)"
