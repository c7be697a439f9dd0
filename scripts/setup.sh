#!/usr/bin/env bash
# Installs what building and testing PiTap needs on a Debian/Ubuntu machine
# with rustup: tshark, editcap and tcpdump (ground truth for the tests),
# iproute2, ping, ethtool, curl, python3 and dnsmasq (the namespace tests'
# hosts, traffic and DHCP server), busybox (udhcpc, its DHCP client), ieee-data
# (the MAC vendors the collector builds in), qemu-user (runs the aarch64 test binaries),
# qemu-system-arm, mtools, dosfstools, kmod, cpio, fdisk (the SD card image and
# its emulator test), Chromium and playwright-core (the web UI's browser
# tests), the aarch64 musl target. Idempotent: only what is missing is installed.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v tshark >/dev/null || need_apt+=(tshark)
command -v editcap >/dev/null || need_apt+=(wireshark-common)
command -v qemu-aarch64-static >/dev/null || need_apt+=(qemu-user-static)
command -v tcpdump >/dev/null || need_apt+=(tcpdump)
command -v ip >/dev/null || need_apt+=(iproute2)
command -v ping >/dev/null || need_apt+=(iputils-ping)
command -v ethtool >/dev/null || need_apt+=(ethtool)
command -v curl >/dev/null || need_apt+=(curl)
command -v python3 >/dev/null || need_apt+=(python3)
command -v dnsmasq >/dev/null || need_apt+=(dnsmasq-base)
# The DHCP client of the forensics test (busybox udhcpc sends a hostname).
command -v busybox >/dev/null || need_apt+=(busybox)
# The IEEE OUI registry the collector builds in (MAC vendors).
[ -f /usr/share/ieee-data/oui.csv ] || need_apt+=(ieee-data)
# The collector's peers: nfcapd/nfdump (IPFIX and NetFlow v9 export), nft
# (blocklist alerts).
command -v nfcapd >/dev/null || need_apt+=(nfdump)
command -v nft >/dev/null || [ -x /usr/sbin/nft ] || need_apt+=(nftables)
# The SD card image (image/build.sh) and its emulator system test.
command -v qemu-system-aarch64 >/dev/null || need_apt+=(qemu-system-arm)
command -v mcopy >/dev/null || need_apt+=(mtools)
command -v mkfs.vfat >/dev/null || need_apt+=(dosfstools)
command -v depmod >/dev/null || [ -x /usr/sbin/depmod ] || [ -x /sbin/depmod ] || need_apt+=(kmod)
command -v cpio >/dev/null || need_apt+=(cpio)
command -v sfdisk >/dev/null || [ -x /usr/sbin/sfdisk ] || [ -x /sbin/sfdisk ] || need_apt+=(fdisk)
command -v xz >/dev/null || need_apt+=(xz-utils)
command -v bc >/dev/null || need_apt+=(bc)
# The Debian package: pitapd's man page from its --help.
command -v help2man >/dev/null || need_apt+=(help2man)
# The web UI's browser tests: Debian's Chromium, driven by playwright-core.
command -v chromium >/dev/null || need_apt+=(chromium)
command -v node >/dev/null || need_apt+=(nodejs npm)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing ${need_apt[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  # tshark asks whether non-root users may capture; the answer does not matter here.
  echo "wireshark-common wireshark-common/install-setuid boolean false" | $sudo debconf-set-selections
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

if ! rustup target list --installed | grep -qx aarch64-unknown-linux-musl; then
  echo "setup: adding the aarch64-unknown-linux-musl target"
  rustup target add aarch64-unknown-linux-musl
fi
if [ ! -d host-tools/pitap/tests/web/node_modules/playwright-core ]; then
  echo "setup: installing playwright-core for the browser tests (npm ci)"
  npm ci --prefix host-tools/pitap/tests/web --no-audit --no-fund --silent
fi
# Reference implementations the tests check against: Corelight's
# Community ID package and zat's Zeek-log reader (its reader needs nothing
# beyond the standard library, hence --no-deps: no pandas). Pinned; pip for
# want of Debian packages.
pip_install() {
  python3 -m pip --version >/dev/null 2>&1 || {
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get install -y -qq --no-install-recommends python3-pip >/dev/null; }
  python3 -m pip install -q "$@" 2>/dev/null ||
    python3 -m pip install -q --break-system-packages "$@"
}
if ! python3 -c "import communityid" 2>/dev/null; then
  echo "setup: installing the communityid reference (pip)"
  pip_install communityid==1.5.0
fi
if ! python3 -c "import zat.zeek_log_reader" 2>/dev/null; then
  echo "setup: installing zat's Zeek-log reader (pip)"
  pip_install --no-deps zat==0.4.9
fi
rustup component list --installed | grep -q '^clippy' || rustup component add clippy
rustup component list --installed | grep -q '^rustfmt' || rustup component add rustfmt
echo "setup: ready"
