# What the whole-system benchmarks (proxy.sh, replay.sh, tower.sh) share:
# messages, argument checks, the temporary folder and the cleanup that
# stops everything started in it, free ports, and nginx as the backend.
#
# Sourced, after `cd` to the repository's root, by a script that has set
#   script          its own name, which starts its error messages ("proxy.sh")
#   server_program  what its background servers run, as messages name them
#                   ("reprise", "hello")
# shellcheck shell=bash
: "${script:?set script before sourcing bench/lib.sh}"
: "${server_program:?set server_program before sourcing bench/lib.sh}"

# Taken first: other work on the machine skews the numbers, and the report
# says how busy it was.
load_at_start=$(cut -d' ' -f1-3 /proc/loadavg)
nginx=/usr/sbin/nginx

say() { echo "== $*" >&2; }
warn() { echo "$script: $*" >&2; }
die() { warn "$@"; exit 1; }
# The caller's arguments or environment are wrong: exit status 2.
usage_error() { warn "$@"; exit 2; }

# RUNS and DURATION, the arguments every benchmark here takes: sets runs
# (default 3) and duration (seconds, default 10).
read_runs_and_duration() {  # [RUNS] [DURATION]
  runs=${1:-3}
  duration=${2:-10}
  [[ $runs =~ ^[1-9][0-9]*$ ]] || usage_error "RUNS must be a positive integer, not '$runs'"
  [[ $duration =~ ^[1-9][0-9]*$ ]] || usage_error "DURATION must be whole seconds, not '$duration'"
}
# Each VAR (a setting read from the environment) must hold a positive integer.
require_positive_ints() {  # VAR...
  local v
  for v in "$@"; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || usage_error "$v must be a positive integer, not '${!v}'"
  done
}
# Dies unless TOOL is on the PATH, saying "TOOL is needed WHY".
require_tool() {  # TOOL WHY
  command -v "$1" >/dev/null || die "$1 is needed $2"
}
# Builds with cargo (release) and checks BINARY came out of it.
build_release() {  # LABEL BINARY cargo-build-args...
  local label=$1 binary=$2
  shift 2
  say "building $label (release)"
  cargo build --release -q "$@"
  [ -x "$binary" ] || die "$binary was not built"
}

# Sets up a benchmark of reprise in front of nginx: nginx, wrk and h2load
# installed (scripts/install-nginx.sh), python3 found, and $reprise set:
# REPRISE if given, else target/release/reprise, built now.
reprise_and_nginx() {
  reprise=${REPRISE:-$root/target/release/reprise}
  scripts/install-nginx.sh
  require_tool python3 "to pick ports and summarise results"
  if [ -z "${REPRISE:-}" ]; then
    build_release reprise "$reprise" -p reprise-cli
  fi
  [ -x "$reprise" ] || die "$reprise was not built"
}

# --- the temporary folder and the cleanup ------------------------------------
# Everything a script starts is recorded here, so that cleanup can stop it
# however the script ends.
dir=
declare -A server_pid=()  # NAME -> pid of a server started by start_server
nginx_pid=
load_pid=                 # a load generator (or replay) running, see run_load

# Makes the temporary folder, $dir (reprise-NAME-bench.XXXXXX), and has
# cleanup run on any exit: done, failed or interrupted.
make_work_dir() {  # NAME
  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  dir=$(mktemp -d "${TMPDIR:-/tmp}/reprise-$1-bench.XXXXXX")
}
cleanup() {
  local status=$? name i
  set +e
  # A load generator interrupted mid-run: the terminal's Ctrl-C reaches it
  # too, but a TERM sent to the script alone does not.
  if [ -n "$load_pid" ]; then
    kill -TERM "$load_pid" 2>/dev/null
    for ((i = 0; i < 50; i++)); do kill -0 "$load_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$load_pid" 2>/dev/null
    wait "$load_pid" 2>/dev/null
  fi
  for name in "${!server_pid[@]}"; do stop_server "$name"; done
  if [ -n "$dir" ] && [ -f "$dir/nginx.pid" ]; then
    nginx_pid=$(cat "$dir/nginx.pid" 2>/dev/null)
  fi
  if [ -n "$nginx_pid" ]; then
    kill -TERM "$nginx_pid" 2>/dev/null   # nginx's fast shutdown, as `nginx -s stop`
    for ((i = 0; i < 100; i++)); do kill -0 "$nginx_pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$nginx_pid" 2>/dev/null && kill -KILL "$nginx_pid" 2>/dev/null
  fi
  if [ -n "$dir" ]; then rm -rf "$dir"; fi
  exit "$status"
}

# Starts a server in the background as NAME, its stderr in $dir/NAME.log.
start_server() {  # NAME command...
  local name=$1
  shift
  "$@" 2>"$dir/$name.log" &
  server_pid[$name]=$!
}
# Sends SIGTERM to server NAME and waits (at most SECONDS, 15 by default)
# for it to finish (flush, close its tape) and exit; prints a warning, with
# the end of its log, unless it exited 0. Returns its exit status.
stop_server() {  # NAME [SECONDS]
  local name=$1 seconds=${2:-15} pid=${server_pid[$1]:-} status=0 i
  [ -n "$pid" ] || return 0
  unset "server_pid[$name]"
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < seconds * 10; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    warn "$server_program ($name) still running $seconds s after SIGTERM; killing it"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || status=$?
  if [ "$status" -ne 0 ]; then
    warn "$server_program ($name) exited with status $status after SIGTERM; its log:"
    tail -n 20 "$dir/$name.log" >&2 || true
  fi
  return "$status"
}
# Runs one command in the background, so that cleanup can stop it, and
# waits for it; returns its exit status. Redirect the call to place its
# output.
run_load() {  # command...
  local status=0
  "$@" &
  load_pid=$!
  wait "$load_pid" || status=$?
  load_pid=
  return "$status"
}

# COUNT free ports on 127.0.0.1, on one line; held together while chosen,
# so they differ.
free_ports() {  # COUNT
  python3 - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}

# --- nginx: the backend ------------------------------------------------------
# What nginx serves and writes: $dir/www/hello.json, a 1 KiB JSON body
# (exactly 1024 bytes) that names BENCHMARK, and $dir/tmp for its
# temporary files.
nginx_files() {  # BENCHMARK
  # nginx's workers may run as another user (nobody): they must reach the file.
  chmod 755 "$dir"
  mkdir -p "$dir/www" "$dir/tmp"
  python3 - "$dir/www/hello.json" "$1" <<'PY'
import json, sys
doc = {"message": f"hello from the reprise {sys.argv[2]} benchmark", "items": list(range(8)), "pad": ""}
doc["pad"] = "x" * (1024 - len(json.dumps(doc, separators=(",", ":"))))
text = json.dumps(doc, separators=(",", ":"))
assert len(text) == 1024, len(text)
open(sys.argv[1], "w").write(text)
PY
}
# Sets nginx_version, e.g. 1.22.1.
nginx_detect() {
  nginx_version=$("$nginx" -v 2>&1 | sed -n 's|.*nginx/\([0-9.]*\).*|\1|p')
  [ -n "$nginx_version" ] || die "cannot tell nginx's version from: $("$nginx" -v 2>&1)"
}
version_at_least() { [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n 1)" = "$2" ]; }
# The nginx.conf of $dir: one worker, no access log, connections kept for
# the whole run, and $dir/www on PORT (HTTP/1.1) and H2_PORT (h2c, HTTP/2
# with prior knowledge). MORE (more servers) ends the http block.
nginx_conf() {  # PORT H2_PORT [MORE]
  local h2_listen
  # nginx 1.25.1 made `http2 on;` the way to enable HTTP/2; older ones take
  # `http2` as a listen parameter.
  if version_at_least "$nginx_version" 1.25.1; then
    h2_listen="listen 127.0.0.1:$2;
        http2 on;"
  else
    h2_listen="listen 127.0.0.1:$2 http2;"
  fi
  cat <<EOF
daemon on;
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events {
    worker_connections 4096;
}
http {
    access_log off;
    default_type application/json;
    types { application/json json; }
    client_body_temp_path $dir/tmp/client_body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    # No connection recycling after 1000 requests (nginx's default): the
    # load generators keep their connections for the whole run.
    keepalive_requests 100000000;
    keepalive_timeout 75s;

    # HTTP/1.1
    server {
        listen 127.0.0.1:$1;
        root $dir/www;
        location / { }
    }
    # h2c (HTTP/2 with prior knowledge)
    server {
        $h2_listen
        root $dir/www;
        location / { }
    }
${3:-}
}
EOF
}
# nginx as the reference reverse proxy, as server blocks (for
# nginx_conf's MORE, or nginx_proxy_conf): PORT forwards to the backend on
# BACKEND_PORT over kept HTTP/1.1 connections.
nginx_reverse_proxy() {  # PORT BACKEND_PORT
  cat <<NGINX
    upstream be {
        server 127.0.0.1:$2;
        keepalive 64;
        keepalive_requests 100000000;
    }
    server {
        listen 127.0.0.1:$1;
        location / {
            proxy_pass http://be;
            proxy_http_version 1.1;
            proxy_set_header Connection '';
        }
    }
NGINX
}
# The reverse proxy as an nginx of its own: a whole nginx.conf, in the
# foreground, one process (`master_process off`) that is its only worker,
# its files named after NAME in $dir. Start it with start_nginx_proxy.
# A process of its own, as reprise is, so that its CPU time is its own
# (as a server block of the backend's nginx it shares one worker with the
# backend; measured that way it was also 10 % slower).
nginx_proxy_conf() {  # PORT BACKEND_PORT NAME
  mkdir -p "$dir/tmp/$3"
  cat <<NGINX
daemon off;
master_process off;
worker_processes 1;
pid $dir/$3.pid;
error_log $dir/$3-error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $dir/tmp/$3;
    proxy_temp_path $dir/tmp/$3;
    fastcgi_temp_path $dir/tmp/$3;
    uwsgi_temp_path $dir/tmp/$3;
    scgi_temp_path $dir/tmp/$3;
    keepalive_requests 100000000;
    keepalive_timeout 75s;
$(nginx_reverse_proxy "$1" "$2")
}
NGINX
}
# Writes $dir/NAME.conf (nginx_proxy_conf: PORT to BACKEND_PORT) and sets
# nginx_proxy_cmd to the command that runs it in the foreground.
nginx_proxy_command() {  # NAME PORT BACKEND_PORT
  nginx_proxy_conf "$2" "$3" "$1" >"$dir/$1.conf"
  nginx_proxy_cmd=("$nginx" -p "$dir" -c "$dir/$1.conf")
  # -e (the log used before the config is read) exists from nginx 1.19.5.
  if version_at_least "$nginx_version" 1.19.5; then nginx_proxy_cmd+=(-e "$dir/$1-error.log"); fi
  "${nginx_proxy_cmd[@]}" -t -q || die "nginx rejected $dir/$1.conf"
}
# Starts server NAME: an nginx of its own proxying PORT to BACKEND_PORT.
start_nginx_proxy() {  # NAME PORT BACKEND_PORT
  nginx_proxy_command "$@"
  start_server "$1" "${nginx_proxy_cmd[@]}"
}
# The backend: nginx_conf's nginx (PORT, H2_PORT, MORE server blocks),
# started, with nginx_version and nginx_pid set.
start_nginx_backend() {  # PORT H2_PORT [MORE]
  nginx_detect
  nginx_conf "$@" >"$dir/nginx.conf"
  say "starting nginx $nginx_version (HTTP/1.1 :$1, h2c :$2)"
  start_nginx
}
# Starts nginx with $dir/nginx.conf and sets nginx_pid.
start_nginx() {
  local flags=(-p "$dir" -c "$dir/nginx.conf") i
  # -e (the log used before the config is read) exists from nginx 1.19.5.
  if version_at_least "$nginx_version" 1.19.5; then flags+=(-e "$dir/error.log"); fi
  "$nginx" "${flags[@]}" -t -q || die "nginx rejected $dir/nginx.conf"
  "$nginx" "${flags[@]}" || { cat "$dir/error.log" >&2 2>/dev/null; die "nginx did not start"; }
  for ((i = 0; i < 50; i++)); do [ -s "$dir/nginx.pid" ] && break; sleep 0.1; done
  nginx_pid=$(cat "$dir/nginx.pid" 2>/dev/null) || die "nginx wrote no pid file"
}

# Waits (at most $ready_seconds, 10 by default) until server NAME answers
# 200 for /hello.json on PORT; dies, with its log, if it exits first or
# never answers.
wait_ready() {  # NAME PORT [curl flags]
  local name=$1 port=$2 seconds=${ready_seconds:-10} i
  shift 2
  for ((i = 0; i < seconds * 10; i++)); do
    if curl -fsS -o /dev/null --max-time 1 "$@" "http://127.0.0.1:$port/hello.json" 2>/dev/null; then
      return 0
    fi
    if [ -n "${server_pid[$name]:-}" ] && ! kill -0 "${server_pid[$name]}" 2>/dev/null; then
      cat "$dir/$name.log" >&2
      die "($name) exited before answering on port $port"
    fi
    sleep 0.1
  done
  [ -f "$dir/$name.log" ] && cat "$dir/$name.log" >&2
  tail -n 20 "$dir/error.log" >&2 2>/dev/null || true
  die "($name) did not answer on 127.0.0.1:$port within $seconds s"
}
# wait_ready, then warms server NAME up with 1 s of wrk.
ready_and_warm() {  # NAME PORT
  wait_ready "$1" "$2"
  wrk -t2 -c64 -d1s "http://127.0.0.1:$2/hello.json" >/dev/null
}

# The three proxies most scripts compare, in front of one nginx backend
# (the 1 KiB /hello.json): (b) nginx as a reverse proxy, (c) `reprise
# record --sample 0` and (d) `reprise record`, FLAGS given to (c) and
# (d); each started, answering and warmed up. Sets targets=(b c d) and
# proxy_port[b|c|d].
declare -A proxy_port=()
start_b_c_d() {  # reprise record flags...
  local p_a p_a2 p_b p_c p_d t
  read -r p_a p_a2 p_b p_c p_d < <(free_ports 5) || die "could not pick free ports"
  start_nginx_backend "$p_a" "$p_a2"
  start_nginx_proxy b "$p_b" "$p_a"
  start_server c "$reprise" record --sample 0 "$@" --listen "127.0.0.1:$p_c" \
    --upstream "http://127.0.0.1:$p_a" --out "$dir/c.tape"
  start_server d "$reprise" record "$@" --listen "127.0.0.1:$p_d" \
    --upstream "http://127.0.0.1:$p_a" --out "$dir/d.tape"
  targets=(b c d)
  proxy_port=([b]=$p_b [c]=$p_c [d]=$p_d)
  for t in "${targets[@]}"; do
    ready_and_warm "$t" "${proxy_port[$t]}"
  done
}

# --- the report --------------------------------------------------------------
# The report's first line: the machine, and how busy it was at the start.
report_machine() {
  local cpu
  cpu=$(sed -n 's/^model name[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo | head -n 1)
  echo "- machine: $(nproc) CPUs, $(uname -srm), ${cpu:-unknown CPU}; load average at start $load_at_start (other work on the machine skews the numbers)"
}
# Versions as the reports print them: "wrk debian/4.1.0-3+b2",
# "h2load nghttp2/1.52.0".
wrk_version() { wrk --version 2>&1 | head -n 1 | awk '{print $1, $2}'; }
h2load_version() { h2load --version 2>&1 | head -n 1; }
