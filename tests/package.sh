#!/usr/bin/env bash
# The Debian package installs and works on a system that never had ftnfs: scripts/package
# builds it; dpkg installs it in a throwaway copy of this host's root (an overlay whose
# writes vanish, in a private mount namespace, chrooted — the host stays untouched); there
# ftnfsd --version and ftnfsctl --version run from /usr/sbin, man shows ftnfsd(8), the
# units verify, the exports and defaults are conffiles, and dpkg -r removes it cleanly.
# lintian finds no error and no warning.
# Needs root.   tests/package.sh [BINDIR]
set -euo pipefail
cd "$(dirname "$0")/.."
deb=$(realpath "$(scripts/package "${1:-target/release}")")
# Debian's own checks of a package: no error, no warning (overrides in
# packaging/debian/lintian-overrides, each with its reason)
if command -v lintian >/dev/null; then
  out=$(lintian --fail-on error,warning --tag-display-limit 0 "$deb" 2>&1) && rc=0 || rc=$?
  grep -v "root privileges" <<< "$out" || true
  [ "$rc" = 0 ] || { echo "lintian: the package has errors or warnings (exit $rc)"; exit 1; }
elif [ -n "${FTNFS_REQUIRE_TOOLS:-}" ]; then
  echo "lintian missing (apt-get install lintian)"; exit 1
else
  echo "SKIP lintian: not installed"
fi
w=$(mktemp -d)
trap 'umount "$w/upper" 2>/dev/null || true; rm -rf "$w"' EXIT
mkdir -p "$w/upper" "$w/work" "$w/merged"
mount -t tmpfs none "$w/upper"
mkdir -p "$w/upper/u" "$w/upper/w"
cp "$deb" "$w/upper/u/ftnfs.deb"
unshare -m --propagation private bash -euo pipefail -c '
  w=$1
  mount -t overlay overlay -o lowerdir=/,upperdir=$w/upper/u,workdir=$w/upper/w "$w/merged"
  for d in proc sys dev run tmp; do mount --rbind /$d "$w/merged/$d" 2>/dev/null || true; done
  mount -t tmpfs none "$w/merged/run"; mount -t tmpfs none "$w/merged/tmp"
  chroot "$w/merged" /bin/bash -euo pipefail -c "
    ! command -v ftnfsd >/dev/null || { echo \"ftnfsd is there before the install\"; exit 1; }
    DEBIAN_FRONTEND=noninteractive dpkg -i /ftnfs.deb >/dev/null
    /usr/sbin/ftnfsd --version
    /usr/sbin/ftnfsctl --version
    dpkg -s ftnfs | grep -q \"^Status: install ok installed\"
    MANWIDTH=80 man ftnfsd 2>/dev/null | grep -q \"^OPTIONS\" || { echo \"man ftnfsd shows no page\"; exit 1; }
    MANWIDTH=80 man ftnfsctl 2>/dev/null | grep -q \"reload\" || { echo \"man ftnfsctl lacks reload\"; exit 1; }
    if command -v systemd-analyze >/dev/null; then
      systemd-analyze verify --man=no /lib/systemd/system/ftnfsd.service /lib/systemd/system/ftnfs-witness.service
    fi
    /usr/sbin/ftnfsd --exports /etc/ftnfs/exports --state-dir /var/lib/ftnfs --check
    test -d /var/lib/ftnfs && test \"\$(stat -c %a /var/lib/ftnfs)\" = 700
    dpkg-query -W -f=\"\\\${Conffiles}\n\" ftnfs | grep -q /etc/ftnfs/exports
    dpkg -r ftnfs >/dev/null
    ! test -e /usr/sbin/ftnfsd || { echo \"dpkg -r left the binary\"; exit 1; }
    test -e /etc/ftnfs/exports   # a conffile stays until purge
    dpkg -P ftnfs >/dev/null
    ! test -e /etc/ftnfs/exports || { echo \"purge left the exports file\"; exit 1; }
  "
' _ "$w"
echo "package: ok ($(basename "$deb") installed, run, removed and purged in a throwaway root)"
