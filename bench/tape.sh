#!/usr/bin/env bash
# Tape writer and reader throughput against the zstd CLI on the same bytes.
#
# Runs the criterion bench `tape` (which writes the exact record stream it
# measures to target/bench-tape/records.raw), then times `zstd -1` and
# `zstd -d` on that stream, RUNS times each (default 5), and prints medians
# and ratios. Usage: bench/tape.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
command -v zstd >/dev/null || { apt-get update -qq && apt-get install -y -qq zstd >/dev/null; }
out=target/bench-tape
mkdir -p "$out"
: > "$out/runs.txt"
for _ in $(seq "$runs"); do
  cargo bench -q -p reprise-tape --bench tape -- --noplot >/dev/null 2>&1
  python3 - "$out" >> "$out/runs.txt" <<'PY'
import json, os, subprocess, sys, time
out = sys.argv[1]
raw = os.path.join(out, "records.raw")
size = os.path.getsize(raw)
count = int(open(os.path.join(out, "records.count")).read())
def est(name):
    with open(f"target/criterion/tape/{name}/new/estimates.json") as f:
        return json.load(f)["median"]["point_estimate"] / 1e9
def cli(args, stdin):
    best = []
    for _ in range(3):
        with open(stdin, "rb") as src, open(os.devnull, "wb") as dst:
            t = time.perf_counter()
            subprocess.run(args, stdin=src, stdout=dst, check=True)
            best.append(time.perf_counter() - t)
    best.sort()
    return best[1]
zst = os.path.join(out, "records.zst")
subprocess.run(["zstd", "-1", "-q", "-f", raw, "-o", zst], check=True)
print(json.dumps({
    "bytes": size, "exchanges": count,
    "write_s": est("write"), "scan_s": est("scan"),
    "zstd_c_s": cli(["zstd", "-1", "-q", "-c"], raw),
    "zstd_d_s": cli(["zstd", "-d", "-q", "-c"], zst),
}))
PY
done
python3 - "$out/runs.txt" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
mb = rows[0]["bytes"] / 1e6
n = rows[0]["exchanges"]
med = lambda k: statistics.median(r[k] for r in rows)
w, s, c, d = med("write_s"), med("scan_s"), med("zstd_c_s"), med("zstd_d_s")
print(f"records: {n} exchanges, {mb:.1f} MB uncompressed; medians of {len(rows)} runs")
print(f"tape write : {n/w:10.0f} exchanges/s {mb/w:8.1f} MB/s   zstd -1 : {mb/c:8.1f} MB/s   ratio {c/w:.2f}x")
print(f"tape scan  : {n/s:10.0f} exchanges/s {mb/s:8.1f} MB/s   zstd -d : {mb/d:8.1f} MB/s   ratio {d/s:.2f}x")
PY
