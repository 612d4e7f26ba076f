#!/usr/bin/env bash
# The Linux kernel NFS client (qemu guest, TCG) against ftnfsd, each on its own address in a
# network namespace topology (scripts/lab/topo.sh): ftnfsd at 10.99.0.1, the guest on a tap
# device at 10.99.0.100. Workloads: a metadata storm; a 32 MiB write with conv=fsync read back
# after a remount with checksum; a writer of acknowledged records that keeps its hard mount
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
topo_tap tg0 || exit 1
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
topo_hub dumpcap -q -i br0 -f "tcp port 2049 or udp port 2049" -w "$WORK/cap.pcapng" 2>/dev/null & CAP=$!
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
# kill -9 and restart under a live hard mount, while acknowledged records are written
( guest ackwrite ftnfs.n=60 > "$WORK/aw.out" ) & G=$!
for _ in $(seq 200); do grep -q "FTNFS-ACK 10 " "$WORK/serial-ackwrite" 2>/dev/null && break; sleep 0.2; done
kill -9 "$PID"; wait "$PID" 2>/dev/null; sleep 1; start
wait $G
check restart-under-mount "$(cat "$WORK/aw.out")"
if python3 "$LAB/check-acks.py" "$WORK/serial-ackwrite" "$WORK/export/ack"; then
  check acknowledged-records-kept "FTNFS-RESULT PASS"
else
  check acknowledged-records-kept "lost records"
fi
sleep 0.5; kill "$CAP"; wait "$CAP" 2>/dev/null; CAP=
if python3 "$LAB/capture-check.py" "$WORK/cap.pcapng" 2049; then
  check capture-clean "FTNFS-RESULT PASS"
else
  check capture-clean "tshark found trouble"
  mkdir -p "$HERE/../.lab-cache" && cp "$WORK/cap.pcapng" "$HERE/../.lab-cache/failed-capture.pcapng" \
    && echo "capture kept in .lab-cache/failed-capture.pcapng"
fi
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
