#!/usr/bin/env python3
"""Counts protocol trouble in a capture of NFS test traffic (tshark does the decoding).

    capture-check.py CAPTURE [PORT]

Counts packets tshark calls malformed, replies that are MSG_DENIED or not SUCCESS (except
PROG_UNAVAIL for the kernel's NFS_ACL probe), and calls
whose xid never got a reply (a retransmission on a new connection answers the call, as it
does for the client). Prints the counts; exits 1 if any is not 0 or nothing was decoded.
"""
import subprocess
import sys

cap = sys.argv[1]
port = sys.argv[2] if len(sys.argv) > 2 else "2049"
out = subprocess.run(
    ["tshark", "-r", cap, "-d", f"tcp.port=={port},rpc", "-d", f"udp.port=={port},rpc",
     "-T", "fields", "-E", "separator=|", "-E", "occurrence=a", "-E", "aggregator=,",
     "-e", "_ws.malformed", "-e", "rpc.xid", "-e", "rpc.msgtyp", "-e", "rpc.replystat",
     "-e", "rpc.state_accept", "-e", "rpc.program", "-e", "frame.time_relative",
     "-e", "rpc.procedure"],
    check=True, capture_output=True, text=True).stdout
malformed = rejected = 0
calls, replies = set(), set()
where = {}
for line in out.splitlines():
    mal, xids, types, rstat, astat, progs, t, procs = (line.split("|") + [""] * 8)[:8]
    if mal:
        malformed += 1
    xs, ts, tm = xids.split(","), types.split(","), t
    for x, t in zip(xs, ts):
        if t == "0":
            calls.add(x)
            where[x] = (tm, procs)
        elif t == "1":
            replies.add(x)
    if any(v not in ("", "0") for v in rstat.split(",")):
        rejected += 1
    for a, p in zip(astat.split(","), progs.split(",")):
        # The kernel probes NFS_ACL (100227), which ftnfs does not offer: PROG_UNAVAIL is the
        # right answer there and nowhere else.
        if a not in ("", "0") and not (a == "1" and p == "100227"):
            rejected += 1
unanswered = len(calls - replies)
for x in sorted(calls - replies):
    print(f"  no reply: xid {x} at {where[x][0]} s, procedure {where[x][1]}")
print(f"capture: {len(calls)} calls, {len(replies)} replies, {malformed} malformed, "
      f"{rejected} rejected or failed, {unanswered} calls without a reply")
sys.exit(1 if malformed or rejected or unanswered or not calls else 0)
