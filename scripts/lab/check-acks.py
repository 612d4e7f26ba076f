#!/usr/bin/env python3
"""Proves that every write the guest saw acknowledged is in the file.

    check-acks.py SERIAL_LOG FILE [FILE...]

SERIAL_LOG holds "FTNFS-ACK seq md5" lines printed by the guest's ackwrite workload after each
record (64 bytes at offset 64*seq) returned from a conv=fsync write. Each FILE is a copy of
the written file (one per member); every acknowledged record must be in every one of them.
Prints the count checked and every missing or wrong record; exits 1 on any.
"""
import hashlib
import re
import sys

log, files = sys.argv[1], sys.argv[2:]
acks = {}
with open(log, "rb") as f:
    for m in re.finditer(rb"FTNFS-ACK (\d+) ([0-9a-f]{32})", f.read()):
        acks[int(m.group(1))] = m.group(2).decode()
bad = 0
for path in files:
    data = open(path, "rb").read()
    for seq, want in sorted(acks.items()):
        got = hashlib.md5(data[seq * 64:(seq + 1) * 64]).hexdigest()
        if got != want:
            print(f"{path}: acknowledged record {seq} lost or wrong")
            bad += 1
print(f"{len(acks)} acknowledged records checked in {len(files)} file(s), {bad} bad")
if not acks:
    print("no acknowledged record at all")
sys.exit(1 if bad or not acks else 0)
