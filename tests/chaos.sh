#!/usr/bin/env bash
# A seeded fault campaign against a mirrored group (members a and b and a witness w, in
# network namespaces) with the Linux kernel client in a qemu guest writing acknowledged
# records and a metadata storm through the virtual IP (issue 12).
#
# Faults, one every 3–8 s, each undone and followed by a wait until the group has one
# primary with its secondary live again (the recovery time is reported):
#   kill -9 of the primary, of the secondary (restarted after 1–3 s); a cut link (1–4 s) of
#   the primary, the secondary, the witness; SIGSTOP of a member (1–5 s); ftnfsctl demote.
# Checks: every guest run ends without an error; every acknowledged record is on both
# members; the mirrors are identical (ftnfsctl verify); exactly one primary at the end; and,
# from a capture of the guest's traffic, who announced the virtual IP and which member
# answered the client when — never both at about one instant (scripts/lab/vip-owners.py).
# Reports the longest client stall (the longest time without a new acknowledged record while
# a guest wrote) and its distribution over the faults, and how often both members reported
# "primary" at one poll (a fenced member may still say so until it hears the new epoch).
#
#   tests/chaos.sh TARGET_DIR [SEED] [FAULTS]      (release builds of ftnfsd, ftnfsctl)
# One kind of fault alone, of one length (the seed still draws the rest):
#   CHAOS_KINDS=cut-secondary CHAOS_SECS=1 tests/chaos.sh TARGET_DIR 5 8
# Prints "N passed, N failed".
set -uo pipefail
T=$(realpath "$1")
SEED=${2:-1}
FAULTS=${3:-12}
RANDOM=$SEED
# shellcheck source=../scripts/lab/harness.sh
. "$(dirname "$0")/../scripts/lab/harness.sh"
VIP=10.99.0.50
declare -A IP=([a]=10.99.0.1 [b]=10.99.0.2 [w]=10.99.0.3)
member() { # NAME PEER
  local d=$W/$1
  mkdir -p "$d/export"
  echo "$EXPORT -ftnfs=a:b *(rw,insecure,no_root_squash)" > "$d/exports"
  ip netns exec "$TOPO-$1" unshare -m sh -c "mount --bind '$d/export' '$EXPORT' && exec '$T/ftnfsd' \
    --exports '$d/exports' --state-dir '$d/state' --port 2049 --admin-socket '$d/adm.sock' \
    --no-portmap --name $1 --peer $2=${IP[$2]}:2050 --peer-listen ${IP[$1]}:2050 \
    --secret-file '$W/secret' --vip $VIP/24 --vip-dev eth0 --witness w=${IP[w]}:2050" 2>>"$d/log" &
}
witness() {
  mkdir -p "$W/w"
  ip netns exec "$TOPO-w" "$T/ftnfsd" --witness-mode --name w --peer a=${IP[a]}:2050 \
    --peer b=${IP[b]}:2050 --peer-listen ${IP[w]}:2050 --secret-file "$W/secret" \
    --state-dir "$W/w/state" --admin-socket "$W/w/adm.sock" 2>>"$W/w/log" &
}
status() { "$T/ftnfsctl" --socket "$W/$1/adm.sock" status --json 2>/dev/null; }
role() { status "$1" | python3 -c 'import json,sys; d=json.load(sys.stdin); e=d["mirror"]["exports"][0]; print(e["role"], e.get("epoch", ""))' 2>/dev/null; }
primary() { # prints the member that is primary with its secondary live, if one is
  local m
  for m in a b; do
    status "$m" | python3 -c 'import json,sys; e=json.load(sys.stdin)["mirror"]["exports"][0]; sys.exit(0 if e["role"]=="primary" and all(s["joined"] for s in e["secondaries"]) else 1)' 2>/dev/null && { echo "$m"; return 0; }
  done
  return 1
}
other() { [ "$1" = a ] && echo b || echo a; }
pids() { ip netns pids "$TOPO-$1"; }
recovered() { # waits (bounded) until one primary has its secondary live; prints seconds
  local t0 i ok=1
  t0=$(date +%s.%N)
  for i in $(seq 1200); do primary > /dev/null && { ok=0; break; }; sleep 0.1; done
  python3 -c "print(round($(date +%s.%N)-$t0,2))"
  return $ok
}

topo_member a 10.99.0.1 && topo_member b 10.99.0.2 && topo_member w 10.99.0.3 || exit 1
topo_tap tg0 || exit 1
# everything the client sends and gets, and the address announcements, as it sees them
# $! must be dumpcap itself (a backgrounded function would be a subshell): it is stopped,
# and must have flushed, before the capture is read
ip netns exec "$TOPO-hub" dumpcap -q -B 64 -i tg0 -f "tcp port 2049 or arp" -w "$W/client.pcapng" 2>/dev/null & CAP=$!
witness; member a b; member b a
recovered > /dev/null; check "group formed with a witness" $? "a: $(role a), b: $(role b)"

# The guest writes in rounds; a new guest starts whenever one finished, until the faults end.
: > "$W/guests"
guests() {
  local n=0
  # (a guest started near the end of the campaign only prolongs it: start none then)
  while [ ! -e "$W/faults-done" ] && [ ! -e "$W/faults-ending" ]; do
    n=$((n+1))
    # short runs: each must end within run_guest's 300 s bound on a loaded machine, stalls
    # included
    run_guest "$W/serial-$n" "$VIP" ackmeta "ftnfs.n=60" > "$W/guest-$n.out" 2>&1
    echo "$n" >> "$W/guests"
  done
}
guests & G=$!
# The stall watch: every 0.1 s, the number of acknowledged records of the running guest.
( while [ ! -e "$W/guests-done" ]; do
    for s in "$W"/serial-*; do [ -e "$s" ] && printf '%s %s %s\n' "$(date +%s.%N)" "$s" "$(grep -ac FTNFS-ACK "$s")"; done
    sleep 0.1
  done > "$W/acks-timeline" ) & S=$!
# both members reporting primary at one poll
( while [ ! -e "$W/guests-done" ]; do
    ra=$(role a); rb=$(role b)
    [ "${ra%% *}" = primary ] && [ "${rb%% *}" = primary ] && echo "$(date +%s.%N) a:$ra b:$rb"
    sleep 0.2
  done > "$W/both-primary" ) & P=$!
for _ in $(seq 600); do grep -q "FTNFS-ACK 5 " "$W"/serial-1 2>/dev/null && break; sleep 0.1; done

# shellcheck disable=SC2206 # CHAOS_KINDS is a list of words
kinds=(${CHAOS_KINDS:-kill-primary kill-secondary cut-primary cut-secondary cut-witness stop-member demote})
: > "$W/faults"
for f in $(seq "$FAULTS"); do
  [ "$f" -ge "$((FAULTS - 2))" ] && touch "$W/faults-ending"
  sleep "$((3 + RANDOM % 6))"
  p=$(primary) || p=a
  s=$(other "$p")
  k=${kinds[$((RANDOM % ${#kinds[@]}))]}
  d=$((1 + RANDOM % 4)); d=${CHAOS_SECS:-$d}
  t_fault=$(date +%s.%N)
  case $k in
    kill-primary) pids "$p" | xargs -r kill -9; sleep "$d"; member "$p" "$s" ;;
    kill-secondary) pids "$s" | xargs -r kill -9; sleep "$d"; member "$s" "$p" ;;
    cut-primary) topo_cut "$p"; sleep "$d"; topo_heal "$p" ;;
    cut-secondary) topo_cut "$s"; sleep "$d"; topo_heal "$s" ;;
    cut-witness) topo_cut w; sleep "$d"; topo_heal w ;;
    stop-member) m=$([ $((RANDOM % 2)) = 0 ] && echo "$p" || echo "$s")
      d=$((1 + RANDOM % 5)); pids "$m" | xargs -r kill -STOP; sleep "$d"; pids "$m" | xargs -r kill -CONT
      k="stop-$([ "$m" = "$p" ] && echo primary || echo secondary)" ;;
    demote) "$T/ftnfsctl" --socket "$W/$p/adm.sock" demote > /dev/null 2>&1 ;;
  esac
  r=$(recovered); rc=$?
  echo "fault $f: $k ${d}s (primary was $p), recovered in ${r}s" | tee -a "$W/faults"
  echo "$t_fault fault $f $k" >> "$W/fault-times"
  [ "$rc" = 0 ] || { check "recovered after fault $f ($k)" 1 "a: $(role a), b: $(role b)"; break; }
done
touch "$W/faults-done"
wait $G
touch "$W/guests-done"; wait $S $P

bad=0
for n in $(cat "$W/guests"); do
  [ "$(grep -ao "FTNFS-RESULT [A-Z].*" "$W/guest-$n.out" | tail -1 | tr -d '\r')" = "FTNFS-RESULT PASS" ] || { bad=1; echo "guest $n: $(tail -2 "$W/guest-$n.out")"; }
done
check "no client error in $(wc -l < "$W/guests") guest run(s) over $FAULTS faults" "$bad"
p=$(primary) || p=a
s=$(other "$p")
check "exactly one primary at the end ($p)" "$([ "$(role "$s" | cut -d' ' -f1)" != primary ] && primary > /dev/null; echo $?)" "a: $(role a), b: $(role b)"
# Every guest run rewrites the same records (offset 64*seq) with new contents: the newest
# acknowledged write of each record must be there, on both members.
python3 - "$W/acks-merged" $(for n in $(cat "$W/guests"); do echo "$W/serial-$n"; done) <<'PY'
import re, sys
acks = {}
for log in sys.argv[2:]:
    for m in re.finditer(rb"FTNFS-ACK (\d+) ([0-9a-f]{32})", open(log, "rb").read()):
        acks[int(m.group(1))] = m.group(2).decode()
with open(sys.argv[1], "w") as f:
    for seq, md5 in sorted(acks.items()):
        f.write(f"FTNFS-ACK {seq} {md5}\n")
PY
python3 "$LAB/check-acks.py" "$W/acks-merged" "$W/a/export/ack" "$W/b/export/ack" > "$W/acks" 2>&1
check "every acknowledged record on both members (the newest of each)" $? "$(head -5 "$W/acks")"
cat "$W/acks" | tail -1
"$T/ftnfsctl" --socket "$W/$p/adm.sock" verify --with "$W/$s/adm.sock" > "$W/verify" 2>&1
check "mirrors identical (verify)" $? "$(tail -5 "$W/verify")"
python3 - "$W/acks-timeline" "$W/fault-times" <<'PY'
import sys
last = {}
gaps = []  # (length, start)
for line in open(sys.argv[1]):
    t, s, n = line.split()
    t, n = float(t), int(n)
    if s not in last:
        last[s] = (t, n)
        continue
    t0, n0 = last[s]
    if n > n0:
        if n0 > 0:
            gaps.append((t - t0, t0))
        last[s] = (t, n)
faults = [(float(l.split()[0]), " ".join(l.split()[1:])) for l in open(sys.argv[2])]
if gaps:
    g = sorted(x[0] for x in gaps)
    q = lambda p: g[min(len(g) - 1, int(len(g) * p))]
    print(f"client stalls (time between acknowledged records, {len(g)} gaps): "
          f"median {q(0.5):.2f} s, p99 {q(0.99):.2f} s, max {g[-1]:.2f} s; "
          f"over 2 s: {sum(x > 2 for x in g)}")
    for length, start in sorted(gaps, reverse=True)[:3]:
        before = [f for f in faults if f[0] <= start + length]
        f = before[-1] if before else (start, "no fault")
        print(f"  {length:.2f} s from +{start - gaps[0][1]:.1f} s; last fault before its end: "
              f"{f[1]} at {f[0] - start:+.1f} s")
PY
echo "polls with both members reporting primary: $(wc -l < "$W/both-primary")"
sleep 0.5; kill "$CAP" 2>/dev/null; wait "$CAP" 2>/dev/null
python3 "$LAB/vip-owners.py" "$W/client.pcapng" "$VIP" "a=$(topo_mac a)" "b=$(topo_mac b)" > "$W/owners" 2>&1
rc=$?
check "never two members answering the client at once (capture)" $rc "$(tail -3 "$W/owners")"
[ "$rc" = 0 ] || { cp "$W/client.pcapng" "$CACHE/chaos-capture.pcapng" \
  && echo "capture kept in $CACHE/chaos-capture.pcapng"; }
grep -E "announced|INTERLEAVED|^vip-owners" "$W/owners" | cut -c1-400
finish
