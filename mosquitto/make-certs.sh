#!/bin/sh
# Makes a private certificate authority and a server certificate for the broker's TLS listener,
# for trials and private fleets; on the internet, use a certificate from a public CA instead.
#   mosquitto/make-certs.sh DIRECTORY HOSTNAME [HOSTNAME...]
# Writes ca.crt (give it to devices), ca.key (keep it offline), server.crt and server.key.
# Mosquitto started as root drops to its own user before it reads server.key, which only its
# owner may read: run as root, this gives the key to that user, BROKER_USER (default mosquitto,
# when there is one; docker-compose's eclipse-mosquitto image runs the broker as uid 1883).
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
if [ "$(id -u)" -eq 0 ]; then
  if [ -n "${BROKER_USER:-}" ]; then
    chown "$BROKER_USER" "$dir/server.key"
  elif id mosquitto >/dev/null 2>&1; then
    chown mosquitto "$dir/server.key"
  fi
elif [ -n "${BROKER_USER:-}" ]; then
  echo "only root may give server.key to BROKER_USER=$BROKER_USER: run this with sudo" >&2
  exit 1
else
  echo "note: server.key is readable by $(id -un) only; a broker started as root reads it as its own user (chown it)" >&2
fi
echo "certificates for $* written to $dir"
