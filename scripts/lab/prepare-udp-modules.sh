#!/usr/bin/env bash
# The guest's NFS client modules rebuilt with NFS over UDP (LAB.md: every Debian kernel has
# CONFIG_NFS_DISABLE_UDP_SUPPORT=y, so proto=udp gives EINVAL): fs/nfs from Debian's
# linux-source of the guest kernel's exact version, built against its headers with that
# option compiled out, and an initramfs that loads them (initramfs-udp.cpio.gz). Cached.
#   scripts/lab/prepare-udp-modules.sh CACHE_DIR   (after prepare-guest.sh; needs root, apt)
#                                        -> prints CACHE_DIR once initramfs-udp.cpio.gz is there
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=$(cd "$1" && pwd)
cd "$CACHE"
kver=$(ls pkgs/lib/modules | head -1)                        # e.g. 6.1.0-57-cloud-amd64
series=$(echo "$kver" | cut -d. -f1,2)                       # 6.1
deb=$(ls dl/linux-image-*.deb | head -1)
version=$(dpkg-deb -f "$deb" Version)                        # e.g. 6.1.192-3
if [ ! -s udp/nfsv3.ko ] || [ ! -s udp/nfs.ko ]; then
  if [ ! -f "/usr/src/linux-source-$series.tar.xz" ] || [ ! -d "/usr/src/linux-headers-$kver" ]; then
    [ -n "$(ls /var/lib/apt/lists/*Packages 2>/dev/null)" ] || apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "linux-source-$series=$version" "linux-headers-$kver=$version" gcc make bc flex bison \
      libelf-dev xz-utils > /dev/null
  fi
  rm -rf udp.build && mkdir -p udp.build
  tar -C udp.build -xf "/usr/src/linux-source-$series.tar.xz" "linux-source-$series/fs/nfs"
  src=$CACHE/udp.build/linux-source-$series/fs/nfs
  # the option is read as IS_ENABLED(CONFIG_NFS_DISABLE_UDP_SUPPORT) in the sources: rename
  # it to a symbol no configuration sets
  grep -rl CONFIG_NFS_DISABLE_UDP_SUPPORT "$src" | xargs -r sed -i \
    's/CONFIG_NFS_DISABLE_UDP_SUPPORT/CONFIG_FTNFS_LAB_UDP_NEVER_DISABLED/g'
  make -s -C "/usr/src/linux-headers-$kver" M="$src" CONFIG_NFS_V2= CONFIG_NFS_V4= \
    -j"$(nproc)" modules > udp.build/log 2>&1 || { tail -30 udp.build/log >&2; exit 1; }
  mkdir -p udp && cp "$src/nfs.ko" "$src/nfsv3.ko" udp/
fi
if [ ! -f initramfs-udp.cpio.gz ] || [ initramfs.cpio.gz -nt initramfs-udp.cpio.gz ]; then
  # the stock initramfs with its nfs and nfsv3 modules replaced (same load order)
  rm -rf udp.root && cp -a root udp.root
  for m in nfs nfsv3; do
    f=$(ls udp.root/lib/modules/ | grep -E "^[0-9]+-$m\.ko$")
    cp "udp/$m.ko" "udp.root/lib/modules/$f"
  done
  (cd udp.root && find . | cpio -o -H newc 2>/dev/null | gzip -1) > initramfs-udp.cpio.gz
fi
echo "$CACHE"
