#!/usr/bin/env bash
# Where a proxied call's CPU time goes, user and kernel, thread by thread:
# `wrk -t2 -c64` against (b) nginx as a reverse proxy (an nginx process of
# its own, one worker), (c) `reprise record --sample 0` and (d) `reprise
# record` recording everything (each thread apart: the serving threads,
# the recorder, the tape writer), in turn, ROUNDS times, in front of the
# same nginx backend (the 1 KiB /hello.json of
# bench/proxy.sh). Prints the medians, in microseconds per call, read from
# /proc/PID/task/TID/stat around each run. Unlike req/s, which the other
# processes on a 2-core machine set as much as the proxy, this is the
# proxy's own cost, the kernel's share of it included (callgrind counts
# user-space instructions only).
#
# Usage: bench/proxy-cpu.sh [ROUNDS] [DURATION] [reprise record flags...]
#   (defaults: 3 rounds of 5 s; the flags go to (c) and (d), e.g.
#   bench/proxy-cpu.sh 3 5 --match method=GET)
# Environment: REPRISE=PATH runs that binary instead of building
# target/release/reprise.
# Needs nginx and wrk (scripts/install-nginx.sh installs them) and
# python3. Sends traffic only to 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
script=proxy-cpu.sh server_program=reprise
# shellcheck source-path=SCRIPTDIR/..
. bench/lib.sh

rounds=${1:-3}
duration=${2:-5}
shift 2 || shift $#
require_positive_ints rounds duration
reprise_and_nginx

make_work_dir proxy-cpu
nginx_files proxy-cpu
start_b_c_d "$@"

# One line per thread of server TARGET: "name user_ticks system_ticks
# voluntary_switches forced_switches".
threads() {  # TARGET
  local task
  for task in /proc/"${server_pid[$1]}"/task/*; do
    # Fields 14 and 15 (utime, stime), counted after the ")" that ends
    # the thread's name, which may hold spaces.
    printf '%s %s %s\n' "$(tr ' ' '_' <"$task/comm")" \
      "$(sed 's/.*) //' "$task/stat" | awk '{ print $12, $13 }')" \
      "$(awk '/^voluntary_ctxt_switches/ { v = $2 } /^nonvoluntary_ctxt_switches/ { n = $2 } END { print v + 0, n + 0 }' "$task/status")"
  done
}
mkdir -p "$dir/results"
for ((round = 1; round <= rounds; round++)); do
  for t in "${targets[@]}"; do
    say "round $round/$rounds: ($t)"
    threads "$t" >"$dir/results/$t.$round.before"
    run_load wrk -t2 -c64 "-d${duration}s" "http://127.0.0.1:${proxy_port[$t]}/hello.json" \
      >"$dir/results/$t.$round.txt"
    threads "$t" >"$dir/results/$t.$round.after"
  done
done

echo
echo "## CPU time per proxied call, by thread"
echo
report_machine
echo "- command: \`bench/proxy-cpu.sh $rounds $duration${*:+ $*}\`; each round \`wrk -t2 -c64 -d${duration}s\` against ${targets[*]} in turn"
echo
python3 - "$dir/results" "$rounds" "$(getconf CLK_TCK)" <<'PY'
import collections, re, statistics, sys

results, rounds, tick = sys.argv[1], int(sys.argv[2]), 1 / int(sys.argv[3])


def ticks(path):
    out = collections.defaultdict(lambda: [0, 0, 0, 0])
    for line in open(path):
        name, *counts = line.split()
        # Serving threads are one row, whatever their number.
        name = re.sub(r"-\d+$", "", name)
        for i, count in enumerate(counts):
            out[name][i] += int(count)
    return out


label = {
    "b": "(b) nginx reverse proxy",
    "c": "(c) reprise record --sample 0",
    "d": "(d) reprise record (recording all)",
}
totals = {}
for t in ("b", "c", "d"):
    rows = collections.defaultdict(lambda: ([], [], [], []))
    for r in range(1, rounds + 1):
        text = open(f"{results}/{t}.{r}.txt").read()
        calls = int(re.search(r"^\s*(\d+) requests in", text, re.M).group(1))
        before, after = ticks(f"{results}/{t}.{r}.before"), ticks(f"{results}/{t}.{r}.after")
        for name, now in after.items():
            then = before.get(name, [0, 0, 0, 0])
            rows[name][0].append((now[0] - then[0]) * tick / calls * 1e6)
            rows[name][1].append((now[1] - then[1]) * tick / calls * 1e6)
            rows[name][2].append((now[2] - then[2]) / calls * 1000)
            rows[name][3].append((now[3] - then[3]) / calls * 1000)
    print(f"| {label[t]}: thread | user µs/call | kernel µs/call | total "
          "| switches per 1k calls: waited | preempted |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    total_user = total_system = 0.0
    for name, columns in sorted(rows.items()):
        u, s, waited, preempted = (statistics.median(c) for c in columns)
        if u + s < 0.05:
            continue
        total_user += u
        total_system += s
        print(f"| {name} | {u:.1f} | {s:.1f} | {u + s:.1f} | {waited:.0f} | {preempted:.0f} |")
    print(f"| all | {total_user:.1f} | {total_system:.1f} | {total_user + total_system:.1f} | | |")
    print()
    totals[t] = total_user + total_system
print(f"- CPU per call, (d)/(b): {totals['d'] / totals['b']:.2f}x, "
      f"(c)/(b): {totals['c'] / totals['b']:.2f}x, (d)/(c): {totals['d'] / totals['c']:.2f}x")
print()
print("Medians over the rounds, per thread (the totals add the medians). Switches:")
print("the thread gave up the CPU to wait (voluntary) or was preempted.")
print("Ticks are 1/CLK_TCK s, so a 5 s run resolves about 0.1 µs per call.")
PY
