#!/usr/bin/env bash
# Run Debian's snmpd in the foreground as a test peer, as the current user, on a
# loopback UDP port, answering SNMP v1/v2c with a read-only community:
#   scripts/peers/snmpd.sh DIR PORT COMMUNITY [V3USER AUTHPASS PRIVPASS]
# With V3USER, two SNMP v3 users answer at the authPriv level too: V3USER
# (SHA, AES) and V3USER-sha256 (SHA-256, AES), with those passphrases.
# SNMPD_ADDRESS (default 127.0.0.1) is the loopback address to answer on, and
# SNMPD_LOCATION the sysLocation to answer (default "jobstack test rack 7").
# With SNMPD_TCP=1 the agent answers on the same TCP port too (so that a TCP
# discovery finds the device).
# DIR receives the configuration (snmpd.conf) and the agent's persistent state;
# nothing outside it is read or written (-C: no system configuration). The agent
# logs to stdout (-Lo) and stays in the foreground (-f) until killed.
set -euo pipefail

if [ $# -ne 3 ] && [ $# -ne 6 ]; then
    echo "usage: $0 DIR PORT COMMUNITY [V3USER AUTHPASS PRIVPASS]" >&2
    exit 2
fi
dir=$1 port=$2 community=$3
address=${SNMPD_ADDRESS:-127.0.0.1}
location=${SNMPD_LOCATION:-jobstack test rack 7}
snmpd=$(PATH="$PATH:/usr/sbin:/sbin" command -v snmpd) || {
    echo "snmpd is missing: run scripts/install-deps.sh (Debian package snmpd)" >&2
    exit 1
}
mkdir -p "$dir/state"
cat >"$dir/snmpd.conf" <<CONF
rocommunity $community 127.0.0.0/8
sysName jobstack-test-agent
sysLocation $location
sysContact jobstack tests <root@localhost>
# No AgentX master socket: the test agent answers on its UDP port only.
master no
CONF
if [ $# -eq 6 ]; then
    user=$4 auth=$5 priv=$6
    cat >>"$dir/snmpd.conf" <<CONF
createUser $user SHA "$auth" AES "$priv"
createUser $user-sha256 SHA-256 "$auth" AES "$priv"
rouser $user priv
rouser $user-sha256 priv
CONF
fi
export SNMP_PERSISTENT_DIR="$dir/state"
# Debian ships no standard MIBs (they are non-free): load none rather than warn
# about each missing one. Nothing here needs names; OIDs are numeric.
export MIBS=""
listen="udp:$address:$port"
if [ "${SNMPD_TCP:-0}" = 1 ]; then
    listen="$listen,tcp:$address:$port"
fi
exec "$snmpd" -f -Lo -C -c "$dir/snmpd.conf" -p "$dir/snmpd.pid" "$listen"
