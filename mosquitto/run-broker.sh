#!/bin/sh
# Runs Mosquitto with the given config, and reloads it (SIGHUP) within a second of the hub
# rewriting its password or ACL file, so device credentials change without a broker restart:
# a revoked device is disconnected at the reload. SIGTERM and SIGINT stop the broker cleanly
# (it saves its persistent sessions).
#   run-broker.sh /mosquitto/config/mosquitto.conf
set -u
config=${1:-/mosquitto/config/mosquitto.conf}
setting() { awk -v name="$1" '$1 == name { print $2 }' "$config" | tail -n 1; }
passwords=$(setting password_file)
acl=$(setting acl_file)

# Until the hub's bridge first writes them, the broker starts with no logins at all.
for file in $passwords $acl; do
  [ -e "$file" ] || { mkdir -p "$(dirname "$file")" && : > "$file"; }
done

"${MOSQUITTO:-mosquitto}" -c "$config" &
broker=$!
trap 'kill -TERM "$broker" 2>/dev/null' TERM INT

fingerprint() { cat $passwords $acl 2>/dev/null | cksum; }
seen=$(fingerprint)
while kill -0 "$broker" 2>/dev/null; do
  sleep 1 & wait $!
  now=$(fingerprint)
  if [ "$now" != "$seen" ]; then
    seen=$now
    echo "run-broker.sh: logins changed, reloading the broker"
    kill -HUP "$broker" 2>/dev/null
  fi
done
wait "$broker"
