#!/usr/bin/env bash
# System calls per proxied call: `perf stat` counts each system call
# (the syscalls:sys_enter_* tracepoints) made by (b) nginx as a reverse
# proxy (a process of its own, one worker), (c) `reprise record --sample 0`
# and (d) `reprise record` recording everything, all threads, while
# `wrk -t2 -c64 -dDURATIONs` loads each in turn in front of the same nginx
# backend (the 1 KiB /hello.json of bench/proxy.sh). Prints the calls per
# proxied call of every system call made at least once per 100 calls.
# The tracepoints slow every system call, so the req/s of these runs say
# nothing; the counts are what this is for: the kernel's share of a
# proxy's cost follows them (bench/proxy-cpu.sh measures that share).
#
# Usage: bench/proxy-syscalls.sh [DURATION] [reprise record flags...]
#   (default 3 s; the flags go to (c) and (d))
# Environment: REPRISE=PATH runs that binary instead of building
# target/release/reprise.
# Needs nginx and wrk (scripts/install-nginx.sh installs them), perf
# (Debian's linux-perf) with access to tracepoints, python3. Sends
# traffic only to 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
script=proxy-syscalls.sh server_program=reprise
# shellcheck source-path=SCRIPTDIR/..
. bench/lib.sh

duration=${1:-3}
shift || true
require_positive_ints duration
reprise_and_nginx
require_tool perf "to count system calls (apt-get install linux-perf)"

make_work_dir proxy-syscalls
nginx_files proxy-syscalls
start_b_c_d "$@"

for t in "${targets[@]}"; do
  say "($t): counting system calls for ${duration} s of load"
  perf stat -e 'syscalls:sys_enter_*' -p "${server_pid[$t]}" -x, -o "$dir/$t.perf" \
    -- sleep "$((duration + 1))" 2>"$dir/$t.perf.log" &
  perf_pid=$!
  sleep 0.3
  run_load wrk -t2 -c64 "-d${duration}s" --latency "http://127.0.0.1:${proxy_port[$t]}/hello.json" >"$dir/$t.wrk"
  wait "$perf_pid" || die "perf stat failed (tracepoints need root or perf_event_paranoid <= -1): $(cat "$dir/$t.perf.log")"
done

echo
echo "## system calls per proxied call"
echo
report_machine
echo "- command: \`bench/proxy-syscalls.sh $duration${*:+ $*}\`; \`wrk -t2 -c64 -d${duration}s\` against each in turn"
echo
PYTHONPATH="$root/bench" python3 - "$dir" "${targets[@]}" <<'PY'
import sys

import loadgen

folder, targets = sys.argv[1], sys.argv[2:]
names = {"b": "nginx reverse proxy", "c": "reprise record --sample 0",
         "d": "reprise record (recording all)"}
for t in targets:
    try:
        calls = loadgen.wrk(open(f"{folder}/{t}.wrk").read())["requests"]
    except ValueError as e:
        sys.exit(f"proxy-syscalls.sh: {e}")
    counts = {}
    for line in open(f"{folder}/{t}.perf"):
        fields = line.strip().split(",")
        if len(fields) < 3 or not fields[0].isdigit():
            continue
        counts[fields[2].removeprefix("syscalls:sys_enter_")] = int(fields[0])
    if calls == 0:
        sys.exit(f"proxy-syscalls.sh: ({t}) served no calls")
    kept = sorted(((n / calls, name) for name, n in counts.items() if n / calls >= 0.01),
                  reverse=True)
    total = sum(n for n in counts.values()) / calls
    print(f"({t}) {names[t]}: {calls} calls, {total:.2f} system calls each")
    for per_call, name in kept:
        print(f"  {name:<24} {per_call:.3f}")
    print()
PY
