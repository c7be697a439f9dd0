#!/usr/bin/env bash
# The main job on one machine: a collector listens on loopback, the firmware
# replays a real capture through its flow engine and uplinks the flows, the
# collector prints one line per flow. Pass another capture as $1.
set -euo pipefail
cd "$(dirname "$0")/.."
capture=${1:-demo/wikipedia.pcap}
port=${PITAP_DEMO_PORT:-47390}

cargo build --release -q -p pitapd -p pitap
target/release/pitap collect --listen "127.0.0.1:$port" --until-final --idle-exit 30 &
collector=$!
trap 'kill $collector 2>/dev/null || true' EXIT
sleep 0.3
target/release/pitapd --read "$capture" --uplink "127.0.0.1:$port" --tap-id demo-tap --progress
wait $collector
trap - EXIT
