#!/usr/bin/env bash
# The main job on one machine: `pitap keygen` makes a key for a tap, a
# collector listens on loopback with it, the firmware replays a real capture
# through its flow engine and uplinks the flows sealed, the collector
# acknowledges them, prints one line per flow and stores them; then a query
# over the store shows where the bytes went. Pass another capture as $1.
set -euo pipefail
cd "$(dirname "$0")/.."
capture=${1:-demo/wikipedia.pcap}
port=${PITAP_DEMO_PORT:-47390}

cargo build --release -q -p pitapd -p pitap
keys=$(mktemp -d)
trap 'rm -rf "$keys"' EXIT
target/release/pitap keygen --tap-id demo-tap --collector "127.0.0.1:$port" --out-dir "$keys" >/dev/null
target/release/pitap collect --config "$keys/demo-tap.collector.toml" --listen "127.0.0.1:$port" \
  --store "$keys/flows.db" --until-final --idle-exit 30 &
collector=$!
trap 'kill $collector 2>/dev/null || true; rm -rf "$keys"' EXIT
sleep 0.3
target/release/pitapd --read "$capture" --config "$keys/demo-tap.tap.toml" --progress
wait $collector
echo
echo "== pitap query --sum bytes --by dst_addr (from the store)"
target/release/pitap query --store "$keys/flows.db" --since 0 --sum bytes --by dst_addr --limit 5
