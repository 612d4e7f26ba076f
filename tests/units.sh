#!/usr/bin/env bash
# systemd-analyze verify on packaging/systemd/*.service, with ExecStart pointing at the
# built ftnfsd (the units name /usr/sbin/ftnfsd, where the package installs it).
# Usage: tests/units.sh path/to/ftnfsd
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(realpath "${1:-target/debug/ftnfsd}")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for u in packaging/systemd/*.service; do
  sed "s|/usr/sbin/ftnfsd|$bin|" "$u" >"$tmp/$(basename "$u")"
done
# --man=no: the man pages are not installed here; everything else (directives, the
# hardening options, the binary) is checked
out=$(systemd-analyze verify --man=no "$tmp"/*.service 2>&1) || { echo "$out" >&2; exit 1; }
# verify prints warnings without failing; a unit we ship has none
if [ -n "$out" ]; then echo "$out" >&2; exit 1; fi
# the daemon accepts every option the units pass
"$bin" --help | grep -q -- --witness-mode
echo "units: ok ($(ls packaging/systemd/*.service | wc -l) units verified)"
