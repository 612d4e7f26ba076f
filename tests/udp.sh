#!/usr/bin/env bash
# The Linux kernel client over UDP (proto=udp, mountproto=udp), with the guest's NFS modules
# rebuilt to allow it (scripts/lab/prepare-udp-modules.sh; Debian's refuse UDP). UDP is where
# the duplicate request cache earns its keep: every lost reply is a retransmission of the same
# xid, and a retransmitted MKDIR or RMDIR executed twice answers EXIST or NOENT.
#   1. one ftnfsd: the mount is proto=udp; the metadata storm and acknowledged writes pass;
#   2. a mirrored group with a virtual IP: kill -9 of the primary while the guest writes
#      acknowledged records between mkdir/rmdir rounds over UDP: the guest ends without an
#      error (no update executed twice: a retransmission across the failover gets its first
#      answer from the survivor's DRC), b took over, every acknowledged record is on b.
#   3. the same over a multicast virtual IP (--vip …,multicast; Documentation/15-virtual-
#      servers.md): the guest's ARP gets the address's multicast MAC from the primary, every
#      member receives every datagram (the secondary counts those not its to answer), the
#      secondary applies the updates it received itself on the primary's orders (proxy mode,
#      Documentation/16-proxy-mode.md), and after the kill the survivor answers the same MAC:
#      the guest passes, every record is on b.
#   4. a primary that stops hearing the multicast address (an nftables rule drops the
#      address's UDP datagrams arriving at a, as a lost multicast membership would): b holds what the
#      guest sends, reports it unknown, and a, which received none, hands b the group
#      (member/exclusion.rs, Documentation/16-proxy-mode.md); the guest passes, every
#      record is on b.
#   5. split read and write primaries (-ftnfsr=b:a,ftnfsw=a:b, patent Table II) on a
#      multicast address: a orders the guest's updates, b answers its reads under the read
#      lease a grants (member/read_lease.rs); kill -9 of b, the read server: a answers the
#      reads, the guest passes; b restarts, rejoins and holds the lease again; kill -9 of a,
#      the write primary: b takes the writes over, the guest passes; every record on b.
# Prints "N passed, N failed".
#   tests/udp.sh TARGET_DIR      (release builds of ftnfsd, ftnfsctl)
set -uo pipefail
T=$(realpath "$1")
# shellcheck source=../scripts/lab/harness.sh
. "$(dirname "$0")/../scripts/lab/harness.sh"
"$LAB/prepare-udp-modules.sh" "$CACHE" > "$W/udp-modules.log" 2>&1
check "guest NFS modules with UDP built" $? "$(tail -5 "$W/udp-modules.log")"
export GUEST_INITRD=$CACHE/initramfs-udp.cpio.gz
VIP=10.99.0.50
declare -A IP=([a]=10.99.0.1 [b]=10.99.0.2)
status() { "$T/ftnfsctl" --socket "$W/$1/$2/adm.sock" status --json 2>/dev/null; }
role() { status "$1" "$2" | python3 -c 'import json,sys; d=json.load(sys.stdin); e=d["mirror"]["exports"][0]; print(e["role"], e.get("epoch", ""))' 2>/dev/null; }
mounted_udp() { grep -a "FTNFS-MOUNT" "$1" | grep "proto=udp" > /dev/null; }
topo_member a "${IP[a]}" && topo_member b "${IP[b]}" || exit 1
topo_tap tg0 || exit 1

# --- 1. one server over UDP ---------------------------------------------------------------
mkdir -p "$W/one/state"
echo "$EXPORT *(rw,insecure,no_root_squash)" > "$W/one/exports"
ip netns exec "$TOPO-a" "$T/ftnfsd" --exports "$W/one/exports" --state-dir "$W/one/state" \
  --port 2049 --admin-socket "$W/one/adm.sock" --no-portmap 2>>"$W/one/log" &
for _ in $(seq 100); do "$T/ftnfsctl" --socket "$W/one/adm.sock" status > /dev/null 2>&1 && break; sleep 0.1; done
out=$(run_guest "$W/serial-one" "${IP[a]}" ackmeta "ftnfs.proto=udp ftnfs.n=40")
mounted_udp "$W/serial-one"; check "the kernel mounted over UDP" $? "$(grep -a FTNFS-MOUNT "$W/serial-one")"
check "metadata storm and acknowledged writes over UDP" "$([ "$out" = "FTNFS-RESULT PASS" ]; echo $?)" "$out"
kill9 a

# --- 2. a primary killed under a client over UDP -------------------------------------------
member() { # NAME PEER [RUN] [VIP-SPEC] [MIRRORING]
  local d=$W/${3:-g}/$1
  mkdir -p "$d/export"
  echo "$EXPORT ${5:--ftnfs=a:b} *(rw,insecure,no_root_squash)" > "$d/exports"
  ip netns exec "$TOPO-$1" unshare -m sh -c "mount --bind '$d/export' '$EXPORT' && exec '$T/ftnfsd' \
    --exports '$d/exports' --state-dir '$d/state' --port 2049 --admin-socket '$d/adm.sock' \
    --no-portmap --name $1 --peer $2=${IP[$2]}:2050 --peer-listen ${IP[$1]}:2050 \
    --secret-file '$W/secret' --vip ${4:-$VIP/24} --vip-dev eth0" 2>>"$d/log" &
}
member a b; member b a
for _ in $(seq 1200); do status g a | grep -q '"joined": true' && break; sleep 0.1; done
check "group formed, a primary" "$([ "$(role g a)" = "primary 1" ]; echo $?)" "$(role g a)"
( run_guest "$W/serial-fo" "$VIP" ackmeta "ftnfs.proto=udp ftnfs.n=80" > "$W/fo.out" ) & G=$!
wait_acks "$W/serial-fo" 15 1200
kill9 a
for _ in $(seq 1200); do [ "$(role g b)" = "primary 2" ] && break; sleep 0.05; done
check "b took over in epoch 2" "$([ "$(role g b)" = "primary 2" ]; echo $?)" "$(role g b); $(tail -3 "$W/g/b/log")"
wait $G
mounted_udp "$W/serial-fo"; check "the guest of the failover mounted over UDP" $?
check "the guest's updates went on over UDP through the failover, none executed twice" \
  "$([ "$(cat "$W/fo.out")" = "FTNFS-RESULT PASS" ]; echo $?)" "$(cat "$W/fo.out")"
python3 "$LAB/check-acks.py" "$W/serial-fo" "$W/g/b/export/ack" > "$W/fo-acks" 2>&1
check "every acknowledged record is on the survivor" $? "$(cat "$W/fo-acks")"
kill9 b
sleep 3.5   # the virtual IP's lifetime runs out

# --- 3. a multicast virtual IP --------------------------------------------------------------
MVIP=10.99.0.60
foreign() { # RUN NAME: datagrams to the multicast address this member dropped (not its holder)
  status "$1" "$2" | python3 -c 'import json,sys; print(sum(v["foreign_datagrams"] for v in json.load(sys.stdin)["virtual_ips"]))' 2>/dev/null
}
member a b m "$MVIP/24,multicast"; member b a m "$MVIP/24,multicast"
for _ in $(seq 1200); do status m a | grep -q '"joined": true' && break; sleep 0.1; done
check "multicast group formed, a primary" "$([ "$(role m a)" = "primary 1" ]; echo $?)" "$(role m a)"
( run_guest "$W/serial-mc" "$MVIP" ackmeta "ftnfs.proto=udp ftnfs.n=80" > "$W/mc.out" ) & G=$!
wait_acks "$W/serial-mc" 15 1200
before=$(foreign m b)
check "every member receives the datagrams: b got $before sent to $MVIP while a answered" \
  "$([ "${before:-0}" -gt 0 ]; echo $?)" "b: $(status m b | head -c 600)"
claimed() { status "$1" "$2" | python3 -c 'import json,sys; e=json.load(sys.stdin)["mirror"]["exports"][0]; print(e.get("proxy", {}).get("claimed", 0))' 2>/dev/null; }
c=$(claimed m b)
check "proxy mode: b applied $c updates from datagrams it held, on a's orders" \
  "$([ "${c:-0}" -gt 0 ]; echo $?)" "b: $(status m b | head -c 900)"
kill9 a
for _ in $(seq 1200); do [ "$(role m b)" = "primary 2" ] && break; sleep 0.05; done
check "b took the multicast group over in epoch 2" "$([ "$(role m b)" = "primary 2" ]; echo $?)" "$(role m b)"
wait $G
check "the guest's updates over the multicast address went on through the failover" \
  "$([ "$(cat "$W/mc.out")" = "FTNFS-RESULT PASS" ]; echo $?)" "$(cat "$W/mc.out")"
python3 "$LAB/check-acks.py" "$W/serial-mc" "$W/m/b/export/ack" > "$W/mc-acks" 2>&1
check "every acknowledged record is on the survivor" $? "$(cat "$W/mc-acks")"
grep -q "ARP answered while primary" "$W/m/b/log"; check "the members joined the multicast MAC" $? "$(grep -i multicast "$W/m/b/log" | tail -3)"
kill9 b

# --- 4. a primary deaf to the multicast address ---------------------------------------------
DVIP=10.99.0.61
member a b d "$DVIP/24,multicast"; member b a d "$DVIP/24,multicast"
for _ in $(seq 1200); do status d a | grep -q '"joined": true' && break; sleep 0.1; done
check "second multicast group formed, a primary" "$([ "$(role d a)" = "primary 1" ]; echo $?)" "$(role d a)"
( run_guest "$W/serial-deaf" "$DVIP" ackmeta "ftnfs.proto=udp ftnfs.n=80" > "$W/deaf.out" ) & G=$!
wait_acks "$W/serial-deaf" 15 1200
ip netns exec "$TOPO-a" nft -f - <<NFT
table inet ftnfs_test_deaf {
  chain in { type filter hook prerouting priority -300; ip daddr $DVIP meta l4proto udp drop; }
}
NFT
check "a hears no datagram to $DVIP any more" $? "$(ip netns exec "$TOPO-a" nft list ruleset | tail -5)"
for _ in $(seq 1200); do [ "$(role d b)" = "primary 2" ] && break; sleep 0.1; done
# what each member saw (shown if the hand-over did not come)
hearing() { status d "$1" | python3 -c 'import json,sys; d=json.load(sys.stdin)["mirror"]
for e in d["exports"]: print({k: e.get(k) for k in ("role", "epoch", "unknown_requests", "datagrams", "proxy", "pending")})
for v in d["events"][:6]: print(" ", v)' 2>&1; }
check "a, deaf to the group's datagrams, handed the group to b (epoch 2)" \
  "$([ "$(role d b)" = "primary 2" ]; echo $?)" "a: $(hearing a)
b: $(hearing b)"
status d a | grep -q "does not hear the group's datagrams"
check "a says why it stepped down" $? "$(status d a | head -c 1500)"
wait $G
check "the guest's updates went on after its primary went deaf" \
  "$([ "$(cat "$W/deaf.out")" = "FTNFS-RESULT PASS" ]; echo $?)" "$(cat "$W/deaf.out")"
python3 "$LAB/check-acks.py" "$W/serial-deaf" "$W/d/b/export/ack" > "$W/deaf-acks" 2>&1
check "every acknowledged record is on b" $? "$(cat "$W/deaf-acks")"
kill9 a; kill9 b

# --- 5. split read and write primaries on a multicast address --------------------------------
SVIP=10.99.0.62
SPLIT=-ftnfsr=b:a,ftnfsw=a:b
split() { # NAME KEY: a field of the split export's status at NAME
  status s "$1" | python3 -c 'import json,sys; e=json.load(sys.stdin)["mirror"]["exports"][0]; print(e.get(sys.argv[1]))' "$2" 2>/dev/null
}
split_state() { for m in a b; do echo "$m: $(status s $m | python3 -c 'import json,sys; e=json.load(sys.stdin)["mirror"]["exports"][0]; print({k: e.get(k) for k in ("role", "epoch", "read_server", "releases_held", "reads", "reads_answered", "joined")})' 2>&1)"; done; }
member a b s "$SVIP/24,multicast" "$SPLIT"; member b a s "$SVIP/24,multicast" "$SPLIT"
for _ in $(seq 1200); do [ "$(split b reads)" = True ] && break; sleep 0.1; done
check "split group formed: a orders updates, b holds the read lease" \
  "$([ "$(role s a)" = "primary 1" ] && [ "$(split a read_server)" = b ] && [ "$(split b reads)" = True ]; echo $?)" "$(split_state)"
( run_guest "$W/serial-split1" "$SVIP" ackmeta "ftnfs.proto=udp ftnfs.n=60" > "$W/split1.out" ) & G=$!
wait_acks "$W/serial-split1" 15 1200
n=$(split b reads_answered)
check "b, the read server, answered $n of the guest's reads" "$([ "${n:-0}" -gt 0 ]; echo $?)" "$(split_state)"
kill9 b   # the read server
for _ in $(seq 1200); do [ "$(split a read_server)" = a ] && break; sleep 0.1; done
check "b gone: a is the read server" "$([ "$(split a read_server)" = a ]; echo $?)" "$(split_state)"
wait $G
check "the guest's reads and updates went on after its read server died" \
  "$([ "$(cat "$W/split1.out")" = "FTNFS-RESULT PASS" ]; echo $?)" "$(cat "$W/split1.out")"
n=$(split a reads_answered)
check "a answered $n reads once b was gone" "$([ "${n:-0}" -gt 0 ]; echo $?)" "$(split_state)"
python3 "$LAB/check-acks.py" "$W/serial-split1" "$W/s/a/export/ack" > "$W/split1-acks" 2>&1
check "every acknowledged record is on a" $? "$(cat "$W/split1-acks")"
member b a s "$SVIP/24,multicast" "$SPLIT"   # b comes back: it rejoins and reads again
for _ in $(seq 1800); do [ "$(split b reads)" = True ] && break; sleep 0.1; done
check "b rejoined and holds the read lease again" "$([ "$(split b reads)" = True ]; echo $?)" "$(split_state)"
( run_guest "$W/serial-split2" "$SVIP" ackmeta "ftnfs.proto=udp ftnfs.n=60" > "$W/split2.out" ) & G=$!
wait_acks "$W/serial-split2" 15 1200
kill9 a   # the write primary
for _ in $(seq 1200); do [ "$(role s b)" = "primary 2" ] && break; sleep 0.05; done
check "a gone: b took the writes over in epoch 2 and reads as their primary" \
  "$([ "$(role s b)" = "primary 2" ] && [ "$(split b read_server)" = b ]; echo $?)" "$(split_state)"
wait $G
check "the guest's updates went on after its write primary died" \
  "$([ "$(cat "$W/split2.out")" = "FTNFS-RESULT PASS" ]; echo $?)" "$(cat "$W/split2.out")"
python3 "$LAB/check-acks.py" "$W/serial-split2" "$W/s/b/export/ack" > "$W/split2-acks" 2>&1
check "every acknowledged record of the second guest is on b" $? "$(cat "$W/split2-acks")"
kill9 b
finish
