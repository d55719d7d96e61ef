#!/usr/bin/env bash
# Whole-system replay benchmark on 127.0.0.1: `reprise replay --max` against
# nginx, side by side with the load generators people already trust.
#
# nginx (the same backend as bench/proxy.sh: worker_processes 1, access_log
# off, keepalive_requests unlimited) serves a 1 KiB JSON file at /hello.json
# on one HTTP/1.1 port and one h2c (prior knowledge) port. The recordings
# replayed are made here: `reprise record` in front of each port, one
# `curl -H 'User-Agent:' -H 'Accept:'` GET through it (so the recorded
# request carries Host only, as wrk's does), then SIGTERM. Each
# tape holds that one exchange; `--loop` replays it over and over.
#
# Each run measures, in one order on odd runs and the reverse on even runs:
#   HTTP/1.1, C connections, one request in flight on each:
#     wrk -tT -cC -dD                    vs  reprise replay --max --concurrency C
#   h2c, N connections x M streams:
#     h2load -tT -cN -mM -D D             vs  reprise replay --max
#                                              --connections N --concurrency N*M
#   and oha at the same settings when it is on the PATH (this script never
#   installs it: `cargo install --locked oha` does).
# T, the threads of every load generator (wrk -t, h2load -t, reprise
# --threads), is nproc, reprise's default of one per core: each may use the
# same cores, which it shares with nginx's one worker. Defaults C=64, N=16,
# M=10, the counts bench/proxy.sh uses, so the two scripts' nginx figures
# compare.
# Then the pacing check: `reprise replay --rate 10000 --loop --duration D`
# (HTTP/1.1), calls actually made per second against the 10,000 asked for.
#
# Targets: reprise >= 1.0x wrk's req/s (HTTP/1.1) and >= 1.0x h2load's
# (h2c); --rate within 1 % of 10,000 calls/s. Missed targets are reported,
# not failed: the exit status is non-zero only when the setup fails.
#
# Usage: bench/replay.sh [RUNS] [DURATION]   (defaults: 3 runs, 10 s each)
# Environment: BENCH_CONNS (C, 64), BENCH_H2_CONNS (N, 16), BENCH_H2_STREAMS
# (M, 10), BENCH_THREADS (T, nproc), BENCH_RATE (10000); REPRISE=PATH runs
# that binary instead of building target/release/reprise.
# Needs nginx, wrk and h2load (scripts/install-nginx.sh installs them), curl
# and python3. Sends traffic only to 127.0.0.1; everything it starts is
# stopped, and its temporary folder removed, on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
script=replay.sh server_program=reprise
# shellcheck source-path=SCRIPTDIR/..
. bench/lib.sh

read_runs_and_duration "$@"
conns=${BENCH_CONNS:-64}
h2_conns=${BENCH_H2_CONNS:-16}
h2_streams=${BENCH_H2_STREAMS:-10}
threads=${BENCH_THREADS:-$(nproc)}
rate=${BENCH_RATE:-10000}
require_positive_ints conns h2_conns h2_streams threads rate
((threads <= conns && threads <= h2_conns)) || threads=$((conns < h2_conns ? conns : h2_conns))
h2_concurrency=$((h2_conns * h2_streams))
command_line="bench/replay.sh $runs $duration"

reprise_and_nginx
require_tool curl "to make the recordings"
oha=$(command -v oha || true)

make_work_dir replay
mkdir -p "$dir/results"
nginx_files replay
read -r p_h1 p_h2 p_r1 p_r2 < <(free_ports 4) || die "could not pick free ports"

# --- nginx: the target ----------------------------------------------------------
start_nginx_backend "$p_h1" "$p_h2"

# Waits (at most 10 s) until nginx answers 200 for /hello.json on PORT.
wait_nginx() {  # PORT [curl flags]
  local port=$1 i
  shift
  for ((i = 0; i < 100; i++)); do
    curl -fsS -o /dev/null --max-time 1 "$@" "http://127.0.0.1:$port/hello.json" 2>/dev/null && return 0
    sleep 0.1
  done
  tail -n 20 "$dir/error.log" >&2 2>/dev/null || true
  die "nginx did not answer on 127.0.0.1:$port within 10 s"
}
wait_nginx "$p_h1"
wait_nginx "$p_h2" --http2-prior-knowledge

# --- the recordings: one GET each -------------------------------------------------
# NAME PORT UPSTREAM_PORT [curl flags]: starts `reprise record`, waits for its
# "recording" line (printed once it listens: no request is spent on probing),
# sends the one request, stops it and checks the tape holds one exchange.
make_tape() {
  local name=$1 port=$2 upstream=$3 i
  shift 3
  start_server "$name" "$reprise" record --listen "127.0.0.1:$port" \
    --upstream "http://127.0.0.1:$upstream" --out "$dir/$name.tape"
  for ((i = 0; i < 100; i++)); do
    grep -q '^reprise: recording ' "$dir/$name.log" 2>/dev/null && break
    kill -0 "${server_pid[$name]}" 2>/dev/null \
      || { cat "$dir/$name.log" >&2; die "reprise record ($name) exited before listening"; }
    sleep 0.1
  done
  grep -q '^reprise: recording ' "$dir/$name.log" \
    || { cat "$dir/$name.log" >&2; die "reprise record ($name) did not start within 10 s"; }
  curl -fsS -o /dev/null --max-time 5 -H 'User-Agent:' -H 'Accept:' "$@" \
    "http://127.0.0.1:$port/hello.json" || die "the request through reprise record ($name) failed"
  stop_server "$name" || die "reprise record ($name) did not exit cleanly on SIGTERM"
  local count
  count=$("$reprise" ls "$dir/$name.tape" | grep -c 'hello.json' || true)
  [ "$count" = 1 ] || die "$name.tape should hold 1 exchange, holds $count: $("$reprise" ls "$dir/$name.tape")"
}
say "recording one GET /hello.json over HTTP/1.1 and one over h2c"
make_tape h1 "$p_r1" "$p_h1"
make_tape h2 "$p_r2" "$p_h2" --http2-prior-knowledge
# What reprise will send (the recorded request, plus its correlation headers).
"$reprise" replay "$dir/h1.tape" --target "http://127.0.0.1:$p_h1" --dry-run >"$dir/h1.dry" \
  || die "reprise replay --dry-run failed"
"$reprise" replay "$dir/h2.tape" --target "http://127.0.0.1:$p_h2" --dry-run >"$dir/h2.dry" \
  || die "reprise replay --dry-run failed"
grep -q ' h1, 0 B$' "$dir/h1.dry" || die "h1.tape does not replay as HTTP/1.1: $(cat "$dir/h1.dry")"
grep -q ' h2, 0 B$' "$dir/h2.dry" || die "h2.tape does not replay as HTTP/2: $(cat "$dir/h2.dry")"

# --- load ---------------------------------------------------------------------------
url_h1=http://127.0.0.1:$p_h1/hello.json
url_h2=http://127.0.0.1:$p_h2/hello.json
wrk_args=("-t$threads" "-c$conns" "-d${duration}s" --latency)
h2load_args=("-t$threads" "-c$h2_conns" "-m$h2_streams" "-D$duration")
# reprise's own thread count, when this build has the flag (its default is
# one per core, which is also T's default).
replay_threads=()
if "$reprise" replay --help | grep -q -- '--threads'; then replay_threads=(--threads "$threads"); fi
replay_h1_args=(--max --loop --concurrency "$conns" "${replay_threads[@]}")
replay_h2_args=(--max --loop --connections "$h2_conns" --concurrency "$h2_concurrency" "${replay_threads[@]}")
rate_args=(--rate "$rate" --loop --concurrency "$conns" "${replay_threads[@]}")
oha_format=()
if [ -n "$oha" ]; then
  if "$oha" --help 2>&1 | grep -q -- '--output-format'; then
    oha_format=(--output-format json)
  else
    oha_format=(-j)
  fi
fi
oha_h1_args=(--no-tui -c "$conns" -z "${duration}s")
oha_h2_args=(--no-tui --http2 -c "$h2_conns" -p "$h2_streams" -z "${duration}s")

# Runs one command in the background (so that cleanup can stop it) and
# waits for it; OUT gets its stdout, OUT.err its stderr. Never fails: the
# summary notices missing or bad results.
measure() {  # OUT command...
  local out=$1 status=0
  shift
  run_load "$@" >"$out" 2>"$out.err" || status=$?
  if [ "$status" -ne 0 ]; then
    warn "$1 exited with status $status:"
    tail -n 5 "$out.err" >&2 || true
  fi
}
# NAME RUN: one measurement.
step() {
  local name=$1 run=$2 base=$dir/results/$1.$2
  say "run $run/$runs: $name"
  case $name in
    wrk) measure "$base.txt" wrk "${wrk_args[@]}" "$url_h1" ;;
    reprise-h1)
      measure "$base.txt" "$reprise" replay "$dir/h1.tape" --target "http://127.0.0.1:$p_h1" \
        "${replay_h1_args[@]}" --duration "${duration}s" -q --json "$base.json" ;;
    h2load)
      measure "$base.txt" h2load "${h2load_args[@]}" --log-file="$base.log" "$url_h2" ;;
    reprise-h2)
      measure "$base.txt" "$reprise" replay "$dir/h2.tape" --target "http://127.0.0.1:$p_h2" \
        "${replay_h2_args[@]}" --duration "${duration}s" -q --json "$base.json" ;;
    oha-h1) measure "$base.json" "$oha" "${oha_h1_args[@]}" "${oha_format[@]}" "$url_h1" ;;
    oha-h2) measure "$base.json" "$oha" "${oha_h2_args[@]}" "${oha_format[@]}" "$url_h2" ;;
    rate)
      measure "$base.txt" "$reprise" replay "$dir/h1.tape" --target "http://127.0.0.1:$p_h1" \
        "${rate_args[@]}" --duration "${duration}s" -q --json "$base.json" ;;
  esac
}

order=(wrk reprise-h1 h2load reprise-h2)
[ -n "$oha" ] && order+=(oha-h1 oha-h2)
say "warm-up: 1 s of each"
wrk "-t$threads" "-c$conns" -d1s "$url_h1" >/dev/null
h2load "-t$threads" "-c$h2_conns" "-m$h2_streams" -D1 "$url_h2" >/dev/null
"$reprise" replay "$dir/h1.tape" --target "http://127.0.0.1:$p_h1" "${replay_h1_args[@]}" \
  --duration 1s -q >/dev/null || die "reprise replay (HTTP/1.1) failed in the warm-up"
"$reprise" replay "$dir/h2.tape" --target "http://127.0.0.1:$p_h2" "${replay_h2_args[@]}" \
  --duration 1s -q >/dev/null || die "reprise replay (h2c) failed in the warm-up"
for ((run = 1; run <= runs; run++)); do
  if ((run % 2)); then
    steps=("${order[@]}")
  else
    steps=()
    for ((i = ${#order[@]} - 1; i >= 0; i--)); do steps+=("${order[i]}"); done
  fi
  for name in "${steps[@]}"; do step "$name" "$run"; done
done
for ((run = 1; run <= runs; run++)); do step rate "$run"; done

# --- CPU cost per call ------------------------------------------------------------
# On a machine this small, the load generator and nginx share the cores, so
# every instruction the load generator spends is taken from nginx. callgrind
# counts the instructions each one executes per call: the same count for
# the same binaries and inputs however busy the machine is, so it resolves
# what the req/s tables cannot. One thread each (valgrind runs threads one
# at a time anyway), the tables' connection counts. Skipped without valgrind.
cost_calls=${BENCH_COST_CALLS:-40000}
require_positive_ints cost_calls
# OUT command...: prints the instructions the command executed.
instructions() {
  local out=$1
  shift
  valgrind --tool=callgrind --callgrind-out-file="$out.cg" "$@" >"$out.txt" 2>"$out.err" || true
  sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$out.err" | tail -n 1
}
cost_report=
if command -v valgrind >/dev/null; then
  say "CPU cost per call: callgrind, $cost_calls calls each"
  c_dir=$dir/results/cost
  mkdir -p "$c_dir"
  one_thread=()
  ((${#replay_threads[@]})) && one_thread=(--threads 1)
  i_wrk=$(instructions "$c_dir/wrk" wrk -t1 "-c$conns" -d5s "$url_h1")
  n_wrk=$(sed -n 's/^ *\([0-9]*\) requests in.*/\1/p' "$c_dir/wrk.txt")
  i_h1=$(instructions "$c_dir/h1" "$reprise" replay "$dir/h1.tape" --target "http://127.0.0.1:$p_h1" \
    --max --loop --concurrency "$conns" --limit "$cost_calls" -q "${one_thread[@]}")
  i_h2load=$(instructions "$c_dir/h2load" h2load -t1 "-c$h2_conns" "-m$h2_streams" -n "$cost_calls" "$url_h2")
  i_h2=$(instructions "$c_dir/h2" "$reprise" replay "$dir/h2.tape" --target "http://127.0.0.1:$p_h2" \
    --max --loop --connections "$h2_conns" --concurrency "$h2_concurrency" --limit "$cost_calls" -q "${one_thread[@]}")
  if [ -n "$i_wrk" ] && [ -n "$n_wrk" ] && [ -n "$i_h1" ] && [ -n "$i_h2load" ] && [ -n "$i_h2" ]; then
    cost_report=$(awk -v iw="$i_wrk" -v nw="$n_wrk" -v i1="$i_h1" -v ih="$i_h2load" -v i2="$i_h2" -v n="$cost_calls" 'BEGIN {
      w = iw / nw; r1 = i1 / n; h = ih / n; r2 = i2 / n
      print "| load generator | instructions per call | vs the reference |"
      print "| --- | ---: | ---: |"
      printf "| wrk (HTTP/1.1) | %.0f | 1.00x |\n", w
      printf "| reprise replay (HTTP/1.1) | %.0f | %.2fx |\n", r1, r1 / w
      printf "| h2load (h2c) | %.0f | 1.00x |\n", h
      printf "| reprise replay (h2c) | %.0f | %.2fx |\n", r2, r2 / h
    }')
  else
    cost_report="no result: see $c_dir"
  fi
else
  cost_report="skipped: valgrind is not installed"
fi

# --- report ---------------------------------------------------------------------------
oha_version=
[ -n "$oha" ] && oha_version=$("$oha" --version 2>&1 | head -n 1)
echo
echo "## reprise replay benchmark"
echo
report_machine
echo "- nginx $nginx_version (worker_processes 1) serving 1 KiB /hello.json; $(wrk_version), $(h2load_version), ${oha_version:-oha: not installed (cargo install --locked oha to add it)}, reprise $("$reprise" --version | awk '{print $NF}')"
echo "- command: \`$command_line\` ($runs runs, ${duration} s each, order reversed on even runs; medians shown)"
echo "- HTTP/1.1: \`wrk ${wrk_args[*]} URL\` vs \`reprise replay h1.tape --target URL ${replay_h1_args[*]} --duration ${duration}s\`"
echo "- h2c: \`h2load ${h2load_args[*]} URL\` vs \`reprise replay h2.tape --target URL ${replay_h2_args[*]} --duration ${duration}s\`"
[ -n "$oha" ] && echo "- oha: \`oha ${oha_h1_args[*]} URL\`, \`oha ${oha_h2_args[*]} URL\`"
echo "- pacing: \`reprise replay h1.tape --target URL ${rate_args[*]} --duration ${duration}s\`"
echo "- threads: wrk, h2load and reprise all get $threads (reprise's default is one per core, $(nproc) here; oha uses one per core); nginx (one worker) and the load generator share the same cores"
echo "- the recorded requests hold Host only; reprise adds its x-reprise-replay and traceparent headers to each call:"
echo
echo '```'
sed 's/^/h1.tape: /' "$dir/h1.dry"
sed 's/^/h2.tape: /' "$dir/h2.dry"
echo '```'
echo
CONNS=$conns THREADS=$threads H2_CONNS=$h2_conns H2_STREAMS=$h2_streams \
  PYTHONPATH="$root/bench" python3 - "$dir/results" "$runs" "$rate" "$duration" "${oha:+yes}" <<'PY'
import json, math, os, re, statistics, sys

import loadgen

results, runs, rate, duration, have_oha = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), sys.argv[5] == "yes"
problems = []

def path(name, run, ext):
    return os.path.join(results, f"{name}.{run}.{ext}")

def wrk(run):
    return loadgen.wrk(open(path("wrk", run, "txt")).read())

def h2load(run):
    text = open(path("h2load", run, "txt")).read()
    m = re.search(r"^finished in \S+, ([0-9.]+) req/s", text, re.M)
    r = re.search(r"^requests: .* (\d+) failed, (\d+) errored, (\d+) timeout", text, re.M)
    s = re.search(r"^status codes: \d+ 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text, re.M)
    if not (m and r and s):
        raise ValueError(f"cannot read h2load's output:\n{text}")
    times = sorted(int(line.split("\t")[2]) / 1000.0
                   for line in open(path("h2load", run, "log")) if line.strip())
    if not times:
        raise ValueError("h2load's --log-file is empty")
    pct = lambda p: times[max(0, math.ceil(p / 100.0 * len(times)) - 1)]  # nearest rank
    return {
        "rps": float(m.group(1)),
        "p50": pct(50),
        "p99": pct(99),
        # Timing-based runs count a response or two more in "status codes"
        # than in "done": the errors are the failures and non-2xx answers.
        "errors": sum(int(n) for n in r.groups()) + sum(int(n) for n in s.groups()),
    }

def reprise(name):
    def parse(run):
        j = json.load(open(path(name, run, "json")))
        return {
            "rps": j["throughput"],
            "p50": j["latency"]["from_send"]["p50_us"] / 1000.0,
            "p99": j["latency"]["from_send"]["p99_us"] / 1000.0,
            "due50": j["latency"]["from_due"]["p50_us"] / 1000.0,
            "due99": j["latency"]["from_due"]["p99_us"] / 1000.0,
            "errors": j["calls"] - j["statuses"].get("2xx", 0),
            "calls": j["calls"], "elapsed": j["elapsed_s"],
        }
    return parse

def oha(name):
    def parse(run):
        j = json.load(open(path(name, run, "json")))
        errs = {k: n for k, n in j.get("errorDistribution", {}).items() if "deadline" not in k}
        codes = j.get("statusCodeDistribution", {})
        return {
            "rps": j["summary"]["requestsPerSec"],
            "p50": j["latencyPercentiles"]["p50"] * 1000.0,
            "p99": j["latencyPercentiles"]["p99"] * 1000.0,
            "errors": sum(errs.values()) + sum(n for k, n in codes.items() if not k.startswith("2")),
        }
    return parse

def medians(label, parse):
    per_run = {}
    for run in range(1, runs + 1):
        try:
            per_run[run] = parse(run)
        except (OSError, ValueError, KeyError, json.JSONDecodeError) as e:
            problems.append(f"{label}, run {run}: no result ({str(e).splitlines()[0]})")
    if not per_run:
        return None
    rows = list(per_run.values())
    keys = [k for k in rows[0] if k != "errors"]
    out = {k: statistics.median(r[k] for r in rows) for k in keys}
    out["errors"] = sum(r["errors"] for r in rows)
    out["n"] = len(rows)
    rps = [r["rps"] for r in rows]
    out["spread"] = (max(rps) - min(rps)) / out["rps"] * 100 if out["rps"] else 0.0
    out["runs"] = {run: r["rps"] for run, r in per_run.items()}
    return out

def fmt(v, spec):
    return "-" if v is None else format(v, spec)

def table(title, rows, base):
    got = [(label, medians(label, parse)) for label, parse in rows]
    ref = dict(got)[base]
    print(f"### {title}")
    print()
    print(f"| load generator | req/s (median) | p50 ms | p99 ms | req/s vs {base.split()[0]} | req/s spread | errors |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for label, g in got:
        if g is None:
            print(f"| {label} | - | - | - | - | - | - |")
            continue
        ratio = g["rps"] / ref["rps"] if ref and ref["rps"] else None
        print(f"| {label} | {g['rps']:.0f} | {g['p50']:.3f} | {g['p99']:.3f} | {fmt(ratio, '.2f')} "
              f"| {g['spread']:.1f}% | {g['errors']} |")
    print()
    # The machine's other work moves every figure between runs; the ratio
    # within one run (the two measured back to back) moves less.
    for label, g in got:
        if label == base or g is None or ref is None:
            continue
        pairs = [g["runs"][n] / ref["runs"][n] for n in sorted(g["runs"]) if ref["runs"].get(n)]
        if pairs:
            print(f"- {label.split(',')[0]} / {base.split()[0]}, run by run: "
                  + ", ".join(f"{p:.2f}" for p in pairs) + f" (median {statistics.median(pairs):.2f})")
    print()
    return dict(got)

c, t = os.environ["CONNS"], os.environ["THREADS"]
n, m = os.environ["H2_CONNS"], os.environ["H2_STREAMS"]
h1_rows = [(f"wrk -t{t} -c{c}", wrk), (f"reprise replay --max, {c} connections", reprise("reprise-h1"))]
if have_oha:
    h1_rows.append((f"oha -c {c}", oha("oha-h1")))
h1 = table(f"HTTP/1.1, {c} connections", h1_rows, h1_rows[0][0])
h2_rows = [(f"h2load -t{t} -c{n} -m{m}", h2load),
           (f"reprise replay --max, {n} connections x {m} streams", reprise("reprise-h2"))]
if have_oha:
    h2_rows.append((f"oha --http2 -c {n} -p {m}", oha("oha-h2")))
h2 = table(f"h2c, {n} connections x {m} streams", h2_rows, h2_rows[0][0])

r = medians("reprise replay --rate", reprise("rate"))
print(f"### --rate {rate:.0f} (HTTP/1.1, {duration:.0f} s)")
print()
if r is None:
    print("no result")
else:
    err = (r["rps"] - rate) / rate * 100
    count_err = (r["calls"] - rate * duration) / (rate * duration) * 100
    print("| calls | elapsed s | calls/s achieved | error vs rate | calls vs rate x duration "
          "| p50 / p99 ms from due | p50 / p99 ms from send | errors |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    print(f"| {r['calls']:.0f} | {r['elapsed']:.3f} | {r['rps']:.0f} | {err:+.2f}% | {count_err:+.2f}% "
          f"| {r['due50']:.3f} / {r['due99']:.3f} | {r['p50']:.3f} / {r['p99']:.3f} | {r['errors']} |")
    print()
    print(f"Medians over the runs. calls/s achieved = calls / elapsed_s (reprise's throughput). The "
          f"schedule is exact when calls = rate x duration; the error then comes from elapsed_s, which "
          f"runs from the replay's start (the first call is due at once, before any connection is "
          f"open) to the last answer: here {(r['elapsed'] - duration) * 1000:.1f} ms more than the "
          f"{duration:.0f} s of sending.")
    print()

print("### targets")
print()
def verdict(value, target, fmt_):
    if value is None:
        return "no result"
    return f"{fmt_(value)} ({'met' if value >= target else 'NOT met'}, target >= {fmt_(target)})"
x = lambda v: f"{v:.2f}x"
rh1, rh2 = list(h1.values())[1], list(h2.values())[1]
wr, hl = list(h1.values())[0], list(h2.values())[0]
print(f"- HTTP/1.1 reprise/wrk req/s: {verdict(rh1['rps'] / wr['rps'] if rh1 and wr else None, 1.0, x)}")
print(f"- h2c reprise/h2load req/s: {verdict(rh2['rps'] / hl['rps'] if rh2 and hl else None, 1.0, x)}")
if r is not None:
    e = abs(r["rps"] - rate) / rate * 100
    print(f"- --rate {rate:.0f} accuracy: {e:.2f}% off ({'met' if e <= 1.0 else 'NOT met'}, target <= 1%)")
for label, g in (("HTTP/1.1", rh1), ("h2c", rh2)):
    if g and (g["due50"], g["due99"]) == (g["p50"], g["p99"]):
        print(f"- reprise {label}: latency from due = from send under --max (a call is due when a slot frees)")
    elif g:
        print(f"- reprise {label} latency from due (queueing for a free slot included): "
              f"p50 {g['due50']:.3f} ms, p99 {g['due99']:.3f} ms; from send (the table's): "
              f"p50 {g['p50']:.3f} ms, p99 {g['p99']:.3f} ms")
if not have_oha:
    print("- oha: not installed (cargo install --locked oha to add it)")
print()
print("p50/p99: wrk's --latency, h2load's --log-file (nearest rank), reprise's from-send latency, "
      "oha's latencyPercentiles. req/s spread: (max - min) / median over the runs. errors: socket "
      "errors and non-2xx (wrk), failed, errored or timed-out requests and non-2xx (h2load), failed or non-2xx calls "
      "(reprise), errors other than the deadline's aborts and non-2xx (oha), summed over the runs.")
total = sum(g["errors"] for d in (h1, h2) for g in d.values() if g) + (r["errors"] if r else 0)
if total:
    print(f"\nWARNING: {total} errors; the numbers above are not trustworthy.")
if problems:
    print("\nWARNING: missing results:")
    for p in problems:
        print(f"- {p}")
PY
echo
echo "### CPU cost per call (callgrind)"
echo
echo "Instructions executed per call (user space, the whole process), one thread each: \`wrk -t1 -c$conns -d5s\` (per request it made), \`h2load -t1 -c$h2_conns -m$h2_streams -n $cost_calls\`, reprise with \`--limit $cost_calls --threads 1\`. Lower is better; it moves by a few percent at most from run to run."
echo
echo "$cost_report"
