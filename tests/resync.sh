#!/usr/bin/env bash
# Rejoin and resync with real processes and the Linux kernel client (issue 6). Two members
# (a listed primary, b) in network namespaces on one bridge, the guest and the load
# generator on the group's virtual IP 10.99.0.50.
#   1. Partial resync: b killed; 10,000 updates of every kind (ftnfs-load) while b is away;
#      b restarted while the guest writes acknowledged records: b is resynced from the change
#      log (partial) and joins; the guest saw no error; verify finds no difference.
#   2. Past the change log's cap: the same with a tiny cap: a full copy, same result.
#   3. The rejoining member killed in the middle of a (throttled) full copy: it knows it is
#      incomplete (marker), is copied again when it is back, and verify finds no difference.
#   4. The survivor killed in the middle of a resync: the incomplete member never promotes;
#      when the survivor comes back it starts as primary (startup negotiation: the other
#      member's mirror is incomplete), resyncs b, and verify finds no difference.
#   5. The listed primary killed under load, b takes over; a comes back, is resynced, and
#      takes its role back while the guest writes: no client error, every acknowledged record
#      on both, verify finds no difference.
# Prints "N passed, N failed".
#   tests/resync.sh TARGET_DIR      (release builds of ftnfsd, ftnfsctl, ftnfs-load)
set -uo pipefail
T=$(realpath "$1")
# shellcheck source=../scripts/lab/harness.sh
. "$(dirname "$0")/../scripts/lab/harness.sh"
VIP=10.99.0.50
declare -A IP=([a]=10.99.0.1 [b]=10.99.0.2)
OPTS=   # extra ftnfsd options of the current run
member() { # RUN NAME PEER
  local d=$W/$1/$2
  mkdir -p "$d/export"
  echo "$EXPORT -ftnfs=a:b *(rw,insecure,no_root_squash)" > "$d/exports"
  # in a subshell, so the shell does not report each kill -9 of it
  ( ip netns exec "$TOPO-$2" unshare -m sh -c "mount --bind '$d/export' '$EXPORT' && exec '$T/ftnfsd' \
    --exports '$d/exports' --state-dir '$d/state' --port 2049 --admin-socket '$d/adm.sock' \
    --no-portmap --name $2 --peer $3=${IP[$3]}:2050 --peer-listen ${IP[$2]}:2050 \
    --secret-file '$W/secret' --vip $VIP/24 --vip-dev eth0 $OPTS" 2>>"$d/log" & )
}
status() { "$T/ftnfsctl" --socket "$W/$1/$2/adm.sock" status --json 2>/dev/null; }
role() { status "$1" "$2" | python3 -c 'import json,sys; d=json.load(sys.stdin); e=d["mirror"]["exports"][0]; print(e["role"], e.get("epoch", ""))' 2>/dev/null; }
live() { # RUN PRIMARY N: wait up to N/10 s until PRIMARY has its secondary live
  for _ in $(seq "$3"); do
    status "$1" "$2" | grep -q '"joined": true' && return 0
    sleep 0.1
  done
  return 1
}
until_role() { # RUN NAME ROLE N
  for _ in $(seq "$4"); do [ "$(role "$1" "$2")" = "$3" ] && return 0; sleep 0.1; done; return 1
}
until_event() { # RUN NAME TEXT N: waits up to N/10 s for an event containing TEXT
  for _ in $(seq "$4"); do events "$1" "$2" | grep -q "$3" && return 0; sleep 0.1; done; return 1
}
guest() { # RUN WORKLOAD [ARGS]
  run_guest "$W/serial-$1-$2" "$VIP" "$2" "${3:-}"
}
load() { topo_hub "$T/ftnfs-load" mixed --host $VIP --path "$EXPORT" "$@"; }
verify() { # RUN PRIMARY OTHER
  "$T/ftnfsctl" --socket "$W/$1/$2/adm.sock" verify --with "$W/$1/$3/adm.sock" > "$W/$1-verify" 2>&1
}
events() { "$T/ftnfsctl" --socket "$W/$1/$2/adm.sock" events 2>/dev/null; }
resync_bytes() { # RUN MEMBER: bytes of the running resync sent by MEMBER
  "$T/ftnfsctl" --socket "$W/$1/$2/adm.sock" resync --json 2>/dev/null |
    python3 -c 'import json,sys; r=json.load(sys.stdin)["resyncs"]; print(max([x["progress"]["bytes"] for x in r if not x["progress"]["done"]] or [0]))' 2>/dev/null
}
preload() { # RUN MiB: files written straight into a's mirror before it starts
  python3 - "$W/$1/a/export" "$2" <<'PY'
import os, sys
root, mib = sys.argv[1], int(sys.argv[2])
os.makedirs(root, exist_ok=True)
n = 0
for d in range(16):
    os.makedirs(f"{root}/pre{d}/sub", exist_ok=True)
    for f in range(16):
        with open(f"{root}/pre{d}/f{f}", "wb") as fh:
            fh.write(os.urandom(mib * 1048576 // 256))
    os.symlink("f1", f"{root}/pre{d}/link")
    os.link(f"{root}/pre{d}/f2", f"{root}/pre{d}/sub/hard")
PY
}
topo_member a 10.99.0.1 && topo_member b 10.99.0.2 || exit 1
topo_tap tg0 || exit 1

# --- 1. partial resync after 10,000 updates ---------------------------------------------------
preload r1 64
member r1 a b; member r1 b a
live r1 a 150; check "group formed (a 64 MiB tree; a starts as primary by negotiation)" $? "$(role r1 a)"
load --ops 500 --seed 1 > "$W/r1-load0" 2>&1
kill9 b
( guest r1 mixed > "$W/r1-mixed.out" ) & G=$!
load --ops 10000 --seed 2 > "$W/r1-load" 2>&1
check "10,000 updates of every kind while b was away" $? "$(tail -3 "$W/r1-load")"
wait $G
check "and the kernel client's mixed workload" "$([ "$(cat "$W/r1-mixed.out")" = "FTNFS-RESULT PASS" ]; echo $?)" "$(cat "$W/r1-mixed.out")"
( guest r1 ackwrite ftnfs.n=60 > "$W/r1-ack.out" ) & G=$!
wait_acks "$W/serial-r1-ackwrite" 5
member r1 b a
live r1 a 300; check "b resynced and joined while the guest wrote" $? "$(events r1 a | head -5)"
events r1 a > "$W/r1-events"
check "it was a partial resync" "$(grep -q "resync of b started (partial" "$W/r1-events"; echo $?)" "$(head -8 "$W/r1-events")"
done1=$(grep "resync of b done" "$W/r1-events" | head -1)
echo "$done1"
mib=$(echo "$done1" | sed -n 's/.* objects, \([0-9]*\) MiB.*/\1/p')
check "the partial resync carried only what changed (${mib:-?} MiB of a 64 MiB tree)" "$([ "${mib:-99}" -lt 8 ]; echo $?)" "$done1"
wait $G
check "the guest saw no error" "$([ "$(cat "$W/r1-ack.out")" = "FTNFS-RESULT PASS" ]; echo $?)" "$(cat "$W/r1-ack.out")"
verify r1 a b; check "verify: no difference after the partial resync" $? "$(tail -5 "$W/r1-verify")"
tail -1 "$W/r1-verify"
python3 "$LAB/check-acks.py" "$W/serial-r1-ackwrite" "$W/r1/a/export/ack" "$W/r1/b/export/ack" > "$W/r1-acks" 2>&1
check "every acknowledged record on both" $? "$(cat "$W/r1-acks")"
kill9 a; kill9 b; sleep 3.5

# --- 2. past the change log's cap: full copy -----------------------------------------------
OPTS="--changelog-max-mb 0.02"
member r2 a b; member r2 b a
live r2 a 100; check "group formed (tiny change log)" $?
load --ops 300 --seed 3 > /dev/null 2>&1
kill9 b
load --ops 3000 --seed 4 > "$W/r2-load" 2>&1
member r2 b a
live r2 a 300; check "b resynced and joined" $? "$(events r2 a | head -5)"
events r2 a > "$W/r2-events"
check "past the cap it was a full copy" "$(grep -q "resync of b started (full copy" "$W/r2-events"; echo $?)" "$(head -8 "$W/r2-events")"
verify r2 a b; check "verify: no difference after the full copy" $? "$(tail -5 "$W/r2-verify")"
kill9 a; kill9 b; sleep 3.5

# --- 3. the rejoining member killed during a full copy -------------------------------------
OPTS="--resync-rate-mb 40"
preload r3 128
member r3 a b
# b never ran: a waits for it (its process is down and might hold newer updates) until the
# operator starts a
until_event r3 a "process is down" 600; check "a alone waits for b (its process is down)" $? "$(events r3 a | head -3)"
"$T/ftnfsctl" --socket "$W/r3/a/adm.sock" promote > /dev/null 2>&1
until_role r3 a "primary 2" 100; check "ftnfsctl promote starts a alone" $? "$(role r3 a); $(events r3 a | head -3)"
member r3 b a
for _ in $(seq 100); do [ "$(resync_bytes r3 a)" -gt 30000000 ] 2>/dev/null && break; sleep 0.1; done
kill9 b
check "b was killed in the middle of its copy" "$([ -e "$W/r3/b/state/export-"*.resync ]; echo $?)" "$(ls "$W/r3/b/state")"
member r3 b a
live r3 a 300; check "b copied again and joined" $? "$(events r3 a | head -5)"
verify r3 a b; check "verify: no difference" $? "$(tail -5 "$W/r3-verify")"
tail -1 "$W/r3-verify"
kill9 a; kill9 b; sleep 3.5

# --- 4. the survivor killed during a resync --------------------------------------------------
preload r4 128
member r4 a b
until_event r4 a "process is down" 600
"$T/ftnfsctl" --socket "$W/r4/a/adm.sock" promote > /dev/null 2>&1
until_role r4 a "primary 2" 100; check "a starts as primary (ftnfsctl promote)" $?
member r4 b a
for _ in $(seq 100); do [ "$(resync_bytes r4 a)" -gt 30000000 ] 2>/dev/null && break; sleep 0.1; done
kill9 a
never=0
for _ in $(seq 30); do [ "$(role r4 b | cut -d' ' -f1)" = primary ] && never=1; sleep 0.1; done
check "the incomplete member never promotes" "$never" "$(role r4 b); $(events r4 b | head -3)"
sleep 3.5   # the virtual IP's lifetime runs out
OPTS=
member r4 a b
live r4 a 400; check "a came back as primary and resynced b" $? "$(role r4 a); $(events r4 a | head -6)"
verify r4 a b; check "verify: no difference" $? "$(tail -5 "$W/r4-verify")"
kill9 a; kill9 b; sleep 3.5

# --- 5. the listed primary rejoins and takes its role back under load -----------------------
member r5 a b; member r5 b a
live r5 a 100; check "group formed" $?
( guest r5 ackwrite ftnfs.n=150 > "$W/r5-ack.out" ) & G=$!
wait_acks "$W/serial-r5-ackwrite" 10
kill9 a
until_role r5 b "primary 2" 100; check "b took over" $? "$(role r5 b)"
load --ops 2000 --seed 5 > "$W/r5-load" 2>&1
member r5 a b
until_role r5 a "primary 3" 300; check "a resynced and took its role back (epoch 3)" $? "a: $(role r5 a); $(events r5 a | head -6)"
until_role r5 b "secondary 3" 100; check "b follows a again" $? "b: $(role r5 b)"
wait $G
check "the guest saw no error" "$([ "$(cat "$W/r5-ack.out")" = "FTNFS-RESULT PASS" ]; echo $?)" "$(cat "$W/r5-ack.out")"
python3 "$LAB/check-acks.py" "$W/serial-r5-ackwrite" "$W/r5/a/export/ack" "$W/r5/b/export/ack" > "$W/r5-acks" 2>&1
check "every acknowledged record on both" $? "$(cat "$W/r5-acks")"
verify r5 a b; check "verify: no difference" $? "$(tail -5 "$W/r5-verify")"
events r5 a | head -8

finish
