#!/usr/bin/env bash
# `reprise diff` memory and time on a large recording, at three
# `--max-memory` settings, optionally side by side with another build.
#
# Setup, once: nginx serves the 1 KiB /hello.json on 127.0.0.1; `reprise
# record` in front of it records DURATION seconds of wrk (-t2 -c32: about
# 200,000 exchanges on 2 cores); `reprise replay --max --out` replays the
# recording against nginx. Then `reprise diff rec.tape out.tape
# --max-memory M` runs RUNS times for each M in 256MiB (the default), 64MiB
# and 8MiB (cut into parts on disk), under /usr/bin/time, for REPRISE and,
# when given, REPRISE_BASE (alternating, so both see the same machine),
# and the medians of peak RSS and wall time are printed. Every pair is
# identical, so the diff must exit 0.
#
# Usage: bench/diff-memory.sh [RUNS] [DURATION]   (defaults: 3 runs, 8 s of wrk)
# Environment: REPRISE=PATH runs that binary instead of building
# target/release/reprise; REPRISE_BASE=PATH measures a second build too.
# Needs nginx and wrk (scripts/install-nginx.sh installs them), python3 and
# /usr/bin/time (Debian's time package). Sends traffic only to 127.0.0.1;
# everything it starts is stopped, and its temporary folder removed, on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
script=diff-memory.sh server_program=reprise
# shellcheck source-path=SCRIPTDIR/..
. bench/lib.sh

read_runs_and_duration "${1:-3}" "${2:-8}"
reprise_and_nginx
require_tool /usr/bin/time "to measure peak memory (Debian's time package)"
base=${REPRISE_BASE:-}
[ -z "$base" ] || [ -x "$base" ] || usage_error "REPRISE_BASE=$base is not an executable"

make_work_dir diff-memory
nginx_files diff-memory
read -r p_a p_a2 p_r < <(free_ports 3) || die "could not pick free ports"
start_nginx_backend "$p_a" "$p_a2"
wait_ready a "$p_a"
start_server record "$reprise" record --listen "127.0.0.1:$p_r" \
  --upstream "http://127.0.0.1:$p_a" --out "$dir/rec.tape"
wait_ready record "$p_r"
say "recording $duration s of wrk -t2 -c32 through reprise record"
run_load wrk -t2 -c32 "-d${duration}s" "http://127.0.0.1:$p_r/hello.json" >"$dir/wrk.txt"
stop_server record
say "replaying it against nginx (--max --out)"
"$reprise" replay "$dir/rec.tape" --target "http://127.0.0.1:$p_a" --max \
  --out "$dir/out.tape" -q >/dev/null
pairs=$("$reprise" stats "$dir/rec.tape" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["exchanges"])' 2>/dev/null || echo "?")
say "recorded $pairs exchanges: $(du -h "$dir/rec.tape" | cut -f1) tape, replay $(du -h "$dir/out.tape" | cut -f1)"

builds=(new)
declare -A binary=([new]=$reprise)
if [ -n "$base" ]; then builds+=(base); binary[base]=$base; fi
for ((run = 1; run <= runs; run++)); do
  for memory in 256MiB 64MiB 8MiB; do
    for build in "${builds[@]}"; do
      /usr/bin/time -f '%M %e' -o "$dir/time" "${binary[$build]}" diff \
        "$dir/rec.tape" "$dir/out.tape" --max-memory "$memory" >/dev/null 2>"$dir/diff.err" \
        || die "$build: reprise diff --max-memory $memory failed: $(tail -n 3 "$dir/diff.err")"
      echo "$build $memory $(tail -n 1 "$dir/time")" >>"$dir/results"
    done
  done
done

report_machine
python3 - "$dir/results" "$runs" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    build, memory, kib, secs = line.split()
    rows.setdefault((build, memory), []).append((int(kib), float(secs)))
builds = sorted({b for b, _ in rows}, key=lambda b: b != "new")
print(f"reprise diff, medians of {sys.argv[2]} runs")
print(f"{'--max-memory':<14}" + "".join(f"{b + ' RSS':>14}{b + ' time':>12}" for b in builds)
      + ("   RSS new/base" if len(builds) == 2 else ""))
for memory in ["256MiB", "64MiB", "8MiB"]:
    line = f"{memory:<14}"
    med = {}
    for b in builds:
        kib = statistics.median(k for k, _ in rows[(b, memory)])
        secs = statistics.median(s for _, s in rows[(b, memory)])
        med[b] = kib
        line += f"{kib / 1024:>10.0f} MiB{secs:>10.1f} s"
    if len(builds) == 2:
        line += f"   {med['new'] / med['base']:.2f}x"
    print(line)
PY
