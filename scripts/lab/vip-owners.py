#!/usr/bin/env python3
"""Who held the virtual IP and who answered the client, from a capture (tshark decodes).

    vip-owners.py CAPTURE VIP NAME=MAC [NAME=MAC ...]

Reads the gratuitous ARPs for VIP (who announced the address, when) and every RPC reply
sent from VIP:2049 (which member's MAC it left from). A reply counts only if the client's
TCP *took* it — a later ACK of the client on that connection covers the segment. A member
that resumes after a pause may still push out segments of a connection the client has
since opened again to the new primary (same four-tuple): they fall outside the client's
window and are dropped, so they answer nothing; they are counted apart.

Prints the announcements and the changes of the answering member, each with the gap between
the old member's last taken reply and the new one's first, and counts *interleavings*: the
answering member changing back within a second — both members answering the client at about
one instant. Exits 1 if there is any, or if nothing was decoded.
"""
import bisect
import subprocess
import sys

cap, vip = sys.argv[1], sys.argv[2]
names = {}
for a in sys.argv[3:]:
    n, mac = a.split("=", 1)
    names[mac.lower()] = n


def fields(flt, *f):
    args = ["tshark", "-r", cap, "-d", "tcp.port==2049,rpc", "-Y", flt, "-T", "fields",
            "-E", "separator=|", "-E", "occurrence=f"]
    for x in f:
        args += ["-e", x]
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    return [l.split("|") for l in out.splitlines() if l]


garps = [(float(t), names.get(m.lower(), m)) for t, m in
         fields(f"arp.src.proto_ipv4=={vip} && arp.dst.proto_ipv4=={vip}",
                "frame.time_relative", "arp.src.hw_mac")]
# every segment of the NFS connections: server side (replies) and client side (its ACKs)
segs = fields(f"ip.addr=={vip} && tcp.port==2049", "frame.time_relative", "eth.src", "ip.src",
              "ip.dst", "tcp.srcport", "tcp.dstport", "tcp.seq_raw", "tcp.len", "tcp.ack_raw",
              "tcp.flags.ack", "rpc.msgtyp")
acks = {}  # (client ip, port) -> [(time, ack)]
replies = []  # (time, member, key, end)
for t, mac, src, dst, sport, dport, seq, ln, ack, fack, mtyp in ((s + [""] * 11)[:11] for s in segs):
    t = float(t)
    if src == vip and sport == "2049":
        if mtyp == "1" and seq and ln:
            replies.append((t, names.get(mac.lower(), mac), (dst, dport),
                            (int(seq) + int(ln)) % (1 << 32)))
    elif dst == vip and dport == "2049" and fack in ("1", "True") and ack:
        acks.setdefault((src, sport), []).append((t, int(ack)))


def taken(t, key, end):
    """The client acknowledged the segment ending at `end` within 10 s."""
    lst = acks.get(key, [])
    i = bisect.bisect_left(lst, (t, -1))
    for tt, a in lst[i:]:
        if tt > t + 10:
            break
        if (a - end) % (1 << 32) < (1 << 24):
            return True
    return False


answered = [(t, n) for t, n, k, e in replies if taken(t, k, e)]
dropped = len(replies) - len(answered)
if not answered:
    print("vip-owners: no reply decoded")
    sys.exit(1)
print("virtual IP announced (gratuitous ARP): " +
      (", ".join(f"{n} at {t:.1f} s" for t, n in garps) or "never"))
runs = []  # [member, first, last, count]
for t, n in answered:
    if runs and runs[-1][0] == n:
        runs[-1][2] = t
        runs[-1][3] += 1
    else:
        runs.append([n, t, t, 1])
interleavings = 0
for i in range(1, len(runs)):
    old, new = runs[i - 1], runs[i]
    back = i >= 2 and runs[i - 2][0] == new[0] and new[1] - runs[i - 2][2] < 1.0
    if back:
        interleavings += 1
    print(f"  {new[1]:8.2f} s: answers from {new[0]} (after {old[0]}: {new[1] - old[2]:.2f} s "
          f"without an answer){'  INTERLEAVED' if back else ''}")
per = {}
for n, _, _, c in runs:
    per[n] = per.get(n, 0) + c
print(f"vip-owners: {len(answered)} replies taken by the client ("
      + ", ".join(f"{n} {c}" for n, c in sorted(per.items()))
      + f"), {dropped} segments it dropped (a stale connection's), {len(runs) - 1} changes "
      f"of the answering member, {interleavings} interleaved")
sys.exit(1 if interleavings else 0)
