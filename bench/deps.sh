#!/bin/sh
# deps.sh: installs the peers `make bench` compares netlua with (what
# `make bench-deps` runs), when missing. As root it runs apt-get; otherwise it
# prints the command and carries on: the runner skips a missing peer with a
# note. netlua's own build dependencies stay in tools/deps.sh.
PKGS="nodejs lua5.4 lua-socket nginx-light curl python3 python3-requests util-linux"

missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' ||
    missing="$missing $p"
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" != 0 ]; then
  echo "bench peers missing:$missing (they will be skipped)" >&2
  echo "to install them: sudo apt-get install -y$missing" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
echo "installing bench peers:$missing"
APT="apt-get -o DPkg::Lock::Timeout=300"
$APT install -y -q $missing ||
  { $APT update -q && $APT install -y -q $missing; } ||
  echo "bench: could not install$missing (they will be skipped)" >&2
exit 0
