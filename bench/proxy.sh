#!/usr/bin/env bash
# Whole-system proxy benchmark on 127.0.0.1: `reprise record` against nginx.
#
# Targets, all serving the same 1 KiB JSON file at /hello.json:
#   (a)  nginx backend, no proxy (HTTP/1.1 port; a second port speaks h2c)
#   (b)  nginx reverse proxy -> (a), keepalive upstream: the reference proxy,
#        an nginx process of its own with one worker (bench/lib.sh)
#   (c)  reprise record --sample 0 -> (a): proxying, nothing recorded
#   (d)  reprise record -> (a): proxying, every exchange recorded to a tape
#   (c2) reprise record --sample 0 -> (a)'s h2c port
#   (d2) reprise record -> (a)'s h2c port
# HTTP/1.1 load: wrk -t2 -c64 against (a)..(d). h2c load (prior knowledge):
# h2load -n 20000 -c 16 -m 10 against (a)'s h2c port, (c2) and (d2). Each
# target is measured RUNS times; the tables show medians. Then, with
# valgrind, the instructions (b), (c) and (d) each execute per HTTP/1.1
# call (callgrind), which unlike req/s do not move from run to run.
#
# Usage: bench/proxy.sh [RUNS] [DURATION]   (defaults: 3 runs, 10 s per wrk run)
# Environment: REPRISE=PATH runs that binary instead of building
# target/release/reprise (to measure two builds side by side).
# Needs nginx, wrk and h2load (scripts/install-nginx.sh installs them) and
# python3. Sends traffic only to 127.0.0.1; everything it starts is stopped,
# and its temporary folder removed, on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
script=proxy.sh server_program=reprise
# shellcheck source-path=SCRIPTDIR/..
. bench/lib.sh

read_runs_and_duration "$@"
command_line="bench/proxy.sh $runs $duration"

wrk_args=(-t2 -c64 "-d${duration}s" --latency)
h2load_args=(-n 20000 -c 16 -m 10)
reprise_and_nginx

make_work_dir proxy
mkdir -p "$dir/results"
nginx_files proxy
read -r p_a p_a2 p_b p_c p_d p_c2 p_d2 < <(free_ports 7) || die "could not pick free ports"

# --- nginx: backend (a) and reverse proxy (b) ---------------------------------
start_nginx_backend "$p_a" "$p_a2"
start_nginx_proxy b "$p_b" "$p_a"

# --- reprise: (c), (d), (c2), (d2) --------------------------------------------
start_reprise() {  # NAME PORT UPSTREAM_PORT [extra args]
  local name=$1 port=$2 upstream=$3
  shift 3
  start_server "$name" "$reprise" record "$@" --listen "127.0.0.1:$port" \
    --upstream "http://127.0.0.1:$upstream" --out "$dir/$name.tape"
}
start_reprise c "$p_c" "$p_a" --sample 0
start_reprise d "$p_d" "$p_a"
start_reprise c2 "$p_c2" "$p_a2" --sample 0
start_reprise d2 "$p_d2" "$p_a2"

wait_ready a "$p_a"
wait_ready a2 "$p_a2" --http2-prior-knowledge
wait_ready b "$p_b"
wait_ready c "$p_c"
wait_ready d "$p_d"
wait_ready c2 "$p_c2" --http2-prior-knowledge
wait_ready d2 "$p_d2" --http2-prior-knowledge
# The serving threads answer as soon as they are bound, a moment before
# the 'recording' line is printed: wait for it (at most 5 s).
for name in c d c2 d2; do
  for ((i = 0; i < 50; i++)); do
    grep -q '^reprise: recording ' "$dir/$name.log" && break
    sleep 0.1
  done
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
stop_server d || die "reprise (d) did not exit cleanly on SIGTERM"
d_stats=$("$reprise" stats "$dir/d.tape") || die "reprise stats $dir/d.tape failed"

# --- CPU cost per call -----------------------------------------------------------
# The tables above are set by the kernel's loopback TCP as much as by the
# proxies; callgrind counts the instructions each proxy itself executes per
# call, the same on every run. (b), (c) and (d) are each started afresh
# under valgrind on a port of their own, loaded with `wrk -t1 -c16 -d5s`,
# and stopped; an instance started and stopped with no load gives the
# startup and shutdown cost, which is taken off. Skipped without valgrind.
# NAME PORT LOAD(yes|no) command...: prints "instructions requests".
cost_of() {
  local name=$1 at=$2 load=$3 requests=0 total
  shift 3
  start_server "$name" valgrind --tool=callgrind --callgrind-out-file="$dir/$name.cg" "$@"
  wait_ready "$name" "$at" >&2
  if [ "$load" = yes ]; then
    wrk -t1 -c16 -d5s "http://127.0.0.1:$at/hello.json" >"$dir/results/$name.txt"
    requests=$(sed -n 's/^ *\([0-9]*\) requests in.*/\1/p' "$dir/results/$name.txt")
  fi
  # Under valgrind a process can take a while to exit, and killing it
  # loses its counts (one run saw nginx pass 15 s).
  stop_server "$name" 60 >&2 || true
  total=$(sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$dir/$name.log" | tail -n 1)
  echo "${total:-0} ${requests:-0}"
}
cost_report="skipped: valgrind is not installed"
if command -v valgrind >/dev/null; then
  say "CPU cost per call: callgrind, 5 s of wrk -t1 -c16 per proxy"
  read -r p_vb p_vc p_vd < <(free_ports 3) || die "could not pick free ports"
  nginx_proxy_command cost-b "$p_vb" "$p_a"
  rows=()
  for t in b c d; do
    for load in no yes; do
      case $t in
        b) cost_port=$p_vb; cmd=("${nginx_proxy_cmd[@]}") ;;
        c) cost_port=$p_vc; cmd=("$reprise" record --sample 0) ;;
        d) cost_port=$p_vd; cmd=("$reprise" record) ;;
      esac
      if [ "$t" != b ]; then
        cmd+=(--listen "127.0.0.1:$cost_port" --upstream "http://127.0.0.1:$p_a"
          --out "$dir/cost-$t-$load.tape")
      fi
      read -r instructions requests < <(cost_of "cost-$t-$load" "$cost_port" "$load" "${cmd[@]}")
      rows+=("$t $load $instructions $requests")
    done
  done
  cost_report=$(printf '%s\n' "${rows[@]}" | awk '
    $2 == "no" { idle[$1] = $3 }
    $2 == "yes" { busy[$1] = $3; n[$1] = $4 }
    END {
      for (t in n) if (n[t] + 0 == 0 || busy[t] + 0 == 0) { print "no result: see the cost-* logs"; exit }
      name["b"] = "(b) nginx reverse proxy"
      name["c"] = "(c) reprise record --sample 0"
      name["d"] = "(d) reprise record (recording all)"
      ref = (busy["b"] - idle["b"]) / n["b"]
      print "| proxy | instructions per call | vs (b) |"
      print "| --- | ---: | ---: |"
      split("b c d", order, " ")
      for (i = 1; i <= 3; i++) {
        t = order[i]; per = (busy[t] - idle[t]) / n[t]
        printf "| %s | %.0f | %.2fx |\n", name[t], per, per / ref
      }
    }')
fi

# --- report -------------------------------------------------------------------
echo
echo "## reprise proxy benchmark"
echo
report_machine
echo "- nginx $nginx_version (worker_processes 1), $(wrk_version), $(h2load_version), reprise $("$reprise" --version | awk '{print $NF}')"
echo "- command: \`$command_line\` ($runs runs; medians shown)"
echo "- HTTP/1.1: \`wrk ${wrk_args[*]} http://127.0.0.1:PORT/hello.json\`"
echo "- h2c: \`h2load ${h2load_args[*]} http://127.0.0.1:PORT/hello.json\` (latency percentiles from its --log-file)"
echo
PYTHONPATH="$root/bench" python3 - "$dir/results" "$runs" <<'PY'
import math, os, re, statistics, sys

import loadgen

results, runs = sys.argv[1], int(sys.argv[2])
def wrk(path):
    try:
        return loadgen.wrk(open(path).read())
    except ValueError as e:
        sys.exit(f"proxy.sh: {e}")

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
echo
echo "### CPU cost per call (callgrind)"
echo
echo "Instructions each HTTP/1.1 proxy executes per call under \`wrk -t1 -c16 -d5s\` (the whole process; an idle instance's startup and shutdown taken off), in front of the same nginx backend. Lower is better; it moves by a few percent at most from run to run."
echo
echo "$cost_report"
