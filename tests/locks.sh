#!/usr/bin/env bash
# Locking with the Linux kernel client (issue 14): the guest mounts ftnfsd *without* nolock,
# with its own rpcbind and rpc.statd, and two processes contend for one file with flock
# (a whole-file POSIX lock on NFS, so NLM): a second exclusive and a shared lock are denied
# while the first is held, a blocking one is granted only after the holder lets go (the
# server's GRANTED callback to the guest's lock manager), two shared locks coexist. ftnfsd
# runs with a real rpcbind in its namespace, where the guest's lock client finds NLM.
# Prints "N passed, N failed".
#   tests/locks.sh FTNFSD_BINARY
set -uo pipefail
BIN=$(realpath "$1")
HERE=$(cd "$(dirname "$0")" && pwd)
LAB=$HERE/../scripts/lab
CACHE=$("$LAB/prepare-guest.sh" "${FTNFS_LAB_CACHE:-$HERE/../.lab-cache}" | tail -1) || exit 1
# shellcheck source=../scripts/lab/topo.sh
. "$LAB/topo.sh"
WORK=$(mktemp -d)
RPCB=
cleanup() { [ -n "$RPCB" ] && kill "$RPCB" 2>/dev/null; topo_cleanup; rm -rf "$WORK"; }
trap cleanup EXIT
topo_init || exit 1
trap cleanup EXIT
topo_member srv 10.99.0.1 || exit 1
topo_tap tg0 || exit 1
mkdir -p "$WORK/export"
echo "$WORK/export *(rw,insecure,no_root_squash)" > "$WORK/exports"
# rpcbind with a private /run in the server's namespace; ftnfsd registers NFS, MOUNT, NLM
topo_in srv unshare -m bash -c "mount -t tmpfs none /run && exec rpcbind -f -w" & RPCB=$!
for _ in $(seq 600); do topo_in srv rpcinfo -p 127.0.0.1 >/dev/null 2>&1 && break; sleep 0.1; done
topo_in srv "$BIN" --exports "$WORK/exports" --state-dir "$WORK/state" --port 2049 \
  --admin-socket "$WORK/adm.sock" 2>>"$WORK/log" &
for _ in $(seq 1200); do topo_in srv rpcinfo -p 127.0.0.1 2>/dev/null | grep -q 100021 && break; sleep 0.1; done
pass=0; fail=0
check() { # NAME RESULT
  if [ "$2" = "FTNFS-RESULT PASS" ]; then pass=$((pass+1)); echo "ok   $1"; else fail=$((fail+1)); echo "FAIL $1: ${2:-no result}"; fi
}
if topo_in srv rpcinfo -p 127.0.0.1 | grep -qE '100021 +4 +tcp +2049'; then
  check "NLM registered with rpcbind" "FTNFS-RESULT PASS"
else
  check "NLM registered with rpcbind" "$(topo_in srv rpcinfo -p 127.0.0.1 2>&1 | tr '\n' ' ')"
fi
topo_hub timeout 300 qemu-system-x86_64 -accel tcg -M pc -smp 1 -m 256 -nodefaults -nographic -no-reboot \
  -serial file:"$WORK/serial" -monitor none -kernel "$CACHE/vmlinux" -initrd "$CACHE/initramfs.cpio.gz" \
  -append "console=ttyS0 quiet panic=-1 ftnfs.srv=10.99.0.1 ftnfs.ip=10.99.0.100/24 ftnfs.path=$WORK/export ftnfs.port=2049 ftnfs.work=locks" \
  -netdev tap,id=n0,ifname=tg0,script=no,downscript=no -device virtio-net-pci,netdev=n0,romfile=
check "kernel client: flock contention, blocking lock granted by callback" \
  "$(grep -ao "FTNFS-RESULT [A-Z].*" "$WORK/serial" | tr -d "\r" | tail -1)"
grep -ao "FTNFS-LOCK.*" "$WORK/serial" | tr -d "\r"
if [ "$fail" != 0 ]; then
  echo "--- guest console"; tr -d '\r' < "$WORK/serial" | tail -30
  echo "--- ftnfsd log"; tail -20 "$WORK/log"
fi
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
