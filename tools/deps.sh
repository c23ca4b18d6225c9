#!/bin/sh
# Installs Debian packages when missing. As root it runs apt-get
# non-interactively (refreshing the package lists when a package is unknown);
# otherwise it prints the exact command to run.
#   sh tools/deps.sh                      what netlua needs to build, run and test
#       (lua-socket is needed at run time too: luasocket's Lua half,
#       socket.http, ltn12, mime, ..., runs from it on netlua's core)
#   sh tools/deps.sh --optional LABEL PKG...   nice-to-have packages (the
#       benchmark's peers): a failure is reported and the exit status is 0
BUILD_PKGS="gcc make pkg-config liblua5.4-dev lua-cjson-dev lua-filesystem-dev libcurl4-openssl-dev libssl-dev
      libreadline-dev perl python3 netcat-openbsd lua5.4 lua-socket
      openssl curl python3-websockets"

optional="" label="netlua"
if [ "$1" = "--optional" ]; then
  optional=1 label=$2
  shift 2
fi
PKGS=${*:-$BUILD_PKGS}

missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' ||
    missing="$missing $p"
done
[ -z "$missing" ] && exit 0

# Without root, or when apt-get fails: required packages fail the build,
# optional ones are skipped with a note.
give_up() {
  echo "$label needs:$missing" >&2
  echo "run: sudo apt-get install -y$missing" >&2
  [ -n "$optional" ] && { echo "($label: going on without them)" >&2; exit 0; }
  exit 1
}

[ "$(id -u)" = 0 ] || give_up
export DEBIAN_FRONTEND=noninteractive
echo "installing for $label:$missing"
APT="apt-get -o DPkg::Lock::Timeout=300"
$APT install -y -q $missing ||
  { $APT update -q && $APT install -y -q $missing; } || give_up
