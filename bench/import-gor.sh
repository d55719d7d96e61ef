#!/usr/bin/env bash
# `reprise import` of a GoReplay file with one large payload: its time and
# peak memory grow with the payload, linearly (a payload is split off in
# one pass and held once). Generates a .gor whose POST request carries a
# body of SIZE_MIB (default 150) and a small response, imports it RUNS
# times (default 3) with /usr/bin/time -v, and prints the median wall time
# and peak RSS, and their ratio to the payload's size.
# Usage: bench/import-gor.sh [SIZE_MIB] [RUNS]
# REPRISE=path/to/reprise measures that binary instead of building one
# (to compare two builds on the same file).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
script=import-gor.sh
server_program=reprise
# shellcheck source=bench/lib.sh
. bench/lib.sh

size=${1:-150}
runs=${2:-3}
[[ $size =~ ^[1-9][0-9]*$ ]] || usage_error "SIZE_MIB must be a positive integer, not '$size'"
[[ $runs =~ ^[1-9][0-9]*$ ]] || usage_error "RUNS must be a positive integer, not '$runs'"
[ -x /usr/bin/time ] || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
require_tool python3 "to write the file and summarise results"

reprise=${REPRISE:-$root/target/release/reprise}
if [ -z "${REPRISE:-}" ]; then
  build_release reprise "$reprise" -p reprise-cli
fi
[ -x "$reprise" ] || die "$reprise was not built"

make_work_dir import-gor
say "writing a .gor with a ${size} MiB request body"
python3 - "$dir/big.gor" "$size" <<'PY'
import sys
path, size = sys.argv[1], int(sys.argv[2]) << 20
sep = "\n🐵🙈🙉\n".encode()
with open(path, "wb") as f:
    f.write(b"1 aa01 1000000000\nPOST /upload HTTP/1.1\r\nHost: shop\r\n")
    f.write(b"Content-Length: %d\r\n\r\n" % size)
    chunk = (b"0123456789abcdef" * 4096)  # 64 KiB, no separator inside
    left = size
    while left:
        n = min(left, len(chunk))
        f.write(chunk[:n])
        left -= n
    f.write(sep)
    f.write(b"2 aa01 1005000000 4000000\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok")
    f.write(sep)
PY

say "importing it $runs times with $reprise"
: > "$dir/runs.txt"
for i in $(seq "$runs"); do
  rm -f "$dir/out.tape"
  /usr/bin/time -v "$reprise" import "$dir/big.gor" --out "$dir/out.tape" \
    >/dev/null 2>"$dir/time-$i.txt" || { cat "$dir/time-$i.txt" >&2; die "import failed"; }
  cat "$dir/time-$i.txt" >> "$dir/runs.txt"
done
python3 - "$dir/runs.txt" "$size" "$load_at_start" <<'PY'
import re, statistics, sys
text, size, load = open(sys.argv[1]).read(), int(sys.argv[2]), sys.argv[3]
rss = [int(x) / 1024 for x in re.findall(r"Maximum resident set size \(kbytes\): (\d+)", text)]
walls = []
for wall in re.findall(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", text):
    parts = [float(x) for x in wall.split(":")]
    walls.append(sum(p * 60 ** i for i, p in enumerate(reversed(parts))))
wall, peak = statistics.median(walls), statistics.median(rss)
print(f"payload {size} MiB, medians of {len(walls)} runs (load at start {load})")
print(f"import wall time  {wall:8.2f} s   ({wall / size * 1000:.1f} ms per MiB)")
print(f"import peak RSS   {peak:8.1f} MiB ({peak / size:.2f}x the payload)")
PY
