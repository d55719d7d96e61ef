#!/usr/bin/env bash
# Whole-system proxy benchmark on 127.0.0.1: `reprise record` against nginx.
#
# Targets, all serving the same 1 KiB JSON file at /hello.json:
#   (a)  nginx backend, no proxy (HTTP/1.1 port; a second port speaks h2c)
#   (b)  nginx reverse proxy -> (a), keepalive upstream: the reference proxy
#   (c)  reprise record --sample 0 -> (a): proxying, nothing recorded
#   (d)  reprise record -> (a): proxying, every exchange recorded to a tape
#   (c2) reprise record --sample 0 -> (a)'s h2c port
#   (d2) reprise record -> (a)'s h2c port
# HTTP/1.1 load: wrk -t2 -c64 against (a)..(d). h2c load (prior knowledge):
# h2load -n 20000 -c 16 -m 10 against (a)'s h2c port, (c2) and (d2). Each
# target is measured RUNS times; the tables show medians.
#
# Usage: bench/proxy.sh [RUNS] [DURATION]   (defaults: 3 runs, 10 s per wrk run)
# Needs nginx, wrk and h2load (scripts/install-nginx.sh installs them) and
# python3. Sends traffic only to 127.0.0.1; everything it starts is stopped,
# and its temporary folder removed, on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

runs=${1:-3}
duration=${2:-10}
[[ $runs =~ ^[1-9][0-9]*$ ]] || { echo "proxy.sh: RUNS must be a positive integer, not '$runs'" >&2; exit 2; }
[[ $duration =~ ^[1-9][0-9]*$ ]] || { echo "proxy.sh: DURATION must be whole seconds, not '$duration'" >&2; exit 2; }
command_line="bench/proxy.sh $runs $duration"

wrk_args=(-t2 -c64 "-d${duration}s" --latency)
h2load_args=(-n 20000 -c 16 -m 10)
nginx=/usr/sbin/nginx
reprise=$root/target/release/reprise

say() { echo "== $*" >&2; }
die() { echo "proxy.sh: $*" >&2; exit 1; }

load_at_start=$(cut -d' ' -f1-3 /proc/loadavg)
scripts/install-nginx.sh
command -v python3 >/dev/null || die "python3 is needed to pick ports and summarise results"
say "building reprise (release)"
cargo build --release -q -p reprise-cli
[ -x "$reprise" ] || die "$reprise was not built"

# --- cleanup -----------------------------------------------------------------
dir=
declare -A reprise_pid=()
nginx_pid=
# Sends SIGTERM to one reprise instance and waits (at most 15 s) for it to
# flush and exit; prints a warning unless it exited 0.
stop_reprise() {
  local name=$1 pid=${reprise_pid[$1]:-} status=0 i
  [ -n "$pid" ] || return 0
  unset "reprise_pid[$name]"
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 150; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    echo "proxy.sh: reprise ($name) still running 15 s after SIGTERM; killing it" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || status=$?
  if [ "$status" -ne 0 ]; then
    echo "proxy.sh: reprise ($name) exited with status $status after SIGTERM; its log:" >&2
    tail -n 20 "$dir/$name.log" >&2 || true
  fi
  return "$status"
}
cleanup() {
  local status=$? name i
  set +e
  for name in "${!reprise_pid[@]}"; do stop_reprise "$name"; done
  if [ -n "$dir" ] && [ -f "$dir/nginx.pid" ]; then
    nginx_pid=$(cat "$dir/nginx.pid" 2>/dev/null)
  fi
  if [ -n "$nginx_pid" ]; then
    kill -TERM "$nginx_pid" 2>/dev/null   # nginx's fast shutdown, as `nginx -s stop`
    for ((i = 0; i < 100; i++)); do kill -0 "$nginx_pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$nginx_pid" 2>/dev/null && kill -KILL "$nginx_pid" 2>/dev/null
  fi
  if [ -n "$dir" ]; then rm -rf "$dir"; fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

dir=$(mktemp -d "${TMPDIR:-/tmp}/reprise-proxy-bench.XXXXXX")
# nginx's workers may run as another user (nobody): they must reach the file.
chmod 755 "$dir"
mkdir -p "$dir/www" "$dir/tmp" "$dir/results"

# The 1 KiB JSON body: exactly 1024 bytes.
python3 - "$dir/www/hello.json" <<'PY'
import json, sys
doc = {"message": "hello from the reprise proxy benchmark", "items": list(range(8)), "pad": ""}
doc["pad"] = "x" * (1024 - len(json.dumps(doc, separators=(",", ":"))))
text = json.dumps(doc, separators=(",", ":"))
assert len(text) == 1024, len(text)
open(sys.argv[1], "w").write(text)
PY

# Seven free ports on 127.0.0.1, held together while chosen so they differ.
read -r p_a p_a2 p_b p_c p_d p_c2 p_d2 < <(python3 - <<'PY'
import socket
socks = []
for _ in range(7):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
)
[ -n "${p_d2:-}" ] || die "could not pick free ports"

# --- nginx: backend (a) and reverse proxy (b) ---------------------------------
nginx_version=$("$nginx" -v 2>&1 | sed -n 's|.*nginx/\([0-9.]*\).*|\1|p')
[ -n "$nginx_version" ] || die "cannot tell nginx's version from: $("$nginx" -v 2>&1)"
version_at_least() { [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n 1)" = "$2" ]; }
# nginx 1.25.1 made `http2 on;` the way to enable HTTP/2; older ones take
# `http2` as a listen parameter.
if version_at_least "$nginx_version" 1.25.1; then
  h2_listen="listen 127.0.0.1:$p_a2;
        http2 on;"
else
  h2_listen="listen 127.0.0.1:$p_a2 http2;"
fi
# -e (the log used before the config is read) exists from nginx 1.19.5.
nginx_flags=(-p "$dir" -c "$dir/nginx.conf")
if version_at_least "$nginx_version" 1.19.5; then nginx_flags+=(-e "$dir/error.log"); fi

cat >"$dir/nginx.conf" <<EOF
daemon on;
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events {
    worker_connections 4096;
}
http {
    access_log off;
    default_type application/json;
    types { application/json json; }
    client_body_temp_path $dir/tmp/client_body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    # No connection recycling after 1000 requests (nginx's default): the
    # load generators keep their connections for the whole run.
    keepalive_requests 100000000;
    keepalive_timeout 75s;

    # (a) the backend, HTTP/1.1
    server {
        listen 127.0.0.1:$p_a;
        root $dir/www;
        location / { }
    }
    # (a) the backend, h2c (HTTP/2 with prior knowledge)
    server {
        $h2_listen
        root $dir/www;
        location / { }
    }

    # (b) the reference reverse proxy
    upstream be {
        server 127.0.0.1:$p_a;
        keepalive 64;
        keepalive_requests 100000000;
    }
    server {
        listen 127.0.0.1:$p_b;
        location / {
            proxy_pass http://be;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
say "starting nginx $nginx_version (backend :$p_a, h2c :$p_a2; proxy :$p_b)"
"$nginx" "${nginx_flags[@]}" -t -q || die "nginx rejected $dir/nginx.conf"
"$nginx" "${nginx_flags[@]}" || { cat "$dir/error.log" >&2 2>/dev/null; die "nginx did not start"; }
for ((i = 0; i < 50; i++)); do [ -s "$dir/nginx.pid" ] && break; sleep 0.1; done
nginx_pid=$(cat "$dir/nginx.pid" 2>/dev/null) || die "nginx wrote no pid file"

# --- reprise: (c), (d), (c2), (d2) --------------------------------------------
start_reprise() {  # NAME PORT UPSTREAM_PORT [extra args]
  local name=$1 port=$2 upstream=$3
  shift 3
  "$reprise" record "$@" --listen "127.0.0.1:$port" --upstream "http://127.0.0.1:$upstream" \
    --out "$dir/$name.tape" 2>"$dir/$name.log" &
  reprise_pid[$name]=$!
}
start_reprise c "$p_c" "$p_a" --sample 0
start_reprise d "$p_d" "$p_a"
start_reprise c2 "$p_c2" "$p_a2" --sample 0
start_reprise d2 "$p_d2" "$p_a2"

# Waits (at most 10 s) until NAME answers 200 for /hello.json on PORT.
wait_ready() {  # NAME PORT [curl flags]
  local name=$1 port=$2 i
  shift 2
  for ((i = 0; i < 100; i++)); do
    if curl -fsS -o /dev/null --max-time 1 "$@" "http://127.0.0.1:$port/hello.json" 2>/dev/null; then
      return 0
    fi
    if [ -n "${reprise_pid[$name]:-}" ] && ! kill -0 "${reprise_pid[$name]}" 2>/dev/null; then
      cat "$dir/$name.log" >&2
      die "reprise ($name) exited before answering on port $port"
    fi
    sleep 0.1
  done
  [ -f "$dir/$name.log" ] && cat "$dir/$name.log" >&2
  tail -n 20 "$dir/error.log" >&2 2>/dev/null || true
  die "($name) did not answer on 127.0.0.1:$port within 10 s"
}
wait_ready a "$p_a"
wait_ready a2 "$p_a2" --http2-prior-knowledge
wait_ready b "$p_b"
wait_ready c "$p_c"
wait_ready d "$p_d"
wait_ready c2 "$p_c2" --http2-prior-knowledge
wait_ready d2 "$p_d2" --http2-prior-knowledge
for name in c d c2 d2; do
  grep -q '^reprise: recording ' "$dir/$name.log" \
    || die "reprise ($name) answers but did not print its 'recording' line: $(cat "$dir/$name.log")"
done
say "all targets answer; reprise $("$reprise" --version | awk '{print $NF}') on :$p_c (c) :$p_d (d) :$p_c2 (c2) :$p_d2 (d2)"

# --- load ---------------------------------------------------------------------
declare -A port=([a]=$p_a [b]=$p_b [c]=$p_c [d]=$p_d [a2]=$p_a2 [c2]=$p_c2 [d2]=$p_d2)
say "warm-up: 1 s of wrk per HTTP/1.1 target, 2000 h2load requests per h2c target"
for t in a b c d; do
  wrk -t2 -c64 -d1s "http://127.0.0.1:${port[$t]}/hello.json" >/dev/null
done
for t in a2 c2 d2; do
  h2load -n 2000 -c 16 -m 10 "http://127.0.0.1:${port[$t]}/hello.json" >/dev/null
done
for ((run = 1; run <= runs; run++)); do
  for t in a b c d; do
    say "run $run/$runs: wrk (${t}) :${port[$t]}"
    wrk "${wrk_args[@]}" "http://127.0.0.1:${port[$t]}/hello.json" >"$dir/results/wrk.$t.$run.txt"
  done
  for t in a2 c2 d2; do
    say "run $run/$runs: h2load (${t}) :${port[$t]}"
    h2load "${h2load_args[@]}" --log-file="$dir/results/h2load.$t.$run.log" \
      "http://127.0.0.1:${port[$t]}/hello.json" >"$dir/results/h2load.$t.$run.txt"
  done
done

# The recording (d) must have flushed everything before it is read.
stop_reprise d || die "reprise (d) did not exit cleanly on SIGTERM"
d_stats=$("$reprise" stats "$dir/d.tape") || die "reprise stats $dir/d.tape failed"

# --- report -------------------------------------------------------------------
cpu=$(sed -n 's/^model name[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo | head -n 1)
echo
echo "## reprise proxy benchmark"
echo
echo "- machine: $(nproc) CPUs, $(uname -srm), ${cpu:-unknown CPU}; load average at start $load_at_start (other work on the machine skews the numbers)"
echo "- nginx $nginx_version (worker_processes 1), $(wrk --version 2>&1 | head -n 1 | awk '{print $1, $2}'), $(h2load --version 2>&1 | head -n 1), reprise $("$reprise" --version | awk '{print $NF}')"
echo "- command: \`$command_line\` ($runs runs; medians shown)"
echo "- HTTP/1.1: \`wrk ${wrk_args[*]} http://127.0.0.1:PORT/hello.json\`"
echo "- h2c: \`h2load ${h2load_args[*]} http://127.0.0.1:PORT/hello.json\` (latency percentiles from its --log-file)"
echo
python3 - "$dir/results" "$runs" <<'PY'
import math, os, re, statistics, sys

results, runs = sys.argv[1], int(sys.argv[2])
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}

def ms(text):
    m = re.fullmatch(r"([0-9.]+)(us|ms|s|m|h)", text)
    if not m:
        sys.exit(f"proxy.sh: cannot read the latency {text!r}")
    return float(m.group(1)) * UNITS[m.group(2)]

def wrk(path):
    text = open(path).read()
    def find(pattern):
        m = re.search(pattern, text, re.M)
        if not m:
            sys.exit(f"proxy.sh: no {pattern!r} in wrk's output:\n{text}")
        return m.group(1)
    errors = 0
    m = re.search(r"^\s*Socket errors:(.*)$", text, re.M)
    if m:
        errors += sum(int(n) for n in re.findall(r"\d+", m.group(1)))
    m = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", text)
    errors += int(m.group(1)) if m else 0
    return {
        "rps": float(find(r"^Requests/sec:\s*([0-9.]+)")),
        "p50": ms(find(r"^\s*50%\s+(\S+)")),
        "p99": ms(find(r"^\s*99%\s+(\S+)")),
        "errors": errors,
    }

def h2load(path):
    text = open(path).read()
    m = re.search(r"^finished in \S+, ([0-9.]+) req/s", text, re.M)
    r = re.search(r"^requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded", text, re.M)
    s = re.search(r"^status codes: (\d+) 2xx", text, re.M)
    if not (m and r and s):
        sys.exit(f"proxy.sh: cannot read h2load's output:\n{text}")
    times = sorted(int(line.split("\t")[2]) / 1000.0
                   for line in open(path[:-4] + ".log") if line.strip())
    if not times:
        sys.exit(f"proxy.sh: h2load's log {path[:-4]}.log is empty")
    pct = lambda p: times[max(0, math.ceil(p / 100.0 * len(times)) - 1)]  # nearest rank
    return {
        "rps": float(m.group(1)),
        "p50": pct(50),
        "p99": pct(99),
        "errors": int(r.group(1)) - int(s.group(1)),
    }

def medians(tool, parse, target):
    rows = [parse(os.path.join(results, f"{tool}.{target}.{n}.txt")) for n in range(1, runs + 1)]
    out = {k: statistics.median(r[k] for r in rows) for k in ("rps", "p50", "p99")}
    out["errors"] = sum(r["errors"] for r in rows)
    out["spread"] = (max(r["rps"] for r in rows) - min(r["rps"] for r in rows)) / out["rps"] * 100
    return out

def table(title, tool, parse, targets, base, pairs):
    got = {t: medians(tool, parse, t) for t, _ in targets}
    print(f"### {title}")
    print()
    print(f"| target | req/s (median) | p50 ms | p99 ms | req/s vs ({base}) | req/s spread | errors |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for t, label in targets:
        g = got[t]
        print(f"| ({t}) {label} | {g['rps']:.0f} | {g['p50']:.3f} | {g['p99']:.3f} "
              f"| {g['rps'] / got[base]['rps']:.2f} | {g['spread']:.1f}% | {g['errors']} |")
    print()
    for x, y in pairs:
        print(f"- ({x})/({y}): req/s {got[x]['rps'] / got[y]['rps']:.2f}, "
              f"p50 {got[x]['p50'] / got[y]['p50']:.2f}, p99 {got[x]['p99'] / got[y]['p99']:.2f}")
    print()
    return sum(g["errors"] for g in got.values())

errors = table("HTTP/1.1 (wrk)", "wrk", wrk, [
    ("a", "nginx backend, direct"),
    ("b", "nginx reverse proxy"),
    ("c", "reprise record --sample 0"),
    ("d", "reprise record (recording all)"),
], "b", [("d", "b"), ("d", "c")])
errors += table("h2c, prior knowledge (h2load)", "h2load", h2load, [
    ("a2", "nginx backend h2c, direct"),
    ("c2", "reprise record --sample 0"),
    ("d2", "reprise record (recording all)"),
], "a2", [("d2", "a2"), ("d2", "c2")])
print("req/s spread: (max - min) / median over the runs. errors: socket errors and "
      "non-2xx responses (wrk), requests not answered 2xx (h2load), summed over the runs.")
if errors:
    print(f"\nWARNING: {errors} errors; the numbers above are not trustworthy.")
PY
echo
echo "### reprise stats (d.tape) | head -5"
echo
echo '```'
printf '%s\n' "$d_stats" | head -n 5
echo '```'
