#!/bin/sh
# demo.sh: what `make demo` runs. Usage: sh scripts/demo.sh [path/to/netlua]
set -e
NETLUA=${1:-./netlua}
cd "$(dirname "$0")/.."
echo "== netlua scripts/demo.lua"
"$NETLUA" scripts/demo.lua

# Starts a server script on a free port for one client, then runs the client
# against it; the server's first line says where it listens.
serve_once() {
  log=$(mktemp)
  "$NETLUA" "scripts/$1" 127.0.0.1 0 --count 1 > "$log" &
  pid=$!
  i=0
  until grep -q '^listening on' "$log" || [ $i -ge 100 ]; do sleep 0.05; i=$((i+1)); done
  port=$(sed -n 's/^listening on .*:\([0-9]*\)$/\1/p' "$log")
  echo
  echo "== netlua scripts/$1 (port $port) and netlua scripts/client.lua 127.0.0.1 $port"
  "$NETLUA" scripts/client.lua 127.0.0.1 "$port"
  wait $pid
  sed 's/^/   server: /' "$log"
  rm -f "$log"
}
serve_once timeserver.lua
serve_once server.lua

echo
echo "== netlua scripts/downloader.lua --out \$tmp --num 6   (the bundled image API, offline)"
tmp=$(mktemp -d)
"$NETLUA" scripts/downloader.lua --out "$tmp" --num 6
ls -l "$tmp"
rm -rf "$tmp"

echo
echo "== in a browser: netlua scripts/gallery.lua, then open http://127.0.0.1:8080/"
echo "   (the downloader as a web page); netlua scripts/webchat.lua: a chat room for"
echo "   browsers at http://127.0.0.1:8080/ and terminals (nc 127.0.0.1 6790) at once"
