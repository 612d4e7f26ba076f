#!/usr/bin/env python3
"""Who held the virtual IP and who answered the client, from a capture (tshark decodes).

    vip-owners.py CAPTURE VIP NAME=MAC [NAME=MAC ...]

Reads the gratuitous ARPs for VIP (who announced the address, when) and every RPC reply
sent from VIP:2049 (which member's MAC it left from). Prints the announcements and the
changes of the answering member, each with the gap between the old member's last reply and
the new one's first, and counts *interleavings*: the answering member changing back within
a second — both members answering the client at about one instant (an old primary that goes
on serving after the new one started). Exits 1 if there is any, or if nothing was decoded.
"""
import subprocess
import sys

cap, vip = sys.argv[1], sys.argv[2]
names = {}
for a in sys.argv[3:]:
    n, mac = a.split("=", 1)
    names[mac.lower()] = n


def fields(flt, *f):
    args = ["tshark", "-r", cap, "-d", "tcp.port==2049,rpc", "-Y", flt, "-T", "fields",
            "-E", "separator=|"]
    for x in f:
        args += ["-e", x]
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    return [l.split("|") for l in out.splitlines() if l]


garps = [(float(t), names.get(m.lower(), m)) for t, m in
         fields(f"arp.src.proto_ipv4=={vip} && arp.dst.proto_ipv4=={vip}",
                "frame.time_relative", "arp.src.hw_mac")]
replies = [(float(t), names.get(m.lower(), m)) for t, m in
           fields(f"ip.src=={vip} && tcp.srcport==2049 && rpc.msgtyp==1",
                  "frame.time_relative", "eth.src")]
if not replies:
    print("vip-owners: no reply decoded")
    sys.exit(1)
print("virtual IP announced (gratuitous ARP): " +
      (", ".join(f"{n} at {t:.1f} s" for t, n in garps) or "never"))
runs = []  # [member, first, last, count]
for t, n in replies:
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
print(f"vip-owners: {len(replies)} replies ("
      + ", ".join(f"{n} {c}" for n, c in sorted(per.items()))
      + f"), {len(runs) - 1} changes of the answering member, {interleavings} interleaved")
sys.exit(1 if interleavings else 0)
