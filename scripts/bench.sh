#!/usr/bin/env bash
# The speed and memory benchmarks side by side with the peers, on one
# generated capture (seeded): installs the peers from Debian (softflowd,
# argus, nfpcapd from nfdump, tcpdump, valgrind for callgrind), builds in
# release, and writes BENCHMARKS.md from the run. Takes a few minutes and
# about 4 GB of disk for the capture (kept in target/bench for the next run).
#
#   scripts/bench.sh              5M packets (the figures in BENCHMARKS.md)
#   scripts/bench.sh 1000000      a quicker run
set -euo pipefail
cd "$(dirname "$0")/.."
packets=${1:-5000000}
need=()
command -v softflowd >/dev/null || need+=(softflowd)
command -v argus >/dev/null || need+=(argus-server)
command -v nfpcapd >/dev/null || need+=(nfdump)
command -v tcpdump >/dev/null || need+=(tcpdump)
command -v valgrind >/dev/null || need+=(valgrind)
if [ ${#need[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
cargo build -q --release --locked -p pitapd -p pitap-bench -p pitap
out=$(mktemp)
target/release/pitap-bench --packets "$packets" --runs 3 --collector target/release/pitap | tee "$out"
# The packet ring's and file hashing's cost, with the digests' portable code
# (what a Pi 4 runs) built beside.
CARGO_TARGET_DIR=target/soft-hash cargo build -q --release --locked -p pitap-bench --features soft-hash
forensics=$(mktemp)
target/release/pitap-forensics-bench --soft-bench target/soft-hash/release/pitap-bench | tee "$forensics"
# Beacon detection: the corpus written as a capture, replayed by pitapd
# sealed to pitap collect, pitap report on the store (the test prints it).
beacons=$(mktemp)
PITAP_BEACON_REPEATS=4 PITAP_BEACON_NOISE=40000 cargo test -q --release --locked -p pitap \
    --test beacon_capture -- --nocapture 2>&1 | sed -n '/^| sleep/,/^beacons found/p' | tee "$beacons"
# Bytes per flow on the uplink beside the collector's IPFIX export.
sizes=$(mktemp)
cargo bench -q --locked -p pitap --bench uplink_size 2>/dev/null | sed -n '/^| capture/,$p' | tee "$sizes"
# The flow store's section comes from its own bench (cargo bench -p pitap
# --bench store): kept as it is.
store=$(mktemp)
sed -n '/^## The flow store beside nfdump/,$p' BENCHMARKS.md 2>/dev/null |
    awk '/^## (The packet ring and file hashing|Beacon detection|Bytes per flow on the uplink)/ { skip = 1; next } /^## / { skip = 0 } !skip' >"$store" || true
{
    echo "# Benchmarks"
    echo
    echo "Produced by \`scripts/bench.sh\` on $(nproc) cores ($(lscpu | sed -n 's/^Model name: *//p' | head -1)), $(date -u +%Y-%m-%d)."
    echo "Each program reads the same capture from the page cache; packets/s is packets"
    echo "divided by wall time; peak RSS is the process's own (wait4). Timing on a shared"
    echo "VM is noisy: the ratios within one run are what to compare, and instructions per"
    echo "packet (callgrind) are exact."
    echo
    cat "$out"
    cat <<'NOTES'

## What is measured

- **The capture**: `pitap-gencap` (firmware/bench/src/gen.rs), seeded: 20,000
  conversations open at once, interleaved packet by packet; 45 % TCP sessions
  (handshake, heavy-tailed transfers of 6 to 50,000 data packets, FIN or RST
  teardown), 10 % refused SYNs, 30 % DNS over UDP (5 % unanswered), 10 % ICMP
  echoes, 5 % other UDP; 13 % IPv6, 25 % VLAN-tagged; frames of 60 to 1514
  bytes. With the 60 s idle timeout the unanswered and UDP flows pile up
  beyond 65,536, so every flow tool here evicts.
- **In process**: the capture reader alone, then reader + decode + flow
  update into a counting sink (`pitap-bench --inner read|engine`).
- **Whole programs**: `pitapd --read FILE --print` (flow lines to /dev/null),
  `softflowd -r -c none -d -n 127.0.0.1:9` with its default table and with
  ours (65,536), `argus -r -w FILE`, `nfpcapd -r -w DIR`, and `tcpdump -r -w
  /dev/null` as the cost of libpcap reading alone; under callgrind also
  `pitapd --read FILE --uplink` sealed to `pitap collect` on loopback
  (deflated, and `--no-deflate`), the collector outside callgrind.
- **Peak RSS** from `wait4`; the file is warmed into the page cache by a
  child (`cat`), so no measured process inherits a large RSS from the runner.
  `pitapd --read` releases the pages of the map it has read (MADV_DONTNEED
  every 2,048 frames), so its RSS is its own memory: the 65,536-flow table
  (~10 MB), the index (1 MB), the binary.
- **Instructions per packet** with `valgrind --tool=callgrind` (exact, unlike
  time on a shared VM): in process for the flow core, and for each whole
  program on a 200,000-packet capture from the same generator.

## Also checked by tests (`cargo test --release -p pitap-bench`)

- `zero_alloc`: a counting global allocator sees 0 allocations while 350,000
  packets (after 50,000 of warm-up) go through the engine, with timeouts,
  evictions from a small table and the final flush.
- `flood`: 1,000,000 spoofed SYNs at 20,000/s into a 65,536-flow table while
  2,000 real connections send data every 10 s: with the default eviction
  (unanswered flows first) all 2,000 come out whole (one record, every
  packet, SF, closed by FIN) and only unanswered flows are evicted, with 0
  allocations; plain least-recently-seen eviction loses all of them.
- `forensics_budget`: 3,000 HTTP downloads, 600 open at once, through the
  engine with a 4 MiB packet ring and the file tracker (64 connections):
  0 allocations after warm-up, the ring never over its budget, overwritten
  packets and connections not followed counted, every followed object with
  the body's SHA-256 (as sha256sum has it).
NOTES
    echo
    cat "$forensics"
    if [ -s "$store" ]; then
        echo
        cat "$store"
    fi
    echo
    echo "## Bytes per flow on the uplink beside IPFIX"
    echo
    echo "\`cargo bench -p pitap --bench uplink_size\`: \`pitapd --read\` sends its records"
    echo "sealed to \`pitap collect\` on loopback (enrichment on), once with each wire"
    echo "version; the collector exports the same flows over IPFIX (templates included)"
    echo "to a socket the bench holds. Uplink bytes are the sealed batch datagrams as"
    echo "first sent, without retransmissions."
    echo
    cat "$sizes"
    echo
    echo "## Beacon detection through pitapd and the collector"
    echo
    echo "The beacon corpus (firmware/bench/src/beacons.rs, seed 7: 1,200 beacons among"
    echo "40,000 noise series) written as a capture (beacon_capture.rs), replayed by"
    echo "\`pitapd --read\` sealed to \`pitap collect\`, \`pitap report --only beacons\` on"
    echo "the store, rows matched to series by address (release build):"
    echo
    cat "$beacons"
} > BENCHMARKS.md
rm -f "$out" "$store" "$forensics" "$beacons" "$sizes"
echo "bench.sh: wrote BENCHMARKS.md"
