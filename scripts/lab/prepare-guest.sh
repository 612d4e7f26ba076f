#!/usr/bin/env bash
# Prepares a qemu guest whose /init mounts an NFS server with the Linux kernel client and runs
# a workload (LAB.md). Everything comes from Debian packages; results are cached in $CACHE.
#   scripts/lab/prepare-guest.sh [CACHE_DIR]    -> CACHE/vmlinux, CACHE/initramfs.cpio.gz
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=${1:-$HERE/../../.lab-cache}
mkdir -p "$CACHE"; CACHE=$(cd "$CACHE" && pwd)
cd "$CACHE"
need=()
for t in qemu-system-x86_64:qemu-system-x86 depmod:kmod cpio:cpio xz:xz-utils zstd:zstd; do
  command -v "${t%%:*}" >/dev/null || need+=("${t#*:}")
done
if [ ${#need[@]} -gt 0 ]; then apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null; fi
if [ ! -d pkgs ]; then
  [ -n "$(ls /var/lib/apt/lists/*Packages 2>/dev/null)" ] || apt-get update -qq
  mkdir -p dl && (cd dl && apt-get download -qq busybox-static \
    "$(apt-cache search --names-only '^linux-image-[0-9.+-]*-cloud-amd64-unsigned$' | sort -V | tail -1 | cut -d' ' -f1)")
  mkdir -p pkgs.tmp && for d in dl/*.deb; do dpkg-deb -x "$d" pkgs.tmp; done && mv pkgs.tmp pkgs
fi
if [ ! -s vmlinux ]; then
  # Booting the uncompressed ELF skips decompression (LAB.md); a bzImage boots too.
  bz=$(ls pkgs/boot/vmlinuz-* | head -1)
  off=$(grep -abo $'\x28\xb5\x2f\xfd' "$bz" | head -1 | cut -d: -f1 || true)
  if [ -n "$off" ]; then tail -c +$((off + 1)) "$bz" | zstd -dc > vmlinux.tmp 2>/dev/null || true; fi
  if [ -s vmlinux.tmp ] && head -c 4 vmlinux.tmp | grep -q ELF; then mv vmlinux.tmp vmlinux; else rm -f vmlinux.tmp; cp "$bz" vmlinux; fi
fi
if [ ! -f initramfs.cpio.gz ] || [ "$HERE/guest-init.sh" -nt initramfs.cpio.gz ] \
  || [ "$HERE/prepare-guest.sh" -nt initramfs.cpio.gz ]; then
  rm -rf root && mkdir -p root/{bin,sbin,proc,sys,dev,mnt,tmp,lib/modules}
  cp pkgs/bin/busybox root/bin/busybox
  for a in $(root/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox "root/bin/$a"; done
  kver=$(ls pkgs/lib/modules | head -1)
  [ -f "pkgs/lib/modules/$kver/modules.dep" ] || depmod -b "$CACHE/pkgs" "$kver"
  # virtio_net and nfsv3 with their dependencies, in load order, from modules.dep
  order=$(python3 - "pkgs/lib/modules/$kver/modules.dep" <<'PY'
import sys
dep = {}
for line in open(sys.argv[1]):
    k, _, v = line.partition(":")
    dep[k] = v.split()
out = []
def visit(m):
    for d in reversed(dep.get(m, [])):
        visit(d)
    if m not in out:
        out.append(m)
for want in ("virtio_pci", "virtio_net", "nfsv3"):
    for k in dep:
        if k.rsplit("/", 1)[-1].split(".ko")[0] == want:
            visit(k)
print("\n".join(out))
PY
)
  n=10
  for f in $order; do
    src=pkgs/lib/modules/$kver/$f
    base=$(basename "$f"); base=${base%%.ko*}
    case "$src" in *.xz) xz -dc "$src" ;; *.zst) zstd -dc "$src" ;; *) cat "$src" ;; esac > "root/lib/modules/$n-$base.ko"
    n=$((n + 1))
  done
  # the client side of locking (LAB.md "Locks in the guest"): rpcbind and rpc.statd with the
  # libraries they load, from this machine's Debian packages (.ci/run installs them)
  # (and util-linux's flock: busybox has none)
  for b in rpcbind rpc.statd flock; do
    p=$(command -v "$b" || true)
    [ -n "$p" ] || continue
    cp "$p" root/sbin/
    for l in $(ldd "$p" | grep -o '/[^ ]*\.so[^ ]*'); do
      mkdir -p "root$(dirname "$l")"; cp -L "$l" "root$l"
    done
  done
  mkdir -p root/etc root/var/lib/nfs/sm root/var/lib/nfs/sm.bak root/run/rpcbind
  [ -f /etc/netconfig ] && cp /etc/netconfig root/etc/
  printf 'root:x:0:0:root:/:/bin/sh\n_rpc:x:0:0:rpc:/:/bin/sh\nstatd:x:0:0:statd:/var/lib/nfs:/bin/sh\n' > root/etc/passwd
  printf 'root:x:0:\n' > root/etc/group
  printf 'rpcbind 111/tcp\nrpcbind 111/udp\n' > root/etc/services
  printf '127.0.0.1 localhost guest\n' > root/etc/hosts
  printf 'hosts: files\npasswd: files\ngroup: files\n' > root/etc/nsswitch.conf
  mkdir -p root/var && ln -sfn /run root/var/run
  cp "$HERE/guest-init.sh" root/init && chmod +x root/init
  (cd root && find . | cpio -o -H newc 2>/dev/null | gzip -1) > initramfs.cpio.gz
fi
echo "$CACHE"
