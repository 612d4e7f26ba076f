#!/usr/bin/env bash
# Locking with the Linux kernel client (issue 14): the guest mounts ftnfsd *without* nolock,
# with its own rpcbind and rpc.statd.
#   1. One member: two processes contend for one file with flock (a whole-file POSIX lock on
#      NFS, so NLM): a second exclusive and a shared lock are denied while the first is held,
#      a blocking one is granted only after the holder lets go (the server's GRANTED
#      callback to the guest's lock manager), two shared locks coexist. Then the same over
#      IPv6 (proto=tcp6; the callback finds the guest's lockd by rpcbind v3 GETADDR, udp6).
#   2. A mirrored pair on a virtual IP: a lock held, the primary killed (-9); through the
#      takeover and after it another owner is denied every time (the secondary held the
#      table: no grace period, no reclaim); then a waiter blocks on the new primary and its
#      callback grants it when the holder lets go.
#   3. A cold start of the pair: a lock held, both members killed and restarted as after a
#      power loss of every host (boot id changed, no clean stop), one promoted with --force:
#      it notifies the guest (SM_NOTIFY), which reclaims in the grace period; another owner
#      is never granted the lock.
# In each part another client host (ftnfs-load nlm, from its own namespace) asks the server
# too: a second process on the guest is refused by the guest's own lock table without the
# server being asked, so only another host proves what the server's table holds.
# ftnfsd runs with a real rpcbind in its namespace, where the guest's lock client finds NLM.
# Prints "N passed, N failed".
#   tests/locks.sh FTNFSD_BINARY      (ftnfsctl beside it)
set -uo pipefail
BIN=$(realpath "$1")
# shellcheck source=../scripts/lab/harness.sh
. "$(dirname "$0")/../scripts/lab/harness.sh"
topo_member srv 10.99.0.1 || exit 1
ip -n "$TOPO-srv" addr add fd99::1/64 dev eth0 nodad || exit 1
topo_tap tg0 || exit 1
echo "$EXPORT *(rw,insecure,no_root_squash)" > "$W/exports"
# rpcbind with a private /run in the server's namespace (killed with the namespace); ftnfsd
# registers NFS, MOUNT, NLM and NSM with it
topo_in srv unshare -m bash -c "mount -t tmpfs none /run && exec rpcbind -f -w" &
for _ in $(seq 600); do topo_in srv rpcinfo -p 127.0.0.1 >/dev/null 2>&1 && break; sleep 0.1; done
topo_in srv "$BIN" --exports "$W/exports" --state-dir "$W/state" --port 2049 \
  --admin-socket "$W/adm.sock" 2>>"$W/log" &
for _ in $(seq 1200); do topo_in srv rpcinfo -p 127.0.0.1 2>/dev/null | grep 100021 > /dev/null && break; sleep 0.1; done
topo_in srv rpcinfo -p 127.0.0.1 2>&1 | grep -E '100021 +4 +tcp +2049' > /dev/null
check "NLM registered with rpcbind" $? "$(topo_in srv rpcinfo -p 127.0.0.1 2>&1 | tr '\n' ' ')"
# rpcbind's own client pings each NLM version (1 and 3 are NFSv2's, 32-bit ranges) over UDP
# and TCP; there is no version 2
nlm_versions=0
for v in 1 3 4; do
  for t in -u -t; do topo_in srv rpcinfo $t 127.0.0.1 100021 $v >/dev/null 2>&1 || nlm_versions=1; done
done
topo_in srv rpcinfo -u 127.0.0.1 100021 2 >/dev/null 2>&1 && nlm_versions=1
check "NLM versions 1, 3 and 4 answer rpcinfo over UDP and TCP, 2 does not" $nlm_versions \
  "$(topo_in srv rpcinfo -p 127.0.0.1 2>&1 | grep 100021 | tr '\n' ' ')"
# another client host's lock attempt on ./lk, straight to the server's table (a second
# process on the guest is refused by the guest's own lock table, without asking the server):
# exit 75 denied, 76 denied for the grace period, 0 granted
topo_member x 10.99.0.9 || exit 1
probe() { topo_in x "$(dirname "$BIN")/ftnfs-load" nlm --host "$1" --path "$EXPORT" --name lk; }
run_guest "$W/serial" 10.99.0.1 locks > "$W/result1" &
GUEST=$!
for _ in $(seq 3000); do grep -aq "FTNFS-LOCK denied while held" "$W/serial" 2>/dev/null && break; sleep 0.1; done
out=$(probe 10.99.0.1 2>&1); rc=$?
[ $rc = 75 ] && echo "$out" | grep -q "held by .*guest"
check "another client host is denied while the guest holds the lock" $? "exit $rc: $out"
wait $GUEST
r=$(cat "$W/result1")
[ "$r" = "FTNFS-RESULT PASS" ]
check "kernel client: flock contention, blocking lock granted by callback" $? "${r:-no result}"
grep -ao "FTNFS-LOCK.*" "$W/serial" | tr -d "\r"
# the same over IPv6 (proto=tcp6): the blocked waiter's GRANTED callback goes to the
# guest's lockd found by rpcbind v3 GETADDR for udp6 (its IPv6 port is not its IPv4 one)
run_guest "$W/serial6" fd99::1 locks "ftnfs.ip6=fd99::100/64" > "$W/result1v6"
r=$(cat "$W/result1v6")
[ "$r" = "FTNFS-RESULT PASS" ]
check "kernel client over IPv6: blocking lock granted by callback" $? "${r:-no result}"
grep -ao "FTNFS-LOCK.*" "$W/serial6" | tr -d "\r"
if [ "$fail" != 0 ]; then
  echo "--- guest console"; tr -d '\r' < "$W/serial" | tail -30
  echo "--- ftnfsd log"; tail -20 "$W/log"
fi
ip netns pids "$TOPO-srv" | xargs -r kill -9

# --- 2. a lock held across a kill -9 of the primary of a mirrored pair
CTL=$(dirname "$BIN")/ftnfsctl
VIP=10.99.0.50
declare -A IP=([a]=10.99.0.2 [b]=10.99.0.3)
head -c 32 /dev/urandom | base64 > "$W/secret"
topo_member a "${IP[a]}" || exit 1
topo_member b "${IP[b]}" || exit 1
member() { # NAME PEER: rpcbind (private /run) and ftnfsd, registered with it, in NAME's namespace
  local d=$W/$1
  mkdir -p "$d/export"
  echo "$EXPORT -ftnfs=a:b *(rw,insecure,no_root_squash)" > "$d/exports"
  topo_in "$1" unshare -m bash -c "mount -t tmpfs none /run && mount --bind '$d/export' '$EXPORT' \
    && { rpcbind -f -w & for _ in \$(seq 300); do rpcinfo -p 127.0.0.1 >/dev/null 2>&1 && break; sleep 0.1; done; \
    exec '$BIN' --exports '$d/exports' --state-dir '$d/state' --port 2049 --admin-socket '$d/adm.sock' \
    --name $1 --peer $2=${IP[$2]}:2050 --peer-listen ${IP[$1]}:2050 --secret-file '$W/secret' \
    --vip $VIP/24 --vip-dev eth0 ${EXTRA:-}; }" 2>>"$d/log" &
}
# (output taken whole before it is searched: `grep -q` in a pipe under pipefail fails when the
# writer gets SIGPIPE after the match)
held_by_guest() { local o; o=$("$CTL" --socket "$W/$1/adm.sock" locks --json 2>/dev/null); grep -q '"client": "guest"' <<< "$o"; }
in_grace() { local o; o=$("$CTL" --socket "$W/$1/adm.sock" status 2>/dev/null); grep -q "grace period" <<< "$o"; }
role() { "$CTL" --socket "$W/$1/adm.sock" status --json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["mirror"]["exports"][0]["role"])' 2>/dev/null; }
member a b; member b a
formed=1
for _ in $(seq 1200); do
  "$CTL" --socket "$W/a/adm.sock" status --json 2>/dev/null | grep -q '"joined": true' && { formed=0; break; }
  sleep 0.1
done
check "mirrored pair formed" $formed ""
run_guest "$W/serial2" "$VIP" locks-failover > "$W/result2" &
GUEST=$!
seen=1
for _ in $(seq 3000); do grep -aq "FTNFS-LOCK held" "$W/serial2" 2>/dev/null && { seen=0; break; }; sleep 0.1; done
check "the guest holds a lock through the virtual IP" $seen "$(tail -5 "$W/serial2" 2>/dev/null | tr -d '\r')"
held_by_guest b
check "the secondary's table holds the guest's lock" $? "$("$CTL" --socket "$W/b/adm.sock" locks 2>&1)"
out=$(probe "$VIP" 2>&1); rc=$?
[ $rc = 75 ] && echo "$out" | grep -q "held by .*guest"
check "another client host is denied by the primary, which names the guest" $? "exit $rc: $out"
ip netns pids "$TOPO-a" | xargs -r kill -9
took=1
for _ in $(seq 600); do [ "$(role b)" = primary ] && { took=0; break; }; sleep 0.1; done
check "b took over" $took "$(role b)"
! grep -aq "FTNFS-LOCK still denied" "$W/serial2"
check "the takeover came while the guest was being denied" $? ""
held_by_guest b
check "the new primary holds the guest's lock" $? "$("$CTL" --socket "$W/b/adm.sock" locks 2>&1)"
out=$(probe "$VIP" 2>&1); rc=$?
[ $rc = 75 ] && echo "$out" | grep -q "held by .*guest"
check "another client host is denied by the new primary (no grace period)" $? "exit $rc: $out"
wait $GUEST
r=$(cat "$W/result2")
[ "$r" = "FTNFS-RESULT PASS" ]
check "kernel client: lock held across kill -9 of the primary, waiter granted by the new primary" $? "${r:-no result}"
grep -ao "FTNFS-LOCK.*" "$W/serial2" | tr -d "\r" | grep -v " try " 
grep -ao "FTNFS-LOCK try.*" "$W/serial2" | tr -d "\r" | awk '{ t = $(NF-1); if (t > max) max = t } END { printf "longest denied try (spans the takeover): %.2f s over %d tries\n", max, NR }'
if [ "$fail" != 0 ]; then
  echo "--- guest console"; tr -d '\r' < "$W/serial2" | tail -40
  for m in a b; do echo "--- $m log"; tail -20 "$W/$m/log"; done
fi

# --- 3. a cold start: every member's host restarts at once without a clean stop (a power
# loss of the whole group), so no member can vouch for its lock table: the member promoted
# (--force: none is complete) tells the client to reclaim, in a grace period
for m in a b; do ip netns pids "$TOPO-$m" | xargs -r kill -9; done
for _ in $(seq 100); do [ -z "$(ip netns pids "$TOPO-a")$(ip netns pids "$TOPO-b")" ] && break; sleep 0.1; done
rm -rf "$W/a" "$W/b"
EXTRA="--grace-secs 10"
member a b; member b a
formed=1
for _ in $(seq 1200); do
  "$CTL" --socket "$W/a/adm.sock" status --json 2>/dev/null | grep -q '"joined": true' && { formed=0; break; }
  sleep 0.1
done
check "a new mirrored pair formed" $formed ""
run_guest "$W/serial3" "$VIP" locks-cold > "$W/result3" &
GUEST=$!
seen=1
for _ in $(seq 3000); do grep -aq "FTNFS-LOCK held" "$W/serial3" 2>/dev/null && { seen=0; break; }; sleep 0.1; done
check "the guest holds a lock through the virtual IP" $seen "$(tail -5 "$W/serial3" 2>/dev/null | tr -d '\r')"
held_by_guest b
check "the secondary's table holds the guest's lock" $? "$("$CTL" --socket "$W/b/adm.sock" locks 2>&1)"
# both killed; each host "restarts" (a boot id other than the recorded one)
for m in a b; do ip netns pids "$TOPO-$m" | xargs -r kill -9; done
for _ in $(seq 100); do [ -z "$(ip netns pids "$TOPO-a")$(ip netns pids "$TOPO-b")" ] && break; sleep 0.1; done
for m in a b; do echo "a-boot-before-the-power-loss" > "$W/$m/state/boot_id"; done
member a b; member b a
for _ in $(seq 600); do "$CTL" --socket "$W/b/adm.sock" status >/dev/null 2>&1 && break; sleep 0.1; done
promoted=1
for _ in $(seq 300); do
  out=$("$CTL" --socket "$W/a/adm.sock" promote --force 2>&1) && { promoted=0; break; }
  sleep 0.1
done
check "ftnfsctl promote --force starts the group from a (no member is complete)" $promoted "$out"
grace=1
for _ in $(seq 100); do in_grace a && { grace=0; break; }; sleep 0.1; done
check "a is in its grace period" $grace "$("$CTL" --socket "$W/a/adm.sock" status 2>&1 | grep -A3 locks)"
out=$(probe "$VIP" 2>&1); rc=$?
[ $rc = 76 ]
check "another client host's new lock waits for the grace period" $? "exit $rc: $out"
reclaimed=1
for _ in $(seq 150); do held_by_guest a && { reclaimed=0; break; }; sleep 0.1; done
check "the guest reclaimed its lock within the grace period" $reclaimed "$("$CTL" --socket "$W/a/adm.sock" locks 2>&1)"
over=1
for _ in $(seq 300); do
  o=$("$CTL" --socket "$W/a/adm.sock" status 2>/dev/null) && ! grep -q "grace period" <<< "$o" && { over=0; break; }
  sleep 0.1
done
out=$(probe "$VIP" 2>&1); rc=$?
[ $over = 0 ] && [ $rc = 75 ] && echo "$out" | grep -q "held by .*guest"
check "after the grace period another client host is denied: the reclaimed lock is the guest's" $? "exit $rc: $out"
wait $GUEST
r=$(cat "$W/result3")
[ "$r" = "FTNFS-RESULT PASS" ]
check "kernel client: lock reclaimed after a cold start of the group, never granted to another owner" $? "${r:-no result}"
grep -ao "FTNFS-LOCK.*" "$W/serial3" | tr -d "\r" | grep -v " try "
grep -ao "FTNFS-LOCK try.*" "$W/serial3" | tr -d "\r" | awk '{ t = $(NF-1); if (t > max) max = t } END { printf "longest denied try (spans the grace period): %.2f s over %d tries\n", max, NR }'
if [ "$fail" != 0 ]; then
  echo "--- guest console"; tr -d '\r' < "$W/serial3" | tail -40
  for m in a b; do echo "--- $m log"; tail -30 "$W/$m/log"; done
fi
finish
