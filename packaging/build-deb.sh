#!/usr/bin/env bash
# Builds target/deb/pitap_VERSION_ARCH.deb: pitap and pitapd (for replays
# on the collector), their man pages and shell completions, the collector's
# systemd unit and logrotate file. Uses dpkg-deb, no root needed.
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(cargo metadata --no-deps --format-version 1 --locked |
    python3 -c 'import json,sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"]=="pitap"))')
arch=$(dpkg --print-architecture)
cargo build --release --locked -p pitap -p pitapd
bin=target/release
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
install -Dm755 "$bin/pitap" "$root/usr/bin/pitap"
install -Dm755 "$bin/pitapd" "$root/usr/bin/pitapd"
# The release profile keeps debug info for profiling; a package does not.
strip --strip-unneeded "$root/usr/bin/pitap" "$root/usr/bin/pitapd"
man=$root/usr/share/man/man1
mkdir -p "$man"
"$bin/pitap" man --out-dir "$man"
help2man --no-info --no-discard-stderr \
    --name "PiTap's tap daemon: flow records from an inline tap or a capture" \
    "$bin/pitapd" > "$man/pitapd.1"
gzip -9n "$man"/*.1
comp=$root/usr/share
mkdir -p "$comp/bash-completion/completions" "$comp/zsh/vendor-completions" \
    "$comp/fish/vendor_completions.d"
"$bin/pitap" completions bash > "$comp/bash-completion/completions/pitap"
"$bin/pitap" completions zsh > "$comp/zsh/vendor-completions/_pitap"
"$bin/pitap" completions fish > "$comp/fish/vendor_completions.d/pitap.fish"
# pitapd parses its options by hand (no clap to generate from): bash and
# zsh read them off its --help (_longopt, _gnu_generic); fish gets them
# listed from the same --help.
echo 'complete -F _longopt pitapd' > "$comp/bash-completion/completions/pitapd"
printf '#compdef pitapd\n_gnu_generic\n' > "$comp/zsh/vendor-completions/_pitapd"
"$bin/pitapd" --help | sed -n 's/^  --\([a-z-]*\).*/\1/p' | sort -u |
    sed 's/^/complete -c pitapd -l /' > "$comp/fish/vendor_completions.d/pitapd.fish"
install -Dm644 packaging/pitap-collect.service "$root/lib/systemd/system/pitap-collect.service"
install -Dm644 packaging/pitap.logrotate "$root/etc/logrotate.d/pitap"
install -Dm644 README.md "$root/usr/share/doc/pitap/README.md"
install -d -m750 "$root/etc/pitap"
mkdir -p "$root/DEBIAN"
echo /etc/logrotate.d/pitap > "$root/DEBIAN/conffiles"
cat > "$root/DEBIAN/control" <<CONTROL
Package: pitap
Version: $version
Architecture: $arch
Maintainer: PiTap developers <pitap@example.org>
Section: net
Priority: optional
Depends: libc6
Recommends: mtools
Description: PiTap host tools: collect, store and query a tap's flow records
 pitap collects the sealed flow batches of PiTap taps, stores them and
 answers queries, reports and alerts; pitapd replays captures through the
 same flow engine the tap runs.
CONTROL
cat > "$root/DEBIAN/postinst" <<'POSTINST'
#!/bin/sh
set -e
if [ "$1" = configure ]; then
    getent passwd pitap >/dev/null ||
        useradd --system --home-dir /var/lib/pitap --no-create-home --shell /usr/sbin/nologin pitap
    chgrp pitap /etc/pitap && chmod 750 /etc/pitap
fi
POSTINST
chmod 755 "$root/DEBIAN/postinst"
out=target/deb
mkdir -p "$out"
deb=$out/pitap_${version}_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "$deb"
