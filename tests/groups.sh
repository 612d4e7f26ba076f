#!/usr/bin/env bash
# Two virtual servers on two members (issue 16; the patent's Table II, /usr/home3): export E1
# mirrored a:b and export E2 mirrored b:a — opposite primaries — each group with its own
# virtual IP (--vip a:b=10.99.0.50/24 --vip b:a=10.99.0.51/24), a kernel-client guest on each.
#   1. each address is on its group's primary: .50 on a, .51 on b, never both on one;
#   2. kill -9 of b under both guests' acknowledged writes: only b's group moves — a takes E2
#      and .51; E1 stays a's in epoch 1 and .50 never leaves a; both guests end without an
#      error and every acknowledged record is on a;
#   3. b restarts, rejoins and takes its group back (it is listed first for E2) while the
#      guest on .50 writes: .51 returns to b; a closes the connections of .51 only — the
#      guest on .50 keeps its connection (a closes none of 10.99.0.100's) and goes on.
# Prints "N passed, N failed".
#   tests/groups.sh TARGET_DIR      (release builds of ftnfsd, ftnfsctl)
set -uo pipefail
T=$(realpath "$1")
# shellcheck source=../scripts/lab/harness.sh
. "$(dirname "$0")/../scripts/lab/harness.sh"
declare -A IP=([a]=10.99.0.1 [b]=10.99.0.2)
V1=10.99.0.50; V2=10.99.0.51
E1=$W/e1; E2=$W/e2
mkdir -p "$E1" "$E2"
member() { # RUN NAME PEER
  local d=$W/$1/$2
  mkdir -p "$d/e1" "$d/e2"
  printf '%s\n' "$E1 -ftnfs=a:b,fsid=1 *(rw,insecure,no_root_squash)" \
    "$E2 -ftnfs=b:a,fsid=2 *(rw,insecure,no_root_squash)" > "$d/exports"
  ip netns exec "$TOPO-$2" unshare -m sh -c "mount --bind '$d/e1' '$E1' && mount --bind '$d/e2' '$E2' \
    && exec '$T/ftnfsd' --exports '$d/exports' --state-dir '$d/state' --port 2049 \
    --admin-socket '$d/adm.sock' --no-portmap --name $2 --peer $3=${IP[$3]}:2050 \
    --peer-listen ${IP[$2]}:2050 --secret-file '$W/secret' \
    --vip a:b=$V1/24 --vip b:a=$V2/24 --vip-dev eth0" 2>>"$d/log" &
}
status() { "$T/ftnfsctl" --socket "$W/$1/$2/adm.sock" status --json 2>/dev/null; }
role() { # RUN NAME FSID -> "primary 1", "secondary 2"…
  status "$1" "$2" | python3 -c '
import json, sys
d = json.load(sys.stdin)
ids = [e["id"] for e in d["exports"] if e["path"].endswith(sys.argv[1])]
for e in d["mirror"]["exports"]:
    if e["export"] in ids:
        print(e["role"], e.get("epoch", ""))' "/e$3" 2>/dev/null
}
joined() { # RUN PRIMARY FSID: the primary has its secondary joined
  status "$1" "$2" | python3 -c '
import json, sys
d = json.load(sys.stdin)
ids = [e["id"] for e in d["exports"] if e["path"].endswith(sys.argv[1])]
ok = any(e["export"] in ids and e["role"] == "primary"
         and all(s["joined"] for s in e["secondaries"]) and e["secondaries"]
         for e in d["mirror"]["exports"])
sys.exit(0 if ok else 1)' "/e$3" 2>/dev/null
}
# (grep reads all: with -q it may exit first and, under pipefail, ip's SIGPIPE fails the test)
holds() { ip -n "$TOPO-$1" -o addr show dev eth0 | grep " $2/" > /dev/null; }
addrs() { echo "a: $(ip -n "$TOPO-a" -o -4 addr show dev eth0 | awk '{print $4}' | tr '\n' ' ')b: $(ip -n "$TOPO-b" -o -4 addr show dev eth0 | awk '{print $4}' | tr '\n' ' ')"; }
wait_for() { # TENTHS CMD...: polls CMD every 0.1 s, at most TENTHS times
  local n=$1; shift
  for _ in $(seq "$n"); do "$@" && return 0; sleep 0.1; done
  return 1
}
guest1() { # SERIAL WORKLOAD ARGS: the guest on .50, mounting E1
  GUEST_PATH=$E1 run_guest "$1" "$V1" "$2" "$3"
}
guest2() { # SERIAL WORKLOAD ARGS: the guest on .51, mounting E2 (its own tap, address, MAC)
  GUEST_TAP=tg1 GUEST_IP=10.99.0.101/24 GUEST_MAC=52:54:00:12:34:57 GUEST_PATH=$E2 \
    run_guest "$1" "$V2" "$2" "$3"
}
topo_member a "${IP[a]}" && topo_member b "${IP[b]}" || exit 1
topo_tap tg0 && topo_tap tg1 || exit 1

# --- 1. one address per group, on its own primary ----------------------------------------
member r a b; member r b a
wait_for 1200 joined r a 1; check "group a:b formed, a primary of E1" $? "$(role r a 1)"
wait_for 1200 joined r b 2; check "group b:a formed, b primary of E2" $? "$(role r b 2)"
wait_for 100 holds a $V1 && wait_for 100 holds b $V2 && ! holds a $V2 && ! holds b $V1
check "$V1 on a and $V2 on b, each on one member" $? "$(addrs)"

# --- 2. kill -9 of b: only its group moves --------------------------------------------------
( guest1 "$W/serial-g1" ackwrite ftnfs.n=60 > "$W/g1.out" ) & G1=$!
( guest2 "$W/serial-g2" ackwrite ftnfs.n=60 > "$W/g2.out" ) & G2=$!
wait_acks "$W/serial-g1" 10 1200; wait_acks "$W/serial-g2" 10 1200
kill9 b
# while b's group moves, a keeps .50 (sampled until a leads E2)
kept=0
for _ in $(seq 600); do
  holds a $V1 || kept=1
  [ "$(role r a 2)" = "primary 2" ] && break
  sleep 0.05
done
check "a took E2 over in epoch 2" "$([ "$(role r a 2)" = "primary 2" ]; echo $?)" "$(role r a 2); $(tail -5 "$W/r/a/log")"
check "a kept $V1 throughout" "$kept"
wait_for 100 holds a $V2; check "$V2 moved to a" $? "$(addrs)"
check "E1 untouched: a still its primary in epoch 1" "$([ "$(role r a 1)" = "primary 1" ]; echo $?)" "$(role r a 1)"
wait $G1; wait $G2
check "guest on $V1 went on" "$([ "$(cat "$W/g1.out")" = "FTNFS-RESULT PASS" ]; echo $?)" "$(cat "$W/g1.out")"
check "guest on $V2 went on through the failover" "$([ "$(cat "$W/g2.out")" = "FTNFS-RESULT PASS" ]; echo $?)" "$(cat "$W/g2.out")"
python3 "$LAB/check-acks.py" "$W/serial-g1" "$W/r/a/e1/ack" > "$W/g1-acks" 2>&1
check "every acknowledged record of E1 is on a" $? "$(cat "$W/g1-acks")"
python3 "$LAB/check-acks.py" "$W/serial-g2" "$W/r/a/e2/ack" > "$W/g2-acks" 2>&1
check "every acknowledged record of E2 is on a" $? "$(cat "$W/g2-acks")"

# --- 3. b comes back and takes its group back; the other group's clients stay connected ----
( guest1 "$W/serial-g3" ackwrite ftnfs.n=400 > "$W/g3.out" ) & G3=$!
wait_acks "$W/serial-g3" 10 1200
closed_before=$(grep -c "closing connection.*10.99.0.100" "$W/r/a/log")
member r b a
wait_for 1200 joined r b 2; check "b rejoined and leads E2 again" $? "b: $(role r b 2); a: $(role r a 2)"
running=$(kill -0 $G3 2>/dev/null; echo $?)
wait_for 100 holds b $V2 && ! holds a $V2; check "$V2 back on b, off a" $? "$(addrs)"
holds a $V1 && ! holds b $V1; check "$V1 stayed on a" $? "$(addrs)"
wait $G3
check "guest on $V1 was writing through the hand-back" "$running" "it ended before b took E2 back"
check "guest on $V1 went on" "$([ "$(cat "$W/g3.out")" = "FTNFS-RESULT PASS" ]; echo $?)" "$(cat "$W/g3.out")"
closed_after=$(grep -c "closing connection.*10.99.0.100" "$W/r/a/log")
check "a closed no connection of the guest on $V1 (only $V2's moved)" \
  "$([ "$closed_after" = "$closed_before" ]; echo $?)" "$(grep "closing connection" "$W/r/a/log" | tail -3)"
python3 "$LAB/check-acks.py" "$W/serial-g3" "$W/r/a/e1/ack" > "$W/g3-acks" 2>&1
check "every acknowledged record of the second run is on a" $? "$(cat "$W/g3-acks")"
kill9 a; kill9 b
finish
