#!/usr/bin/env python3
"""Counts protocol trouble in a capture of NFS test traffic (tshark does the decoding).

    capture-check.py CAPTURE [PORT]

Counts packets tshark calls malformed, replies that are MSG_DENIED or not SUCCESS (except
PROG_UNAVAIL for the kernel's NFS_ACL probe), and calls whose xid never got a reply (a
retransmission on a new connection answers the call, as it does for the client). Prints the
counts; exits 1 if any is not 0 or nothing was decoded.

A capture on a loaded machine can lose packets (dumpcap's buffer overflows while it waits for
a CPU); TCP does not, so the hole shows as a sequence gap that tshark flags ("previous segment
not captured", "ACKed segment that wasn't captured"). A call without a reply is excused only
when its own connection has such a gap at or after the call: the reply may be in the hole. It
is listed as excused, never silently dropped; a call without a reply on a connection the
capture saw whole is trouble.
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
     "-e", "rpc.procedure", "-e", "tcp.stream", "-e", "tcp.analysis.lost_segment",
     "-e", "tcp.analysis.ack_lost_segment"],
    check=True, capture_output=True, text=True).stdout
malformed = rejected = 0
calls, replies = set(), set()
where = {}
gaps = {}  # tcp stream -> times at which the capture shows a hole in it
for line in out.splitlines():
    (mal, xids, types, rstat, astat, progs, tm, procs, stream, lost,
     acklost) = (line.split("|") + [""] * 11)[:11]
    if mal:
        malformed += 1
    if lost or acklost:
        gaps.setdefault(stream, []).append(float(tm))
    for x, t in zip(xids.split(","), types.split(",")):
        if t == "0":
            calls.add(x)
            where[x] = (tm, procs, stream)
        elif t == "1":
            replies.add(x)
    if any(v not in ("", "0") for v in rstat.split(",")):
        rejected += 1
    for a, p in zip(astat.split(","), progs.split(",")):
        # The kernel probes NFS_ACL (100227), which ftnfs does not offer: PROG_UNAVAIL is the
        # right answer there and nowhere else.
        if a not in ("", "0") and not (a == "1" and p == "100227"):
            rejected += 1
unanswered = excused = 0
for x in sorted(calls - replies):
    tm, procs, stream = where[x]
    if stream and any(g >= float(tm) for g in gaps.get(stream, [])):
        excused += 1
        print(f"  no reply seen, capture has a hole in its connection after it: xid {x} at "
              f"{tm} s, procedure {procs}")
    else:
        unanswered += 1
        print(f"  no reply: xid {x} at {tm} s, procedure {procs}")
holes = sum(len(g) for g in gaps.values())
print(f"capture: {len(calls)} calls, {len(replies)} replies, {malformed} malformed, "
      f"{rejected} rejected or failed, {unanswered} calls without a reply"
      + (f" ({excused} more fell in {holes} capture holes)" if holes else ""))
sys.exit(1 if malformed or rejected or unanswered or not calls else 0)
