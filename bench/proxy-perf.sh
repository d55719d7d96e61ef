#!/usr/bin/env bash
# Where `reprise record`'s CPU time goes, kernel included: `perf record`
# (the cpu-clock software event, which a VM without hardware counters
# has too) on the proxy while `wrk -t2 -c64 -dDURATIONs` loads it in front
# of nginx (the 1 KiB /hello.json of bench/proxy.sh). Prints the calls
# served, the time by thread and binary, and the top functions, kernel's
# among them (callgrind, in bench/proxy-profile.sh, sees user space only).
#
# Usage: bench/proxy-perf.sh [DURATION] [reprise record flags...]
#   e.g. bench/proxy-perf.sh 5 --sample 0 --threads 1
# Environment: REPRISE=PATH profiles that binary instead of building
# target/release/reprise.
# Needs nginx and wrk (scripts/install-nginx.sh installs them), perf
# (Debian's linux-perf), python3. Sends traffic only to 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
script=proxy-perf.sh server_program=reprise
# shellcheck source-path=SCRIPTDIR/..
. bench/lib.sh

duration=${1:-5}
shift || true
require_positive_ints duration
reprise_and_nginx
require_tool perf "to sample the proxy (apt-get install linux-perf)"

make_work_dir proxy-perf
nginx_files proxy-perf
read -r p_a p_a2 p_p < <(free_ports 3) || die "could not pick free ports"
start_nginx_backend "$p_a" "$p_a2"
start_server profiled "$reprise" record "$@" --listen "127.0.0.1:$p_p" \
  --upstream "http://127.0.0.1:$p_a" --out "$dir/profile.tape"
ready_and_warm profiled "$p_p"

perf record -q -e cpu-clock -F 4999 -g -p "${server_pid[profiled]}" -o "$dir/perf.data" \
  -- sleep "$((duration + 1))" 2>"$dir/perf.log" &
perf_pid=$!
sleep 0.5
run_load wrk -t2 -c64 "-d${duration}s" "http://127.0.0.1:$p_p/hello.json" >"$dir/wrk.txt"
wait "$perf_pid" || die "perf record failed: $(cat "$dir/perf.log")"

echo "command: bench/proxy-perf.sh $duration${*:+ $*}"
grep "requests in" "$dir/wrk.txt"
echo
echo "### time by thread and binary"
perf report -i "$dir/perf.data" --no-children --sort comm,dso --stdio -g none 2>/dev/null \
  | grep -v '^#' | grep -v '^$' | head -n 16 || true  # head stops reading early
echo
echo "### top functions ([k]: kernel)"
perf report -i "$dir/perf.data" --no-children --sort sym --stdio -g none 2>/dev/null \
  | grep -v '^#' | grep -v '^$' | head -n 30 || true
