#!/usr/bin/env bash
# RecordLayer in an axum service, side by side with the same service
# without it, on 127.0.0.1.
#
# crates/tower/examples/hello.rs (axum, one serving thread, GET / answers a
# 1 KiB JSON body) runs three times:
#   (n) HELLO_NO_LAYER=1: the router alone, the reference
#   (o) REPRISE_MODE=off: router.layer(reprise.inbound()), switched off
#   (r) REPRISE_MODE=record: the same, recording every call to a tape
# Each run measures the three, in an order rotated from run to run:
#   load:    wrk -tT -cC -dD --latency  (C connections: throughput)
#   latency: wrk -t1 -c1 -dD --latency  (one call at a time: with C
#            connections the p50 is mostly time queued behind the other
#            calls, C / throughput, so the added p50 of one call is read here)
# and prints medians: req/s, p50 and p99 for each; (o)/(n) and (r)/(n)
# req/s; the p50 that (o) and (r) add to (n) in µs; and, from /proc, each
# server thread's CPU time per call under load (serving, recorder, which
# also writes the tape: on 2 cores shared with wrk, the sum is what bounds
# throughput).
# Then (r) is stopped
# with SIGTERM, which must close its tape: the script checks that its
# recorder accounts for every call wrk made to it (stored, or dropped when
# its queue was full: drops are reported) and that the tape grew.
#
# Targets (tower layer issue): (r)/(n) req/s >= 0.97; added p50 <= 5 µs.
# Missed targets are reported, not failed: the exit status is non-zero only
# when the setup fails or the recording did not record.
#
# Usage: bench/tower.sh [RUNS] [DURATION]   (defaults: 3 runs, 10 s each)
# Environment: BENCH_CONNS (C, 64), BENCH_THREADS (T, 1: wrk takes one
# core and the server's one thread the other, so the server is the
# bottleneck and the layer's cost shows in its throughput), BENCH_PRELOAD
# (an LD_PRELOAD for the three servers, e.g. another malloc:
# /usr/lib/x86_64-linux-gnu/libjemalloc.so.2; default none, glibc's).
# Needs wrk (scripts/install-nginx.sh installs it) and python3. Sends
# traffic only to 127.0.0.1; everything it starts is stopped, and its
# temporary folder removed, on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
script=tower.sh server_program=hello
# shellcheck source-path=SCRIPTDIR/..
. bench/lib.sh

read_runs_and_duration "$@"
conns=${BENCH_CONNS:-64}
threads=${BENCH_THREADS:-1}
require_positive_ints conns threads
((threads <= conns)) || threads=$conns
preload=${BENCH_PRELOAD:-}
[ -z "$preload" ] || [ -f "$preload" ] || usage_error "BENCH_PRELOAD: no file $preload"
command_line="bench/tower.sh $runs $duration"

load_args=("-t$threads" "-c$conns" "-d${duration}s" --latency)
latency_args=(-t1 -c1 "-d${duration}s" --latency)
hello=$root/target/release/examples/hello

command -v wrk >/dev/null || scripts/install-nginx.sh
require_tool wrk "(scripts/install-nginx.sh installs it)"
require_tool python3 "to pick ports and summarise results"
require_tool curl "to check the servers answer"
build_release examples/hello "$hello" -p reprise-tower --example hello

make_work_dir tower
mkdir -p "$dir/results"
read -r p_n p_o p_r < <(free_ports 3) || die "could not pick free ports"

# --- the three servers ----------------------------------------------------------
# env -u: a REPRISE_* or HELLO_* setting of the caller's must not change a variant.
start_hello() {  # NAME PORT [VAR=VALUE...]
  local name=$1 port=$2
  shift 2
  start_server "$name" env -u HELLO_NO_LAYER -u REPRISE_MODE -u REPRISE_TAPE -u REPRISE_SAMPLE \
    -u REPRISE_MATCH -u REPRISE_MAX_RECORD_RATE -u REPRISE_QUEUE -u REPRISE_MAX_BODY -u LD_PRELOAD \
    ${preload:+"LD_PRELOAD=$preload"} "$@" "$hello" --listen "127.0.0.1:$port"
}
tape=$dir/r.tape
start_hello n "$p_n" HELLO_NO_LAYER=1
start_hello o "$p_o" REPRISE_MODE=off
start_hello r "$p_r" REPRISE_MODE=record "REPRISE_TAPE=$tape"

# Waits (at most 10 s) until NAME answers 200 with 1024 bytes on PORT.
wait_hello() {  # NAME PORT
  local name=$1 port=$2 i size
  for ((i = 0; i < 100; i++)); do
    size=$(curl -fsS -o /dev/null -w '%{size_download}' --max-time 1 "http://127.0.0.1:$port/" 2>/dev/null) || size=
    [ "$size" = 1024 ] && return 0
    if ! kill -0 "${server_pid[$name]}" 2>/dev/null; then
      cat "$dir/$name.log" >&2
      die "hello ($name) exited before answering on port $port"
    fi
    sleep 0.1
  done
  cat "$dir/$name.log" >&2
  die "hello ($name) did not answer 1024 bytes on 127.0.0.1:$port within 10 s (last: '$size')"
}
declare -A port=([n]=$p_n [o]=$p_o [r]=$p_r)
for t in n o r; do wait_hello "$t" "${port[$t]}"; done
grep -q 'no layer' "$dir/n.log" || die "hello (n) is not serving without the layer: $(cat "$dir/n.log")"
grep -q 'REPRISE_MODE=off' "$dir/o.log" || die "hello (o) is not switched off: $(cat "$dir/o.log")"
grep -q 'recording everything' "$dir/r.log" || die "hello (r) is not recording: $(cat "$dir/r.log")"
say "serving: (n) no layer :$p_n, (o) layer off :$p_o, (r) layer recording :$p_r"

# --- load ---------------------------------------------------------------------
# Runs wrk, where the cleanup can stop it.
measure() {  # OUT ARGS...
  local out=$1 status=0
  shift
  run_load wrk "$@" >"$out" 2>&1 || status=$?
  [ "$status" -eq 0 ] || { cat "$out" >&2; die "wrk $* failed (status $status)"; }
}
# CPU time each thread of server NAME has used so far: "THREAD TICKS" lines
# (utime + stime, in USER_HZ ticks of 10 ms).
thread_ticks() {  # NAME
  local task comm stat rest
  for task in /proc/"${server_pid[$1]}"/task/*; do
    { read -r comm <"$task/comm" && stat=$(<"$task/stat"); } 2>/dev/null || continue
    rest=${stat##*) }
    read -r -a f <<<"$rest"
    echo "$comm $((f[11] + f[12]))"
  done
}
say "warm-up: 1 s of wrk per server"
for t in n o r; do
  measure "$dir/results/warmup.$t.txt" "-t$threads" "-c$conns" -d1s "http://127.0.0.1:${port[$t]}/"
done
tape_after_warmup=$(stat -c %s "$tape" 2>/dev/null || echo 0)
order=(n o r)
for ((run = 1; run <= runs; run++)); do
  # Rotated, so no variant always runs first (or right after another's load).
  shift_by=$(((run - 1) % 3))
  steps=("${order[@]:shift_by}" "${order[@]:0:shift_by}")
  for t in "${steps[@]}"; do
    say "run $run/$runs: ($t) wrk ${load_args[*]}"
    thread_ticks "$t" >"$dir/results/cpu-before.$t.$run.txt"
    measure "$dir/results/load.$t.$run.txt" "${load_args[@]}" "http://127.0.0.1:${port[$t]}/"
    thread_ticks "$t" >"$dir/results/cpu-after.$t.$run.txt"
  done
  for t in "${steps[@]}"; do
    say "run $run/$runs: ($t) wrk ${latency_args[*]}"
    measure "$dir/results/latency.$t.$run.txt" "${latency_args[@]}" "http://127.0.0.1:${port[$t]}/"
  done
done

# --- the recording --------------------------------------------------------------
# (r) must close its tape on SIGTERM and say what it stored.
stop_server r || die "hello (r) did not stop cleanly; the tape may be incomplete"
stored_line=$(grep -E '^hello: [0-9]+ calls seen' "$dir/r.log" || true)
[ -n "$stored_line" ] || die "hello (r) printed no recorder counts: $(cat "$dir/r.log")"
tape_bytes=$(stat -c %s "$tape" 2>/dev/null || echo 0)
for t in n o; do stop_server "$t" || true; done

# --- report ---------------------------------------------------------------------
malloc_label="glibc (no LD_PRELOAD)"
[ -z "$preload" ] || malloc_label="LD_PRELOAD=$preload"
echo
echo "## RecordLayer: axum hello-world with and without recording"
echo
report_machine
echo "- $(wrk_version), $(rustc --version), reprise $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$root" diff --quiet HEAD -- crates 2>/dev/null || echo ' (with local changes)')"
echo "- command: \`$command_line\` ($runs runs, ${duration} s each, order rotated run to run; medians shown)"
echo "- server: target/release/examples/hello, one serving thread (tokio current-thread); (r) also runs the recorder's thread, which also compresses and writes the tape; wrk and the servers share the same cores; malloc: $malloc_label"
echo "- load: \`wrk ${load_args[*]} URL\`; latency: \`wrk ${latency_args[*]} URL\`"
echo
CONNS=$conns PYTHONPATH="$root/bench" python3 - "$dir/results" "$runs" "$stored_line" "$tape_bytes" "$tape_after_warmup" <<'PY'
import os, re, statistics, sys

import loadgen

results, runs, stored_line, tape_bytes, tape_after_warmup = (
    sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
conns = os.environ["CONNS"]
LABELS = {"n": "(n) no layer", "o": "(o) RecordLayer, off", "r": "(r) RecordLayer, recording all"}

def wrk(path):
    """wrk's figures, latencies in µs."""
    try:
        got = loadgen.wrk(open(path).read())
    except ValueError as e:
        sys.exit(f"tower.sh: {e}")
    got["p50"] *= 1000.0
    got["p99"] *= 1000.0
    return got

def phase(name):
    rows = {t: [wrk(os.path.join(results, f"{name}.{t}.{n}.txt")) for n in range(1, runs + 1)]
            for t in "nor"}
    med = {t: {k: statistics.median(r[k] for r in rows[t]) for k in ("rps", "p50", "p99")}
           for t in "nor"}
    for t in "nor":
        rps = [r["rps"] for r in rows[t]]
        med[t]["spread"] = (max(rps) - min(rps)) / med[t]["rps"] * 100
        med[t]["errors"] = sum(r["errors"] for r in rows[t])
    return rows, med

def table(title, rows, med):
    print(f"### {title}")
    print()
    print("| server | req/s (median) | p50 µs | p99 µs | req/s vs (n) | req/s spread | errors |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for t in "nor":
        g = med[t]
        print(f"| {LABELS[t]} | {g['rps']:.0f} | {g['p50']:.1f} | {g['p99']:.1f} "
              f"| {g['rps'] / med['n']['rps']:.3f} | {g['spread']:.1f}% | {g['errors']} |")
    print()
    # The machine's other work moves every figure between runs; the ratio
    # of two servers measured back to back moves less.
    for t in "or":
        ratios = [a["rps"] / b["rps"] for a, b in zip(rows[t], rows["n"])]
        added = [a["p50"] - b["p50"] for a, b in zip(rows[t], rows["n"])]
        print(f"- ({t})/(n) req/s, run by run: " + ", ".join(f"{x:.3f}" for x in ratios)
              + f" (median {statistics.median(ratios):.3f}); p50 added, run by run: "
              + ", ".join(f"{x:+.1f}" for x in added) + f" µs (median {statistics.median(added):+.1f} µs)")
    print()
    return {t: {"ratio": statistics.median(a["rps"] / b["rps"] for a, b in zip(rows[t], rows["n"])),
                "added": statistics.median(a["p50"] - b["p50"] for a, b in zip(rows[t], rows["n"]))}
            for t in "or"}

load_rows, load_med = phase("load")
lat_rows, lat_med = phase("latency")
load = table(f"load: {conns} connections (throughput)", load_rows, load_med)
latency = table("latency: 1 connection, one call at a time (added p50)", lat_rows, lat_med)

# Where the CPU goes: each server thread's CPU time over a load run, per
# call wrk counted. On 2 cores shared with wrk this, not the serving
# thread's time alone, is what bounds throughput.
def ticks(path):
    out = {}
    for line in open(path):
        if line.strip():
            name, n = line.rstrip("\n").rsplit(" ", 1)
            out[name] = out.get(name, 0) + int(n)
    return out
per_call = {t: {} for t in "nor"}
for t in "nor":
    for n, row in enumerate(load_rows[t], start=1):
        before = ticks(os.path.join(results, f"cpu-before.{t}.{n}.txt"))
        after = ticks(os.path.join(results, f"cpu-after.{t}.{n}.txt"))
        for name in after:
            us_per_call = (after[name] - before.get(name, 0)) * 10_000 / max(row["requests"], 1)
            per_call[t].setdefault(name, []).append(us_per_call)
names = sorted({name for t in "nor" for name in per_call[t]}, key=lambda x: (x != "hello", x))
print(f"### CPU per call at {conns} connections (µs, medians; 10 ms ticks)")
print()
print("| server | " + " | ".join(f"{name} thread" for name in names) + " | all threads |")
print("| --- | " + " | ".join("---:" for _ in names) + " | ---: |")
for t in "nor":
    cells = [statistics.median(per_call[t][name]) if name in per_call[t] else None for name in names]
    total = statistics.median(sum(v[i] for v in per_call[t].values()) for i in range(runs))
    print(f"| {LABELS[t]} | " + " | ".join("-" if c is None else f"{c:.2f}" for c in cells) + f" | {total:.2f} |")
print()

print("### the recording")
print()
m = re.search(r"(\d+) calls seen, (\d+) recorded, (\d+) dropped", stored_line)
seen, recorded, dropped = (int(x) for x in m.groups()) if m else (0, 0, 0)
sent = sum(r["requests"] for rows in (load_rows, lat_rows) for r in rows["r"])
print(f"- (r) on SIGTERM: {stored_line.removeprefix('hello: ')}; wrk counted {sent} answers from (r) in the "
      f"measured runs (the warm-up and readiness checks come on top)")
print(f"- tape: {tape_after_warmup} bytes after the warm-up, {tape_bytes} bytes once closed "
      f"({tape_bytes / max(recorded, 1):.1f} bytes per exchange)")
# A drop is a result (the recorder's thread did not keep up; (r) then did
# less work than recording everything); a recording that did not record
# is a failed setup.
problems = []
if recorded + dropped < sent:
    problems.append(f"the recorder accounts for {recorded + dropped} exchanges, fewer than the {sent} calls wrk made to (r)")
if tape_bytes <= tape_after_warmup:
    problems.append("the tape did not grow during the measured runs")
if dropped:
    print(f"- WARNING: {dropped} exchanges dropped (queue full: the recorder's thread did not keep up); "
          f"(r) did less than record everything, so its figures are a little too good")
print()

print("### targets")
print()
def verdict(ok):
    return "met" if ok else "NOT met"
r = load["r"]["ratio"]
print(f"- (r)/(n) req/s at {conns} connections: {r:.3f} ({verdict(r >= 0.97)}, target >= 0.97); "
      f"(o)/(n): {load['o']['ratio']:.3f}")
a = latency["r"]["added"]
print(f"- p50 added by recording, one call at a time: {a:+.1f} µs ({verdict(a <= 5.0)}, target <= 5 µs); "
      f"switched off: {latency['o']['added']:+.1f} µs")
print(f"- p50 added at {conns} connections (mostly queueing, C / throughput): "
      f"recording {load['r']['added']:+.1f} µs, switched off {load['o']['added']:+.1f} µs")
print()
print("At 1 connection the machine idles between calls, so each p50 includes waking an idle core "
      "(slow in a VM), and the recorder's thread, which wakes every few ms, can keep a core awake "
      "and make (r) look faster: a few µs are below what this resolves. The layer's own time per "
      "call, without the network, is `cargo bench -p reprise-tower --bench layer`.")
print()
print("Medians over the runs; ratios and added p50 are medians of run-by-run figures (the "
      "servers measured back to back). p50/p99: wrk's --latency (µs resolution). req/s spread: "
      "(max - min) / median over the runs. errors: socket errors and non-2xx, summed over the runs.")
errors = sum(g["errors"] for med in (load_med, lat_med) for g in med.values())
if errors:
    print(f"\nWARNING: {errors} errors; the numbers above are not trustworthy.")
if problems:
    print()
    for p in problems:
        print(f"RECORDING PROBLEM: {p}")
    sys.exit(1)
PY
