#!/usr/bin/env bash
# A 1 GiB download and a 1 GiB upload through `reprise record` (recording
# everything, default --max-body 1MiB), nginx as the upstream; prints the
# proxy's peak resident memory (VmHWM). Target: under 64 MiB.
# Usage: bench/proxy-memory.sh [SIZE]   (default 1G)
set -euo pipefail
cd "$(dirname "$0")/.."
size=${1:-1G}
scripts/install-nginx.sh
cargo build --release -q -p reprise-cli
dir=$(mktemp -d)
reprise_pid=
cleanup() {
  if [ -n "$reprise_pid" ] && kill -TERM "$reprise_pid" 2>/dev/null; then
    wait "$reprise_pid" 2>/dev/null || true
  fi
  if [ -f "$dir/nginx.pid" ]; then
    kill "$(cat "$dir/nginx.pid")" 2>/dev/null || true
  fi
  rm -rf "$dir"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port)
mkdir -p "$dir/www"
truncate -s "$size" "$dir/www/big.bin"
chmod 755 "$dir" "$dir/www"; chmod 644 "$dir/www/big.bin"   # nginx workers read it as another user
cat > "$dir/nginx.conf" <<CONF
daemon on; pid $dir/nginx.pid; error_log $dir/error.log; worker_processes 1;
events { worker_connections 64; }
http {
  access_log off; client_body_temp_path $dir/body; proxy_temp_path $dir/proxy;
  fastcgi_temp_path $dir/fcgi; uwsgi_temp_path $dir/uwsgi; scgi_temp_path $dir/scgi;
  server {
    listen 127.0.0.1:$port; root $dir/www;
    location /upload { client_max_body_size 0; return 200 "uploaded\n"; }
  }
}
CONF
/usr/sbin/nginx -p "$dir" -c "$dir/nginx.conf"

target/release/reprise record --listen 127.0.0.1:0 --upstream "http://127.0.0.1:$port" \
  --out "$dir/big.tape" 2> "$dir/reprise.err" &
reprise_pid=$!
for _ in $(seq 100); do grep -q recording "$dir/reprise.err" 2>/dev/null && break; sleep 0.1; done
addr=$(grep -o 'http://[0-9.:]*' "$dir/reprise.err" | head -1)

echo "== download $size through $addr"
time curl -sS -o /dev/null -w '%{size_download} bytes, %{speed_download} B/s\n' "$addr/big.bin"
echo "== upload $size through $addr"
time (head -c "$size" /dev/zero | curl -sS -T - -o /dev/null -w '%{size_upload} bytes, %{speed_upload} B/s\n' "$addr/upload")
hwm=$(awk '/VmHWM/ {print $2}' "/proc/$reprise_pid/status")
kill -TERM "$reprise_pid"; wait "$reprise_pid" || true; reprise_pid=
echo "== peak resident memory of reprise record: $((hwm / 1024)) MiB (target < 64 MiB)"
target/release/reprise ls "$dir/big.tape"
