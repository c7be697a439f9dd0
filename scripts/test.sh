#!/usr/bin/env bash
# The whole test suite, as CI runs it: setup, formatting, lints, the tests on
# this machine, the firmware cross-built for the Pi, and the flow core's and
# wire format's tests run as aarch64 binaries under qemu, the SD card image
# (built twice, inspected), its system test and its A/B update test in
# qemu-system-aarch64, and
# the host tools' Debian package installed with apt.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh

echo "== cargo fmt --check"
cargo fmt --all --check

echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== flow core without std (no_std + alloc)"
cargo build --locked -p pitap-flow-core --no-default-features

echo "== cargo test (host)"
cargo test --workspace --locked

echo "== pitapd for the Pi (aarch64-unknown-linux-musl, static)"
cargo build --release --locked --target aarch64-unknown-linux-musl -p pitapd
file_info=$(od -An -tx1 -N20 target/aarch64-unknown-linux-musl/release/pitapd | tr -d ' \n')
# ELF magic, and e_machine 0xb7 (aarch64) at offset 18.
case "$file_info" in
  7f454c46*b700) echo "pitapd: aarch64 ELF ok" ;;
  *) echo "pitapd is not an aarch64 ELF: $file_info"; exit 1 ;;
esac

echo "== flow core and wire format tests on aarch64 (qemu-user)"
cargo test --locked --target aarch64-unknown-linux-musl -p pitap-flow-core -p pitap-wire

echo "== SD card image: two builds (one unprivileged) byte-identical, layout, pitap image write"
image/test-image.sh

echo "== SD card image booted in qemu-system-aarch64, traffic across the emulated tap"
image/system-test.sh

echo "== A/B updates of the SD card image in qemu-system-aarch64, through a boot harness"
image/update-test.sh

echo "== Debian package of the host tools: built, installed with apt, run"
packaging/test-deb.sh

echo "test.sh: all passed"
