# Common frame of the whole-system tests with members in network namespaces (source it after
# setting T to the directory of the release binaries):
#   LAB CACHE   the lab scripts and the prepared guest (scripts/lab/prepare-guest.sh)
#   W           a scratch directory, removed on exit (kept and named with KEEP=1)
#   EXPORT      the path clients mount; each member bind-mounts its own mirror there
#   check NAME RC DETAIL     count and print one result;  finish   print totals, exit status
#   wait_acks SERIAL N [TENTHS]  wait (default 60 s) until a guest acknowledged record N
#   kill9 NAME               kill -9 every process in member NAME's namespace
#   run_guest SERIAL SERVER WORKLOAD [KERNEL ARGS]   the kernel client on tap tg0, prints its
#                                                    FTNFS-RESULT line; a second guest at once
#                                                    needs its own GUEST_TAP, GUEST_IP (default
#                                                    10.99.0.100/24) and GUEST_MAC; GUEST_PATH
#                                                    is the path it mounts (default $EXPORT);
#                                                    GUEST_INITRD another initramfs (UDP)
LAB=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=$("$LAB/prepare-guest.sh" "${FTNFS_LAB_CACHE:-$LAB/../../.lab-cache}" | tail -1) || exit 1
# shellcheck source=topo.sh
. "$LAB/topo.sh"
W=$(mktemp -d)
harness_cleanup() { topo_cleanup; if [ -n "${KEEP:-}" ]; then echo "kept $W"; else rm -rf "$W"; fi; }
trap harness_cleanup EXIT
topo_init || exit 1
trap harness_cleanup EXIT
EXPORT=$W/export
mkdir -p "$EXPORT"
head -c 32 /dev/urandom | base64 > "$W/secret"
pass=0; fail=0
check() { # NAME RC DETAIL
  if [ "$2" = 0 ]; then pass=$((pass+1)); echo "ok   $1"; else fail=$((fail+1)); echo "FAIL $1: ${3:-}"; fi
}
finish() { echo "$pass passed, $fail failed"; [ "$fail" = 0 ]; }
wait_acks() { # SERIAL N [TENTHS]
  for _ in $(seq "${3:-600}"); do grep -q "FTNFS-ACK $2 " "$1" 2>/dev/null && return 0; sleep 0.1; done; return 1
}
kill9() { ip netns pids "$TOPO-$1" | xargs -r kill -9; }
run_guest() { # SERIAL SERVER WORKLOAD [KERNEL ARGS]
  topo_hub timeout 300 qemu-system-x86_64 -accel tcg -M pc -smp 1 -m 256 -nodefaults -nographic -no-reboot \
    -serial file:"$1" -monitor none -kernel "$CACHE/vmlinux" -initrd "${GUEST_INITRD:-$CACHE/initramfs.cpio.gz}" \
    -append "console=ttyS0 quiet panic=-1 ftnfs.srv=$2 ftnfs.ip=${GUEST_IP:-10.99.0.100/24} ftnfs.path=${GUEST_PATH:-$EXPORT} ftnfs.port=2049 ftnfs.work=$3 ${4:-}" \
    -netdev tap,id=n0,ifname="${GUEST_TAP:-tg0}",script=no,downscript=no \
    -device virtio-net-pci,netdev=n0,romfile=${GUEST_MAC:+,mac=$GUEST_MAC}
  grep -ao "FTNFS-RESULT [A-Z].*" "$1" | tr -d "\r" | tail -1
}
