#!/usr/bin/env bash
# System test of the SD card image in an emulator: qemu-system-aarch64 -M
# virt boots the image's own kernel and initramfs with the image as a
# virtio disk (so /init reads pitap.toml from its FAT partition, as on a
# Pi) and three virtio NICs on TAP devices in namespaces made here: tap
# port A (client side), tap port B (server side) and management (collector).
# pitapd bridges A and B and uplinks over its own stack on the management
# port (static address, no kernel address); real traffic crosses, and the
# collector must receive the flows. The guest boots with its emulated
# real-time clock at 1970 (as a Pi without one), then again 10 years ahead:
# the flows at the collector must start within 2 s of when the traffic
# crossed by the host's clock, synchronised through the sealed uplink.
# Prints the boot time. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
img=$(ls image/out/pitap-*-arm64.img 2>/dev/null | head -1)
[ -n "$img" ] || { image/build.sh; img=$(ls image/out/pitap-*-arm64.img | head -1); }
cargo build -q --release --locked -p pitap
pitap=$root/target/release/pitap
t=$(mktemp -d)
id=$$
nsa=pqa$id nsb=pqb$id nsm=pqm$id
qemu_pid=
cleanup() {
    exec 2>/dev/null # bash's "Killed" reports of the background servers
    [ -n "$qemu_pid" ] && kill "$qemu_pid" 2>/dev/null || true
    for ns in $nsa $nsb $nsm; do
        for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
        ip netns del "$ns" 2>/dev/null || true
    done
    for d in qta$id qtb$id qtm$id; do ip link del "$d" 2>/dev/null || true; done
    [ "${KEEP:-}" = 1 ] || rm -rf "$t"
}
trap cleanup EXIT
fail() {
    echo "system-test: FAILED: $*"
    echo "--- console (last 40 lines)"; tail -40 "$t/console.log" || true
    echo "--- management port (first 20 frames)"; tcpdump -nn -e -r "$t/mgmt.pcap" 2>/dev/null | head -20 || true
    exit 1
}

# The card, as a user would write it: identity and keys baked in.
"$pitap" keygen --tap-id qemu-tap --collector 198.51.100.1:47800 --out-dir "$t/keys" >/dev/null
key=$(sed -n 's/^key = "\(.*\)"/\1/p' "$t/keys/qemu-tap.tap.toml")
cat > "$t/extra.toml" <<TOML
[uplink.stack]
interface = "eth2"
address = "198.51.100.2/24"

[flows]
idle_timeout_s = 2
tcp_linger_s = 1
TOML
# pitap image write puts [uplink] before the extra lines; merge the stack
# section after it (TOML allows [uplink.stack] anywhere).
"$pitap" image write --image "$img" --target "$t/card.img" --tap-id qemu-tap \
    --collector 198.51.100.1:47800 --key "$key" --extra "$t/extra.toml" >/dev/null

for ns in $nsa $nsb $nsm; do ip netns add "$ns"; ip -n "$ns" link set lo up; done

# A real cable carries frames of at most the MTU. With guest offloads the
# host hands the guest 64 KB TSO segments and the tap would count a handful
# of giant frames; without them the host kernel segments before the TAP.
nic="virtio-net-pci,romfile=,guest_tso4=off,guest_tso6=off,guest_ecn=off,guest_ufo=off"
# boot CARD CONSOLE RTC: qemu with the card as its disk, its real-time clock
# starting at RTC, and NICs for A, B and management on fresh TAP devices,
# moved into the namespaces once qemu holds them (before, qemu would
# silently make new ones).
boot() {
    local card=$1 console=$2 rtc=$3 d
    for d in qta$id qtb$id qtm$id; do
        for ns in $nsa $nsb $nsm; do ip -n "$ns" link del "$d" 2>/dev/null || true; done
        ip tuntap add dev "$d" mode tap
    done
    start=$(date +%s.%N)
    qemu-system-aarch64 -M virt -cpu cortex-a72 -smp 2 -m 1024 -nographic -no-reboot \
        -rtc "base=$rtc" \
        -kernel image/out/vmlinuz -initrd image/out/initrd.img \
        -append "console=ttyAMA0 panic=10 net.ifnames=0" \
        -drive "file=$card,format=raw,if=virtio" \
        -netdev "tap,id=a,ifname=qta$id,script=no,downscript=no" -device $nic,netdev=a \
        -netdev "tap,id=b,ifname=qtb$id,script=no,downscript=no" -device $nic,netdev=b \
        -netdev "tap,id=m,ifname=qtm$id,script=no,downscript=no" -device $nic,netdev=m \
        > "$console" 2>&1 &
    qemu_pid=$!
    sleep 1
    ip link set qta$id netns $nsa; ip -n $nsa addr add 192.0.2.1/24 dev qta$id; ip -n $nsa link set qta$id up
    ip link set qtb$id netns $nsb; ip -n $nsb addr add 192.0.2.2/24 dev qtb$id; ip -n $nsb link set qtb$id up
    ip link set qtm$id netns $nsm; ip -n $nsm addr add 198.51.100.1/24 dev qtm$id; ip -n $nsm link set qtm$id up
}
# wait_tapping CONSOLE: until pitapd has set up the bridge.
wait_tapping() {
    for _ in $(seq 1 300); do
        grep -q "pitapd: tapping" "$1" && return 0
        kill -0 $qemu_pid 2>/dev/null || fail "qemu exited"
        sleep 0.5
    done
    fail "pitapd did not start within 150 s"
}
# ping_across: until a ping crosses the emulated tap (at most 120 tries).
ping_across() {
    for _ in $(seq 1 120); do
        ip netns exec $nsa ping -c 1 -W 1 192.0.2.2 >/dev/null 2>&1 && return 0
    done
    fail "no ping across the emulated tap"
}
stop_guest() {
    kill "$qemu_pid" 2>/dev/null || true
    wait "$qemu_pid" 2>/dev/null || true
    qemu_pid=
}

now_ms() { date +%s%3N; }
# flow_start_near JSON_LINE MS: the flow's start_ms within 2 s of MS.
flow_start_near() {
    local start
    start=$(echo "$1" | sed -n 's/.*"start_ms":\([0-9]*\).*/\1/p')
    [ -n "$start" ] || fail "no start_ms in $1"
    local off=$(( start > $2 ? start - $2 : $2 - start ))
    [ "$off" -le 2000 ] || fail "flow started ${off} ms from the collector's clock ($1)"
    echo "$1" | grep -q '"clock":"synced"' || fail "flow time not synced: $1"
    echo "$off"
}

# A Pi 3/4/Zero 2 W has no real-time clock: the guest starts at 1970.
boot "$t/card.img" "$t/console.log" 1970-01-01T00:00:00
for ns in $nsa $nsb; do ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1; done

# What reaches the management side, for the failure report.
ip netns exec $nsm tcpdump -Z root -i qtm$id -w "$t/mgmt.pcap" -U >/dev/null 2>&1 &
ip netns exec $nsm "$pitap" collect --config "$t/keys/qemu-tap.collector.toml" \
    --listen 198.51.100.1:47800 --format json --output "$t/flows.jsonl" --idle-exit 300 \
    2> "$t/collector.err" &

wait_tapping "$t/console.log"
tapping=$(date +%s.%N)
grep -q "pitap: config /boot/pitap.toml" "$t/console.log" || fail "the card's pitap.toml was not used"
ping_across
first_ping=$(date +%s.%N)

# Real traffic through the tap: pings, an HTTP download, a UDP exchange.
mkdir -p "$t/www" && head -c 200000 /dev/urandom > "$t/www/file.bin"
ip netns exec $nsb python3 -m http.server 8000 --bind 192.0.2.2 --directory "$t/www" >/dev/null 2>&1 &
sleep 1
ping_ms=$(now_ms)
ip netns exec $nsa ping -c 5 -i 0.2 192.0.2.2 >/dev/null
got=$(ip netns exec $nsa curl -sS -o /dev/null -w '%{size_download}' http://192.0.2.2:8000/file.bin)
[ "$got" = 200000 ] || fail "HTTP download through the tap got $got bytes"

# The flows end (idle 2 s, TCP linger 1 s) and reach the collector.
ok=
for _ in $(seq 1 60); do
    if grep -q '"dst_pkts":5,.*"proto":"ICMP".*"src_pkts":5,' "$t/flows.jsonl" 2>/dev/null \
        && grep -q '"dst_port":8000' "$t/flows.jsonl" 2>/dev/null; then ok=1; break; fi
    sleep 1
done
[ -n "$ok" ] || fail "the collector did not receive the flows ($(wc -l < "$t/flows.jsonl" 2>/dev/null || echo 0) lines)"
icmp=$(grep '"dst_pkts":5,.*"proto":"ICMP".*"src_pkts":5,' "$t/flows.jsonl" | head -1)
echo "$icmp" | grep -q '"src_addr":"192.0.2.1"' || fail "ICMP flow initiator: $icmp"
echo "$icmp" | grep -q '"ingress":"A"' || fail "ICMP flow ingress: $icmp"
http=$(grep '"dst_port":8000' "$t/flows.jsonl" | head -1)
echo "$http" | grep -q '"conn_state":"SF"' || fail "HTTP flow state: $http"
echo "$http" | grep -q '"tap":"qemu-tap"' || fail "HTTP flow tap id: $http"
# 200000 bytes in frames of at most 1500: at least 138 data segments.
pkts=$(echo "$http" | sed -n 's/.*"dst_pkts":\([0-9]*\).*/\1/p')
bytes=$(echo "$http" | sed -n 's/.*"dst_bytes":\([0-9]*\).*/\1/p')
[ "${pkts:-0}" -ge 138 ] && [ "${bytes:-0}" -gt 200000 ] \
    || fail "HTTP flow counted $pkts packets, $bytes bytes from the server: $http"
grep -q "pitapd: clock synchronised by the collector" "$t/console.log" \
    || fail "pitapd did not synchronise its clock"
off_1970=$(flow_start_near "$icmp" "$ping_ms")

boot=$(echo "$tapping - $start" | bc)
ping_t=$(echo "$first_ping - $start" | bc)
flows=$(wc -l < "$t/flows.jsonl")
stop_guest

# The same card, the clock 10 years ahead (a Pi whose clock was set wrong,
# a board with a flat RTC battery): the same collector takes the reboot.
lines_before=$(wc -l < "$t/flows.jsonl")
boot "$t/card.img" "$t/console-ahead.log" "$(date -u -d '+10 years' +%Y-%m-%dT%H:%M:%S)"
wait_tapping "$t/console-ahead.log"
ping_across
ping_ms=$(now_ms)
ip netns exec $nsa ping -c 3 -i 0.2 192.0.2.2 >/dev/null
ahead=
for _ in $(seq 1 60); do
    ahead=$(tail -n +$((lines_before + 1)) "$t/flows.jsonl" | grep '"dst_pkts":3,.*"proto":"ICMP".*"src_pkts":3,' | head -1 || true)
    [ -n "$ahead" ] && break
    sleep 1
done
[ -n "$ahead" ] || fail "no flow from the boot 10 years ahead ($(wc -l < "$t/flows.jsonl") lines)"
off_ahead=$(flow_start_near "$ahead" "$ping_ms")
grep -q "pitapd: clock synchronised by the collector" "$t/console-ahead.log" \
    || fail "pitapd did not synchronise its clock (10 years ahead)"
stop_guest

# A card whose pitap.toml has an error: the known-good fallback bridges
# anyway, and pitap-errors.txt on the card names the key.
printf '[flows]\nidle_timeout_s = "soon"\n' > "$t/bad.toml"
"$pitap" image write --image "$img" --target "$t/bad-card.img" --tap-id qemu-tap \
    --extra "$t/bad.toml" >/dev/null
boot "$t/bad-card.img" "$t/console-bad.log" 1970-01-01T00:00:00
wait_tapping "$t/console-bad.log"
grep -q "pitap: config /etc/pitap/fallback.toml" "$t/console-bad.log" || fail "the fallback was not used"
ping_across
stop_guest
errors=$(MTOOLS_SKIP_CHECK=1 mtype -i "$t/bad-card.img@@1M" ::pitap-errors.txt) \
    || fail "no pitap-errors.txt on the card"
echo "$errors" | grep -q "idle_timeout_s" || fail "pitap-errors.txt does not name the key: $errors"

sync_1970=$(grep -o "pitapd: clock synchronised by the collector: [^(]*(within [0-9]* us)" "$t/console.log" | head -1)
echo "system-test: passed: pitapd tapping ${boot%???????} s after qemu started, first ping across ${ping_t%???????} s, $flows flows at the collector; RTC at 1970: flows ${off_1970} ms from the collector's clock ($sync_1970); RTC 10 years ahead: ${off_ahead} ms; a broken pitap.toml falls back and bridges (pitap-errors.txt: $(echo "$errors" | head -1))"
