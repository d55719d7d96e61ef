#!/usr/bin/env bash
# Where a proxied HTTP/1.1 call's instructions go: runs `reprise record`
# under callgrind in front of nginx (the 1 KiB /hello.json of
# bench/proxy.sh), loads it with `wrk -t1 -c16` for DURATION seconds, and
# prints callgrind_annotate's inclusive table, each thread apart, with the
# number of calls served, so that counts divide into a per-call cost.
#
# Usage: bench/proxy-profile.sh [DURATION] [reprise record flags...]
#   e.g. bench/proxy-profile.sh 5 --sample 0
# Environment: REPRISE=PATH profiles that binary instead of building
# target/release/reprise; KEEP=DIR copies the callgrind files there.
# Needs nginx, wrk, valgrind (scripts/install-nginx.sh installs the first
# two; valgrind is Debian's package). Sends traffic only to 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
script=proxy-profile.sh server_program=reprise
# shellcheck source-path=SCRIPTDIR/..
. bench/lib.sh

duration=${1:-5}
shift || true
require_positive_ints duration
reprise_and_nginx
require_tool valgrind "to count instructions (apt-get install valgrind)"
require_tool callgrind_annotate "to read the counts (Debian's valgrind package)"

make_work_dir proxy-profile
nginx_files proxy-profile
read -r p_a p_a2 p_p < <(free_ports 3) || die "could not pick free ports"
start_nginx_backend "$p_a" "$p_a2"

start_server profiled valgrind --tool=callgrind --separate-threads=yes \
  --callgrind-out-file="$dir/cg.out" \
  "$reprise" record "$@" --listen "127.0.0.1:$p_p" \
  --upstream "http://127.0.0.1:$p_a" --out "$dir/profile.tape"
# Under valgrind it takes a while to start.
ready_seconds=30 wait_ready profiled "$p_p"
run_load wrk -t1 -c16 "-d${duration}s" "http://127.0.0.1:$p_p/hello.json" >"$dir/wrk.txt"
calls=$(sed -n 's/^ *\([0-9]*\) requests in.*/\1/p' "$dir/wrk.txt")
stop_server profiled 60 || die "reprise did not exit cleanly"

if [ -n "${KEEP:-}" ]; then
  mkdir -p "$KEEP"
  cp "$dir"/cg.out* "$dir/profile.tape" "$KEEP"/
fi
echo "calls served under load: ${calls:-unknown} (plus a few readiness probes)"
for file in "$dir"/cg.out*; do
  [ -f "$file" ] || continue
  total=$(sed -n 's/^totals: *\([0-9]*\).*/\1/p' "$file" | tail -n 1)
  per_call=
  if [ -n "${calls:-}" ] && [ "${calls:-0}" -gt 0 ] && [ -n "$total" ]; then
    per_call=", $((total / calls)) per call"
  fi
  echo
  echo "=== $(basename "$file"): ${total:-?} instructions$per_call"
  callgrind_annotate --inclusive=yes --threshold=99 "$file" 2>/dev/null | head -n 60 || true
done
