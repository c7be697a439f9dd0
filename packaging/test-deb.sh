#!/usr/bin/env bash
# Builds the Debian package, installs it with apt as a user would, and runs
# what it installed: pitap --version, pitapd --version, the man pages, the
# completions, the unit checked by systemd-analyze where it runs; then
# removes it. Needs root (apt).
set -euo pipefail
cd "$(dirname "$0")/.."
fail() { echo "test-deb: FAILED: $*"; exit 1; }
deb=$(packaging/build-deb.sh | tail -1)
echo "  built $deb ($(du -h "$deb" | cut -f1))"
DEBIAN_FRONTEND=noninteractive apt-get install -y -q "./$deb" >/dev/null || fail "apt install ./$deb"
trap 'DEBIAN_FRONTEND=noninteractive apt-get remove -y -q pitap >/dev/null 2>&1 || true' EXIT
version=$(/usr/bin/pitap --version) || fail "pitap --version"
[ "$version" = "pitap $(dpkg-deb -f "$deb" Version)" ] || fail "pitap --version: $version"
/usr/bin/pitapd --version | grep -q '^pitapd ' || fail "pitapd --version"
for page in pitap pitap-collect pitap-query pitapd; do
    [ -s "/usr/share/man/man1/$page.1.gz" ] || fail "no man page $page"
    zcat "/usr/share/man/man1/$page.1.gz" | grep -q '^\.TH' || fail "$page.1 is not a man page"
done
zcat /usr/share/man/man1/pitapd.1.gz | grep -q 'replay a pcap' || fail "pitapd.1 lacks its options"
bash -c 'source /usr/share/bash-completion/completions/pitap && complete -p pitap' >/dev/null ||
    fail "the bash completion does not load"
grep -qx 'complete -c pitapd -l read' /usr/share/fish/vendor_completions.d/pitapd.fish ||
    fail "the fish completion of pitapd lacks --read"
[ -s /usr/share/zsh/vendor-completions/_pitap ] && [ -s /usr/share/zsh/vendor-completions/_pitapd ] ||
    fail "no zsh completions"
getent passwd pitap >/dev/null || fail "no pitap user"
[ -f /lib/systemd/system/pitap-collect.service ] || fail "no unit"
if command -v systemd-analyze >/dev/null; then
    systemd-analyze verify /lib/systemd/system/pitap-collect.service 2>&1 |
        grep -v "Failed to\|cannot\|Cannot" | grep . && fail "systemd-analyze verify"
fi
# The unit's check runs as the service would, on a config that has no key.
printf '[collector]\nlisten = "127.0.0.1:0"\n' > /etc/pitap/collector.toml
if /usr/bin/pitap collect --check-config --config /etc/pitap/collector.toml 2>/dev/null; then
    fail "a collector.toml without taps passed --check-config"
fi
rm -f /etc/pitap/collector.toml
echo "test-deb: installed, pitap --version = $version, man pages and completions in place"
