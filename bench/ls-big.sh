#!/usr/bin/env bash
# `reprise ls` and `reprise stats` stream: on a large tape they start at
# once and their memory stays flat. Writes a small (16 MiB of records) and
# a large tape (SIZE_MIB, default 12288 MiB of records, about 1 GiB on disk)
# of synthetic realistic exchanges, then for each measures the time to the
# first line of `ls`, and the wall time and peak RSS of a full `ls` and
# `stats`. Reports the large/small ratios: flat memory means ~1.0x RSS.
# Usage: bench/ls-big.sh [SIZE_MIB] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
size=${1:-12288}
runs=${2:-3}
command -v /usr/bin/time >/dev/null || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
cargo build -q --release -p reprise-cli
cargo build -q --release -p reprise-tape --example write_tape
out=target/bench-ls
mkdir -p "$out"
rm -f "$out"/small.tape "$out"/big.tape
target/release/examples/write_tape "$out/small.tape" 16
target/release/examples/write_tape "$out/big.tape" "$size"
ls -la "$out"/*.tape
bin=target/release/reprise
python3 - "$bin" "$out" "$runs" <<'PY'
import os, re, statistics, subprocess, sys, time
bin, out, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])

def first_line(tape):
    start = time.perf_counter()
    p = subprocess.Popen([bin, "ls", tape], stdout=subprocess.PIPE)
    p.stdout.readline()  # header
    p.stdout.readline()  # first exchange
    elapsed = time.perf_counter() - start
    p.kill(); p.wait()
    return elapsed

def full(cmd, tape):
    r = subprocess.run(["/usr/bin/time", "-v", bin, cmd, tape], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", r.stderr).group(1))
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", r.stderr).group(1)
    parts = [float(x) for x in wall.split(":")]
    seconds = sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
    return rss, seconds

results = {}
for name in ("small", "big"):
    tape = os.path.join(out, f"{name}.tape")
    firsts = [first_line(tape) for _ in range(runs)]
    ls = [full("ls", tape) for _ in range(runs)]
    st = [full("stats", tape) for _ in range(runs)]
    results[name] = {
        "size_mib": os.path.getsize(tape) / 2**20,
        "first_line_ms": statistics.median(firsts) * 1000,
        "ls_rss_mib": statistics.median(r for r, _ in ls) / 1024,
        "ls_s": statistics.median(s for _, s in ls),
        "stats_rss_mib": statistics.median(r for r, _ in st) / 1024,
        "stats_s": statistics.median(s for _, s in st),
    }
s, b = results["small"], results["big"]
print(f"medians of {runs} runs")
print(f"{'':22}{'small':>12}{'big':>12}{'big/small':>12}")
for key, label in [("size_mib", "tape MiB on disk"), ("first_line_ms", "ls first line ms"), ("ls_rss_mib", "ls peak RSS MiB"),
                   ("ls_s", "ls total s"), ("stats_rss_mib", "stats peak RSS MiB"), ("stats_s", "stats total s")]:
    print(f"{label:22}{s[key]:12.1f}{b[key]:12.1f}{b[key] / s[key]:11.2f}x")
PY
