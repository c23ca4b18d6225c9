#!/bin/bash
# run.sh: what `make bench` runs. Runs netlua and its peers on the same work,
# one after another, on 127.0.0.1, appends every raw run to
# bench/results/<UTC stamp>.tsv (copied to bench/results/latest.tsv, the table
# to latest.md) and prints the table of medians and ratios (bench/report.lua).
# Quick or partial runs go to bench/results/dev.tsv instead.
#
#   bash bench/run.sh [path/to/netlua]
#   BENCH_QUICK=1   one short run of each (while developing)
#   BENCH_RUNS=N    runs per figure (default 3)
#   BENCH_ONLY="time echo echo1k http https tls_handshake tls_bulk ws_echo ws_idle sse_fanout
#               p2p_fanout download startup threads"
#                   a subset of workloads
#
# Servers are pinned to core 0 and the load generator to core 1 (taskset),
# started on a port chosen just before, stopped by PID, every step bounded in
# time. A runtime that is missing is recorded as "skipped: <reason>".
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
NETLUA=$(realpath "${1:-$ROOT/netlua}")
cd "$ROOT"
BIN=build/bench
LOADGEN=$BIN/loadgen

RUNS=${BENCH_RUNS:-3}; SECS=2; SPAWNS=1000; MSGS=100000; STARTS=20
BULK_MB=256
P2P_MB=200; P2P_PEERS=4   # p2p_fanout: one file of P2P_MB MiB from one peer to P2P_PEERS others
if [ -n "${BENCH_QUICK:-}" ]; then RUNS=1; SECS=1; SPAWNS=200; MSGS=20000; STARTS=5; BULK_MB=64; P2P_MB=50; fi
NODE_WS=$ROOT/build/npm/node_modules   # Node's ws, from `make deps`
ONLY=${BENCH_ONLY:-time echo echo1k http https tls_handshake tls_bulk ws_echo ws_idle sse_fanout p2p_fanout download startup threads}
CONC=100          # time server: concurrent clients
ECHO_CONNS=50     # echo: persistent connections
ECHO_MANY=1000    # echo1k: persistent connections (event-driven servers only)
MSG=64            # echo: message size
HTTP_CONNS=50     # http: wrk's keep-alive connections (two wrk threads)
HTTP_WORKERS=2    # http: the multi-worker rows (netlua workers=N, nginx worker_processes N)
HS_CONNS=50       # tls_handshake: tlsload's concurrent clients (one thread each)
NFILES=200        # download: files
FILE_KB=100       # download: size of each
DL_THREADS=8      # download: netlua --threads
WS_IDLE=1000      # ws_idle: idle WebSockets the server holds
SSE_SUBS=10000    # sse_fanout: subscribers of the one event
HZ=$(getconf CLK_TCK)

if [ "$(nproc)" -ge 2 ]; then PIN_SRV="taskset -c 0"; PIN_CLI="taskset -c 1"
else PIN_SRV=""; PIN_CLI=""; echo "note: one CPU, server and client not pinned" >&2; fi

TMP=$(mktemp -d /tmp/netlua-bench.XXXXXX)
SERVER_PID=""
FAILED=""         # set when a run saw errors that must not pass silently
cleanup() {
  [ -n "$SERVER_PID" ] && stop_server
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p bench/results
# Only a full run (no BENCH_QUICK, no BENCH_ONLY) becomes a results file.
FULL=1
[ -n "${BENCH_QUICK:-}" ] || [ -n "${BENCH_ONLY:-}" ] && FULL=""
RAW=bench/results/$STAMP.tsv
[ -n "$FULL" ] || RAW=bench/results/dev.tsv
CPU=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
{
  echo "# netlua bench $STAMP runs=$RUNS secs=$SECS quick=${BENCH_QUICK:-0}"
  echo "# machine: $(nproc) cpus, $CPU, $(uname -sr), $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
  echo "# netlua: $(git -C "$ROOT" describe --always --dirty 2>/dev/null)"
  printf 'workload\truntime\tmetric\tbetter\trun\tvalue\n'
} > "$RAW"

# record WORKLOAD RUNTIME METRIC hi|lo RUN VALUE
record() { printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >> "$RAW"; }
# skip WORKLOAD RUNTIME REASON
skip() {
  record "$1" "$2" skipped - - "$3"
  echo "  $2: skipped: $3" >&2
}
# result KEY LINE: the value of KEY=... in a RESULT line
result() { sed -n "s/.*[ ]$1=\([^ ]*\).*/\1/p" <<< "$2"; }
have() { command -v "$1" >/dev/null 2>&1; }

# ---- servers ----------------------------------------------------------------

# cpu_ticks PID: user+system time of the whole process (all its threads)
cpu_ticks() { awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
# rss_kib PID VmRSS|VmHWM
rss_kib() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }
# children PID: the PIDs of its child processes
children() { cat /proc/"$1"/task/*/children 2>/dev/null; }
# tree_cpu_ticks / tree_rss_kib PID [VmRSS|VmHWM]: the same summed over the
# process and its children (a server with worker processes)
tree_cpu_ticks() {
  local p t=0
  for p in "$1" $(children "$1"); do t=$((t + $(cpu_ticks "$p" 2>/dev/null || echo 0))); done
  echo "$t"
}
tree_rss_kib() {
  local p t=0
  for p in "$1" $(children "$1"); do t=$((t + $(rss_kib "$p" "$2" 2>/dev/null || echo 0))); done
  echo "$t"
}

# start_server NAME CMD...: "{PORT}" in CMD becomes a free port; sets PORT, SERVER_PID
start_server() {
  local name=$1; shift
  PORT=$($LOADGEN freeport)
  local args=() a
  for a in "$@"; do args+=("${a//\{PORT\}/$PORT}"); done
  $PIN_SRV "${args[@]}" > "$TMP/$name.out" 2> "$TMP/$name.err" &
  SERVER_PID=$!
  if ! $LOADGEN wait "$PORT" 10 2>/dev/null || ! kill -0 "$SERVER_PID" 2>/dev/null; then
    echo "  $name: did not start: $(head -c 300 "$TMP/$name.err")" >&2
    stop_server
    return 1
  fi
  sleep 0.2   # settle before reading the idle RSS
}

# stop_server: TERM, then KILL after 2 s, by PID; a server that ignored TERM
# has its child processes (nginx's workers) killed with it
stop_server() {
  local i
  kill "$SERVER_PID" 2>/dev/null
  for i in $(seq 20); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -9 $(children "$SERVER_PID") "$SERVER_PID" 2>/dev/null
  fi
  wait "$SERVER_PID" 2>/dev/null
  SERVER_PID=""
}

# load WORKLOAD RUNTIME RUN UNIT MODE ARGS...: one loaded run against the server
# that start_server left running; records rate, latency, CPU and RSS.
load() {
  local w=$1 rt=$2 run=$3 unit=$4; shift 4
  local idle c0 c1 line ops
  idle=$(rss_kib "$SERVER_PID" VmRSS)
  c0=$(cpu_ticks "$SERVER_PID")
  local mode=$1; shift
  local gen=("$LOADGEN" "$mode")
  [ "$mode" = tls ] && gen=("$BIN/tlsload")   # tlsload PORT CONNS SECS
  line=$(timeout -k 2 $((SECS + 20)) $PIN_CLI "${gen[@]}" "$PORT" "$@")
  c1=$(cpu_ticks "$SERVER_PID" 2>/dev/null)
  ops=$(result ops "$line")
  if [ -z "$line" ] || [ -z "$c1" ] || [ "${ops:-0}" = 0 ]; then
    echo "  $rt: run $run failed: ${line:-no result} $(head -c 300 "$TMP/$rt.err")" >&2
    return 1
  fi
  record "$w" "$rt" "${unit}_per_s" hi "$run" "$(result rate "$line")"
  record "$w" "$rt" p50_us lo "$run" "$(result p50_us "$line")"
  record "$w" "$rt" p99_us lo "$run" "$(result p99_us "$line")"
  record "$w" "$rt" "cpu_us_per_$unit" lo "$run" \
    "$(awk -v d=$((c1 - c0)) -v hz="$HZ" -v n="$ops" 'BEGIN { printf "%.2f", d / hz * 1e6 / n }')"
  record "$w" "$rt" idle_rss_kib lo "$run" "$idle"
  record "$w" "$rt" peak_rss_kib lo "$run" "$(rss_kib "$SERVER_PID" VmHWM)"
  record "$w" "$rt" errors lo "$run" "$(result errors "$line")"
  echo "  $rt run $run: $line" >&2
}

# bench_server WORKLOAD RUNTIME UNIT LOADARGS -- SERVER CMD...
bench_server() {
  local w=$1 rt=$2 unit=$3; shift 3
  local largs=()
  while [ "$1" != "--" ]; do largs+=("$1"); shift; done
  shift
  local run ok=0
  for run in $(seq "$RUNS"); do
    start_server "$rt" "$@" || { skip "$w" "$rt" "server did not start"; return; }
    load "$w" "$rt" "$run" "$unit" "${largs[@]}" && ok=$((ok + 1))
    stop_server
  done
  [ "$ok" -gt 0 ] || skip "$w" "$rt" "every run failed (see the log above)"
}

# ---- which runtimes are there ------------------------------------------------

netlua_has_mods() {   # netlua_has_mods MOD...: "" or the reason it cannot run
  local m
  [ -x "$NETLUA" ] || { echo "no netlua binary at $NETLUA"; return; }
  for m in "$@"; do
    "$NETLUA" -e "require '$m'" >/dev/null 2>&1 || { echo "netlua has no '$m' module yet"; return; }
  done
}
lua_socket_missing() {
  have lua5.4 || { echo "lua5.4 not installed (make bench-deps)"; return; }
  lua5.4 -e 'require "socket"' >/dev/null 2>&1 || echo "lua-socket not installed (make bench-deps)"
}

server_workload() {   # server_workload time|echo
  local w=$1 unit largs why
  if [ "$w" = time ]; then unit=conn; largs=(time "$CONC" "$SECS")
  else unit=rt; largs=(echo "$ECHO_CONNS" "$SECS" "$MSG"); fi
  echo "== $w" >&2
  bench_server "$w" c-epoll "$unit" "${largs[@]}" -- $BIN/cserver "$w" "{PORT}"
  if [ "$w" = time ]; then
    # the C server doing the script's work too: a log line per client
    bench_server time c-epoll-log conn "${largs[@]}" -- $BIN/cserver timelog "{PORT}"
    why=$(netlua_has_mods socket)
    [ -z "$why" ] && [ ! -f scripts/timeserver.lua ] && why="no scripts/timeserver.lua yet"
    if [ -z "$why" ]; then bench_server time netlua conn "${largs[@]}" -- "$NETLUA" scripts/timeserver.lua 127.0.0.1 {PORT}
    else skip time netlua "$why"; fi
  else
    why=$(netlua_has_mods socket thread)
    if [ -z "$why" ]; then bench_server echo netlua-threads rt "${largs[@]}" -- "$NETLUA" bench/servers/echo_netlua.lua {PORT}
    else skip echo netlua-threads "$why"; fi
    echo_traced netlua-threads-trace "${largs[@]}" -- bench/servers/echo_netlua.lua {PORT}
    why=$(netlua_has_mods socket task)
    if [ -z "$why" ]; then bench_server echo netlua-tasks rt "${largs[@]}" -- "$NETLUA" scripts/echoserver.lua 127.0.0.1 {PORT} --quiet
    else skip echo netlua-tasks "$why"; fi
    echo_traced netlua-tasks-trace "${largs[@]}" -- scripts/echoserver.lua 127.0.0.1 {PORT} --quiet
    why=$(netlua_has_mods socket)
    if [ -z "$why" ]; then bench_server echo netlua-select rt "${largs[@]}" -- "$NETLUA" bench/servers/echo_luasocket.lua {PORT}
    else skip echo netlua-select "$why"; fi
  fi
  if have python3; then bench_server "$w" python "$unit" "${largs[@]}" -- python3 "bench/servers/$w.py" {PORT}
  else skip "$w" python "python3 not installed"; fi
  if have node; then bench_server "$w" node "$unit" "${largs[@]}" -- node "bench/servers/$w.js" {PORT}
  else skip "$w" node "nodejs not installed (make bench-deps)"; fi
  why=$(lua_socket_missing)
  if [ -z "$why" ]; then bench_server "$w" luasocket "$unit" "${largs[@]}" -- lua5.4 "bench/servers/${w}_luasocket.lua" {PORT}
  else skip "$w" luasocket "$why"; fi
}

# An echo row of netlua with --trace on, to a file in the run's temporary
# directory, run right after the same server with tracing off (the row
# before it), so both meet the same machine: what tracing costs. Each run
# truncates the file (a full one holds about 10 MB of JSON lines).
#   echo_traced RUNTIME SERVER_ARGS... (-- between load and server args)
echo_traced() {
  local rt=$1 why largs=() trace=(--trace=jsonl --trace-file "$TMP/echo.trace.jsonl")
  shift
  while [ "$1" != "--" ]; do largs+=("$1"); shift; done
  shift
  why=$(netlua_has_mods socket thread task)
  [ -z "$why" ] && ! "$NETLUA" "${trace[@]}" -e '' 2>/dev/null && why="netlua has no --trace"
  if [ -z "$why" ]; then bench_server echo "$rt" rt "${largs[@]}" -- "$NETLUA" "${trace[@]}" "$@"
  else skip echo "$rt" "$why"; fi
  rm -f "$TMP/echo.trace.jsonl"
}

# echo1k: 1,000 persistent connections, for the servers that serve them from
# one event loop (thread-per-connection and select()-based ones are left out:
# a thousand threads, FD_SETSIZE).
server_echo_many() {
  local largs=(echo "$ECHO_MANY" "$SECS" "$MSG") why
  echo "== echo1k" >&2
  bench_server echo1k c-epoll rt "${largs[@]}" -- $BIN/cserver echo "{PORT}"
  why=$(netlua_has_mods socket task)
  if [ -z "$why" ]; then bench_server echo1k netlua-tasks rt "${largs[@]}" -- "$NETLUA" scripts/echoserver.lua 127.0.0.1 {PORT} --quiet
  else skip echo1k netlua-tasks "$why"; fi
  if have node; then bench_server echo1k node rt "${largs[@]}" -- node bench/servers/echo.js {PORT}
  else skip echo1k node "nodejs not installed (make bench-deps)"; fi
}

# ---- http ----------------------------------------------------------------------

# us VALUE: wrk's latency ("412.00us", "1.25ms", "1.02s") in microseconds
us() {
  awk -v v="$1" 'BEGIN {
    n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
    if (u == "ms") n *= 1e3; else if (u == "s") n *= 1e6; else if (u == "m") n *= 6e7
    printf "%.0f", n }'
}

# wrk_errors OUT: the responses that were not 2xx/3xx plus wrk's socket errors
# (connect, read, write, timeout), 0 when there were none
wrk_errors() {
  awk '/Non-2xx or 3xx responses:/ { n += $NF }
       /Socket errors:/ { gsub(/,/, ""); n += $4 + $6 + $8 + $10 }
       END { print n + 0 }' "$1"
}

# http_load WORKLOAD SCHEME RUNTIME RUN: one wrk run on SCHEME://127.0.0.1:PORT/
# against the server start_server left running; records requests/s, p50/p99,
# CPU per request (the server and its child processes), RSS. Any error or
# non-2xx response fails the bench.
http_load() {
  local w=$1 scheme=$2 rt=$3 run=$4 out="$TMP/wrk.out" c0 c1 idle reqs errs
  idle=$(tree_rss_kib "$SERVER_PID" VmRSS)
  c0=$(tree_cpu_ticks "$SERVER_PID")
  timeout -k 2 $((SECS + 20)) $PIN_CLI wrk -t2 -c"$HTTP_CONNS" -d"${SECS}s" --latency \
    "$scheme://127.0.0.1:$PORT/" > "$out" 2>&1
  c1=$(tree_cpu_ticks "$SERVER_PID")
  reqs=$(awk '/ requests in / { print $1 }' "$out")
  errs=$(wrk_errors "$out")
  if [ -z "$reqs" ] || [ "$reqs" = 0 ] || ! kill -0 "$SERVER_PID" 2>/dev/null; then
    echo "  $rt: run $run failed: $(tr '\n' ' ' < "$out" | head -c 300) $(head -c 300 "$TMP/$rt.err")" >&2
    FAILED="$FAILED $w/$rt"
    return 1
  fi
  record "$w" "$rt" req_per_s hi "$run" "$(awk '/^Requests\/sec:/ { printf "%.0f", $2 }' "$out")"
  record "$w" "$rt" p50_us lo "$run" "$(us "$(awk '$1 == "50%" { print $2 }' "$out")")"
  record "$w" "$rt" p99_us lo "$run" "$(us "$(awk '$1 == "99%" { print $2 }' "$out")")"
  record "$w" "$rt" cpu_us_per_req lo "$run" \
    "$(awk -v d=$((c1 - c0)) -v hz="$HZ" -v n="$reqs" 'BEGIN { printf "%.2f", d / hz * 1e6 / n }')"
  record "$w" "$rt" idle_rss_kib lo "$run" "$idle"
  record "$w" "$rt" peak_rss_kib lo "$run" "$(tree_rss_kib "$SERVER_PID" VmHWM)"
  record "$w" "$rt" errors lo "$run" "$errs"
  echo "  $rt run $run: $reqs requests, $(grep -E '^Requests/sec|Socket errors|Non-2xx' "$out" | tr -s ' \n' ' ')" >&2
  if [ "$errs" != 0 ]; then
    echo "  $rt run $run: FAIL: $errs socket errors or non-2xx responses:" >&2
    sed 's/^/    /' "$out" >&2
    FAILED="$FAILED $w/$rt"
  fi
}

# bench_http WORKLOAD http|https RUNTIME SERVER CMD...: RUNS runs, each
# against a fresh server
bench_http() {
  local w=$1 scheme=$2 rt=$3 run ok=0; shift 3
  for run in $(seq "$RUNS"); do
    start_server "$rt" "$@" || { skip "$w" "$rt" "server did not start"; return; }
    [ "$scheme" = https ] && [ "$run" = 1 ] && tls_params "$rt"
    http_load "$w" "$scheme" "$rt" "$run" && ok=$((ok + 1))
    stop_server
  done
  [ "$ok" -gt 0 ] || skip "$w" "$rt" "every run failed (see the log above)"
}

# nginx_hello_conf WORKERS [CERT KEY]: `return 200 "hello\n"` on
# 127.0.0.1:@PORT@ (over TLS with CERT and KEY when given: TLS 1.2 and 1.3
# as netlua's and Node's defaults, where nginx 1.22's own stop at 1.2), every
# path nginx writes under $TMP/nginx-hello (runs as non-root); one worker runs
# in the master process (master_process off), more as worker processes
nginx_hello_conf() {
  local d=$TMP/nginx-hello t temps=""
  for t in client_body proxy fastcgi uwsgi scgi; do
    nginx -V 2>&1 | grep -q -- "--without-http_${t}_module" && continue
    [ "$t" = client_body ] && temps="$temps client_body_temp_path $d/body;" && continue
    temps="$temps ${t}_temp_path $d/$t;"
  done
  cat <<CONF
daemon off; master_process $([ "$1" = 1 ] && echo off || echo on); worker_processes $1;
pid $d/nginx.pid; error_log $d/error.log warn;
events { worker_connections 1024; }
http {
  access_log off; keepalive_requests 10000000; keepalive_timeout 5s;
  $temps
  server {
    listen 127.0.0.1:@PORT@${2:+ ssl};${2:+ ssl_certificate $2; ssl_certificate_key $3; ssl_protocols TLSv1.2 TLSv1.3;}
    location = / { default_type text/plain; return 200 "hello\n"; }
  }
}
CONF
}

# nginx_hello_cmd NAME: sets NGINX_CMD to the command that starts nginx on
# $TMP/nginx-hello/NAME.in with {PORT} filled in (for start_server)
nginx_hello_cmd() {
  local d=$TMP/nginx-hello
  NGINX_CMD=(sh -c "sed 's/@PORT@/{PORT}/' $d/$1.in > $d/$1.conf &&
    exec nginx -e $d/error.log -p $d -c $d/$1.conf")
}

# netlua_http_workers: "" when http.server takes `workers = N`, else why not
netlua_http_workers() {
  "$NETLUA" -e 'local http = require "http"
    local ok, srv = pcall(http.server, {port = 0, workers = 2})
    if not ok then io.stderr:write(tostring(srv)) os.exit(1) end
    if srv then srv:close() end' >/dev/null 2>&1 ||
    echo "http.server has no 'workers' option yet"
}

http_workload() {
  echo "== http" >&2
  local why w=$HTTP_WORKERS rt n
  if ! have wrk; then
    for rt in netlua netlua-w$w node nginx-w1 nginx-w$w; do skip http "$rt" "wrk not installed (make bench-deps)"; done
    return
  fi
  why=$(netlua_has_mods http)
  if [ -z "$why" ]; then bench_http http http netlua "$NETLUA" bench/servers/http_hello.lua {PORT}
  else skip http netlua "$why"; fi
  [ -z "$why" ] && why=$(netlua_http_workers)
  if [ -z "$why" ]; then bench_http http http netlua-w$w "$NETLUA" bench/servers/http_hello.lua {PORT} "$w"
  else skip http netlua-w$w "$why"; fi
  if have node; then bench_http http http node node bench/servers/http_hello.js {PORT}
  else skip http node "nodejs not installed (make bench-deps)"; fi
  if have nginx; then
    mkdir -p "$TMP/nginx-hello"
    for n in 1 "$w"; do
      nginx_hello_conf "$n" > "$TMP/nginx-hello/w$n.in"
      nginx_hello_cmd "w$n"
      bench_http http http nginx-w$n "${NGINX_CMD[@]}"
    done
  else
    skip http nginx-w1 "nginx not installed (make bench-deps)"
    skip http nginx-w$w "nginx not installed (make bench-deps)"
  fi
}

# ---- tls: https, tls_handshake, tls_bulk ----------------------------------------

# tls_cert: one certificate for every TLS server of the run (an EC P-256 key
# signed by a local CA, scripts/makecert.sh), made on first use; sets CERT, KEY
tls_cert() {
  CERT=$TMP/tls/server.pem KEY=$TMP/tls/server.key
  [ -f "$CERT" ] || sh scripts/makecert.sh "$TMP/tls" > /dev/null 2> "$TMP/makecert.err" ||
    { echo "  makecert.sh failed: $(head -c 300 "$TMP/makecert.err")" >&2; return 1; }
}

# tls_params RUNTIME: the protocol, cipher suite and group the server on PORT
# negotiates with an OpenSSL client, into the log
tls_params() {
  echo "  $1: $(openssl s_client -connect "127.0.0.1:$PORT" < /dev/null 2> /dev/null |
    awk '/^New,/ { p = $2 " " $NF } /^Server Temp Key:/ { g = $4 } END { print p, g }' | tr -d ,)" >&2
}

# tlsload_build: "" once build/bench/tlsload is up to date, else why not
tlsload_build() {
  [ "$BIN/tlsload" -nt bench/tlsload.c ] && return
  mkdir -p "$BIN"
  cc -std=c11 -D_GNU_SOURCE -Wall -Wextra -O2 -o "$BIN/tlsload" bench/tlsload.c \
    -lssl -lcrypto -lpthread > "$TMP/tlsload.err" 2>&1 ||
    echo "bench/tlsload.c did not build: $(head -c 200 "$TMP/tlsload.err" | tr '\n' ' ')"
}

# https and tls_handshake: the hello servers over TLS on the run's certificate
tls_hello_servers() {   # tls_hello_servers WORKLOAD RUNNER...: RUNNER RUNTIME CMD...
  local w=$1 why; shift
  why=$(netlua_has_mods http ssl)
  if [ -z "$why" ]; then "$@" netlua "$NETLUA" bench/servers/https_hello.lua {PORT} "$CERT" "$KEY"
  else skip "$w" netlua "$why"; fi
  if have node; then "$@" node node bench/servers/https_hello.js {PORT} "$CERT" "$KEY"
  else skip "$w" node "nodejs not installed (make bench-deps)"; fi
  if have nginx; then
    mkdir -p "$TMP/nginx-hello"
    nginx_hello_conf 1 "$CERT" "$KEY" > "$TMP/nginx-hello/tls.in"
    nginx_hello_cmd tls
    "$@" nginx-w1 "${NGINX_CMD[@]}"
  else skip "$w" nginx-w1 "nginx not installed (make bench-deps)"; fi
}

https_workload() {
  echo "== https" >&2
  local rt why=""
  have wrk || why="wrk not installed (make bench-deps)"
  [ -z "$why" ] && { tls_cert || why="scripts/makecert.sh failed"; }
  if [ -n "$why" ]; then
    for rt in netlua node nginx-w1; do skip https "$rt" "$why"; done
    return
  fi
  tls_hello_servers https bench_http https https
}

# tls_handshake: bench/tlsload, HS_CONNS threads each making connection after
# connection, each a full handshake (no session offered) and one request with
# "Connection: close"
tls_handshake_workload() {
  echo "== tls_handshake" >&2
  local rt why
  why=$(tlsload_build)
  [ -z "$why" ] && { tls_cert || why="scripts/makecert.sh failed"; }
  if [ -n "$why" ]; then
    for rt in netlua node nginx-w1; do skip tls_handshake "$rt" "$why"; done
    return
  fi
  hs_server() { bench_server tls_handshake "$1" handshake tls "$HS_CONNS" "$SECS" -- "${@:2}"; }
  tls_hello_servers tls_handshake hs_server
}

# bulk_load RUNTIME RUN: one download of $TMP/bulk/data (BULK_MB MiB) with
# curl over one TLS connection from the server start_server left running;
# records MiB/s (curl's total time, handshake included) and the server's CPU
# per MiB. A short or failed transfer fails the bench.
bulk_load() {
  local rt=$1 run=$2 c0 c1 line code size secs bytes=$((BULK_MB * 1048576))
  c0=$(tree_cpu_ticks "$SERVER_PID")
  line=$(timeout -k 2 120 $PIN_CLI curl -sSk -o /dev/null -w '%{http_code} %{size_download} %{time_total}' \
    "https://127.0.0.1:$PORT/data" 2> "$TMP/curl.err")
  c1=$(tree_cpu_ticks "$SERVER_PID")
  read -r code size secs <<< "$line"
  if [ "$code" != 200 ] || [ "$size" != "$bytes" ]; then
    echo "  $rt: run $run failed: curl: ${line:-no result} $(head -c 300 "$TMP/curl.err") $(head -c 300 "$TMP/$rt.err")" >&2
    FAILED="$FAILED tls_bulk/$rt"
    return 1
  fi
  record tls_bulk "$rt" mib_per_s hi "$run" "$(awk -v b="$bytes" -v s="$secs" 'BEGIN { printf "%.1f", b / 1048576 / s }')"
  record tls_bulk "$rt" cpu_us_per_mib lo "$run" \
    "$(awk -v d=$((c1 - c0)) -v hz="$HZ" -v m="$BULK_MB" 'BEGIN { printf "%.1f", d / hz * 1e6 / m }')"
  record tls_bulk "$rt" peak_rss_kib lo "$run" "$(tree_rss_kib "$SERVER_PID" VmHWM)"
  echo "  $rt run $run: $size bytes in $secs s" >&2
}

bench_bulk() {   # bench_bulk RUNTIME SERVER CMD...
  local rt=$1 run ok=0; shift
  for run in $(seq "$RUNS"); do
    start_server "$rt" "$@" || { skip tls_bulk "$rt" "server did not start"; return; }
    [ "$run" = 1 ] && tls_params "$rt"
    bulk_load "$rt" "$run" && ok=$((ok + 1))
    stop_server
  done
  [ "$ok" -gt 0 ] || skip tls_bulk "$rt" "every run failed (see the log above)"
}

# tls_bulk: BULK_MB MiB of random bytes from server to client over one TLS
# connection: `openssl s_server -WWW` against bench/servers/tls_bulk.lua
tls_bulk_workload() {
  echo "== tls_bulk" >&2
  local rt why=""
  have curl || why="curl not installed"
  [ -z "$why" ] && { tls_cert || why="scripts/makecert.sh failed"; }
  if [ -n "$why" ]; then
    for rt in openssl netlua; do skip tls_bulk "$rt" "$why"; done
    return
  fi
  mkdir -p "$TMP/bulk"
  head -c $((BULK_MB * 1048576)) /dev/urandom > "$TMP/bulk/data"
  bench_bulk openssl sh -c "cd $TMP/bulk && exec openssl s_server -quiet -WWW \
    -accept 127.0.0.1:{PORT} -cert $CERT -key $KEY"
  why=$(netlua_has_mods ssl)
  if [ -z "$why" ]; then bench_bulk netlua "$NETLUA" bench/servers/tls_bulk.lua {PORT} "$CERT" "$KEY" "$TMP/bulk/data"
  else skip tls_bulk netlua "$why"; fi
  rm -f "$TMP/bulk/data"
}

# ---- browser: ws_echo, ws_idle, sse_fanout ------------------------------------

# ws_peers RUNNER...: RUNNER RUNTIME CMD... for each WebSocket echo server
# (bench/servers/ws_echo.*), or skips the runtime with the reason
ws_peers() {
  local w=$1 why; shift
  why=$(netlua_has_mods http)
  if [ -z "$why" ]; then "$@" netlua "$NETLUA" bench/servers/ws_echo.lua {PORT}
  else skip "$w" netlua "$why"; fi
  if ! have node; then skip "$w" node "nodejs not installed (make bench-deps)"
  elif [ ! -d "$NODE_WS/ws" ]; then skip "$w" node "Node's ws not installed (make deps)"
  else "$@" node env NODE_PATH="$NODE_WS" node bench/servers/ws_echo.js {PORT}; fi
  if /usr/bin/python3 -c 'import websockets' 2>/dev/null; then
    "$@" python /usr/bin/python3 bench/servers/ws_echo.py {PORT}
  else skip "$w" python "python3-websockets not installed (make bench-deps)"; fi
}

# ws_echo: ECHO_CONNS WebSockets, each sends a MSG-byte text frame and waits
# for its echo (loadgen ws), for SECS
ws_echo_workload() {
  echo "== ws_echo" >&2
  ws_echo_server() { bench_server ws_echo "$1" msg ws "$ECHO_CONNS" "$SECS" "$MSG" -- "${@:2}"; }
  ws_peers ws_echo ws_echo_server
}

# bench_ws_idle RUNTIME CMD...: RUNS servers, each given WS_IDLE idle WebSockets
# (loadgen wsidle: handshake and one round trip each); their RSS per connection
bench_ws_idle() {
  local rt=$1 run line ok=0; shift
  for run in $(seq "$RUNS"); do
    start_server "$rt" "$@" || { skip ws_idle "$rt" "server did not start"; return; }
    line=$(timeout -k 2 120 $PIN_CLI $LOADGEN wsidle "$PORT" "$WS_IDLE" "$SERVER_PID" 2> "$TMP/wsidle.err")
    if [ -n "$(result kib_per_conn " $line")" ]; then
      record ws_idle "$rt" kib_per_conn lo "$run" "$(result kib_per_conn " $line")"
      echo "  $rt run $run: $line" >&2
      ok=$((ok + 1))
    else
      echo "  $rt: run $run failed: $(head -c 300 "$TMP/wsidle.err") $(head -c 300 "$TMP/$rt.err")" >&2
    fi
    stop_server
  done
  [ "$ok" -gt 0 ] || skip ws_idle "$rt" "every run failed (see the log above)"
}

ws_idle_workload() {
  echo "== ws_idle" >&2
  ws_peers ws_idle bench_ws_idle
}

# nofile_for N: "" once this shell may open N descriptors more than it
# needs (ulimit -n raised to 30000, or as far as the hard limit allows), else why not
nofile_for() {
  ulimit -n 30000 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null
  [ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -ge $(($1 + 100)) ] ||
    echo "ulimit -n is $(ulimit -n) (hard $(ulimit -Hn)), $1 connections need more"
}

# sse_fanout: SSE_SUBS clients hold GET /events open on one netlua thread,
# then one POST /publish (loadgen sse): the time until the last has the event
sse_fanout_workload() {
  echo "== sse_fanout" >&2
  local why run line idle ok=0
  why=$(netlua_has_mods http task)
  [ -z "$why" ] && why=$(nofile_for "$SSE_SUBS")
  [ -z "$why" ] || { skip sse_fanout netlua "$why"; return; }
  for run in $(seq "$RUNS"); do
    start_server netlua "$NETLUA" bench/servers/sse_fanout.lua {PORT} $((SSE_SUBS + 100)) ||
      { skip sse_fanout netlua "server did not start"; return; }
    idle=$(rss_kib "$SERVER_PID" VmRSS)
    line=$(timeout -k 2 120 $PIN_CLI $LOADGEN sse "$PORT" "$SSE_SUBS" 2> "$TMP/sse.err")
    if [ -n "$(result last_ms "$line")" ] && [ "$(result errors "$line")" = 0 ]; then
      record sse_fanout netlua fanout_ms lo "$run" "$(result last_ms "$line")"
      record sse_fanout netlua p50_us lo "$run" "$(result p50_us "$line")"
      record sse_fanout netlua p99_us lo "$run" "$(result p99_us "$line")"
      record sse_fanout netlua kib_per_sub lo "$run" \
        "$(awk -v p="$(rss_kib "$SERVER_PID" VmHWM)" -v i="$idle" -v n="$SSE_SUBS" 'BEGIN { printf "%.2f", (p - i) / n }')"
      echo "  netlua run $run: $line" >&2
      ok=$((ok + 1))
    else
      echo "  netlua: run $run failed: ${line:-no result} $(head -c 300 "$TMP/sse.err") $(head -c 300 "$TMP/netlua.err")" >&2
      FAILED="$FAILED sse_fanout/netlua"
    fi
    stop_server
  done
  [ "$ok" -gt 0 ] || skip sse_fanout netlua "every run failed (see the log above)"
}

# ---- p2p: one file from one peer to four -----------------------------------------

# p2p_copy RUN: the reference, `loadgen copy`: the file over one loopback TCP
# connection from a plain C sender to a plain C receiver that writes it out
p2p_copy() {
  local run=$1 line
  rm -f "$TMP/p2p/copy"
  line=$(timeout -k 2 120 $LOADGEN copy "$TMP/p2p/data" "$TMP/p2p/copy" 2> "$TMP/c-copy.err")
  if [ "$(result bytes " $line")" != $((P2P_MB * 1048576)) ] || ! cmp -s "$TMP/p2p/data" "$TMP/p2p/copy"; then
    echo "  c-copy: run $run failed: ${line:-no result} $(head -c 300 "$TMP/c-copy.err")" >&2
    FAILED="$FAILED p2p_fanout/c-copy"
    return 1
  fi
  record p2p_fanout c-copy secs lo "$run" "$(result secs " $line")"
  record p2p_fanout c-copy cpu_s lo "$run" "$(result cpu_s " $line")"
  echo "  c-copy run $run: $line" >&2
}

# p2p_cfanout RUN: what this machine allows any fan-out: P2P_PEERS plain C
# copies at once, each receiver then hashing its copy and the sender its
# file (openssl dgst -sha256: OpenSSL's SHA-256, as p2p.lua's). With fewer
# cores than copies, this alone is several times one copy's time.
p2p_cfanout() {
  local run=$1 k times real user sys
  rm -f "$TMP/p2p/cf"*
  times=$( { TIMEFORMAT='%R %U %S'; time (
    for k in $(seq "$P2P_PEERS"); do
      ( timeout -k 2 120 $LOADGEN copy "$TMP/p2p/data" "$TMP/p2p/cf$k" > /dev/null &&
        openssl dgst -sha256 "$TMP/p2p/cf$k" > /dev/null ) &
    done
    openssl dgst -sha256 "$TMP/p2p/data" > /dev/null
    wait ); } 2>&1 )
  for k in $(seq "$P2P_PEERS"); do
    if ! cmp -s "$TMP/p2p/data" "$TMP/p2p/cf$k"; then
      echo "  c-fanout: run $run failed: copy $k differs ($times)" >&2
      FAILED="$FAILED p2p_fanout/c-fanout"
      return 1
    fi
  done
  read -r real user sys <<< "$times"
  record p2p_fanout c-fanout secs lo "$run" "$real"
  record p2p_fanout c-fanout cpu_s lo "$run" "$(awk -v u="$user" -v s="$sys" 'BEGIN { print u + s }')"
  echo "  c-fanout run $run: secs=$real cpu_s=$user+$sys" >&2
  rm -f "$TMP/p2p/cf"*
}

# p2p_netlua RUN: bench/p2p/fanout.lua: a seed peer and P2P_PEERS peers of
# scripts/p2p.lua, from the seed's start until all hold the verified file
p2p_netlua() {
  local run=$1 line
  line=$(timeout -k 2 150 "$NETLUA" bench/p2p/fanout.lua "$NETLUA" "$TMP/p2p/data" "$P2P_PEERS" \
    2> "$TMP/netlua.err")
  if [ -z "$(result secs " $line")" ]; then
    echo "  netlua: run $run failed: $(head -c 600 "$TMP/netlua.err")" >&2
    FAILED="$FAILED p2p_fanout/netlua"
    return 1
  fi
  record p2p_fanout netlua secs lo "$run" "$(result secs " $line")"
  record p2p_fanout netlua cpu_s lo "$run" "$(result cpu_s " $line")"
  echo "  netlua run $run: $line" >&2
}

# p2p_fanout: P2P_MB MiB of random bytes from one peer to P2P_PEERS others
# (the issue's target: within 2x of one plain copy). Not pinned: five peers.
p2p_fanout_workload() {
  echo "== p2p_fanout" >&2
  local run why ok=0
  mkdir -p "$TMP/p2p"
  head -c $((P2P_MB * 1048576)) /dev/urandom > "$TMP/p2p/data"
  for run in $(seq "$RUNS"); do p2p_copy "$run"; done
  if have openssl; then
    for run in $(seq "$RUNS"); do p2p_cfanout "$run"; done
  else
    skip p2p_fanout c-fanout "openssl not installed"
  fi
  why=$(netlua_has_mods task thread crypto json)
  [ -z "$why" ] && [ ! -f scripts/p2p.lua ] && why="no scripts/p2p.lua yet"
  if [ -n "$why" ]; then skip p2p_fanout netlua "$why"
  else
    for run in $(seq "$RUNS"); do p2p_netlua "$run" && ok=$((ok + 1)); done
    [ "$ok" -gt 0 ] || skip p2p_fanout netlua "every run failed (see the log above)"
  fi
  rm -rf "$TMP/p2p"
}

# ---- download ----------------------------------------------------------------

# make_site: NFILES files of FILE_KB KiB under $TMP/www/img and nginx's config
make_site() {
  mkdir -p "$TMP/www/img" "$TMP/nginx"
  local i
  for i in $(seq -f '%03g' "$NFILES"); do
    head -c $((FILE_KB * 1024)) /dev/urandom > "$TMP/www/img/$i.jpg"
  done
}

# write_index PORT: the tutorial's API shape, {"newslist": [{"picUrl": ...}]},
# and the same list as a curl config
write_index() {
  local i sep=""
  : > "$TMP/curl.cfg"
  {
    printf '{"code":200,"msg":"success","newslist":['
    for i in $(seq -f '%03g' "$NFILES"); do
      printf '%s{"title":"%s","picUrl":"http://127.0.0.1:%s/img/%s.jpg"}' "$sep" "$i" "$1" "$i"
      printf 'url = "http://127.0.0.1:%s/img/%s.jpg"\noutput = "%s/out/%s.jpg"\n' \
        "$1" "$i" "$TMP" "$i" >> "$TMP/curl.cfg"
      sep=,
    done
    printf ']}\n'
  } > "$TMP/www/api.json"
}

nginx_conf() {
  cat <<CONF
daemon off; master_process off; worker_processes 1;
pid $TMP/nginx/nginx.pid; error_log $TMP/nginx/error.log warn;
events { worker_connections 1024; }
http {
  access_log off; sendfile on; tcp_nopush on; keepalive_requests 100000;
  types { application/json json; image/jpeg jpg; }
  client_body_temp_path $TMP/nginx/body; proxy_temp_path $TMP/nginx/proxy;
  server { listen 127.0.0.1:@PORT@; root $TMP/www; }
}
CONF
}

# fetch RUNTIME RUN CMD...: one timed download into $TMP/out, checked complete
fetch() {
  local rt=$1 run=$2; shift 2
  rm -rf "$TMP/out"; mkdir -p "$TMP/out"
  local line n
  line=$(timeout -k 2 120 $PIN_CLI $LOADGEN run 1 "$@" 2> "$TMP/$rt.err")
  n=$(find "$TMP/out" -type f -size "$((FILE_KB * 1024))c" | wc -l)
  if [ -z "$line" ] || [ "$n" != "$NFILES" ]; then
    echo "  $rt: run $run failed ($n of $NFILES files): $(head -c 300 "$TMP/$rt.err")" >&2
    return 1
  fi
  record download "$rt" wall_ms lo "$run" "$(result median_ms "$line")"
  echo "  $rt run $run: $line" >&2
}

fetch_all() {   # fetch_all RUNTIME CMD...
  local run ok=0
  for run in $(seq "$RUNS"); do fetch "$1" "$run" "${@:2}" && ok=$((ok + 1)); done
  [ "$ok" -gt 0 ] || skip download "$1" "every run failed (see the log above)"
}

download_workload() {
  echo "== download" >&2
  local why api
  if ! have nginx; then
    for rt in curl netlua python node; do skip download "$rt" "nginx not installed (make bench-deps)"; done
    return
  fi
  make_site
  nginx_conf > "$TMP/nginx/conf.in"
  start_server nginx sh -c "sed 's/@PORT@/{PORT}/' $TMP/nginx/conf.in > $TMP/nginx/nginx.conf &&
    exec nginx -e $TMP/nginx/error.log -p $TMP/nginx -c $TMP/nginx/nginx.conf" ||
    { for rt in curl netlua python node; do skip download "$rt" "nginx did not start"; done; return; }
  write_index "$PORT"
  api="http://127.0.0.1:$PORT/api.json"
  if have curl; then fetch_all curl curl --parallel --parallel-immediate --parallel-max 50 -sSf -K "$TMP/curl.cfg"
  else skip download curl "curl not installed"; fi
  why=$(netlua_has_mods http)
  [ -z "$why" ] && [ ! -f scripts/downloader.lua ] && why="no scripts/downloader.lua yet"
  if [ -z "$why" ]; then fetch_all netlua "$NETLUA" scripts/downloader.lua --api "$api" \
      --num "$NFILES" --out "$TMP/out" --threads "$DL_THREADS"
  else skip download netlua "$why"; fi
  if have python3 && python3 -c 'import requests' 2>/dev/null; then
    fetch_all python python3 bench/fetch/download.py "$api" "$TMP/out"
  else skip download python "python3-requests not installed (make bench-deps)"; fi
  if have node; then fetch_all node node bench/fetch/download.js "$api" "$TMP/out"
  else skip download node "nodejs not installed (make bench-deps)"; fi
  stop_server
}

# ---- start-up and threads ----------------------------------------------------

startup_one() {   # startup_one RUNTIME CMD...
  local rt=$1 run line; shift
  for run in $(seq "$RUNS"); do
    line=$(timeout -k 2 60 $PIN_CLI $LOADGEN run "$STARTS" "$@") || { skip startup "$rt" "failed"; return; }
    record startup "$rt" start_ms lo "$run" "$(result median_ms "$line")"
  done
  echo "  $rt: $line" >&2
}

startup_workload() {
  echo "== startup" >&2
  if [ -x "$NETLUA" ]; then startup_one netlua "$NETLUA" -e ''; else skip startup netlua "no netlua binary"; fi
  if have lua5.4; then startup_one lua5.4 lua5.4 -e ''; else skip startup lua5.4 "lua5.4 not installed"; fi
  if have python3; then startup_one python python3 -c ''; else skip startup python "python3 not installed"; fi
  if have node; then startup_one node node -e ''; else skip startup node "nodejs not installed"; fi
}

threads_one() {   # threads_one RUNTIME CMD...: CMD prints spawn_per_s and msgs_per_s
  local rt=$1 run line; shift
  for run in $(seq "$RUNS"); do
    line=$(timeout -k 2 120 "$@" 2> "$TMP/$rt.err") || line=""
    if [ -z "$(result spawn_per_s " $line")" ]; then
      echo "  $rt: failed: $(head -c 300 "$TMP/$rt.err")" >&2
      skip threads "$rt" "failed: $(head -c 100 "$TMP/$rt.err" | tr '\t\n' '  ')"
      return
    fi
    record threads "$rt" spawn_join_per_s hi "$run" "$(result spawn_per_s " $line")"
    record threads "$rt" chan_msgs_per_s hi "$run" "$(result msgs_per_s " $line")"
    echo "  $rt run $run: $line" >&2
  done
}

threads_workload() {
  echo "== threads" >&2
  local why
  threads_one c-pthread $BIN/cthreads "$SPAWNS" "$MSGS"
  why=$(netlua_has_mods thread)
  if [ -z "$why" ]; then threads_one netlua "$NETLUA" bench/threads/threads_netlua.lua "$SPAWNS" "$MSGS"
  else skip threads netlua "$why"; fi
  if have python3; then threads_one python python3 bench/threads/threads.py "$SPAWNS" "$MSGS"
  else skip threads python "python3 not installed"; fi
  # a Worker takes milliseconds to start: fewer spawns, the same rate
  if have node; then threads_one node node bench/threads/threads.js $((SPAWNS / 10)) "$MSGS"
  else skip threads node "nodejs not installed"; fi
}

# ---- main ----------------------------------------------------------------------

for w in $ONLY; do
  case $w in
    time|echo) server_workload "$w" ;;
    echo1k) server_echo_many ;;
    http) http_workload ;;
    https) https_workload ;;
    tls_handshake) tls_handshake_workload ;;
    tls_bulk) tls_bulk_workload ;;
    ws_echo) ws_echo_workload ;;
    ws_idle) ws_idle_workload ;;
    sse_fanout) sse_fanout_workload ;;
    p2p_fanout) p2p_fanout_workload ;;
    download) download_workload ;;
    startup) startup_workload ;;
    threads) threads_workload ;;
    *) echo "run.sh: unknown workload '$w'" >&2; exit 2 ;;
  esac
done
echo "raw runs: $RAW" >&2
if [ -n "$FULL" ] && [ -z "$FAILED" ]; then
  cp "$RAW" bench/results/latest.tsv
  "$NETLUA" bench/report.lua "$RAW" | tee bench/results/latest.md
else
  "$NETLUA" bench/report.lua "$RAW"
fi
if [ -n "$FAILED" ]; then
  echo "run.sh: FAILED:$FAILED (see the log above; latest.* not updated)" >&2
  exit 1
fi
