#!/usr/bin/env bash
# showmount -e and rpcinfo -p against ftnfsd registered with a real rpcbind, all inside a
# network namespace (own loopback) and a private /run, created here and removed on exit.
#   tests/portmap-showmount.sh FTNFSD_BINARY
set -euo pipefail
BIN=$1
NS=ftnfs-pm-$$
WORK=$(mktemp -d)
cleanup() { ip netns del "$NS" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
ip netns add "$NS"
ip -n "$NS" link set lo up
mkdir -p "$WORK/export" "$WORK/state"
echo "$WORK/export 127.0.0.1(rw,insecure) 10.9.0.0/16(ro)" > "$WORK/exports"
ip netns exec "$NS" unshare -m bash -c "
  set -euo pipefail
  mount -t tmpfs none /run
  rpcbind -f -w & RPCB=\$!
  for i in \$(seq 600); do rpcinfo -p 127.0.0.1 >/dev/null 2>&1 && break; sleep 0.1; done
  '$BIN' --exports '$WORK/exports' --state-dir '$WORK/state' --port 2049 --admin-socket '$WORK/adm.sock' 2>'$WORK/log' & D=\$!
  for i in \$(seq 1200); do rpcinfo -p 127.0.0.1 2>/dev/null | grep -q 100005 && break; sleep 0.1; done
  rpcinfo -p 127.0.0.1 > '$WORK/rpcinfo'
  rpcinfo 127.0.0.1 > '$WORK/rpcinfo.netids'
  showmount -e 127.0.0.1 > '$WORK/showmount'
  kill \$D; wait \$D || true
  rpcinfo -p 127.0.0.1 > '$WORK/rpcinfo.after' || true
  rpcinfo 127.0.0.1 > '$WORK/rpcinfo.netids.after' || true
  kill \$RPCB; wait \$RPCB || true
"
cat "$WORK/rpcinfo" "$WORK/showmount"
grep -qE '100003 +3 +tcp +2049' "$WORK/rpcinfo"
grep -qE '100003 +3 +udp +2049' "$WORK/rpcinfo"
grep -qE '100005 +3 +tcp +2049' "$WORK/rpcinfo"
# the default listener takes IPv6 clients: NFS, MOUNT and NLM on tcp6/udp6 too (rpcbind v3)
grep -qE '100003 +3 +tcp6 +::\.8\.1' "$WORK/rpcinfo.netids"
grep -qE '100003 +3 +udp6 +::\.8\.1' "$WORK/rpcinfo.netids"
grep -qE '100005 +3 +tcp6 +::\.8\.1' "$WORK/rpcinfo.netids"
grep -qE '100021 +4 +tcp6 +::\.8\.1' "$WORK/rpcinfo.netids"
grep -q "$WORK/export" "$WORK/showmount"
grep -q "10.9.0.0/16" "$WORK/showmount"
# unregistered at shutdown
! grep -q 100003 "$WORK/rpcinfo.after"
! grep -q 100003 "$WORK/rpcinfo.netids.after"
echo "portmap-showmount: ok"
