#!/usr/bin/env bash
# Head to head on 127.0.0.1: wrk against nginx as a reverse proxy and
# `reprise record`, one after another in rounds, so that each ratio is of
# two runs a few seconds apart. On a noisy 2-core machine this resolves
# differences that bench/proxy.sh's medians of separate runs cannot.
#
# Each round runs `wrk -t2 -c64 -dDURATIONs` against, in turn:
#   (b) nginx reverse proxy -> nginx backend (keepalive upstream), an
#       nginx of its own (bench/lib.sh's nginx_proxy_conf)
#   (s) the same proxy as a server block of the backend's nginx, sharing
#       its one worker (how bench/proxy.sh ran (b) before 2026-11-29)
#   (c) reprise record --sample 0 -> the backend
#   (d) reprise record (recording everything to a tape) -> the backend
#   (o) OLD=PATH record (recording everything), when OLD is set: another
#       build, to measure a change
# and prints each round's req/s and the ratios (d)/(b), (d)/(c), (d)/(o),
# then their medians, and the CPU time (user + system) each reprise
# process spent per call: on a machine the load generator and the backend
# keep busy, the firmer measure of what a change costs.
#
# Usage: bench/proxy-pairs.sh [ROUNDS] [DURATION] [reprise record flags...]
#   (defaults: 5 rounds, 5 s; the flags go to (c) and (d))
# Environment: REPRISE=PATH runs that binary as (c) and (d) instead of
# building target/release/reprise; OLD=PATH adds (o), with OLD_FLAGS (split
# on spaces) as its flags. E.g. one serving thread against two, same
# binary: OLD=target/release/reprise OLD_FLAGS="--threads 2"
# bench/proxy-pairs.sh 7 5 --threads 1
# Needs nginx and wrk (scripts/install-nginx.sh installs them) and
# python3. Sends traffic only to 127.0.0.1; everything it starts is
# stopped, and its temporary folder removed, on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
script=proxy-pairs.sh server_program=reprise
# shellcheck source-path=SCRIPTDIR/..
. bench/lib.sh

rounds=${1:-5}
duration=${2:-5}
shift 2 || shift $#
require_positive_ints rounds duration
old=${OLD:-}
read -r -a old_flags <<<"${OLD_FLAGS:-}"
reprise_and_nginx
[ -z "$old" ] || [ -x "$old" ] || usage_error "OLD=$old is not an executable"

make_work_dir proxy-pairs
nginx_files proxy-pairs
read -r p_a p_a2 p_b p_s p_c p_d p_o < <(free_ports 7) || die "could not pick free ports"
# (s): the reverse proxy as a server block of the backend's own nginx.
start_nginx_backend "$p_a" "$p_a2" "$(nginx_reverse_proxy "$p_s" "$p_a")"
start_nginx_proxy b "$p_b" "$p_a"

targets=(b s c d)
declare -A port=([b]=$p_b [s]=$p_s [c]=$p_c [d]=$p_d [o]=$p_o)
start_server c "$reprise" record --sample 0 "$@" --listen "127.0.0.1:$p_c" \
  --upstream "http://127.0.0.1:$p_a" --out "$dir/c.tape"
start_server d "$reprise" record "$@" --listen "127.0.0.1:$p_d" \
  --upstream "http://127.0.0.1:$p_a" --out "$dir/d.tape"
if [ -n "$old" ]; then
  targets+=(o)
  start_server o "$old" record "${old_flags[@]}" --listen "127.0.0.1:$p_o" \
    --upstream "http://127.0.0.1:$p_a" --out "$dir/o.tape"
fi
for t in "${targets[@]}"; do
  ready_and_warm "$t" "${port[$t]}"
done

# CPU time (user + system, all threads, in clock ticks) a server has
# used so far; 0 for (s), whose one worker also serves the backend.
cpu_ticks() {  # TARGET
  local pid=${server_pid[$1]:-}
  if [ -z "$pid" ] || [ ! -r "/proc/$pid/stat" ]; then echo 0; return; fi
  # Fields 14 and 15 (utime, stime), counted after the ")" that ends the
  # command name, which may hold spaces.
  sed 's/.*) //' "/proc/$pid/stat" | awk '{ print $12 + $13 }'
}
mkdir -p "$dir/results"
for ((round = 1; round <= rounds; round++)); do
  for t in "${targets[@]}"; do
    say "round $round/$rounds: ($t)"
    before=$(cpu_ticks "$t")
    run_load wrk -t2 -c64 "-d${duration}s" --latency "http://127.0.0.1:${port[$t]}/hello.json" \
      >"$dir/results/$t.$round.txt"
    echo $(($(cpu_ticks "$t") - before)) >"$dir/results/$t.$round.cpu"
  done
done

echo
echo "## reprise proxy, head to head"
echo
report_machine
echo "- command: \`${OLD:+OLD=$old }${OLD_FLAGS:+OLD_FLAGS=\"$OLD_FLAGS\" }bench/proxy-pairs.sh $rounds $duration${*:+ $*}\`; each round \`wrk -t2 -c64 -d${duration}s\` against ${targets[*]} in turn"
echo
PYTHONPATH="$root/bench" python3 - "$dir/results" "$rounds" "$(getconf CLK_TCK)" "${targets[@]}" <<'PY'
import statistics, sys

import loadgen

results, rounds, tick = sys.argv[1], int(sys.argv[2]), 1 / int(sys.argv[3])
targets = sys.argv[4:]
rps = {t: [] for t in targets}
# CPU microseconds the process used per call served (user + system).
cpu = {t: [] for t in targets}
for r in range(1, rounds + 1):
    for t in targets:
        try:
            run = loadgen.wrk(open(f"{results}/{t}.{r}.txt").read())
        except ValueError as e:
            sys.exit(f"proxy-pairs.sh: {e}")
        rps[t].append(run["rps"])
        ticks = int(open(f"{results}/{t}.{r}.cpu").read())
        if ticks > 0 and run["requests"] > 0:
            cpu[t].append(ticks * tick / run["requests"] * 1e6)
pairs = [("d", "b"), ("d", "s"), ("d", "c")] + ([("d", "o")] if "o" in targets else [])
print("| round | " + " | ".join(f"({t}) req/s" for t in targets) + " | "
      + " | ".join(f"({a})/({b})" for a, b in pairs) + " |")
print("| ---: " * (1 + len(targets) + len(pairs)) + "|")
for i in range(rounds):
    cells = [f"{rps[t][i]:.0f}" for t in targets]
    cells += [f"{rps[a][i] / rps[b][i]:.2f}" for a, b in pairs]
    print(f"| {i + 1} | " + " | ".join(cells) + " |")
print()
for a, b in pairs:
    ratios = [rps[a][i] / rps[b][i] for i in range(rounds)]
    print(f"- ({a})/({b}): median {statistics.median(ratios):.2f}x "
          f"(rounds {min(ratios):.2f}-{max(ratios):.2f})")
print()
print("CPU time each proxy process used per call (user + system, all its")
print("threads; /proc/PID/stat over each run), median of the rounds:")
print()
for t in targets:
    if cpu[t]:
        print(f"- ({t}): {statistics.median(cpu[t]):.1f} µs per call "
              f"(rounds {min(cpu[t]):.1f}-{max(cpu[t]):.1f})")
for a, b in [("d", "b"), ("c", "b"), ("d", "c"), ("d", "o")]:
    if cpu.get(a) and cpu.get(b):
        print(f"- ({a})/({b}) CPU per call: "
              f"{statistics.median(cpu[a]) / statistics.median(cpu[b]):.2f}x")
PY
