#!/bin/sh
# Installs the Debian packages netlua needs to build and test, when missing.
# As root it runs apt-get non-interactively (refreshing the package lists when
# a package is unknown); otherwise it prints the exact command to run.
PKGS="gcc make pkg-config liblua5.4-dev lua-cjson-dev libcurl4-openssl-dev
      libreadline-dev perl python3 netcat-openbsd lua5.4 lua-socket
      libhttp-parser-dev openssl curl"

missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' ||
    missing="$missing $p"
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" != 0 ]; then
  echo "netlua needs:$missing" >&2
  echo "run: sudo apt-get install -y$missing" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
echo "installing:$missing"
APT="apt-get -o DPkg::Lock::Timeout=300"
$APT install -y -q $missing ||
  { $APT update -q && $APT install -y -q $missing; }
