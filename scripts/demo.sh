#!/bin/sh
# demo.sh: what `make demo` runs. Usage: sh scripts/demo.sh [path/to/netlua]
set -e
NETLUA=${1:-./netlua}
cd "$(dirname "$0")/.."
echo "== netlua scripts/demo.lua"
"$NETLUA" scripts/demo.lua
echo
echo "== netlua scripts/downloader.lua --out \$tmp --num 6   (the bundled image API, offline)"
tmp=$(mktemp -d)
"$NETLUA" scripts/downloader.lua --out "$tmp" --num 6
ls -l "$tmp"
rm -rf "$tmp"
