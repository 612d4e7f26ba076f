#!/usr/bin/env bash
# Synchronous mirroring with real processes and real clients (issue 4): ftnfsd members each in
# their own network namespace (10.99.0.1, .2, .3 on one bridge, scripts/lab/topo.sh) and own
# mount namespace (each member's private directory is bind-mounted on the same export path),
# joined by the authenticated peer channel.
#   1. Three members (a primary; b, c secondaries). Concurrently: the Linux kernel client in
#      a guest (workload "mixed": overlapping writes to one shared file, renames in one
#      directory, a metadata storm in its own subtree), the nfs3_client load generator
#      (overlapping writes to the same file, renames in the same directory, creates,
#      removes, SETATTR, MKDIR/RMDIR) and libnfs nfs-cp. Then `ftnfsctl verify` must find no
#      difference between the three mirrors, and a handle taken from the primary must work
#      directly against each secondary with the same answers.
#   2. Two members: a 32 MiB fsync write and read-back by the kernel client while the load
#      generator runs; verify again.
#   2b. Both members stopped cleanly (sealed) and started again: the secondary joins without
#      a copy, and the mirrors stay identical.
#   3. A member without the group secret is refused and never joins.
# Prints "N passed, N failed".
#   tests/mirror.sh TARGET_DIR      (holds release builds of ftnfsd, ftnfsctl, ftnfs-load)
set -uo pipefail
T=$(realpath "$1")
# shellcheck source=../scripts/lab/harness.sh
. "$(dirname "$0")/../scripts/lab/harness.sh"
declare -A IP=([a]=10.99.0.1 [b]=10.99.0.2 [c]=10.99.0.3 [x]=10.99.0.9)
member() { # GROUP NAME SECRETFILE PEERS...
  local g=$1 n=$2 sec=$3; shift 3
  local d=$W/$g/$n peers=()
  mkdir -p "$d/export"
  for p in "$@"; do peers+=(--peer "$p=${IP[$p]}:2050"); done
  ip netns exec "$TOPO-$n" unshare -m sh -c "mount --bind '$d/export' '$EXPORT' && exec '$T/ftnfsd' \
    --exports '$W/$g/exports' --state-dir '$d/state' --port 2049 --admin-socket '$d/adm.sock' \
    --no-portmap --name $n ${peers[*]} --peer-listen ${IP[$n]}:2050 --secret-file '$sec'" 2>"$d/log" &
}
status() { "$T/ftnfsctl" --socket "$W/$1/$2/adm.sock" status --json 2>/dev/null; }
formed() { # GROUP N_SECONDARIES: wait until the primary has every secondary live
  for _ in $(seq 1200); do
    n=$(status "$1" a | python3 -c 'import json,sys; d=json.load(sys.stdin); print(sum(s["joined"] for e in d["mirror"]["exports"] for s in e["secondaries"]))' 2>/dev/null)
    [ "${n:-0}" = "$2" ] && return 0
    sleep 0.1
  done
  return 1
}
quiet() { # GROUP: wait until the primary has nothing in flight
  for _ in $(seq 1200); do
    n=$(status "$1" a | python3 -c 'import json,sys; d=json.load(sys.stdin); print(sum(e["pending"] for e in d["mirror"]["exports"]))' 2>/dev/null)
    [ "${n:-1}" = 0 ] && return 0
    sleep 0.1
  done
  return 1
}
guest() { # WORKLOAD
  run_guest "$W/serial-$1" 10.99.0.1 "$1"
}
load() { topo_hub "$T/ftnfs-load" mixed --host 10.99.0.1 --path "$EXPORT" "$@"; }
verify() { # GROUP OTHERS...
  local g=$1; shift
  local with=()
  for o in "$@"; do with+=(--with "$W/$g/$o/adm.sock"); done
  "$T/ftnfsctl" --socket "$W/$g/a/adm.sock" verify "${with[@]}" > "$W/verify-$g" 2>&1
  local rc=$?
  cat "$W/verify-$g" | head -20
  return $rc
}

topo_member a 10.99.0.1 && topo_member b 10.99.0.2 && topo_member c 10.99.0.3 && topo_member x 10.99.0.9 || exit 1
topo_tap tg0 || exit 1

# --- 1. three members, three kinds of client at once ---------------------------------------
mkdir -p "$W/g3"
echo "$EXPORT -ftnfs=a:b:c *(rw,insecure,no_root_squash)" > "$W/g3/exports"
member g3 a "$W/secret" b c
member g3 b "$W/secret" a c
member g3 c "$W/secret" a b
formed g3 2; check "three members form a group" $? "$(tail -3 "$W/g3/a/log")"
head -c 300000 /dev/urandom > "$W/blob"
( guest mixed > "$W/guest-mixed.out" ) & G=$!
sleep 4   # let the guest boot and mount; the others then run alongside it
( load --ops 600 --seed 7 > "$W/load1.out" 2>&1; echo "rc=$?" >> "$W/load1.out" ) & L1=$!
( load --ops 600 --seed 9 > "$W/load2.out" 2>&1; echo "rc=$?" >> "$W/load2.out" ) & L2=$!
( for i in $(seq 15); do
    topo_hub nfs-cp "$W/blob" "nfs://10.99.0.1$EXPORT/lib$i?nfsport=2049&mountport=2049&version=3" >/dev/null || echo "nfs-cp $i failed"
  done > "$W/libnfs.out" 2>&1 ) & C=$!
wait $L1 $L2 $C $G
check "kernel client mixed workload (guest)" "$([ "$(cat "$W/guest-mixed.out")" = "FTNFS-RESULT PASS" ]; echo $?)" "$(cat "$W/guest-mixed.out")"
check "nfs3_client load generators" "$(grep -q rc=0 "$W/load1.out" && grep -q rc=0 "$W/load2.out"; echo $?)" "$(cat "$W/load1.out" "$W/load2.out")"
check "libnfs nfs-cp" "$([ ! -s "$W/libnfs.out" ]; echo $?)" "$(cat "$W/libnfs.out")"
quiet g3
verify g3 b c; check "ftnfsctl verify: three mirrors identical" $? "$(cat "$W/verify-g3")"
status g3 a | python3 -c 'import json,sys; d=json.load(sys.stdin); e=d["mirror"]["exports"][0]; print("primary: %d updates, %d resends, %d failures, secondaries %s" % (e["submitted"], e["resends"], e["failures"], [s["name"]+(" live" if s["live"] else " out") for s in e["secondaries"]]))'
for o in b c; do
  topo_hub "$T/ftnfs-load" crosscheck --host 10.99.0.1 --other "${IP[$o]}" --path "$EXPORT" --name shared > "$W/cross-$o" 2>&1
  check "handle from the primary works on $o" $? "$(cat "$W/cross-$o")"
done
for n in a b c; do ip netns pids "$TOPO-$n" | xargs -r kill; done
sleep 0.5

# --- 2. two members, large fsync write under concurrent load ------------------------------
mkdir -p "$W/g2"
echo "$EXPORT -ftnfs=a:b *(rw,insecure,no_root_squash)" > "$W/g2/exports"
member g2 a "$W/secret" b x   # x is a configured peer, but will not know the secret
member g2 b "$W/secret" a
formed g2 1; check "two members form a group" $? "$(tail -3 "$W/g2/a/log")"
( guest seqio > "$W/guest-seqio.out" ) & G=$!
sleep 4
( load --ops 400 --seed 3 > "$W/load3.out" 2>&1; echo "rc=$?" >> "$W/load3.out" ) & L=$!
wait $G $L
check "kernel client 32 MiB fsync write + read-back on a 2-member group" "$([ "$(cat "$W/guest-seqio.out")" = "FTNFS-RESULT PASS" ]; echo $?)" "$(cat "$W/guest-seqio.out")"
check "nfs3_client load on a 2-member group" "$(grep -q rc=0 "$W/load3.out"; echo $?)" "$(cat "$W/load3.out")"
quiet g2
verify g2 b; check "ftnfsctl verify: two mirrors identical" $? "$(cat "$W/verify-g2")"

# --- 2b. a clean stop seals both mirrors; the group resumes without a copy ----------------
stop_member() { ip netns pids "$TOPO-$1" | xargs -r kill -TERM; for _ in $(seq 600); do [ -z "$(ip netns pids "$TOPO-$1")" ] && return; sleep 0.1; done; }
stop_member a; stop_member b
member g2 a "$W/secret" b x
member g2 b "$W/secret" a
formed g2 1; check "a cleanly stopped group resumes its update stream" $? "$(grep -h "seal\|refused\|joined" "$W/g2/a/log" "$W/g2/b/log" | tail -4)"
load --ops 100 --seed 5 > "$W/load4.out" 2>&1
quiet g2
verify g2 b; check "ftnfsctl verify after the restart" $? "$(cat "$W/verify-g2")"

# --- 3. a member without the secret is refused --------------------------------------------
head -c 32 /dev/urandom | base64 > "$W/wrong"
mkdir -p "$W/gx"
echo "$EXPORT -ftnfs=a:x *(rw,insecure,no_root_squash)" > "$W/gx/exports"
member gx x "$W/wrong" a
for _ in $(seq 600); do grep -q "x does not know the group secret" "$W/g2/a/log" && break; sleep 0.1; done
grep -q "x does not know the group secret" "$W/g2/a/log"
check "member with a wrong secret is refused" $? "$(tail -3 "$W/g2/a/log")"
status g2 a | python3 -c 'import json,sys; d=json.load(sys.stdin); assert not [p for p in d["mirror"]["peers"] if p["name"]=="x" and p["linked"]]'
check "refused member never linked" $?
finish
