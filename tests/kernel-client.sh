#!/usr/bin/env bash
# The Linux kernel NFS client (qemu guest, TCG) against ftnfsd, each on its own address in a
# network namespace topology (scripts/lab/topo.sh): ftnfsd at 10.99.0.1, the guest on a tap
# device at 10.99.0.100. Workloads: a metadata storm; a 32 MiB write with conv=fsync read back
# after a remount with checksum; exports edited and reloaded under a live mount (a bad file
# refused, then ro, then rw); the same over IPv6 (proto=tcp6); a writer of acknowledged records that keeps its hard mount
# while ftnfsd is killed (-9) and restarted, after which every acknowledged record is checked
# in the export. All traffic is captured on the bridge and tshark must find no malformed
# packet, no rejected reply and no call left without a reply. Prints "N passed, N failed".
#   tests/kernel-client.sh FTNFSD_BINARY
set -uo pipefail
BIN=$(realpath "$1")
HERE=$(cd "$(dirname "$0")" && pwd)
LAB=$HERE/../scripts/lab
CACHE=$("$LAB/prepare-guest.sh" "${FTNFS_LAB_CACHE:-$HERE/../.lab-cache}" | tail -1) || exit 1
# shellcheck source=../scripts/lab/topo.sh
. "$LAB/topo.sh"
WORK=$(mktemp -d)
PID=
CAP=
cleanup() { [ -n "$CAP" ] && kill "$CAP" 2>/dev/null; topo_cleanup; rm -rf "$WORK"; }
trap cleanup EXIT
topo_init || exit 1
trap cleanup EXIT
topo_member srv 10.99.0.1 || exit 1
# IPv6 too: ftnfsd's default listener takes both families
ip -n "$TOPO-srv" addr add fd99::1/64 dev eth0 nodad || exit 1
topo_tap tg0 || exit 1
# the daemon's process (PID is the background subshell that runs it, not ftnfsd): only
# ftnfsd runs in the srv namespace
srv_signal() { ip netns pids "$TOPO-srv" | xargs -r kill "$1"; }
start() {
  topo_in srv "$BIN" --exports "$WORK/exports" --state-dir "$WORK/state" --port 2049 \
    --admin-socket "$WORK/adm.sock" --no-portmap 2>>"$WORK/log" & PID=$!
  for _ in $(seq 1200); do
    topo_in srv bash -c 'exec 3<>/dev/tcp/10.99.0.1/2049' 2>/dev/null && return
    sleep 0.1
  done
  echo "ftnfsd did not start"; cat "$WORK/log"
}
mkdir -p "$WORK/export"
echo "$WORK/export *(rw,insecure,no_root_squash)" > "$WORK/exports"
# a large buffer: on a loaded machine dumpcap may wait for a CPU while 1 MiB writes pass.
# Not through topo_hub: $! of a backgrounded function is a subshell, and killing it would
# leave dumpcap writing while the capture is read; `ip netns exec` execs dumpcap itself.
ip netns exec "$TOPO-hub" dumpcap -B 64 -i br0 -f "tcp port 2049 or udp port 2049" -w "$WORK/cap.pcapng" \
  2>"$WORK/cap.err" & CAP=$!
start
guest() { # WORKLOAD [EXTRA KERNEL ARGS]
  topo_hub timeout 300 qemu-system-x86_64 -accel tcg -M pc -smp 1 -m 256 -nodefaults -nographic -no-reboot \
    -serial file:"$WORK/serial-$1" -monitor none -kernel "$CACHE/vmlinux" -initrd "$CACHE/initramfs.cpio.gz" \
    -append "console=ttyS0 quiet panic=-1 ftnfs.srv=10.99.0.1 ftnfs.ip=10.99.0.100/24 ftnfs.path=$WORK/export ftnfs.port=2049 ftnfs.work=$1 ${2:-}" \
    -netdev tap,id=n0,ifname=tg0,script=no,downscript=no -device virtio-net-pci,netdev=n0,romfile=
  grep -ao "FTNFS-RESULT [A-Z].*" "$WORK/serial-$1" | tr -d "\r" | tail -1
}
pass=0; fail=0
check() { # NAME RESULT
  if [ "$2" = "FTNFS-RESULT PASS" ]; then pass=$((pass+1)); echo "ok   $1"; else fail=$((fail+1)); echo "FAIL $1: ${2:-no result}"; fi
}
check meta "$(guest meta)"
check seqio "$(guest seqio)"
# reload under a live mount: a bad exports file is refused (the old one stays), then ro and
# rw again, each in force for the mounted guest without a remount
serial_has() { # WORKLOAD TEXT: waits (bounded) until the guest printed TEXT
  for _ in $(seq 1500); do grep -q "$2" "$WORK/serial-$1" 2>/dev/null && return 0; sleep 0.2; done
  return 1
}
rw_line="$WORK/export *(rw,insecure,no_root_squash)"
( guest reload ftnfs.mountopts=actimeo=0 > "$WORK/rl.out" ) & G=$!
if serial_has reload "FTNFS-RELOAD mounted"; then
  printf '%s\n/nowhere *(bogus_option)\n' "$rw_line" > "$WORK/exports"
  srv_signal -HUP
  for _ in $(seq 600); do grep -q "not reloaded" "$WORK/log" && break; sleep 0.2; done
  if grep -q "not reloaded.*exports:2:" "$WORK/log"; then
    check bad-exports-refused-with-line "FTNFS-RESULT PASS"
  else
    check bad-exports-refused-with-line "$(grep 'reload' "$WORK/log" | tail -2)"
  fi
  echo "$rw_line" > "$WORK/exports"
  touch "$WORK/export/bad-done"
  serial_has reload "FTNFS-RELOAD rw" && echo "$WORK/export *(ro,insecure,no_root_squash)" > "$WORK/exports" && srv_signal -HUP
  serial_has reload "FTNFS-RELOAD ro" && echo "$rw_line" > "$WORK/exports" && srv_signal -HUP
fi
wait $G
echo "$rw_line" > "$WORK/exports"
check reload-under-mount "$(cat "$WORK/rl.out")"
grep -ao "FTNFS-RELOAD.*" "$WORK/serial-reload" | tr -d '\r'
# the kernel client over IPv6 (proto=tcp6) to the same daemon and export
check ipv6 "$(guest ipv6 "ftnfs.srv=fd99::1 ftnfs.ip6=fd99::100/64")"
grep -ao "FTNFS-IPV6.*" "$WORK/serial-ipv6" | tr -d '\r'
if grep -q "mounted.*client.*\[fd99::100\]" "$WORK/log"; then
  check ipv6-client-seen-as-ipv6 "FTNFS-RESULT PASS"
else
  check ipv6-client-seen-as-ipv6 "$(grep mounted "$WORK/log" | tail -1)"
fi
# kill -9 and restart under a live hard mount, while acknowledged records are written
( guest ackwrite ftnfs.n=60 > "$WORK/aw.out" ) & G=$!
for _ in $(seq 200); do grep -q "FTNFS-ACK 10 " "$WORK/serial-ackwrite" 2>/dev/null && break; sleep 0.2; done
srv_signal -9; wait "$PID" 2>/dev/null
for _ in $(seq 300); do [ -z "$(ip netns pids "$TOPO-srv")" ] && break; sleep 0.1; done
[ -z "$(ip netns pids "$TOPO-srv")" ] || echo "ftnfsd survived kill -9"
sleep 1; start
wait $G
# the kill was real: a second daemon started and served (a kill that missed would leave the
# first one serving and this test proving nothing)
if [ "$(grep -c "serving NFSv3" "$WORK/log")" = 2 ]; then
  check killed-and-restarted "FTNFS-RESULT PASS"
else
  check killed-and-restarted "$(grep -c "serving NFSv3" "$WORK/log") daemons served"
fi
check restart-under-mount "$(cat "$WORK/aw.out")"
if python3 "$LAB/check-acks.py" "$WORK/serial-ackwrite" "$WORK/export/ack"; then
  check acknowledged-records-kept "FTNFS-RESULT PASS"
else
  check acknowledged-records-kept "lost records"
fi
sleep 0.5; kill "$CAP"; wait "$CAP" 2>/dev/null; CAP=
grep -ao "received/dropped.*" "$WORK/cap.err" | sed 's/^/capture: /'
if python3 "$LAB/capture-check.py" "$WORK/cap.pcapng" 2049; then
  check capture-clean "FTNFS-RESULT PASS"
else
  check capture-clean "tshark found trouble"
  mkdir -p "$HERE/../.lab-cache" && cp "$WORK/cap.pcapng" "$HERE/../.lab-cache/failed-capture.pcapng" \
    && echo "capture kept in .lab-cache/failed-capture.pcapng"
fi
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
