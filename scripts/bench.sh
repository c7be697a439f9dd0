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
cargo build -q --release --locked -p pitapd -p pitap-bench
out=$(mktemp)
target/release/pitap-bench --packets "$packets" --runs 3 | tee "$out"
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
    echo
    cat benches.notes.md 2>/dev/null || true
} > BENCHMARKS.md
rm -f "$out"
echo "bench.sh: wrote BENCHMARKS.md"
