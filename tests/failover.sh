#!/usr/bin/env bash
# Failover with real processes and the Linux kernel client (issue 5). Two members (a primary,
# b secondary) in network namespaces on one bridge, the group's virtual IP 10.99.0.50 held by
# the primary (rtnetlink, gratuitous ARP), the guest on a tap device mounting the virtual IP.
#   1. kill -9 of the primary while the guest writes acknowledged records interleaved with a
#      metadata storm (create, rename, link, symlink, chmod, truncate, mkdir, rmdir, remove):
#      the guest's workload ends without an error, b took over (epoch 2), every acknowledged
#      record is in b's mirror; then another storm on the new primary.
#   2. kill -9 of the secondary under load: the primary fails it out and the guest goes on.
#   3. a cut link between the members: never two primaries; the guest goes on with a.
#   4. planned switch under load (ftnfsctl demote a: it hands the role to b): no client error, a follows b
#      as its secondary, mirrors identical.
#   5. with a witness (ftnfsd --witness-mode): the primary's link cut (as a dead host would
#      look): the primary fences itself, b takes over with the witness's vote, the guest goes
#      on, every acknowledged record is on b.
#   6. with a witness, the secondary's link cut: it never promotes (the witness still hears
#      the primary), the primary goes on alone.
#   7. all IPv6: the members' peer links, the virtual IP (fd99::50/64; unsolicited Neighbor
#      Advertisement instead of gratuitous ARP) and the guest on tcp6: kill -9 of the
#      primary under acknowledged writes; b takes over, a neighbour's entry moves to b's MAC
#      at once, the guest goes on, every acknowledged record is on b.
# Prints "N passed, N failed".
#   tests/failover.sh TARGET_DIR      (release builds of ftnfsd, ftnfsctl)
set -uo pipefail
T=$(realpath "$1")
# shellcheck source=../scripts/lab/harness.sh
. "$(dirname "$0")/../scripts/lab/harness.sh"
VIP=10.99.0.50; VIPLEN=24
declare -A IP=([a]=10.99.0.1 [b]=10.99.0.2 [w]=10.99.0.3)
WITNESS=   # set to "--witness w=10.99.0.3:2050" for runs with a witness
member() { # RUN NAME PEER
  local d=$W/$1/$2
  mkdir -p "$d/export"
  echo "$EXPORT -ftnfs=a:b *(rw,insecure,no_root_squash)" > "$d/exports"
  ip netns exec "$TOPO-$2" unshare -m sh -c "mount --bind '$d/export' '$EXPORT' && exec '$T/ftnfsd' \
    --exports '$d/exports' --state-dir '$d/state' --port 2049 --admin-socket '$d/adm.sock' \
    --no-portmap --name $2 --peer $3=${IP[$3]}:2050 --peer-listen ${IP[$2]}:2050 \
    --secret-file '$W/secret' --vip $VIP/$VIPLEN --vip-dev eth0 $WITNESS" 2>>"$d/log" &
}
witness() { # RUN
  mkdir -p "$W/$1/w"
  ip netns exec "$TOPO-w" "$T/ftnfsd" --witness-mode --name w --peer a=${IP[a]}:2050 \
    --peer b=${IP[b]}:2050 --peer-listen ${IP[w]}:2050 --secret-file "$W/secret" \
    --state-dir "$W/$1/w/state" --admin-socket "$W/$1/w/adm.sock" 2>>"$W/$1/w/log" &
}
status() { "$T/ftnfsctl" --socket "$W/$1/$2/adm.sock" status --json 2>/dev/null; }
role() { status "$1" "$2" | python3 -c 'import json,sys; d=json.load(sys.stdin); e=d["mirror"]["exports"][0]; print(e["role"], e.get("epoch", ""))' 2>/dev/null; }
formed() { # RUN
  for _ in $(seq 1200); do
    status "$1" a | grep -q '"joined": true' && return 0
    sleep 0.1
  done
  return 1
}
guest() { # RUN WORKLOAD [ARGS]
  run_guest "$W/serial-$1-$2" "$VIP" "$2" "${3:-}"
}
watch_roles() { # RUN N: polls a's and b's roles N times, 0.1 s apart; sets
  # two=1 if both were ever primary at once, b_primary=1 if b ever was, b_took=0 once b was
  # "primary 2" (0/1 like exit statuses, for check)
  two=0; b_primary=0; b_took=1
  local ra rb
  for _ in $(seq "$2"); do
    ra=$(role "$1" a); rb=$(role "$1" b)
    [ "${ra%% *}" = primary ] && [ "${rb%% *}" = primary ] && two=1
    [ "${rb%% *}" = primary ] && b_primary=1
    [ "$rb" = "primary 2" ] && b_took=0
    sleep 0.1
  done
}
topo_member a 10.99.0.1 && topo_member b 10.99.0.2 && topo_member w 10.99.0.3 || exit 1
topo_tap tg0 || exit 1

# --- 1. primary killed -------------------------------------------------------------------
member r1 a b; member r1 b a
formed r1; check "group formed, a primary" $? "$(role r1 a)"
( guest r1 ackmeta ftnfs.n=80 > "$W/r1-ack.out" ) & G=$!
wait_acks "$W/serial-r1-ackmeta" 15
kill9 a
t0=$(date +%s.%N)
for _ in $(seq 1200); do [ "$(role r1 b)" = "primary 2" ] && break; sleep 0.05; done
t1=$(date +%s.%N)
check "b took over in epoch 2 ($(python3 -c "print(round($t1-$t0,2))") s)" "$([ "$(role r1 b)" = "primary 2" ]; echo $?)" "$(role r1 b); $(tail -5 "$W/r1/b/log")"
wait $G
check "guest's writes and metadata storm went on through the failover" "$([ "$(cat "$W/r1-ack.out")" = "FTNFS-RESULT PASS" ]; echo $?)" "$(cat "$W/r1-ack.out")"
python3 "$LAB/check-acks.py" "$W/serial-r1-ackmeta" "$W/r1/b/export/ack" > "$W/r1-acks" 2>&1
check "every acknowledged record is on the survivor" $? "$(cat "$W/r1-acks")"
( guest r1 meta > "$W/r1-meta.out" ) ; check "metadata storm on the new primary" "$([ "$(cat "$W/r1-meta.out")" = "FTNFS-RESULT PASS" ]; echo $?)" "$(cat "$W/r1-meta.out")"
kill9 b; sleep 3.5   # the virtual IP's lifetime runs out

# --- 2. secondary killed ------------------------------------------------------------------
member r2 a b; member r2 b a
formed r2; check "second group formed" $?
( guest r2 ackwrite ftnfs.n=60 > "$W/r2-ack.out" ) & G=$!
wait_acks "$W/serial-r2-ackwrite" 10
kill9 b
wait $G
check "guest went on when the secondary died" "$([ "$(cat "$W/r2-ack.out")" = "FTNFS-RESULT PASS" ]; echo $?)" "$(cat "$W/r2-ack.out")"
check "a still primary in epoch 1, b failed out" "$([ "$(role r2 a)" = "primary 1" ] && grep -q '"live": false' <<< "$(status r2 a)"; echo $?)" "$(role r2 a)"
python3 "$LAB/check-acks.py" "$W/serial-r2-ackwrite" "$W/r2/a/export/ack" > "$W/r2-acks" 2>&1
check "acknowledged records on the primary" $? "$(cat "$W/r2-acks")"
kill9 a; sleep 3.5

# --- 3. cut link: never two primaries ------------------------------------------------------
member r3 a b; member r3 b a
formed r3; check "third group formed" $?
( guest r3 ackwrite ftnfs.n=60 > "$W/r3-ack.out" ) & G=$!
wait_acks "$W/serial-r3-ackwrite" 10
topo_cut b
watch_roles r3 30
topo_heal b
wait $G
check "never two primaries while cut" "$two" "a: $(role r3 a), b: $(role r3 b)"
check "guest went on with a during the cut" "$([ "$(cat "$W/r3-ack.out")" = "FTNFS-RESULT PASS" ]; echo $?)" "$(cat "$W/r3-ack.out")"
python3 "$LAB/check-acks.py" "$W/serial-r3-ackwrite" "$W/r3/a/export/ack" > "$W/r3-acks" 2>&1
check "acknowledged records kept through the cut" $? "$(cat "$W/r3-acks")"
grep -q "not taking over" "$W/r3/b/log"; check "b held off (logged why)" $? "$(tail -3 "$W/r3/b/log")"
kill9 a; kill9 b; sleep 3.5

# --- 4. planned switch under load: demote a (hand-off to b) ---------------------------------------
member r4 a b; member r4 b a
formed r4; check "fourth group formed" $?
( guest r4 ackwrite ftnfs.n=60 > "$W/r4-ack.out" ) & G=$!
wait_acks "$W/serial-r4-ackwrite" 10
"$T/ftnfsctl" --socket "$W/r4/a/adm.sock" demote > "$W/r4-demote" 2>&1
# the demoted primary hands the role to its live secondary (no promote needed)
ok=1
for _ in $(seq 600); do
  [ "$(role r4 b)" = "primary 2" ] && { ok=0; break; }
  sleep 0.1
done
check "ftnfsctl demote a hands the role to b" "$ok" "$(cat "$W/r4-demote"); b: $(role r4 b)"
wait $G
check "guest saw no error across the planned switch" "$([ "$(cat "$W/r4-ack.out")" = "FTNFS-RESULT PASS" ]; echo $?)" "$(cat "$W/r4-ack.out")"
for _ in $(seq 600); do [ "$(role r4 a)" = "secondary 2" ] && break; sleep 0.1; done
check "a follows b as its secondary" "$([ "$(role r4 a)" = "secondary 2" ]; echo $?)" "a: $(role r4 a), b: $(role r4 b)"
# demoted on the operator's word: a does not ask for its role back (it would within 2 s)
stayed=0
for _ in $(seq 40); do [ "$(role r4 a)" = "secondary 2" ] || { stayed=1; break; }; sleep 0.1; done
status r4 a | grep -q '"demoted": true' || stayed=1
check "a stays secondary, and its status says demoted" "$stayed" "a: $(role r4 a); $(status r4 a | grep demoted)"
python3 "$LAB/check-acks.py" "$W/serial-r4-ackwrite" "$W/r4/b/export/ack" "$W/r4/a/export/ack" > "$W/r4-acks" 2>&1
check "acknowledged records on both" $? "$(cat "$W/r4-acks")"
"$T/ftnfsctl" --socket "$W/r4/b/adm.sock" verify --with "$W/r4/a/adm.sock" > "$W/r4-verify" 2>&1
check "mirrors identical after the switch" $? "$(cat "$W/r4-verify")"
"$T/ftnfsctl" --socket "$W/r4/b/adm.sock" events > "$W/r4-events" 2>&1
check "ftnfsctl events shows the switch" "$(grep -q "promoted\|took over" "$W/r4-events"; echo $?)" "$(cat "$W/r4-events")"

kill9 a; kill9 b; sleep 3.5

# --- 5. with a witness: the primary cut off from everyone is replaced -----------------------
WITNESS="--witness w=10.99.0.3:2050"
witness r5
member r5 a b; member r5 b a
formed r5; check "group with a witness formed" $?
( guest r5 ackwrite ftnfs.n=60 > "$W/r5-ack.out" ) & G=$!
wait_acks "$W/serial-r5-ackwrite" 10
topo_cut a
watch_roles r5 60
check "b took over from the cut-off primary (the witness agreed)" "$b_took" "b: $(role r5 b); $(grep -a "taking over\|took over" "$W/r5/b/log" | tail -2)"
check "never two primaries: a fenced itself" "$two" "a: $(role r5 a), b: $(role r5 b)"
wait $G
check "guest went on through the host-level failure" "$([ "$(cat "$W/r5-ack.out")" = "FTNFS-RESULT PASS" ]; echo $?)" "$(cat "$W/r5-ack.out")"
python3 "$LAB/check-acks.py" "$W/serial-r5-ackwrite" "$W/r5/b/export/ack" > "$W/r5-acks" 2>&1
check "acknowledged records on the new primary" $? "$(cat "$W/r5-acks")"
topo_heal a
kill9 a; kill9 b; kill9 w; sleep 3.5

# --- 6. with a witness: a secondary cut off does not take over -------------------------------
witness r6
member r6 a b; member r6 b a
formed r6; check "sixth group formed (witness)" $?
( guest r6 ackwrite ftnfs.n=60 > "$W/r6-ack.out" ) & G=$!
wait_acks "$W/serial-r6-ackwrite" 10
topo_cut b
watch_roles r6 30
topo_heal b
wait $G
check "cut-off secondary never promoted (the witness still heard a)" "$b_primary" "a: $(role r6 a), b: $(role r6 b)"
check "a stayed primary in epoch 1" "$([ "$(role r6 a)" = "primary 1" ]; echo $?)" "a: $(role r6 a)"
check "guest went on with a" "$([ "$(cat "$W/r6-ack.out")" = "FTNFS-RESULT PASS" ]; echo $?)" "$(cat "$W/r6-ack.out")"
python3 "$LAB/check-acks.py" "$W/serial-r6-ackwrite" "$W/r6/a/export/ack" > "$W/r6-acks" 2>&1
check "acknowledged records on a" $? "$(cat "$W/r6-acks")"
kill9 a; kill9 b; kill9 w; sleep 3.5

# --- 7. an IPv6 virtual IP: the primary killed under a client on tcp6 ------------------------
WITNESS=; VIP=fd99::50; VIPLEN=64
ip -n "$TOPO-a" addr add fd99::1/64 dev eth0 nodad
ip -n "$TOPO-b" addr add fd99::2/64 dev eth0 nodad
ip -n "$TOPO-hub" addr add fd99::fe/64 dev br0 nodad   # a neighbour that watches the address
# and the members talk to each other over IPv6 too
IP[a]="[fd99::1]"; IP[b]="[fd99::2]"
vip_mac() { ip -n "$TOPO-hub" -6 neigh show fd99::50 dev br0 | grep -o "lladdr [^ ]*" | cut -d' ' -f2; }
member r7 a b; member r7 b a
formed r7; check "group over IPv6 peer links, with an IPv6 virtual IP, formed" $? "$(tail -3 "$W/r7/a/log")"
for _ in $(seq 100); do ip -n "$TOPO-a" -6 addr show dev eth0 | grep "fd99::50" > /dev/null && break; sleep 0.1; done
ip -n "$TOPO-a" -6 addr show dev eth0 | grep "fd99::50/64" > /dev/null
check "a holds fd99::50" $? "$(ip -n "$TOPO-a" -6 addr show dev eth0)"
# the hub talks to the address once: its neighbour entry now says a's MAC (reachable for
# ~30 s, so only an advertisement changes it sooner)
topo_hub bash -c 'exec 3<>/dev/tcp/fd99::50/2049' 2>/dev/null
check "the hub's neighbour entry for fd99::50 is a's MAC" "$([ "$(vip_mac)" = "$(topo_mac a)" ]; echo $?)" "$(vip_mac) vs a $(topo_mac a)"
( guest r7 ackwrite "ftnfs.n=60 ftnfs.ip6=fd99::100/64" > "$W/r7-ack.out" ) & G=$!
wait_acks "$W/serial-r7-ackwrite" 10
kill9 a
for _ in $(seq 1200); do [ "$(role r7 b)" = "primary 2" ] && break; sleep 0.05; done
check "b took over the IPv6 group" "$([ "$(role r7 b)" = "primary 2" ]; echo $?)" "$(role r7 b); $(tail -5 "$W/r7/b/log")"
for _ in $(seq 100); do [ "$(vip_mac)" = "$(topo_mac b)" ] && break; sleep 0.1; done
check "b's Neighbor Advertisement moved the hub's entry to b's MAC" "$([ "$(vip_mac)" = "$(topo_mac b)" ]; echo $?)" "$(ip -n "$TOPO-hub" -6 neigh show fd99::50) vs b $(topo_mac b)"
wait $G
check "guest on tcp6 went on through the failover" "$([ "$(cat "$W/r7-ack.out")" = "FTNFS-RESULT PASS" ]; echo $?)" "$(cat "$W/r7-ack.out")"
grep -aq "mounted.*client.*\[fd99::100\]" "$W/r7/a/log"
check "the guest mounted over IPv6" $? "$(grep -a mounted "$W/r7/a/log" | tail -1)"
python3 "$LAB/check-acks.py" "$W/serial-r7-ackwrite" "$W/r7/b/export/ack" > "$W/r7-acks" 2>&1
check "acknowledged records on the new primary" $? "$(cat "$W/r7-acks")"
grep -aq "virtual IP taken" "$W/r7/b/log" && ! grep -aq "announcing the virtual IP failed\|virtual IP update failed" "$W/r7/b/log"
check "b took fd99::50 and announced it (Neighbor Advertisement)" $? "$(grep -a "virtual IP" "$W/r7/b/log" | tail -3)"

finish
