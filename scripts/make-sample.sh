#!/usr/bin/env bash
# Regenerates samples/httpbin.har: real traffic to a real HTTP service
# (httpbin under gunicorn) recorded by a real third-party recorder
# (mitmproxy's HAR export, reverse-proxy mode), all on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/sample-venv
if [ ! -x "$venv/bin/mitmdump" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q 'httpbin==0.10.4' 'gunicorn==27.0.1' 'mitmproxy==11.0.2'
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
app_port=$(free_port)
proxy_port=$(free_port)
work=$(mktemp -d)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

"$venv/bin/gunicorn" --log-level warning -b "127.0.0.1:$app_port" -w 2 httpbin:app &
pids+=($!)
"$venv/bin/mitmdump" -q --mode "reverse:http://127.0.0.1:$app_port" --listen-host 127.0.0.1 \
  --listen-port "$proxy_port" --set "hardump=$work/out.har" &
mitm=$!
pids+=("$mitm")
for _ in $(seq 100); do
  curl -s -o /dev/null "http://127.0.0.1:$proxy_port/get" && break
  sleep 0.1
done

base="http://127.0.0.1:$proxy_port"
c() { curl -s -o /dev/null --max-time 10 "$@"; sleep 0.$((RANDOM % 3 + 1)); }
json='Content-Type: application/json'
c "$base/get?item=42&tag=a&tag=b"
c "$base/uuid"
c "$base/uuid"
c "$base/headers" -H 'X-Request-Id: 7f1c2a' -H 'Accept: application/json'
c "$base/ip"
c "$base/user-agent"
c "$base/anything/orders/1001?expand=items" -H 'X-Tenant: acme'
c "$base/anything/orders/1002?expand=items" -H 'X-Tenant: acme'
c -X POST "$base/post" -H "$json" -d '{"sku":"SKU-001","qty":2,"price":19.99}'
c -X POST "$base/anything/orders" -H "$json" -d '{"customer":{"id":7,"email":"ana@example.test"},"items":[{"sku":"SKU-002","qty":1}]}'
c -X PUT "$base/put" -H "$json" -d '{"id":1001,"status":"paid"}'
c -X PATCH "$base/patch" -H "$json" -d '{"status":"shipped"}'
c -X DELETE "$base/delete?id=1001"
c -X POST "$base/post" --data-urlencode 'name=Ana Lima' --data-urlencode 'city=São Paulo'
printf 'line one\nline two\n' > "$work/note.txt"
c -X POST "$base/post" -F 'kind=note' -F "file=@$work/note.txt;type=text/plain"
c "$base/status/201"
c "$base/status/404"
c "$base/status/500"
c "$base/status/503"
c "$base/gzip" -H 'Accept-Encoding: gzip'
c "$base/deflate" -H 'Accept-Encoding: deflate'
c "$base/brotli" -H 'Accept-Encoding: br'
c "$base/bytes/256?seed=7"
c "$base/image/png"
c "$base/redirect/2"
c -L "$base/redirect/1"
c "$base/delay/1"
c "$base/cookies/set?session=abc123"
c "$base/cookies" -H 'Cookie: session=abc123; theme=dark'
c "$base/basic-auth/user/passwd" -u user:passwd
c "$base/bearer" -H 'Authorization: Bearer sample-token-123'
c "$base/cache"
c "$base/etag/abc"
c "$base/etag/abc" -H 'If-None-Match: "abc"'
c "$base/html"
c "$base/xml"
c "$base/json"
c "$base/robots.txt"
c "$base/stream/3"
c "$base/response-headers?X-Custom=1&X-Custom=2"
c "$base/base64/cmVwcmlzZSBzYW1wbGU="
c -X HEAD "$base/get" -I
c -X OPTIONS "$base/get"
c "$base/anything/search?q=shoes&page=2" -H 'Accept-Language: pt-BR'

# mitmproxy writes the HAR when it shuts down.
kill -INT "$mitm"
wait "$mitm" 2>/dev/null || true
python3 - "$work/out.har" samples/httpbin.har <<'PY'
import json, sys
har = json.load(open(sys.argv[1]))
json.dump(har, open(sys.argv[2], "w"), indent=1)
entries = har["log"]["entries"]
print(f"samples/httpbin.har: {len(entries)} entries, creator {har['log']['creator']}")
PY
