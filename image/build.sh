#!/usr/bin/env bash
# Builds the PiTap SD card image, image/out/pitap-VERSION-arm64.img (+ .xz,
# .sha256), from the static aarch64 pitapd and Debian's arm64 packages:
# linux-image-arm64, raspi-firmware, busybox-static. No root, no loop
# devices, no mounts: packages come with `apt-get download` through a
# private list directory, the FAT partition is written with mkfs.vfat
# --offset and mtools. SOURCE_DATE_EPOCH (default: the last commit's time)
# makes two builds byte-identical.
#
#   image/build.sh                 build (package versions from image/packages.lock)
#   image/build.sh --update-lock   take the newest packages and record them
#
# Environment: PITAP_IMAGE_OUT, PITAP_IMAGE_CACHE (directories), PITAPD_BIN
# (a prebuilt aarch64 pitapd: skips cargo), PITAP_REVISION (the commit named
# in versions.txt, default from git). image/test-image.sh uses them to build a
# second time as an unprivileged user and compare.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=${PITAP_IMAGE_OUT:-$root/image/out}
cache=${PITAP_IMAGE_CACHE:-$root/image/cache}
lock=$root/image/packages.lock
suite=${PITAP_SUITE:-trixie}
update_lock=false
[ "${1:-}" = "--update-lock" ] && update_lock=true
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 1700000000)}
revision=${PITAP_REVISION:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
export TZ=UTC LC_ALL=C MTOOLS_SKIP_CHECK=1
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
img=$out/pitap-$version-arm64.img
steps=8
step=0
say() { step=$((step + 1)); printf '\033[1m[%d/%d]\033[0m %s\n' "$step" "$steps" "$*"; }

PATH=$PATH:/usr/sbin:/sbin # depmod, sfdisk, mkfs.vfat for a non-root user
for tool in apt-get dpkg-deb depmod cpio gzip sfdisk mkfs.vfat mcopy mdir xz python3; do
    command -v "$tool" >/dev/null || { echo "build.sh: $tool is missing (scripts/setup.sh installs it)"; exit 1; }
done
mkdir -p "$out" "$cache/debs"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

say "pitapd for aarch64 (static, musl)"
if [ -n "${PITAPD_BIN:-}" ]; then
    pitapd=$PITAPD_BIN
    echo "  prebuilt: $pitapd"
else
    cargo build -q --locked --profile image --target aarch64-unknown-linux-musl -p pitapd \
        --config "build.rustflags=['--remap-path-prefix=$root=/pitap']"
    pitapd=$root/target/aarch64-unknown-linux-musl/image/pitapd
fi

say "Debian $suite arm64 package lists (private, no root)"
# The mirror is the one this machine's apt already uses.
mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
[ -n "$mirror" ] || mirror=$(awk '/^deb / {print $2; exit}' /etc/apt/sources.list)
mkdir -p "$cache/apt/lists/partial" "$cache/apt/cache/archives/partial" "$cache/apt/etc"
printf 'Types: deb\nURIs: %s\nSuites: %s\nComponents: main non-free-firmware\nArchitectures: arm64\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
    "$mirror" "$suite" > "$cache/apt/etc/pitap.sources"
apt_opts=(-o APT::Architecture=arm64 -o APT::Architectures=arm64
          -o "Dir::State::Lists=$cache/apt/lists" -o "Dir::Cache=$cache/apt/cache"
          -o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$cache/apt/etc"
          -o Debug::NoLocking=1)
apt-get -qq "${apt_opts[@]}" update

say "packages"
candidate() { apt-cache "${apt_opts[@]}" policy "$1" | awk '/Candidate:/ {print $2}'; }
kernel_pkg=$(apt-cache "${apt_opts[@]}" depends linux-image-arm64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
if [ "$update_lock" = true ] || [ ! -e "$lock" ]; then
    {
        echo "# Debian $suite arm64 packages in the image; image/build.sh --update-lock renews."
        for p in "$kernel_pkg" raspi-firmware busybox-static; do echo "$p=$(candidate "$p")"; done
    } > "$lock"
fi
debs=()
while IFS='=' read -r name ver; do
    case "$name" in ''|'#'*) continue ;; esac
    file=$(ls "$cache/debs/${name}_"*"_"*.deb 2>/dev/null | grep -F "_${ver//:/%3a}_" | head -1 || true)
    if [ -z "$file" ]; then
        if ! (cd "$cache/debs" && apt-get -qq "${apt_opts[@]}" download "$name=$ver" 2>/dev/null); then
            echo "build.sh: $name=$ver is no longer in the archive; run image/build.sh --update-lock"
            exit 1
        fi
        file=$(ls "$cache/debs/${name}_"*.deb | grep -F "_${ver//:/%3a}_" | head -1)
    fi
    debs+=("$file")
    printf '  %s %s\n' "$name" "$ver"
done < "$lock"
for d in "${debs[@]}"; do dpkg-deb -x "$d" "$work/pkg"; done
kver=$(ls "$work/pkg/boot" | sed -n 's/^vmlinuz-//p' | head -1)
modules=$work/pkg/usr/lib/modules/$kver

say "initramfs (busybox, pitapd, $(grep -cv '^#' image/modules.list) drivers and their dependencies)"
ird=$work/initramfs
mkdir -p "$ird"/{bin,usr/sbin,etc/pitap,proc,sys,dev,boot,run,tmp,lib/modules/$kver}
cp "$work/pkg/usr/bin/busybox" "$ird/bin/busybox"
cp image/init "$ird/init"
chmod 755 "$ird/init" "$ird/bin/busybox"
cp "$pitapd" "$ird/usr/sbin/pitapd"
cp image/fallback.toml "$ird/etc/pitap/fallback.toml"
echo "PiTap $version, Linux $kver" > "$ird/etc/pitap/version"
depmod -b "$work/pkg/usr" "$kver" 2>/dev/null || depmod -b "$work/pkg" "$kver"
dep=$modules/modules.dep
: > "$ird/etc/pitap/modules.load"
declare -A wanted=()
add_module() {  # a module and what it needs (modules.dep); false if absent
    local path
    path=$(awk -F: -v m="/$1.ko" '{ n=$1; sub(/\.xz$|\.zst$|\.gz$/, "", n); if (substr(n, length(n)-length(m)+1) == m) { print $0; exit } }' "$dep")
    [ -n "$path" ] || return 1
    local file=${path%%:*} needs=${path#*:}
    for n in $needs; do wanted[$n]=1; done
    wanted[$file]=1
}
builtin() {  # built into the kernel: nothing to load
    grep -qE "/($1|${1//_/-})\.ko\$" "$modules/modules.builtin"
}
while read -r m; do
    case "$m" in ''|'#'*) continue ;; esac
    if add_module "$m" || add_module "${m//-/_}" || add_module "${m//_/-}"; then
        # A path (mmc/host/bcm2835) only picks the file; modprobe wants the name.
        echo "${m##*/}" >> "$ird/etc/pitap/modules.load"
    elif builtin "${m//-/_}"; then
        echo "  $m: built into $kver"
    else
        echo "  $m: not in $kver, skipped"
    fi
done < image/modules.list
for f in "${!wanted[@]}"; do
    mkdir -p "$ird/lib/modules/$kver/$(dirname "$f")"
    cp "$modules/$f" "$ird/lib/modules/$kver/$f"
done
cp "$modules"/modules.{order,builtin,builtin.modinfo} "$ird/lib/modules/$kver/" 2>/dev/null || true
depmod -b "$ird" "$kver"
find "$ird" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
(cd "$ird" && find . -print0 | sort -z | cpio --quiet --null -o -H newc --reproducible --owner=0:0) \
    | gzip -n -9 > "$work/initrd.img"

say "boot partition files"
boot=$work/boot
mkdir -p "$boot"
cp "$work/pkg/boot/vmlinuz-$kver" "$boot/vmlinuz"
cp "$work/initrd.img" "$boot/initrd.img"
dtbs=$work/pkg/usr/lib/linux-image-$kver/broadcom
for b in bcm2711-rpi-4-b bcm2711-rpi-400 bcm2711-rpi-cm4-io bcm2837-rpi-3-b bcm2837-rpi-3-b-plus \
         bcm2837-rpi-3-a-plus bcm2837-rpi-cm3-io3 bcm2837-rpi-zero-2-w bcm2712-rpi-5-b; do
    [ -e "$dtbs/$b.dtb" ] && cp "$dtbs/$b.dtb" "$boot/"
done
fw=$work/pkg/usr/lib/raspi-firmware
# Pi 4/400/CM4 (start4/fixup4) and Pi 3/Zero 2 W (start, fixup; their ROM
# reads bootcode.bin from the first partition, below).
for f in start.elf fixup.dat start4.elf fixup4.dat; do cp "$fw/$f" "$boot/"; done
cp image/config.txt image/cmdline.txt "$boot/"
{
    echo "PiTap $version ($revision)"
    echo "Linux $kver"
    grep -v '^#' "$lock"
} > "$boot/versions.txt"
# The first partition: what the boot ROM and bootloader read first
# (bootcode.bin, autoboot.txt) and the user's configuration, which an
# update of the boot partitions leaves alone.
cfg=$work/cfg
mkdir -p "$cfg"
cp "$fw/bootcode.bin" image/autoboot.txt image/pitap.toml "$cfg/"
cp firmware/pitapd/pitap.example.toml "$cfg/pitap.example.toml"
find "$boot" "$cfg" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
content=$(du -sk "$boot" | cut -f1)

say "image: MBR; FAT16 config partition, FAT32 boot partitions A and B ($((content / 1024)) MiB of boot files)"
cfg_mib=16 part_mib=128
cfg_start=2048
a_start=$((cfg_start + cfg_mib * 2048))
b_start=$((a_start + part_mib * 2048))
rm -f "$img"
truncate -s $(((1 + cfg_mib + 2 * part_mib) * 1024 * 1024)) "$img"
printf 'label: dos\nlabel-id: 0x50546170\nstart=%d, size=%d, type=e, bootable\nstart=%d, size=%d, type=c\nstart=%d, size=%d, type=c\n' \
    $cfg_start $((cfg_mib * 2048)) $a_start $((part_mib * 2048)) $b_start $((part_mib * 2048)) \
    | sfdisk -q --no-reread --no-tell-kernel "$img"
# (It warns that the file is larger than the partition: it is meant to be.)
mkfs.vfat -F 16 -n PITAPCFG -i 50546171 --invariant --offset $cfg_start "$img" $((cfg_mib * 1024)) \
    >/dev/null 2>"$work/mkfs.err" || { cat "$work/mkfs.err"; exit 1; }
for f in $(cd "$cfg" && ls | sort); do
    mcopy -m -i "$img@@$((cfg_start * 512))" "$cfg/$f" "::$f"
done
# Boot partition A, made as a file of its own: it is also the update image
# (pitap update), cut after its last byte that is not zero (the rest of a
# partition is free space the FAT does not read). B stays empty until an
# update writes it.
bootfs=$work/boot.fat
rm -f "$bootfs"
mkfs.vfat -C -F 32 -n PITAPBOOT -i 50546170 --invariant "$bootfs" $((part_mib * 1024)) >/dev/null
for f in $(cd "$boot" && ls | sort); do
    mcopy -m -i "$bootfs" "$boot/$f" "::$f"
done
dd if="$bootfs" of="$img" bs=1M seek=$((a_start / 2048)) conv=notrunc status=none
python3 - "$bootfs" "$out/pitap-$version-boot.img" <<'PY'
import sys
data = open(sys.argv[1], "rb").read()
open(sys.argv[2], "wb").write(data[: len(data.rstrip(b"\0"))])
PY

say "compress and checksum"
xz -T1 -9 -c "$img" > "$img.xz"
(cd "$out" && sha256sum "$(basename "$img")" "$(basename "$img").xz" "pitap-$version-boot.img" > "$(basename "$img").sha256")
# The pieces the emulator system test boots directly.
cp "$boot/vmlinuz" "$boot/initrd.img" "$out/"

say "done"
printf '  %s: %d MiB, boot files %d MiB, initramfs %d KiB, xz %d MiB; update image %d MiB\n' \
    "$(basename "$img")" $(( $(stat -c %s "$img") / 1048576 )) $((content / 1024)) \
    $(( $(stat -c %s "$boot/initrd.img") / 1024 )) $(( $(stat -c %s "$img.xz") / 1048576 )) \
    $(( $(stat -c %s "$out/pitap-$version-boot.img") / 1048576 ))
cat "$out/$(basename "$img").sha256"
