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
# Prints "N passed, N failed".   tests/multicast-delivery.sh   (root; iproute2, python3, nft)
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
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
