#!/bin/sh
# makecert.sh: a local certificate authority and certificates signed by it,
# with `openssl`, so you can try TLS on your own machine.
#   sh scripts/makecert.sh DIR
#       DIR/ca.pem (+ ca.key): the CA; give ca.pem to clients (cafile=)
#       DIR/server.pem + server.key: for localhost, 127.0.0.1 and ::1
#   sh scripts/makecert.sh ca DIR          only the CA
#   sh scripts/makecert.sh cert DIR NAME CN SAN DAYS [USAGE]
#       DIR/NAME.pem + NAME.key signed by DIR's CA: common name CN,
#       subjectAltName SAN ("DNS:a.test,IP:127.0.0.1"), valid DAYS days
#       (negative: already expired), extendedKeyUsage USAGE (serverAuth;
#       clientAuth for a client certificate)
# Keys are EC P-256 and unencrypted: for learning, not for production.
set -e

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1.key" 2>/dev/null; }

make_ca() {
  mkdir -p "$1"
  cd "$1"
  key ca
  openssl req -x509 -key ca.key -out ca.pem -days 365 -subj "/CN=netlua local CA"
  cd - >/dev/null
}

make_cert() { # DIR NAME CN SAN DAYS [USAGE]
  cd "$1"
  key "$2"
  openssl req -new -key "$2.key" -out "$2.csr" -subj "/CN=$3"
  printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nextendedKeyUsage=%s\n' \
    "$4" "${6:-serverAuth}" > "$2.ext"
  openssl x509 -req -in "$2.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days "$5" \
    -extfile "$2.ext" -out "$2.pem" 2>/dev/null
  rm -f "$2.csr" "$2.ext"
  cd - >/dev/null
}

case "$1" in
  ca) make_ca "$2" ;;
  cert) shift; make_cert "$@" ;;
  ""|-h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *)
    make_ca "$1"
    make_cert "$1" server localhost "DNS:localhost,IP:127.0.0.1,IP:::1" 365
    echo "made $1/ca.pem (give it to clients) and $1/server.pem + $1/server.key"
    ;;
esac
