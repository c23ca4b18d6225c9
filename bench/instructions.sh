#!/bin/sh
# instructions.sh [NETLUA]: instructions the server runs per keep-alive
# request (HTTP and HTTPS "hello") and per client of scripts/timeserver.lua,
# counted by valgrind's callgrind: the
# same number on a busy machine as on a quiet one, so a change to the
# request path can be judged without `make bench`. It runs the server for
# 1,000 and for 4,000 requests and divides the difference by 3,000, so
# start-up and the handshake drop out. Needs valgrind and /usr/bin/python3.
set -e
BIN=${1:-./netlua}
HERE=$(cd "$(dirname "$0")" && pwd)
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -keyout "$TMP/key.pem" -out "$TMP/cert.pem" -days 1 -subj /CN=localhost 2>/dev/null

# total N [tls]: the server's instruction count for N requests
total() {
  rm -f "$TMP/port" "$TMP/cg"
  if [ -n "$2" ]; then certs="$TMP/cert.pem $TMP/key.pem"; else certs=""; fi
  valgrind --tool=callgrind --callgrind-out-file="$TMP/cg" "$BIN" \
    "$HERE/instr/hello_server.lua" "$1" $certs > "$TMP/port" 2> "$TMP/vg" &
  server=$!
  for _ in $(seq 300); do [ -s "$TMP/port" ] && break; sleep 0.1; done
  /usr/bin/python3 "$HERE/instr/keepalive_client.py" "$(cat "$TMP/port")" "$1" $2
  wait $server
  sed -n 's/^summary: //p' "$TMP/cg"
}

# time_total N: the same for scripts/timeserver.lua and N clients
time_total() {
  rm -f "$TMP/out" "$TMP/cg"
  valgrind --tool=callgrind --callgrind-out-file="$TMP/cg" "$BIN" \
    "$HERE/../scripts/timeserver.lua" 127.0.0.1 0 --count "$1" > "$TMP/out" 2> "$TMP/vg" &
  server=$!
  for _ in $(seq 300); do grep -q listening "$TMP/out" 2>/dev/null && break; sleep 0.1; done
  port=$(sed -n 's/^listening on 127.0.0.1:\([0-9]*\).*/\1/p' "$TMP/out")
  /usr/bin/python3 "$HERE/instr/connect_client.py" "$port" "$1"
  wait $server
  sed -n 's/^summary: //p' "$TMP/cg"
}

a=$(time_total 1000); b=$(time_total 3000)
echo "time server instructions/client: $(( (b - a) / 2000 ))"

for mode in http https; do
  tls=""; [ $mode = https ] && tls=tls
  a=$(total 1000 $tls); b=$(total 4000 $tls)
  echo "$mode instructions/request: $(( (b - a) / 3000 ))"
done
