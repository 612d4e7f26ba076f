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
# shellcheck source=../scripts/lab/harness.sh
. "$(dirname "$0")/../scripts/lab/harness.sh"
topo_member srv 10.99.0.1 || exit 1
topo_tap tg0 || exit 1
echo "$EXPORT *(rw,insecure,no_root_squash)" > "$W/exports"
# rpcbind with a private /run in the server's namespace (killed with the namespace); ftnfsd
# registers NFS, MOUNT, NLM and NSM with it
topo_in srv unshare -m bash -c "mount -t tmpfs none /run && exec rpcbind -f -w" &
for _ in $(seq 600); do topo_in srv rpcinfo -p 127.0.0.1 >/dev/null 2>&1 && break; sleep 0.1; done
topo_in srv "$BIN" --exports "$W/exports" --state-dir "$W/state" --port 2049 \
  --admin-socket "$W/adm.sock" 2>>"$W/log" &
for _ in $(seq 1200); do topo_in srv rpcinfo -p 127.0.0.1 2>/dev/null | grep -q 100021 && break; sleep 0.1; done
topo_in srv rpcinfo -p 127.0.0.1 2>&1 | grep -qE '100021 +4 +tcp +2049'
check "NLM registered with rpcbind" $? "$(topo_in srv rpcinfo -p 127.0.0.1 2>&1 | tr '\n' ' ')"
r=$(run_guest "$W/serial" 10.99.0.1 locks)
[ "$r" = "FTNFS-RESULT PASS" ]
check "kernel client: flock contention, blocking lock granted by callback" $? "${r:-no result}"
grep -ao "FTNFS-LOCK.*" "$W/serial" | tr -d "\r"
if [ "$fail" != 0 ]; then
  echo "--- guest console"; tr -d '\r' < "$W/serial" | tail -30
  echo "--- ftnfsd log"; tail -20 "$W/log"
fi
finish
