#!/usr/bin/env bash
# What the patent's multicast delivery (issue 16, Documentation/15-virtual-servers.md "Toward
# multicast") needs of the network, checked on this lab's parts: a Linux neighbour (the hub
# namespace, this host's kernel) and a Linux bridge, two members in namespaces.
#   1. Every member has the virtual IP on `lo` (so its kernel accepts datagrams to it) with
#      arp_ignore=1 (so no kernel answers ARP for it with its own MAC), and none answers: the
#      neighbour's ARP request stays unanswered.
#   2. One member answers the neighbour's ARP request for the virtual IP with the IPv4
#      multicast MAC of the address (01:00:5e + its low 23 bits): the neighbour takes it.
#   3. A UDP datagram the neighbour sends to the virtual IP reaches *both* members (the bridge
#      floods the multicast frame; each kernel delivers it to its socket).
#   4. A datagram with the multicast MAC is seen as such (PACKET_MULTICAST): an nftables rule
#      `meta pkttype multicast` can keep TCP to the address from every member.
#   5. (given TARGET_DIR, release builds of ftnfsd and ftnfsctl) the same for IPv6, with the
#      daemons: two members with --vip fd99::60/64,multicast; the neighbour's NFS NULL over
#      UDP is answered; its neighbour entry is the address's IPv6 multicast MAC (33:33 and the
#      low 32 bits), taken from the primary's Neighbor Advertisement; b, not the holder,
#      received the datagram too; after kill -9 of a, b answers and resolves the address to
#      the same MAC. (Each resolution is checked after the holder's unsolicited announcements
#      and with the neighbour's entry flushed: only the answer to a solicitation resolves it.)
# Prints "N passed, N failed".
#   tests/multicast-delivery.sh [TARGET_DIR]   (root; iproute2, python3, nft)
set -uo pipefail
cd "$(dirname "$0")/.."
. scripts/lab/topo.sh
topo_init || exit 1
pass=0; fail=0
check() { if [ "$2" = 0 ]; then pass=$((pass+1)); echo "ok   $1"; else fail=$((fail+1)); echo "FAIL $1: ${3:-}"; fi; }
topo_member a 10.99.0.1 && topo_member b 10.99.0.2 || exit 1
VIP=10.99.0.60
# the IPv4 multicast MAC of the address: 01:00:5e and its low 23 bits
MMAC=$(python3 -c "import ipaddress; n=int(ipaddress.IPv4Address('$VIP')) & 0x7fffff; print('01:00:5e:%02x:%02x:%02x' % (n>>16, (n>>8)&255, n&255))")
W=$(mktemp -d)
trap 'topo_cleanup; rm -rf "$W"' EXIT
listen() { # MEMBER: prints what one datagram to the VIP's port 9999 brought, within 5 s
  topo_in "$1" python3 -c "
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('0.0.0.0', 9999)); s.settimeout(5)
try:
    d, a = s.recvfrom(100); print(d.decode())
except OSError:
    print('nothing')" > "$W/got-$1" &
}
for m in a b; do
  topo_in $m ip addr add $VIP/32 dev lo
  topo_in $m sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.eth0.arp_ignore=1 \
    net.ipv4.conf.all.arp_announce=2 net.ipv4.conf.eth0.arp_announce=2
done
# 1. nobody answers for the address yet
topo_hub ping -c 1 -W 1 $VIP > /dev/null 2>&1
topo_hub ip neigh show $VIP | grep lladdr > /dev/null
check "with the address on lo and arp_ignore=1, no kernel answers ARP for it" "$([ $? = 1 ]; echo $?)" "$(topo_hub ip neigh show $VIP)"
topo_hub ip neigh flush $VIP 2>/dev/null
# 2. a's ARP responder (what the primary would run) answers with the multicast MAC
topo_in a python3 - "$VIP" "$MMAC" > "$W/responder" 2>&1 <<'PY' &
import socket, struct, sys, time
ip = socket.inet_aton(sys.argv[1]); mac = bytes.fromhex(sys.argv[2].replace(':', ''))
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806))
s.bind(('eth0', 0)); s.settimeout(0.5)
own = bytes.fromhex(open('/sys/class/net/eth0/address').read().strip().replace(':', ''))
end = time.time() + 8
while time.time() < end:
    try:
        f = s.recv(100)
    except OSError:
        continue
    arp = f[14:42]
    if len(arp) == 28 and struct.unpack('!H', arp[6:8])[0] == 1 and arp[24:28] == ip:
        reply = struct.pack('!HHBBH', 1, 0x0800, 6, 4, 2) + mac + ip + arp[8:14] + arp[14:18]
        s.send(arp[8:14] + own + b'\x08\x06' + reply)
        print('answered', flush=True)
PY
R=$!
sleep 0.5
listen a; listen b
sleep 0.3
topo_hub python3 -c "
import socket
socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'to-every-member', ('$VIP', 9999))"
wait $(jobs -p | grep -v "^$R$") 2>/dev/null
topo_hub ip neigh show $VIP | grep "lladdr $MMAC" > /dev/null
check "the neighbour took the multicast MAC $MMAC from the ARP reply" $? "$(topo_hub ip neigh show $VIP); responder: $(cat "$W/responder")"
# 3. both members got the datagram
[ "$(cat "$W/got-a")" = to-every-member ] && [ "$(cat "$W/got-b")" = to-every-member ]
check "a datagram to the address reached both members" $? "a: $(cat "$W/got-a"), b: $(cat "$W/got-b")"
# 4. pkttype multicast: an nft rule counts the frame on b
topo_in b nft -f - <<NFT
add table inet ftnfs_mcast_check
add chain inet ftnfs_mcast_check in { type filter hook input priority -10; policy accept; }
add rule inet ftnfs_mcast_check in ip daddr $VIP meta pkttype multicast counter
NFT
listen b; sleep 0.3
topo_hub python3 -c "
import socket
socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'counted', ('$VIP', 9999))"
sleep 0.5
topo_in b nft list table inet ftnfs_mcast_check | grep "packets [1-9]" > /dev/null
check "the member sees the frame as multicast (nft meta pkttype multicast matches)" $? "$(topo_in b nft list table inet ftnfs_mcast_check)"
kill $R 2>/dev/null; wait 2>/dev/null

# 5. IPv6, with the daemons
if [ -n "${1:-}" ]; then
  T=$(realpath "$1"); VIP6=fd99::60; MMAC6=33:33:00:00:00:60
  declare -A IP=([a]=10.99.0.1 [b]=10.99.0.2)
  topo_in a ip addr add fd99::1/64 dev eth0 nodad
  topo_in b ip addr add fd99::2/64 dev eth0 nodad
  topo_hub ip addr add fd99::fe/64 dev br0 nodad
  echo "a-long-enough-shared-secret" > "$W/secret"
  daemon() { # NAME PEER
    mkdir -p "$W/$1/export"
    echo "$W/$1/export -ftnfs=a:b,fsid=77 *(rw,insecure,no_root_squash)" > "$W/$1/exports"
    topo_in "$1" "$T/ftnfsd" --exports "$W/$1/exports" --state-dir "$W/$1/state" --port 2049 \
      --admin-socket "$W/$1/adm.sock" --no-portmap --name "$1" --peer "$2=${IP[$2]}:2050" \
      --peer-listen "${IP[$1]}:2050" --secret-file "$W/secret" --vip "$VIP6/64,multicast" \
      --vip-dev eth0 2>>"$W/$1.log" &
  }
  st() { "$T/ftnfsctl" --socket "$W/$1/adm.sock" status --json 2>/dev/null; }
  role() { st "$1" | python3 -c 'import json,sys; e=json.load(sys.stdin)["mirror"]["exports"][0]; print(e["role"], e.get("epoch", ""))' 2>/dev/null; }
  foreign() { st "$1" | python3 -c 'import json,sys; print(sum(v["foreign_datagrams"] for v in json.load(sys.stdin)["virtual_ips"]))' 2>/dev/null; }
  null6() { # an NFS NULL call over UDP to the address, retransmitted: who answered
    topo_hub python3 - "$VIP6" <<'PY'
import socket, struct, sys, time
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); s.settimeout(0.5)
call = struct.pack('!10I', 0x6e756c6c, 0, 2, 100003, 3, 0, 0, 0, 0, 0)
end = time.time() + 20
while time.time() < end:
    s.sendto(call, (sys.argv[1], 2049))
    try:
        r, a = s.recvfrom(200)
    except OSError:
        continue
    if r[:4] == call[:4] and struct.unpack('!I', r[20:24])[0] == 0:
        print('answered'); break
else:
    print('no answer')
PY
  }
  daemon a b; daemon b a
  for _ in $(seq 600); do st a | grep -q '"joined": true' && break; sleep 0.1; done
  check "an IPv6 multicast group formed, a primary" "$([ "$(role a)" = "primary 1" ]; echo $?)" "$(role a); $(tail -3 "$W/a.log")"
  fresh_null() { # HOLDER WHAT-ANSWERS WHAT-RESOLVES
    # past the holder's unsolicited announcements (0, 0.2, 1.2 s after it took the address),
    # with no entry: only an answer to the neighbour's solicitation can resolve the address
    sleep 2; topo_hub ip -6 neigh flush to $VIP6 2>/dev/null
    local r; r=$(null6)
    check "$2" "$([ "$r" = answered ]; echo $?)" "$r; $(tail -3 "$W/$1.log")"
    topo_hub ip -6 neigh show $VIP6 | grep "lladdr $MMAC6" > /dev/null
    check "$3" $? "$(topo_hub ip -6 neigh show $VIP6)"
  }
  fresh_null a "the neighbour's NFS NULL to $VIP6 over UDP is answered" \
    "the neighbour took the IPv6 multicast MAC $MMAC6 from the primary's advertisement"
  n=$(foreign b)
  check "b, not the holder, received $n datagrams to the address too" "$([ "${n:-0}" -gt 0 ]; echo $?)" "$(st b | head -c 600)"
  ip netns pids "$TOPO-a" | xargs -r kill -9
  for _ in $(seq 600); do [ "$(role b)" = "primary 2" ] && break; sleep 0.1; done
  check "b took over (epoch 2)" "$([ "$(role b)" = "primary 2" ]; echo $?)" "$(role b); $(tail -3 "$W/b.log")"
  fresh_null b "after the kill the NULL is answered, by b" \
    "resolved again, by b's answer: the same multicast MAC"
  ip netns pids "$TOPO-b" | xargs -r kill -9
fi
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
