#!/usr/bin/env bash
# Tests of the SD card image as built by image/build.sh:
#  1. it builds, and a second build by an unprivileged user (nobody), from a
#     scratch copy of the inputs with its own package lists, is byte-identical;
#  2. the partition table (sfdisk) and the boot files (mdir/mtype) are what a
#     Pi's boot firmware needs, config.txt follows Debian's raspi settings,
#     cmdline.txt has panic=10, and the boot content stays within 64 MiB;
#  3. `pitap image write` bakes identity into pitap.toml, run as nobody on a
#     file target.
# Needs root only to switch to the unprivileged user.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct)}
export PITAP_REVISION=${PITAP_REVISION:-$(git rev-parse --short HEAD)}
export MTOOLS_SKIP_CHECK=1 PATH=$PATH:/usr/sbin:/sbin
s=$(mktemp -d)
trap 'rm -rf "$s"' EXIT
fail() { echo "test-image: FAILED: $*"; exit 1; }
ok() { echo "  ok: $*"; }

echo "== build"
image/build.sh
img=$(ls image/out/pitap-*-arm64.img | head -1)
name=$(basename "$img")

echo "== second build as nobody, from a scratch copy"
mkdir -p "$s/src/image" "$s/src/firmware/pitapd" "$s/cache/debs" "$s/out"
cp image/build.sh image/init image/*.txt image/*.toml image/modules.list image/packages.lock "$s/src/image/"
cp Cargo.toml "$s/src/"
cp firmware/pitapd/pitap.example.toml "$s/src/firmware/pitapd/"
cp target/aarch64-unknown-linux-musl/image/pitapd "$s/pitapd"
cp image/cache/debs/*.deb "$s/cache/debs/" # the same packages; the lists are fetched anew
chmod 755 "$s"
chown -R nobody "$s"
as_nobody() { setpriv --reuid=nobody --regid="$(id -g nobody)" --clear-groups env HOME="$s" PATH="$PATH" "$@"; }
as_nobody env PITAP_IMAGE_OUT="$s/out" PITAP_IMAGE_CACHE="$s/cache" PITAPD_BIN="$s/pitapd" \
    bash "$s/src/image/build.sh" >"$s/build2.log" 2>&1 || { cat "$s/build2.log"; fail "the build as nobody failed"; }
cmp "$img" "$s/out/$name" || fail "the two builds differ"
cmp "$img.xz" "$s/out/$name.xz" || fail "the two compressed images differ"
cmp image/out/pitap-*-boot.img "$s/out/"pitap-*-boot.img || fail "the two update images differ"
ok "two builds are byte-identical ($(sha256sum < "$img" | cut -c1-16)...), the second without root"

echo "== partition table"
dump=$(sfdisk --dump "$img")
echo "$dump" | grep -q '^label: dos$' || fail "not an MBR (dos) label: $dump"
parts=$(echo "$dump" | grep -c '^/\|img[0-9]* :' || true)
[ "$parts" = 3 ] || fail "expected three partitions: $dump"
echo "$dump" | grep -Eq 'img1 : start= *2048, size= *32768, type=e, bootable' \
    || fail "partition 1 is not a bootable FAT16 LBA of 16 MiB at 1 MiB: $dump"
echo "$dump" | grep -Eq 'img2 : start= *34816, size= *262144, type=c$' \
    || fail "partition 2 is not a FAT32 LBA of 128 MiB at 17 MiB: $dump"
echo "$dump" | grep -Eq 'img3 : start= *296960, size= *262144, type=c$' \
    || fail "partition 3 is not a FAT32 LBA of 128 MiB at 145 MiB: $dump"
ok "MBR: FAT16 config partition at 1 MiB, boot partitions A (17 MiB) and B (145 MiB) of 128 MiB"

echo "== the config partition: what the boot ROM and bootloader read first, and pitap.toml"
cfg="$img@@1M"
minfo -i "$cfg" :: | grep -q 'disk type="FAT16' || fail "partition 1 is not FAT16"
for f in autoboot.txt bootcode.bin pitap.toml pitap.example.toml; do
    mdir -b -i "$cfg" :: | grep -qx "::/$f" || fail "$f is missing from partition 1"
done
[ "$(mtype -i "$cfg" ::autoboot.txt)" = "$(printf '[all]\ntryboot_a_b=1\nboot_partition=2\n[tryboot]\nboot_partition=3')" ] \
    || fail "autoboot.txt: $(mtype -i "$cfg" ::autoboot.txt)"
ok "autoboot.txt (A/B: partition 2, trial partition 3), bootcode.bin, pitap.toml, pitap.example.toml"

echo "== boot files (partition 2; the update image is the same file system)"
fat="$img@@17M"
minfo -i "$fat" :: | grep -q 'disk type="FAT32' || fail "partition 2 is not FAT32"
listing=$(mdir -b -i "$fat" ::)
for f in config.txt cmdline.txt vmlinuz initrd.img versions.txt \
         start.elf fixup.dat start4.elf fixup4.dat \
         bcm2711-rpi-4-b.dtb bcm2711-rpi-400.dtb bcm2711-rpi-cm4-io.dtb \
         bcm2837-rpi-3-b.dtb bcm2837-rpi-3-b-plus.dtb bcm2837-rpi-zero-2-w.dtb; do
    echo "$listing" | grep -qx "::/$f" || fail "$f is missing from the boot partition"
done
boot_img=$(ls image/out/pitap-*-boot.img | head -1)
cmp <(head -c "$(stat -c %s "$boot_img")" <(tail -c +$((17 * 1048576 + 1)) "$img")) "$boot_img" \
    || fail "the update image is not partition 2's file system"
[ "$(tail -c 1 "$boot_img" | od -An -tu1 | tr -d ' ')" != 0 ] || fail "the update image ends in a zero byte"
dd if="$img" bs=1M skip=145 count=128 status=none | cmp -s - <(head -c $((128 * 1048576)) /dev/zero) \
    || fail "partition 3 is not empty"
ok "kernel, initramfs, config, GPU firmware and the Pi 3/4/400/CM4/Zero 2 W device trees; the update image ($(( $(stat -c %s "$boot_img") / 1048576 )) MiB) is partition 2 up to its last byte that is not zero; partition 3 empty"
config=$(mtype -i "$fat" ::config.txt)
for line in arm_64bit=1 upstream_kernel=1 kernel=vmlinuz "initramfs initrd.img followkernel" enable_uart=1; do
    echo "$config" | grep -qx "$line" || fail "config.txt lacks '$line'"
done
ok "config.txt: Debian's raspi settings (64-bit, upstream kernel and DTBs, initramfs)"
cmdline=$(mtype -i "$fat" ::cmdline.txt)
[ "$(echo "$cmdline" | wc -l)" = 1 ] || fail "cmdline.txt must be one line"
for word in panic=10 console=ttyS1,115200; do
    echo "$cmdline" | tr ' ' '\n' | grep -qx "$word" || fail "cmdline.txt lacks $word"
done
ok "cmdline.txt: $cmdline"
mtype -i "$fat" ::versions.txt | grep -q '^linux-image-' || fail "versions.txt does not pin the kernel"
ok "versions.txt records the packages"
# The kernel, initramfs, pitapd inside it: the GPU firmware reads them by name.
mcopy -i "$fat" ::initrd.img "$s/initrd.img"
members=$(gzip -dc "$s/initrd.img" | cpio -it --quiet)
for m in init bin/busybox usr/sbin/pitapd etc/pitap/fallback.toml etc/pitap/modules.load; do
    echo "$members" | grep -qx "$m" || fail "the initramfs lacks $m"
done
for mod in bridge r8152 ax88179_178a genet bcm2835_wdt i2c-bcm2835; do
    echo "$members" | grep -q "/$mod\.ko" || fail "the initramfs lacks the $mod module"
done
ok "initramfs: busybox, pitapd, fallback config, NIC/bridge/I2C/watchdog modules"
kib=$(( $(mtype -i "$fat" ::initrd.img | wc -c) / 1024 ))
total=$(for f in $(echo "$listing" | sed 's|^::/||'); do mtype -i "$fat" "::$f" | wc -c; done | paste -sd+ | bc)
[ "$total" -le $((64 * 1024 * 1024)) ] || fail "boot content is $((total / 1048576)) MiB, over 64 MiB"
ok "boot content $((total / 1048576)) MiB, initramfs $kib KiB (goal <= 64 MiB), image $(( $(stat -c %s "$img") / 1048576 )) MiB, xz $(( $(stat -c %s "$img.xz") / 1048576 )) MiB"

echo "== pitap image write, as nobody, to a file"
cargo build -q --release --locked -p pitap
cp target/release/pitap "$s/pitap"
cp "$img" "$s/in.img"
chown nobody "$s/in.img" "$s/pitap"
key=$(printf '%064x' 7)
as_nobody "$s/pitap" image write --image "$s/in.img" --target "$s/card.img" --tap-id rack-7 \
    --collector 192.0.2.50:47800 --key "$key" >/dev/null || fail "pitap image write as nobody"
written=$(mtype -i "$s/card.img@@1M" ::pitap.toml)
echo "$written" | grep -qx 'id = "rack-7"' || fail "pitap.toml lacks the tap id: $written"
echo "$written" | grep -qx 'collector = "192.0.2.50:47800"' || fail "pitap.toml lacks the collector"
echo "$written" | grep -qx "key = \"$key\"" || fail "pitap.toml lacks the key"
# Everything but pitap.toml is the image as built.
cmp <(mtype -i "$s/card.img@@17M" ::initrd.img) <(mtype -i "$fat" ::initrd.img) || fail "initrd changed"
if as_nobody "$s/pitap" image write --image "$s/in.img" --target "$s/bad.img" --tap-id x \
    --collector 192.0.2.50:47800 --key nothex >/dev/null 2>&1; then
    fail "a bad key was accepted"
fi
ok "identity baked in; a bad key refused"

echo "== pitap image write: a progress bar on a terminal only"
script -qec "$s/pitap image write --image $s/in.img --target $s/tty.img --tap-id rack-9" /dev/null \
    > "$s/tty.out" || fail "pitap image write on a pty"
grep -q "writing \[" "$s/tty.out" || fail "no progress bar on a terminal: $(head -c 300 "$s/tty.out")"
"$s/pitap" image write --image "$s/in.img" --target "$s/quiet.img" --tap-id rack-9 >/dev/null 2>"$s/err" ||
    fail "pitap image write, stderr to a file"
[ ! -s "$s/err" ] || fail "a redirected stderr got: $(head -c 300 "$s/err")"
rm -f "$s/tty.img" "$s/quiet.img"
ok "the bar on a pty, nothing on a redirected stderr"

echo "== pitap image write: checks first, and a block device only when confirmed"
head -c 1048576 /dev/urandom > "$s/not-an-image.img"
if "$s/pitap" image write --image "$s/not-an-image.img" --target "$s/none.img" --tap-id x 2>"$s/err"; then
    fail "a file that is not an image was written"
fi
grep -q "not a PiTap image\|no MBR" "$s/err" || fail "no reason given: $(cat "$s/err")"
[ ! -e "$s/none.img" ] || fail "the target was created before the image was checked"
truncate -s "$(stat -c %s "$img")" "$s/loop.img"
loop=$(losetup -f --show "$s/loop.img" 2>/dev/null) || loop=
if [ -n "$loop" ]; then
    trap 'losetup -d "$loop" 2>/dev/null || true; rm -rf "$s"' EXIT
    if "$s/pitap" image write --image "$s/in.img" --target "$loop" --tap-id rack-8 </dev/null 2>"$s/err"; then
        fail "a block device was written without confirmation"
    fi
    grep -q -- "--yes" "$s/err" || fail "no hint to confirm: $(cat "$s/err")"
    [ "$(head -c 512 "$loop" | tr -d '\0' | wc -c)" = 0 ] || fail "the device was touched"
    echo "$loop" | "$s/pitap" image write --image "$s/in.img" --target "$loop" --tap-id rack-8 >/dev/null 2>"$s/err" \
        && fail "stdin that is not a terminal counted as a yes"
    "$s/pitap" image write --image "$s/in.img" --target "$loop" --tap-id rack-8 --yes >/dev/null \
        || fail "pitap image write --yes to $loop"
    mtype -i "$loop@@1M" ::pitap.toml 2>/dev/null | grep -qx 'id = "rack-8"' || fail "no pitap.toml on $loop"
    losetup -d "$loop"
    ok "a non-image refused before writing; $loop written only with --yes"
else
    echo "  skipped the block device part: no loop device here"
fi
echo "test-image: all passed"
