#!/usr/bin/env bash
# Scan berth's HTTPS listener with sslscan (Debian package `sslscan`) and fail on anything an
# auditor would flag: SSLv2/SSLv3/TLS 1.0/TLS 1.1 enabled, a cipher under 128 bits or from a
# weak family (RC4, DES, 3DES, NULL, EXPORT, anonymous, MD5, CBC), compression, or
# client-initiated renegotiation. Prints a short summary.
#
# Usage: scripts/tls-scan.sh [BERTH_BINARY]   (default: builds target/debug/berth)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
command -v sslscan >/dev/null || { echo "tls-scan: sslscan is not installed (apt-get install sslscan)" >&2; exit 2; }
berth=${1:-}
if [ -z "$berth" ]; then
  (cd "$repo" && cargo build -q -p berth)
  berth="${CARGO_TARGET_DIR:-$repo/target}/debug/berth"
fi

work=$(mktemp -d)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
https=$(free_port)
export BERTH_STATE="$work/state"
"$berth" serve --http 127.0.0.1:0 --https "127.0.0.1:$https" 2>"$work/daemon.log" &
daemon=$!
trap 'kill $daemon 2>/dev/null; wait $daemon 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do "$berth" status >/dev/null 2>&1 && break; sleep 0.1; done

# A static site with a self-signed certificate: the listener's TLS settings do not depend on
# where the certificate comes from.
mkdir -p "$work/site/public"
echo '<h1>scan</h1>' > "$work/site/public/index.html"
cat > "$work/site/berth.toml" <<'EOF'
[app]
name = "scan"

[[routes]]
host = "scan.berth.test"
path = "/"
static = "public"

[tls]
self_signed = true
EOF
"$berth" deploy "$work/site" >"$work/deploy.log" 2>&1 || { cat "$work/deploy.log" >&2; exit 1; }

out="$work/sslscan.txt"
sslscan --no-colour --sni-name=scan.berth.test "127.0.0.1:$https" > "$out"

fail=0
problem() { echo "tls-scan: FAIL: $*"; fail=1; }
for proto in SSLv2 SSLv3 TLSv1.0 TLSv1.1; do
  grep -Eq "^$proto +enabled" "$out" && problem "$proto is enabled"
done
for proto in TLSv1.2 TLSv1.3; do
  grep -Eq "^$proto +enabled" "$out" || problem "$proto is not enabled"
done
ciphers=$(grep -E '^(Preferred|Accepted) ' "$out" || true)
[ -n "$ciphers" ] || problem "no cipher accepted (scan failed?)"
weak=$(echo "$ciphers" | awk '$3 < 128' ; echo "$ciphers" | grep -E 'RC4|DES|NULL|EXP|ADH|AECDH|anon|MD5|CBC|SHA1?( |$)' || true)
[ -z "$(echo "$weak" | tr -d '[:space:]')" ] || problem "weak ciphers accepted:
$weak"
grep -Eiq 'Compression +enabled' "$out" && problem "TLS compression is enabled"
grep -Eiq '(Insecure|Secure) session renegotiation supported' "$out" \
  && problem "session renegotiation is supported"

echo "tls-scan: $(sslscan --version 2>/dev/null | grep -Eo '[0-9]+\.[0-9]+\.[0-9]+' | head -1 | sed 's/^/sslscan /') against 127.0.0.1:$https (SNI scan.berth.test)"
grep -E '^(SSLv2|SSLv3|TLSv1\.[0-3]) ' "$out" | sed 's/^/  /'
echo "$ciphers" | sed 's/^/  /'
grep -Ei 'renegotiation|Compression' "$out" | sed 's/^ */  /' || true
if [ $fail = 0 ]; then
  echo "tls-scan: ok: TLS 1.2 and 1.3 only, $(echo "$ciphers" | wc -l) AEAD ciphers, no weak ones"
fi
exit $fail
