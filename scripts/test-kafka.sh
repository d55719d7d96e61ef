#!/usr/bin/env bash
# The Kafka scenarios against a real broker in a process of its own:
# tansu (a Kafka-compatible broker written in Rust, from crates.io), and a
# third-party client, confluent-kafka (PyPI, with its own librdkafka),
# reading what reprise wrote and writing what reprise reads, its records
# made and read by Google's protobuf runtime from the schema in
# proto/reprise/v1/exchange.proto (protoc from grpcio-tools, PyPI).
#
# Scenarios (each says PASS or FAIL; the script exits 1 on any FAIL):
#   record   60 calls through `reprise record --out kafka://.../recorded`
#            (6 partitions), read back by ls and stats
#   read     confluent-kafka reads every message: its reprise-schema
#            header, its value a reprise.v1.Exchange, keyed by trace id
#   write    confluent-kafka writes 5 exchanges, reprise ls and stats
#            read them
#   group    3 `reprise replay ...?group=G` members share the topic: each
#            ends once the group has replayed it all, and the merged diff
#            compares each of the 60 exchanges once. (A member stopped or
#            killed mid-run is taken over when the coordinator gives its
#            partitions to the others; tansu 0.6's coordinator did not,
#            in either case, within 3 minutes: that is tested against
#            the mock cluster in the default suite, crates/cli/tests/kafka.rs.)
#   outage   the broker stopped (SIGSTOP: it holds its connections and
#            answers nothing) while recording, calls go on (all 200),
#            drops counted; the broker resumed (SIGCONT), recording
#            resumes. (Killed and started again, tansu's memory storage
#            would forget the topic and the idempotent producer's id.)
#
# Not part of scripts/test.sh (it builds tansu, about 8 minutes the first
# time, into target/tansu). Needs nginx (scripts/install-nginx.sh), curl,
# python3 with venv. Usage: scripts/test-kafka.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
script=test-kafka.sh server_program="tansu, reprise or nginx"
# shellcheck source-path=SCRIPTDIR/..
. bench/lib.sh

# --- what it needs ---------------------------------------------------------------
tansu=$root/target/tansu/bin/tansu
if [ ! -x "$tansu" ]; then
  say "building tansu (crates.io) into target/tansu: about 8 minutes"
  cargo install -q --locked --features dynostore tansu --root "$root/target/tansu"
fi
venv=$root/target/kafka-venv
if ! "$venv/bin/python" -c 'import confluent_kafka, grpc_tools' 2>/dev/null; then
  python3 -m venv "$venv" || die "python3 cannot make a venv (apt-get install python3-venv)"
  say "installing confluent-kafka and grpcio-tools (PyPI) into $venv"
  "$venv/bin/pip" install -q confluent-kafka grpcio-tools
fi
py=$venv/bin/python
scripts/install-nginx.sh >/dev/null
say "building reprise"
cargo build -q -p reprise-cli
reprise=${CARGO_TARGET_DIR:-$root/target}/debug/reprise

make_work_dir kafka-test
load_at_start=$(cut -d' ' -f1 /proc/loadavg)
# The schema, compiled for Python.
"$py" -m grpc_tools.protoc -I proto --python_out="$dir" proto/reprise/v1/exchange.proto

failed=0
pass() { echo "PASS $1: $2"; }
fail() { echo "FAIL $1: $2"; failed=1; }

read -r p_a p_a2 p_k < <(free_ports 3) || die "could not pick free ports"
nginx_files kafka-test
echo '{"ok":true}' >"$dir/www/a.json"
start_nginx_backend "$p_a" "$p_a2"
brokers=127.0.0.1:$p_k

start_tansu() {
  # tansu logs on stdout.
  start_server tansu sh -c 'exec "$0" "$@" 2>&1' "$tansu" broker --listener-url "tcp://$brokers" \
    --advertised-listener-url "tcp://$brokers" --storage-engine memory://tansu/
  for ((i = 0; i < 100; i++)); do
    (exec 3<>"/dev/tcp/127.0.0.1/$p_k") 2>/dev/null && return 0
    sleep 0.1
  done
  cat "$dir/tansu.log" >&2
  die "tansu did not listen on $brokers"
}
topic_create() {  # NAME PARTITIONS
  "$tansu" topic create "$1" --partitions "$2" --broker "tcp://$brokers" >/dev/null 2>&1 \
    || die "tansu topic create $1 failed"
}
# Calls through the recorder on PORT: COUNT of them, paths /a.json?TAG=i;
# prints the status codes.
calls() {  # PORT TAG COUNT
  local urls=() i
  for ((i = 0; i < $3; i++)); do urls+=("http://127.0.0.1:$1/a.json?$2=$i"); done
  curl -sS -o /dev/null -w '%{http_code}\n' "${urls[@]}"
}
# Starts `reprise record` (server NAME) into TOPIC; sets rec_port and
# rec_admin.
start_recorder() {  # NAME TOPIC [flags]
  local name=$1 topic=$2
  shift 2
  read -r rec_port < <(free_ports 1)
  start_server "$name" "$reprise" record --listen "127.0.0.1:$rec_port" --upstream "http://127.0.0.1:$p_a" \
    --out "kafka://$brokers/$topic" --admin 127.0.0.1:0 "$@"
  wait_ready_path "$name" "$rec_port"
  rec_admin=$(sed -n 's|.*metrics: http://\([0-9.:]*\)/metrics.*|\1|p' "$dir/$name.log" | head -n 1)
}
wait_ready_path() {  # NAME PORT
  for ((i = 0; i < 200; i++)); do
    curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$2/a.json" 2>/dev/null && return 0
    kill -0 "${server_pid[$1]}" 2>/dev/null || { cat "$dir/$1.log" >&2; die "$1 exited"; }
    sleep 0.1
  done
  cat "$dir/$1.log" >&2
  die "$1 did not answer"
}
metric() {  # NAME (full series)
  curl -fsS "http://$rec_admin/metrics" | awk -v n="$1" '$1 == n {print $2}'
}

start_tansu
say "tansu at $brokers"
topic_create recorded 6
topic_create results 3
topic_create third 1
topic_create flaky 2

# --- record --------------------------------------------------------------------
start_recorder rec recorded
# One call first, recorded: the warm-up above was one call too.
codes=$(calls "$rec_port" n 59)
stop_server rec
summary=$(grep -o '[0-9]* exchanges seen, [^;]*' "$dir/rec.log" | tail -n 1)
listed=$("$reprise" ls "kafka://$brokers/recorded" | grep -c '/a.json' || true)
exchanges=$("$reprise" stats "kafka://$brokers/recorded" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["exchanges"])')
if [ "$(grep -c 200 <<<"$codes")" = 59 ] && [ "$summary" = "60 exchanges seen, 60 recorded" ] && [ "$listed" = 60 ] && [ "$exchanges" = 60 ]; then
  pass record "60 calls recorded into 6 partitions; ls and stats read 60"
else
  fail record "summary '$summary', ls $listed, stats $exchanges"
fi

# --- read: a third-party client reads what reprise wrote -----------------------------
read_out=$(PYTHONPATH=$dir "$py" - "$brokers" <<'PY'
import sys
from confluent_kafka import Consumer, TopicPartition
from reprise.v1 import exchange_pb2
brokers = sys.argv[1]
c = Consumer({"bootstrap.servers": brokers, "group.id": "third-party-reader", "enable.auto.commit": False})
parts = c.list_topics("recorded", timeout=20).topics["recorded"].partitions
ends = {p: c.get_watermark_offsets(TopicPartition("recorded", p), timeout=20)[1] for p in parts}
c.assign([TopicPartition("recorded", p, 0) for p in parts])
seen, paths, bad = 0, set(), []
left = sum(ends.values())
while left > 0:
    batch = c.consume(100, timeout=10)
    if not batch:
        break
    for m in batch:
        if m.error():
            continue
        left -= 1
        headers = dict(m.headers() or [])
        e = exchange_pb2.Exchange()
        e.ParseFromString(m.value())
        key = e.trace_id or e.id
        if headers.get("reprise-schema") is None or m.key() != key or not e.request.path.startswith("/a.json"):
            bad.append(m.offset())
        seen += 1
        paths.add(e.request.path)
c.close()
print(seen, len(paths), len(bad))
PY
)
if [ "$read_out" = "60 60 0" ]; then
  pass read "confluent-kafka read 60 records: each a reprise.v1.Exchange with its header, keyed by trace id"
else
  fail read "confluent-kafka read (messages, paths, bad): $read_out"
fi

# --- write: what a third-party client writes, reprise reads ----------------------------
PYTHONPATH=$dir "$py" - "$brokers" <<'PY'
import sys, time, os
from confluent_kafka import Producer
from reprise.v1 import exchange_pb2
p = Producer({"bootstrap.servers": sys.argv[1]})
for i in range(5):
    e = exchange_pb2.Exchange()
    e.id = os.urandom(16)
    e.recorded_at_ns = time.time_ns()
    e.duration_ns = 1_000_000
    e.role = exchange_pb2.ROLE_INBOUND
    e.protocol = exchange_pb2.PROTOCOL_HTTP_1_1
    e.request.method = "GET"
    e.request.scheme = "http"
    e.request.authority = "shop.internal"
    e.request.path = f"/third/{i}"
    e.response.status = 200
    e.response.body = b'{"from":"python"}'
    e.response.body_size = len(e.response.body)
    p.produce("third", e.SerializeToString(), e.id, headers=[("reprise-schema", b"3")],
              timestamp=e.recorded_at_ns // 1_000_000)
assert p.flush(20) == 0
PY
third=$("$reprise" ls "kafka://$brokers/third" | grep -c '/third/' || true)
third_stats=$("$reprise" stats "kafka://$brokers/third" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["exchanges"])')
if [ "$third" = 5 ] && [ "$third_stats" = 5 ]; then
  pass write "reprise ls and stats read the 5 exchanges confluent-kafka wrote"
else
  fail write "ls $third, stats $third_stats"
fi

# --- group: three replayers share the topic ----------------------------------------------
member() {  # N
  "$reprise" replay "kafka://$brokers/recorded?group=replayers" --target "http://127.0.0.1:$p_a" \
    --out "kafka://$brokers/results" --rate 20 --concurrency 4 -q \
    --kafka-option session.timeout.ms=10000 --kafka-option heartbeat.interval.ms=1000 \
    >/dev/null 2>"$dir/member$1.log" &
  member_pid[$1]=$!
}
declare -A member_pid=()
member 0
member 1
member 2
group_ok=1
for m in 0 1 2; do
  for ((i = 0; i < 1800; i++)); do kill -0 "${member_pid[$m]}" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "${member_pid[$m]}" 2>/dev/null; then
    kill -KILL "${member_pid[$m]}"
    group_ok=0
    echo "member $m did not finish within 180 s" >&2
  fi
  wait "${member_pid[$m]}" || { group_ok=0; cat "$dir/member$m.log" >&2; }
done
"$reprise" diff "kafka://$brokers/recorded" "kafka://$brokers/results" --json "$dir/diff.json" >"$dir/diff.out" 2>&1 || group_ok=0
pairs=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["pairs"], r["identical"], sum(r["not_compared"].values()))' "$dir/diff.json" 2>/dev/null || echo "no report")
if [ "$group_ok" = 1 ] && [ "$pairs" = "60 60 0" ]; then
  pass group "3 members; the merged diff compared each of 60 once ($(grep -h 'this member' "$dir"/member[012].log | tr '\n' ' '))"
else
  fail group "pairs/identical/not compared: $pairs; $(cat "$dir/diff.out")"
fi

# --- outage: the broker goes away while recording, and comes back -----------------------
start_recorder flaky flaky --kafka-option queue.buffering.max.messages=5
calls "$rec_port" before 5 >/dev/null
kill -STOP "${server_pid[tansu]}"
codes=$(calls "$rec_port" during 30)
during_ok=$(grep -c 200 <<<"$codes" || true)
recorded_before=$(metric reprise_exchanges_recorded_total)
kill -CONT "${server_pid[tansu]}"
resumed=0
for ((i = 0; i < 120; i++)); do
  calls "$rec_port" "after$i" 1 >/dev/null
  now=$(metric reprise_exchanges_recorded_total)
  if [ "${now:-0}" -gt "${recorded_before:-0}" ]; then resumed=1; break; fi
  sleep 0.5
done
stop_server flaky
summary=$(grep -o '[0-9]* exchanges seen, [^;]*' "$dir/flaky.log" | tail -n 1)
after=$("$reprise" ls "kafka://$brokers/flaky" | grep -c '/a.json?after' || true)
if [ "$during_ok" = 30 ] && [ "$resumed" = 1 ] && [ "$after" -ge 1 ] && grep -q dropped <<<"$summary"; then
  pass outage "30 calls answered while the broker was stopped; $summary; $after calls recorded after it resumed"
else
  fail outage "during $during_ok/30 answered, resumed $resumed, after $after, summary '$summary'"
fi

echo
echo "tansu $("$tansu" --version 2>/dev/null | head -n 1), confluent-kafka $("$py" -c 'import confluent_kafka; print(confluent_kafka.version()[0], "librdkafka", confluent_kafka.libversion()[0])'); $(report_machine | sed 's/^- //')"
exit "$failed"
