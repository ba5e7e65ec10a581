#!/bin/sh
# Makes a private certificate authority and a server certificate for the broker's TLS listener,
# for trials and private fleets; on the internet, use a certificate from a public CA instead.
#   mosquitto/make-certs.sh DIRECTORY HOSTNAME [HOSTNAME...]
# Writes ca.crt (give it to devices), ca.key (keep it offline), server.crt and server.key.
set -eu
[ $# -ge 2 ] || { echo "usage: $0 DIRECTORY HOSTNAME [HOSTNAME...]" >&2; exit 2; }
dir=$1; shift
mkdir -p "$dir"
names=""
for host in "$@"; do
  case $host in
    *[!0-9.]*) names="$names,DNS:$host" ;;
    *) names="$names,IP:$host" ;;
  esac
done
openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=Telehub broker CA" \
  -keyout "$dir/ca.key" -out "$dir/ca.crt" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=$1" \
  -keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null
printf 'subjectAltName=%s\n' "${names#,}" > "$dir/server.ext"
openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial \
  -days 825 -extfile "$dir/server.ext" -out "$dir/server.crt" 2>/dev/null
rm -f "$dir/server.csr" "$dir/server.ext" "$dir/ca.srl"
chmod 600 "$dir/ca.key" "$dir/server.key"
echo "certificates for $* written to $dir"
