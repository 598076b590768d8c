#!/usr/bin/env bash
# Time netscan (through `jobstack exec`, one part, as an agent runs it) beside
# `nmap -sT -Pn` on the same loopback addresses and ports, in one run.
#   scripts/bench-netscan.sh [FIRST-LAST] [PORTS] [CONCURRENCY]
# Defaults: 127.0.0.1-127.0.0.16, ports 1-1000, 256 connections in flight.
# Uses the jobstack binary of the current build ($JOBSTACK_BIN overrides) and
# the built plugin; builds neither unless missing.
set -euo pipefail
cd "$(dirname "$0")/.."

range=${1:-127.0.0.1-127.0.0.16}
ports=${2:-1-1000}
concurrency=${3:-256}
case "$range" in
    127.*-127.*) ;;
    *) echo "only loopback ranges (127.x.y.z-127.x.y.z) are scanned" >&2; exit 2 ;;
esac

wasm=plugins/target/wasm32-wasip2/release/netscan.wasm
[ -f "$wasm" ] || scripts/build-plugins.sh
if [ -n "${JOBSTACK_BIN:-}" ]; then
    jobstack=$JOBSTACK_BIN
else
    target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
    jobstack="$target_dir/debug/jobstack"
    [ -x "$jobstack" ] || cargo build --locked -p jobstack
fi
command -v nmap >/dev/null || { echo "nmap is missing: run scripts/install-deps.sh" >&2; exit 1; }

params=$(printf '{"targets":["%s"],"ports":"%s","concurrency":%s,"block_size":4096}' "$range" "$ports" "$concurrency")
part=$("$jobstack" exec "$wasm" --params "$params" | python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)["output"][0]))')

now() { date +%s.%N; }
t0=$(now)
out=$("$jobstack" exec "$wasm" --params "$params" --part "$part" --allow-net 127.0.0.0/8 --timeout 10m)
t1=$(now)
nmap -sT -Pn -n -p "$ports" "${range%-*}-$(echo "${range#*-}" | awk -F. '{print $4}')" -oX - >/tmp/bench-netscan-nmap.$$.xml
t2=$(now)

python3 - "$out" /tmp/bench-netscan-nmap.$$.xml "$t0" "$t1" "$t2" "$range" "$ports" <<'PY'
import json, sys, xml.etree.ElementTree as ET
out, xml_path, t0, t1, t2, rng, ports = sys.argv[1:]
run = json.loads(out)
assert run["status"] == "finished", run
s = run["output"]
root = ET.parse(xml_path).getroot()
nmap_open = sum(1 for p in root.iter("port") if p.find("state").get("state") == "open")
print(f"targets {rng} x ports {ports}: {s['hosts'] * s['ports_per_host']} connections")
print(f"netscan (jobstack exec, whole process): {float(t1) - float(t0):.3f} s "
      f"(plugin execution {run['duration_ms'] / 1000:.3f} s), {s['open_ports']} open ports")
print(f"nmap -sT -Pn:                           {float(t2) - float(t1):.3f} s, {nmap_open} open ports")
PY
rm -f /tmp/bench-netscan-nmap.$$.xml
