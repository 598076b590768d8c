#!/usr/bin/env bash
# Run Debian's snmpd in the foreground as a test peer, as the current user, on a
# loopback UDP port, answering SNMP v1/v2c with a read-only community:
#   scripts/peers/snmpd.sh DIR PORT COMMUNITY
# DIR receives the configuration (snmpd.conf) and the agent's persistent state;
# nothing outside it is read or written (-C: no system configuration). The agent
# logs to stdout (-Lo) and stays in the foreground (-f) until killed.
set -euo pipefail

if [ $# -ne 3 ]; then
    echo "usage: $0 DIR PORT COMMUNITY" >&2
    exit 2
fi
dir=$1 port=$2 community=$3
snmpd=$(PATH="$PATH:/usr/sbin:/sbin" command -v snmpd) || {
    echo "snmpd is missing: run scripts/install-deps.sh (Debian package snmpd)" >&2
    exit 1
}
mkdir -p "$dir/state"
cat >"$dir/snmpd.conf" <<CONF
rocommunity $community 127.0.0.1
sysName jobstack-test-agent
sysLocation jobstack test rack 7
sysContact jobstack tests <root@localhost>
# No AgentX master socket: the test agent answers on its UDP port only.
master no
CONF
export SNMP_PERSISTENT_DIR="$dir/state"
# Debian ships no standard MIBs (they are non-free): load none rather than warn
# about each missing one. Nothing here needs names; OIDs are numeric.
export MIBS=""
exec "$snmpd" -f -Lo -C -c "$dir/snmpd.conf" -p "$dir/snmpd.pid" "udp:127.0.0.1:$port"
