#!/usr/bin/env bash
# System test of A/B updates on the SD card image in qemu-system-aarch64.
# qemu cannot run the Pi's boot firmware, so a boot harness here does its
# part: it reads autoboot.txt from the card's first partition, boots the
# [tryboot] partition once after a reboot whose command was "0 tryboot"
# (the kernel prints it on the console) and the [all] one otherwise, with
# that partition's own kernel, initramfs and cmdline.txt, and tells the
# kernel which partition and whether on trial (pitap.boot_partition,
# pitap.tryboot), as the firmware's device tree would. The card is the
# image as `pitap image write` makes it, with an [update] section; the
# collector runs in a namespace on the management port.
#
#  1. refused before any reboot: an image signed with another key, and a
#     transfer cut short (the collector holds half the image);
#  2. a power cut (qemu killed) while the image is written: the old
#     partition boots, untouched, and autoboot.txt is as it was;
#  3. the same update taken again from the start, written, tried, committed
#     (autoboot.txt swapped), and the next boot runs it;
#  4. an update whose pitapd never becomes healthy (its initramfs lacks the
#     bridge driver): /init's trial timer reboots, the old partition boots,
#     and the collector ends the offer as rolled back. (A trial that is
#     healthy but never acknowledged rolls back by pitapd's own timer:
#     firmware/pitapd/tests/update.rs.)
# Needs root (TAP devices, namespaces).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
export MTOOLS_SKIP_CHECK=1 PATH=$PATH:/usr/sbin:/sbin
img=$(ls image/out/pitap-*-arm64.img 2>/dev/null | head -1)
[ -n "$img" ] || { image/build.sh; img=$(ls image/out/pitap-*-arm64.img | head -1); }
bootimg=$(ls image/out/pitap-*-boot.img | head -1)
cargo build -q --release --locked -p pitap
pitap=$root/target/release/pitap
t=$(mktemp -d)
id=$$
nsa=pua$id nsb=pub$id nsm=pum$id
qemu_pid=
cleanup() {
    exec 2>/dev/null
    [ -n "$qemu_pid" ] && kill -9 "$qemu_pid" 2>/dev/null || true
    for ns in $nsa $nsb $nsm; do
        for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
        ip netns del "$ns" 2>/dev/null || true
    done
    for d in uta$id utb$id utm$id; do ip link del "$d" 2>/dev/null || true; done
    [ "${KEEP:-}" = 1 ] || rm -rf "$t"
}
trap cleanup EXIT
console=
fail() {
    echo "update-test: FAILED: $*"
    [ -n "$console" ] && { echo "--- console $console (last 40 lines)"; tail -40 "$console" || true; }
    echo "--- collector (last 20 lines)"; tail -20 "$t/collector.err" 2>/dev/null || true
    exit 1
}
say() { echo "== $*"; }
ok() { echo "  ok: $*"; }

# The card: identity, keys, the uplink on its own stack, and the update key.
"$pitap" keygen --tap-id qemu-tap --collector 198.51.100.1:47800 --out-dir "$t/keys" >/dev/null
"$pitap" keygen --update --out-dir "$t/keys" >/dev/null
"$pitap" keygen --update --out-dir "$t/other" >/dev/null
key=$(sed -n 's/^key = "\(.*\)"/\1/p' "$t/keys/qemu-tap.tap.toml")
public=$(sed -n 's/^public = "\(.*\)"/\1/p' "$t/keys/update.key")
cat > "$t/extra.toml" <<TOML
[uplink.stack]
interface = "eth2"
address = "198.51.100.2/24"

[update]
key = "$public"
trial_s = 20
TOML
card=$t/card.img
"$pitap" image write --image "$img" --target "$card" --tap-id qemu-tap \
    --collector 198.51.100.1:47800 --key "$key" --extra "$t/extra.toml" >/dev/null

# Partition N's byte offset on the card.
part_offset() {
    local start
    start=$(sfdisk --dump "$card" | sed -n "s|^$card$1 : start= *\([0-9]*\),.*|\1|p")
    [ -n "$start" ] || fail "no partition $1 on the card"
    echo $((start * 512))
}
autoboot() { mtype -i "$card@@$(part_offset 1)" ::autoboot.txt; }
# The [all] or [tryboot] section's boot_partition.
autoboot_partition() {
    autoboot | awk -v want="[$1]" '/^\[/ { s = $0; next } s == want && /^boot_partition=/ { sub(/.*=/, ""); print; exit }'
}
# A variant of the boot partition image: cmdline.txt with a marker word,
# so the console says which image booted.
variant() {
    local name=$1 out=$t/$1.img
    cp "$bootimg" "$out"
    mtype -i "$out" ::cmdline.txt | tr -d '\n' > "$t/cmdline-$name"
    echo " pitap.image=$name" >> "$t/cmdline-$name"
    mcopy -o -i "$out" "$t/cmdline-$name" ::cmdline.txt
    echo "$out"
}

for ns in $nsa $nsb $nsm; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
nic="virtio-net-pci,romfile=,guest_tso4=off,guest_tso6=off,guest_ecn=off,guest_ufo=off"
tryboot=0
boots=0
# firmware_boot: the boot firmware's choice, then qemu with that partition.
firmware_boot() {
    local part d off args
    boots=$((boots + 1))
    console=$t/console-$boots.log
    if [ "$tryboot" = 1 ]; then part=$(autoboot_partition tryboot); else part=$(autoboot_partition all); fi
    [ -n "$part" ] || fail "autoboot.txt names no partition: $(autoboot)"
    booted_partition=$part booted_tryboot=$tryboot
    tryboot=0 # the flag is one-shot
    off=$(part_offset "$part")
    rm -rf "$t/fw" && mkdir -p "$t/fw"
    mcopy -i "$card@@$off" ::vmlinuz ::initrd.img ::cmdline.txt "$t/fw/" 2>/dev/null \
        || fail "partition $part has no kernel, initramfs or cmdline.txt: the firmware would not boot it"
    # The Pi's consoles are not the emulator's (and the test reads this one).
    args=$(tr ' ' '\n' < "$t/fw/cmdline.txt" | grep -v '^console=\|^quiet$\|^$' | tr '\n' ' ')
    for d in uta$id utb$id utm$id; do
        for ns in $nsa $nsb $nsm; do ip -n "$ns" link del "$d" 2>/dev/null || true; done
        ip tuntap add dev "$d" mode tap
    done
    qemu-system-aarch64 -M virt -cpu cortex-a72 -smp 2 -m 1024 -nographic -no-reboot \
        -kernel "$t/fw/vmlinuz" -initrd "$t/fw/initrd.img" \
        -append "console=ttyAMA0 $args pitap.boot_partition=$part pitap.tryboot=$booted_tryboot" \
        -drive "file=$card,format=raw,if=virtio" \
        -netdev "tap,id=a,ifname=uta$id,script=no,downscript=no" -device $nic,netdev=a \
        -netdev "tap,id=b,ifname=utb$id,script=no,downscript=no" -device $nic,netdev=b \
        -netdev "tap,id=m,ifname=utm$id,script=no,downscript=no" -device $nic,netdev=m \
        > "$console" 2>&1 &
    qemu_pid=$!
    sleep 1
    ip link set uta$id netns $nsa; ip -n $nsa link set uta$id up
    ip link set utb$id netns $nsb; ip -n $nsb link set utb$id up
    ip link set utm$id netns $nsm; ip -n $nsm addr add 198.51.100.1/24 dev utm$id; ip -n $nsm link set utm$id up
}
wait_console() { # TEXT SECONDS
    for _ in $(seq 1 $(($2 * 2))); do
        grep -qF "$1" "$console" && return 0
        kill -0 "$qemu_pid" 2>/dev/null || fail "qemu exited before the console said '$1'"
        sleep 0.5
    done
    fail "the console did not say '$1' within $2 s"
}
# wait_reboot SECONDS: until the guest reboots (qemu -no-reboot exits); the
# next firmware_boot tries the other partition if the command was tryboot.
wait_reboot() {
    for _ in $(seq 1 $(($1 * 2))); do
        if ! kill -0 "$qemu_pid" 2>/dev/null; then
            wait "$qemu_pid" 2>/dev/null || true
            qemu_pid=
            grep -q "reboot: Restarting system" "$console" || fail "qemu exited without a reboot"
            if grep -q "Restarting system with command '0 tryboot'" "$console"; then tryboot=1; fi
            return 0
        fi
        sleep 0.5
    done
    fail "no reboot within $1 s"
}
power_cut() {
    kill -9 "$qemu_pid" 2>/dev/null || true
    wait "$qemu_pid" 2>/dev/null || true
    qemu_pid=
}
booted() { # PARTITION IMAGE-MARKER: what the console says booted
    # The kernel prints its command line early, but not at once: wait for it.
    wait_console "Kernel command line:" 60
    grep -q "Kernel command line:.*pitap.boot_partition=$1 " "$console" || fail "not partition $1: $(grep -m1 'Kernel command line' "$console")"
    if [ "$2" = a ]; then
        grep -q "Kernel command line:.*pitap.image=" "$console" && fail "not the image as built"
    else
        grep -q "Kernel command line:.*pitap.image=$2 " "$console" || fail "not image $2"
    fi
    return 0
}
start_collector() {
    ip netns exec $nsm "$pitap" collect --config "$t/keys/qemu-tap.collector.toml" \
        --listen 198.51.100.1:47800 --format json --output "$t/flows.jsonl" --store "$t/flows.db" \
        2>> "$t/collector.err" &
    collector_pid=$!
    for _ in $(seq 1 40); do grep -q "collecting on" "$t/collector.err" 2>/dev/null && return 0; sleep 0.25; done
    fail "the collector did not start"
}
stop_collector() {
    kill "$collector_pid" 2>/dev/null || true
    wait "$collector_pid" 2>/dev/null || true
}
offer() { # IMAGE VERSION KEY
    "$pitap" update --store "$t/flows.db" --tap qemu-tap --version "$2" --key "$3" "$1" >/dev/null \
        || fail "pitap update $1"
}
list() { "$pitap" update --list --store "$t/flows.db"; }
wait_list() { # PATTERN SECONDS
    for _ in $(seq 1 $(($2 * 4))); do
        list > "$t/list" && grep -q -- "$1" "$t/list" && return 0
        sleep 0.25
    done
    fail "pitap update --list did not show '$1' within $2 s: $(list)"
}
# What the store sends of an offer cut to half, behind the collector's back.
store_half() { # VERSION
    python3 - "$t/flows.db" "$1" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
(stream,) = db.execute("SELECT stream FROM updates WHERE version = ?", (sys.argv[2],)).fetchone()
db.execute("UPDATE updates SET stream = ? WHERE version = ?", (stream[: len(stream) // 2], sys.argv[2]))
db.commit()
PY
}

b=$(variant b)
c=$(variant c)
b_size=$(stat -c %s "$b")
part_digest() { dd if="$card" iflag=skip_bytes,count_bytes skip="$(part_offset "$1")" count="$b_size" status=none | sha256sum; }
p2=$(part_digest 2)
autoboot_before=$(autoboot)

firmware_boot
start_collector
wait_console "pitapd: tapping" 150
booted 2 a
wait_console "pitapd: updates: idle (boot partition 2)" 5
ok "boot 1: partition 2, the image as built; updates idle"

say "1. refused before any reboot"
offer "$b" forged "$t/other/update.key"
wait_list "forged for tap qemu-tap, $b_size bytes, refused: manifest: signature does not verify" 60
stop_collector
offer "$b" short "$t/keys/update.key"
store_half short
start_collector
wait_list "short for tap qemu-tap, $b_size bytes, refused: image: the transfer ended after [0-9]* of $b_size bytes" 120
sleep 2
grep -q "Restarting system" "$console" && fail "the tap rebooted"
[ "$(autoboot)" = "$autoboot_before" ] || fail "autoboot.txt changed"
ok "a manifest signed with another key refused; a transfer cut to half its stream refused ($(grep -o 'ended after [0-9]* of [0-9]* bytes' "$t/list" | head -1)); no reboot"

say "2. a power cut while the image is written"
offer "$b" 0.2.0-b "$t/keys/update.key"
wait_list "receiving .*([3-9][0-9] %)" 300
power_cut
[ "$(autoboot)" = "$autoboot_before" ] || fail "autoboot.txt changed by a cut transfer"
[ "$(part_digest 2)" = "$p2" ] || fail "partition 2 changed"
firmware_boot
wait_console "pitapd: tapping" 150
booted 2 a
ok "killed at $(list | grep -o '([0-9]* %)' | head -1): partition 2 boots, unchanged; autoboot.txt as it was"

say "3. the update again from the start: written, tried, committed, running"
start=$(date +%s)
wait_reboot 600
took=$(( $(date +%s) - start ))
[ "$tryboot" = 1 ] || fail "the reboot was not a tryboot"
grep -q "pitapd: update 0.2.0-b written and read back" "$console" || fail "not written and read back"
firmware_boot
wait_console "pitapd: tapping" 150
booted 3 b
wait_console "committed (partition 3 boots from now on)" 60
wait_list "offer .*: 0.2.0-b for tap qemu-tap, $b_size bytes, done" 30
[ "$(autoboot_partition all)" = 3 ] && [ "$(autoboot_partition tryboot)" = 2 ] \
    || fail "autoboot.txt not swapped: $(autoboot)"
power_cut
firmware_boot
wait_console "pitapd: tapping" 150
booted 3 b
sent=$(sed -n "s/.*offering update 0.2.0-b ($b_size bytes, \([0-9]*\) to send deflated).*/\1/p" "$t/collector.err" | tail -1)
[ -n "$sent" ] || fail "the image was not sent deflated: $(grep offering "$t/collector.err")"
ok "taken in $took s ($((b_size / 1048576)) MiB, $((sent / 1048576)) MiB deflated on the uplink), tried on partition 3, committed; the next boot runs it"

say "4. an update whose pitapd never becomes healthy rolls back by itself"
# Image c is broken the way a bad build is: its initramfs lacks the bridge
# driver, so pitapd cannot set up the tap, exits, and /init starts it again
# and again; nothing commits, and /init's trial timer reboots.
mkdir -p "$t/ird"
mtype -i "$c" ::initrd.img | gzip -dc | (cd "$t/ird" && cpio -idm --quiet 2>/dev/null)
find "$t/ird" -name 'bridge.ko*' -delete
sed -i '/^bridge$/d' "$t/ird/etc/pitap/modules.load"
(cd "$t/ird" && find . | sort | cpio -o -H newc --quiet | gzip -1) > "$t/initrd-c.img"
mcopy -o -i "$c" "$t/initrd-c.img" ::initrd.img
offer "$c" 0.3.0-c "$t/keys/update.key"
wait_reboot 600
[ "$tryboot" = 1 ] || fail "the reboot was not a tryboot"
firmware_boot
booted 2 c
wait_console "trial boot of partition 2" 60
wait_reboot 200
[ "$tryboot" = 0 ] || fail "the roll-back reboot set tryboot"
grep -q "pitapd: tapping" "$console" && fail "the broken image tapped"
grep -q "pitapd exited" "$console" || fail "pitapd did not fail on the broken image"
grep -q "trial of partition 2 not committed in time: rebooting into partition 3" "$console" \
    || fail "init's trial timer did not reboot"
firmware_boot
wait_console "pitapd: tapping" 150
booted 3 b
[ "$(autoboot_partition all)" = 3 ] || fail "autoboot.txt changed: $(autoboot)"
wait_list "0.3.0-c for tap qemu-tap, .* rolled back: the trial boot did not commit" 60
power_cut
ok "image c (no bridge driver) never tapped; /init's timer rebooted after trial_s + 60 s: back on partition 3 (image b); the offer rolled back"

echo "update-test: passed: $boots boots; forged and short refused without a reboot; a power cut mid-write left partition 2 booting; $((b_size / 1048576)) MiB ($((sent / 1048576)) MiB deflated) taken in $took s, committed and booted; a broken image rolled back by itself"
