#!/usr/bin/env bash
# The Linux kernel NFS client (qemu guest, TCG) against ftnfsd: a metadata storm, a 32 MiB
# write with conv=fsync read back after a remount with checksum, and a writer that keeps its
# hard mount while ftnfsd is killed (-9) and restarted. Prints "N passed, N failed".
#   tests/kernel-client.sh FTNFSD_BINARY
set -uo pipefail
BIN=$(realpath "$1")
HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=$("$HERE/../scripts/lab/prepare-guest.sh" "${FTNFS_LAB_CACHE:-$HERE/../.lab-cache}" | tail -1) || exit 1
WORK=$(mktemp -d)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
PID=
start() { "$BIN" --exports "$WORK/exports" --state-dir "$WORK/state" --port "$PORT" --admin-socket "$WORK/adm.sock" --no-portmap 2>>"$WORK/log" & PID=$!; for i in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && return; sleep 0.1; done; }
cleanup() { [ -n "$PID" ] && kill -9 "$PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
mkdir -p "$WORK/export"
echo "$WORK/export *(rw,insecure,no_root_squash)" > "$WORK/exports"
start
guest() { # WORKLOAD
  timeout 300 qemu-system-x86_64 -accel tcg -M pc -smp 1 -m 256 -nodefaults -nographic -no-reboot \
    -serial file:"$WORK/serial-$1" -monitor none -kernel "$CACHE/vmlinux" -initrd "$CACHE/initramfs.cpio.gz" \
    -append "console=ttyS0 quiet panic=-1 ftnfs.srv=10.0.2.2 ftnfs.path=$WORK/export ftnfs.port=$PORT ftnfs.work=$1" \
    -netdev user,id=n0 -device virtio-net-pci,netdev=n0,romfile=
  grep -ao "FTNFS-RESULT [A-Z].*" "$WORK/serial-$1" | tr -d "\r" | tail -1
}
pass=0; fail=0
check() { # NAME RESULT
  if [ "$2" = "FTNFS-RESULT PASS" ]; then pass=$((pass+1)); echo "ok   $1"; else fail=$((fail+1)); echo "FAIL $1: ${2:-no result}"; fi
}
check meta "$(guest meta)"
check seqio "$(guest seqio)"
# restart under a live mount
( guest longwrite > "$WORK/lw.out" ) & G=$!
sleep 6; kill -9 "$PID"; wait "$PID" 2>/dev/null; sleep 1; start
wait $G
check restart-under-mount "$(cat "$WORK/lw.out")"
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
