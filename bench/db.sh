#!/usr/bin/env bash
# Whole-system database benchmark on 127.0.0.1: pgbench -S and
# redis-benchmark against PostgreSQL and Redis directly, through haproxy in
# TCP mode (the reference relay: it passes bytes and parses nothing), and
# through `reprise record --egress-db` recording every query and command
# to a tape.
#
# Targets (each a key in the report):
#   PostgreSQL, `pgbench -S -c C -j 2 -T DURATION` (its read-only script,
#   simple protocol, scale 10):
#     (pd)  PostgreSQL, direct
#     (ph)  haproxy (mode tcp) -> (pd)
#     (pr)  reprise --egress-db pg=...=postgres://(pd)
#   Redis, `redis-benchmark -t get,set -c C -n N`:
#     (rd)  Redis, direct
#     (rh)  haproxy (mode tcp) -> (rd)
#     (rr)  reprise --egress-db cache=...=redis://(rd)
# Each RUNS times, the targets in one order on odd runs and the reverse on
# even runs; the tables show medians. Latency: pgbench's per-transaction
# log (-l), redis-benchmark's own percentiles.
# Target (issue 21): reprise >= 0.9x haproxy's throughput; its added p99
# (over direct) is reported. Missed targets are reported, not failed: the
# exit status is non-zero only when the setup fails or a client errs.
#
# Usage: bench/db.sh [RUNS] [DURATION]   (defaults: 3 runs, 10 s per target)
# Environment: BENCH_CONNS (C, 8); REDIS_REQUESTS (N per run, 200000);
# REPRISE=PATH runs that binary instead of building target/release/reprise.
# Needs Debian's postgresql, redis-server, redis-tools and haproxy
# (scripts/setup-tests.sh installs them) and python3. PostgreSQL refuses to
# run as root: as root, its cluster belongs to user postgres (setpriv).
# Sends traffic only to 127.0.0.1; everything it starts is stopped, and its
# temporary folder removed, on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
script=db.sh server_program="postgres, redis-server, haproxy or reprise"
# shellcheck source-path=SCRIPTDIR/..
. bench/lib.sh

read_runs_and_duration "${1:-3}" "${2:-10}"
conns=${BENCH_CONNS:-8}
redis_requests=${REDIS_REQUESTS:-200000}
require_positive_ints conns redis_requests
command_line="bench/db.sh $runs $duration"

pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -n "$pg_bin" ] && [ -x "$pg_bin/postgres" ] || die "PostgreSQL is not installed: run scripts/setup-tests.sh"
for tool in redis-server redis-benchmark haproxy python3; do
  require_tool "$tool" "(scripts/setup-tests.sh installs it)"
done
reprise=${REPRISE:-$root/target/release/reprise}
if [ -z "${REPRISE:-}" ]; then
  build_release reprise "$reprise" -p reprise-cli
fi
[ -x "$reprise" ] || die "$reprise was not built"

make_work_dir db
mkdir -p "$dir/results"
read -r p_pd p_ph p_pr p_rd p_rh p_rr p_in < <(free_ports 7) || die "could not pick free ports"

# --- PostgreSQL: a cluster of its own, fsync off, trust on loopback -----------
as_pg=()
if [ "$(id -u)" = 0 ]; then
  id postgres >/dev/null 2>&1 || die "user postgres is missing (Debian's postgresql package makes it)"
  chmod 755 "$dir"
  mkdir -p "$dir/pg"
  chown postgres:postgres "$dir/pg"
  as_pg=(setpriv --reuid=postgres --regid=postgres --init-groups)
fi
"${as_pg[@]}" "$pg_bin/initdb" -D "$dir/pg/data" -A trust -U postgres >"$dir/initdb.log" 2>&1 \
  || { cat "$dir/initdb.log" >&2; die "initdb failed"; }
start_server pd "${as_pg[@]}" "$pg_bin/postgres" -D "$dir/pg/data" -p "$p_pd" -k "$dir/pg" \
  -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c max_connections=100
for ((i = 0; i < 300; i++)); do
  "$pg_bin/pg_isready" -q -h 127.0.0.1 -p "$p_pd" && break
  kill -0 "${server_pid[pd]}" 2>/dev/null || { cat "$dir/pd.log" >&2; die "postgres exited"; }
  sleep 0.1
done
"$pg_bin/pg_isready" -q -h 127.0.0.1 -p "$p_pd" || die "postgres did not start within 30 s"
say "pgbench -i -s 10"
"$pg_bin/pgbench" -i -q -s 10 -h 127.0.0.1 -p "$p_pd" -U postgres postgres >"$dir/pgbench-init.log" 2>&1 \
  || { cat "$dir/pgbench-init.log" >&2; die "pgbench -i failed"; }

# --- Redis ----------------------------------------------------------------------
start_server rd redis-server --port "$p_rd" --bind 127.0.0.1 --save '' --appendonly no \
  --dir "$dir" --protected-mode no --logfile "$dir/redis-server.log"

# --- haproxy: the reference relay -----------------------------------------------
cat >"$dir/haproxy.cfg" <<CFG
global
    maxconn 4096
defaults
    mode tcp
    timeout connect 5s
    timeout client 5m
    timeout server 5m
listen pg
    bind 127.0.0.1:$p_ph
    server pd 127.0.0.1:$p_pd
listen redis
    bind 127.0.0.1:$p_rh
    server rd 127.0.0.1:$p_rd
CFG
haproxy -c -q -f "$dir/haproxy.cfg" || die "haproxy rejected $dir/haproxy.cfg"
start_server h haproxy -db -f "$dir/haproxy.cfg"

# --- reprise: recording every query and command ---------------------------------
# Its inbound side (a listener the benchmark does not load) needs an
# upstream: nothing listens there.
start_server r "$reprise" record --listen "127.0.0.1:$p_in" \
  --upstream "http://127.0.0.1:9" --out "$dir/r.tape" \
  --egress-db "pg=127.0.0.1:$p_pr=postgres://127.0.0.1:$p_pd" \
  --egress-db "cache=127.0.0.1:$p_rr=redis://127.0.0.1:$p_rd"

# --- every target answers ---------------------------------------------------------
wait_pg() {  # NAME PORT SERVER
  local i
  for ((i = 0; i < 150; i++)); do
    "$pg_bin/psql" -X -At -h 127.0.0.1 -p "$2" -U postgres -c 'SELECT 1' postgres >/dev/null 2>&1 && return 0
    kill -0 "${server_pid[$3]}" 2>/dev/null || { cat "$dir/$3.log" >&2; die "($3) exited before ($1) answered"; }
    sleep 0.1
  done
  die "($1) did not answer within 15 s"
}
wait_redis() {  # NAME PORT SERVER
  local i
  for ((i = 0; i < 150; i++)); do
    [ "$(redis-cli -h 127.0.0.1 -p "$2" PING 2>/dev/null)" = PONG ] && return 0
    kill -0 "${server_pid[$3]}" 2>/dev/null || { cat "$dir/$3.log" >&2; die "($3) exited before ($1) answered"; }
    sleep 0.1
  done
  die "($1) did not answer within 15 s"
}
wait_pg pd "$p_pd" pd
wait_pg ph "$p_ph" h
wait_pg pr "$p_pr" r
wait_redis rd "$p_rd" rd
wait_redis rh "$p_rh" h
wait_redis rr "$p_rr" r
pg_version=$("$pg_bin/postgres" --version | awk '{print $3}')
redis_version=$(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p')
haproxy_version=$(haproxy -v | head -n 1 | awk '{print $3}')
say "all targets answer; reprise $("$reprise" --version | awk '{print $NF}'), PostgreSQL $pg_version, Redis $redis_version, haproxy $haproxy_version"

# --- load -----------------------------------------------------------------------
targets=(pd ph pr rd rh rr)
declare -A port_of=([pd]=$p_pd [ph]=$p_ph [pr]=$p_pr [rd]=$p_rd [rh]=$p_rh [rr]=$p_rr)
declare -A proxy_of=([ph]=h [pr]=r [rh]=h [rr]=r)
measure() {  # T SECONDS OUT
  local t=$1 seconds=$2 out=$3
  case $t in
    p*)
      rm -rf "$out.log.d"
      mkdir -p "$out.log.d"
      run_load "$pg_bin/pgbench" -S -n -c "$conns" -j 2 -T "$seconds" \
        -l --log-prefix="$out.log.d/tx" -h 127.0.0.1 -p "${port_of[$t]}" -U postgres postgres \
        >"$out" 2>&1 ;;
    r*)
      local n=$redis_requests
      [ "$seconds" -gt 1 ] || n=$((redis_requests / 10))
      run_load redis-benchmark -h 127.0.0.1 -p "${port_of[$t]}" -t get,set -c "$conns" \
        -n "$n" --csv >"$out" 2>&1 ;;
  esac
}
cpu_ticks() {  # PID
  sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'
}
say "warm-up: 1 s per target"
for t in "${targets[@]}"; do
  measure "$t" 1 "$dir/warm-up.txt" || die "($t): the warm-up failed: $(cat "$dir/warm-up.txt")"
done
for ((run = 1; run <= runs; run++)); do
  order=("${targets[@]}")
  if ((run % 2 == 0)); then
    order=()
    for ((i = ${#targets[@]} - 1; i >= 0; i--)); do order+=("${targets[i]}"); done
  fi
  for t in "${order[@]}"; do
    say "run $run/$runs: ($t)"
    pid=${proxy_of[$t]:+${server_pid[${proxy_of[$t]}]}}
    [ -z "$pid" ] || before=$(cpu_ticks "$pid")
    measure "$t" "$duration" "$dir/results/$t.$run.txt" \
      || die "($t): the client failed: $(tail -n 5 "$dir/results/$t.$run.txt")"
    [ -z "$pid" ] || echo $(($(cpu_ticks "$pid") - before)) >"$dir/results/$t.$run.cpu"
  done
done

stop_server r || die "reprise (r) did not exit cleanly on SIGTERM"
r_said=$(grep -E 'exchanges seen' "$dir/r.log" || true)
r_stats=$("$reprise" stats "$dir/r.tape" 2>&1 | head -n 20) || true

# --- report -----------------------------------------------------------------------
echo
echo "## reprise database benchmark"
echo
report_machine
echo "- PostgreSQL $pg_version (fsync off), Redis $redis_version, haproxy $haproxy_version (mode tcp, default threads), reprise $("$reprise" --version | awk '{print $NF}') (recording every call to a tape)"
echo "- command: \`$command_line\` ($runs runs of $duration s per PostgreSQL target, $redis_requests requests per Redis target; medians shown)"
echo "- loads: \`pgbench -S -n -c $conns -j 2 -T $duration -l\` (scale 10), \`redis-benchmark -t get,set -c $conns -n $redis_requests --csv\`"
echo
python3 - "$dir/results" "$runs" "$(getconf CLK_TCK)" <<'PY'
import csv, glob, io, os, re, statistics, sys

results, runs, hz = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])

def pgbench(t, n):
    path = os.path.join(results, f"{t}.{n}.txt")
    text = open(path).read()
    m = re.search(r"tps = ([0-9.]+)", text)
    if not m:
        sys.exit(f"db.sh: no tps in {path}:\n{text}")
    failed = re.search(r"number of failed transactions: ([0-9]+)", text)
    lat = []
    for log in glob.glob(os.path.join(path + ".log.d", "tx*")):
        for line in open(log):
            parts = line.split()
            if len(parts) >= 3:
                lat.append(int(parts[2]) / 1000.0)
    lat.sort()
    if not lat:
        sys.exit(f"db.sh: no transaction log for {path}")
    q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))]
    return {"rps": float(m.group(1)), "p50": q(0.50), "p99": q(0.99),
            "calls": len(lat), "errors": int(failed.group(1)) if failed else 0}

def redis(t, n):
    path = os.path.join(results, f"{t}.{n}.txt")
    text = open(path).read()
    rows = [r for r in csv.DictReader(io.StringIO(text)) if r.get("test") in ("SET", "GET")]
    if len(rows) != 2:
        sys.exit(f"db.sh: no SET and GET rows in {path}:\n{text}")
    # Both tests ran n requests each: the mean rate is the harmonic one.
    rps = 2 / sum(1 / float(r["rps"]) for r in rows)
    return {"rps": rps,
            "p50": statistics.mean(float(r["p50_latency_ms"]) for r in rows),
            "p99": max(float(r["p99_latency_ms"]) for r in rows),
            "calls": None, "errors": 0}

def read(t, n):
    r = pgbench(t, n) if t.startswith("p") else redis(t, n)
    cpu = os.path.join(results, f"{t}.{n}.cpu")
    if os.path.exists(cpu):
        seconds = int(open(cpu).read()) / hz
        r["cpu"] = seconds
    return r

LABEL = {"pd": "PostgreSQL, direct", "ph": "haproxy (tcp)", "pr": "reprise --egress-db, recording",
         "rd": "Redis, direct", "rh": "haproxy (tcp)", "rr": "reprise --egress-db, recording"}
GROUPS = [("PostgreSQL: pgbench -S", ["pd", "ph", "pr"]), ("Redis: redis-benchmark GET/SET", ["rd", "rh", "rr"])]
got, per_run, errors = {}, {}, 0
for t in LABEL:
    rows = [read(t, n) for n in range(1, runs + 1)]
    per_run[t] = rows
    m = {k: statistics.median(r[k] for r in rows) for k in ("rps", "p50", "p99")}
    cpus = [r["cpu"] for r in rows if "cpu" in r]
    m["cpu"] = statistics.median(cpus) if cpus else None
    m["errors"] = sum(r["errors"] for r in rows)
    m["spread"] = (max(r["rps"] for r in rows) - min(r["rps"] for r in rows)) / m["rps"] * 100
    got[t] = m
    errors += m["errors"]

print("| target | calls/s (median) | vs direct | vs haproxy | p50 ms | p99 ms | added p99 ms | relay CPU s per run | spread | errors |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for title, (d, h, r) in GROUPS:
    print(f"| **{title}** | | | | | | | | | |")
    for t in (d, h, r):
        g = got[t]
        vs_d = g["rps"] / got[d]["rps"]
        vs_h = "—" if t == d else f"{g['rps'] / got[h]['rps']:.2f}"
        added = "—" if t == d else f"{g['p99'] - got[d]['p99']:+.3f}"
        cpu = "—" if g["cpu"] is None else f"{g['cpu']:.1f}"
        print(f"| ({t}) {LABEL[t]} | {g['rps']:.0f} | {vs_d:.2f} | {vs_h} | {g['p50']:.3f} | {g['p99']:.3f} "
              f"| {added} | {cpu} | {g['spread']:.1f}% | {g['errors']} |")
print()
print("### Target: reprise >= 0.9x haproxy's throughput")
print()
# Two readings: the ratio of the medians, and the median of each run's
# ratio (reprise and haproxy measured back to back, so the machine's
# drift between runs cancels out of each ratio).
for name, h, r in (("PostgreSQL", "ph", "pr"), ("Redis", "rh", "rr")):
    ratios = [a["rps"] / b["rps"] for a, b in zip(per_run[r], per_run[h])]
    ratio = got[r]["rps"] / got[h]["rps"]
    paired = statistics.median(ratios)
    verdict = lambda x: "met" if x >= 0.9 else "NOT met"
    print(f"- {name}: ({r})/({h}) = {ratio:.2f} ({verdict(ratio)}), median per run {paired:.2f} "
          f"({verdict(paired)}); per run: " + ", ".join(f"{x:.2f}" for x in ratios))
if errors:
    sys.exit(f"db.sh: {errors} failed transactions")
PY
echo
echo "reprise's closing line: ${r_said:-none}"
echo
echo '```text'
echo "$r_stats"
echo '```'
