#!/bin/sh
# /init of the test guest: load the NFS client, configure the network, mount the server given
# on the kernel command line (ftnfs.srv=IP ftnfs.path=/export ftnfs.port=N ftnfs.ip=A/N
# ftnfs.work=NAME), run the workload, print FTNFS-RESULT, power off.
export PATH=/bin:/sbin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev 2>/dev/null
for f in /lib/modules/*.ko; do
  insmod "$f" || echo "insmod $f failed"
done
# the last ftnfs.NAME=VALUE wins (a workload's extra arguments come after the defaults)
arg() { tr ' ' '\n' < /proc/cmdline | sed -n "s/^ftnfs.$1=//p" | tail -1; }
# A task blocked for 10 s prints its kernel stack on the console (diagnoses client hangs).
echo 10 > /proc/sys/kernel/hung_task_timeout_secs 2>/dev/null
[ "$(arg trace)" = 1 ] && set -x
SRV=$(arg srv); P=$(arg path); PORT=$(arg port); IP=$(arg ip); WORK=$(arg work)
ip link set lo up; ip link set eth0 up
if [ -n "$IP" ]; then ip addr add "$IP" dev eth0; else ip addr add 10.0.2.15/24 dev eth0; fi
# ftnfs.ip6=ADDR/N: an IPv6 address too (no duplicate address detection: usable at once)
IP6=$(arg ip6)
if [ -n "$IP6" ]; then
  echo 0 > /proc/sys/net/ipv6/conf/eth0/accept_dad 2>/dev/null
  ip -6 addr add "$IP6" dev eth0 || echo "no IPv6 address $IP6"
fi
result() { echo "FTNFS-RESULT $1"; sync; poweroff -f; }
# One acknowledged record: 64 bytes at offset 64*seq, written with conv=fsync; "FTNFS-ACK seq
# md5" is printed only after the write returned (scripts/lab/check-acks.py checks them).
ack_record() {
  printf '%-63s\n' "seq=$1 r=$RANDOM$RANDOM$RANDOM" > /tmp/rec
  dd if=/tmp/rec of=/mnt/ack bs=64 seek=$1 count=1 conv=notrunc,fsync 2>/dev/null || result "FAIL ack write $1"
  echo "FTNFS-ACK $1 $(md5sum < /tmp/rec | cut -d' ' -f1)"
}
# Locks (tests/locks.sh): a process holds an exclusive flock of ./lk (on NFS a whole-file
# POSIX lock, so NLM) while it runs $1, with "held", then "released" in ./state; returns
# once it holds. HOLDER is its pid.
hold_lock() {
  : > lk || result "FAIL create"
  flock -x lk -c "echo held > state; $1; echo released > state" & HOLDER=$!
  i=0; while [ "$(cat state 2>/dev/null)" != held ]; do i=$((i+1)); [ $i -gt 200 ] && result "FAIL holder"; sleep 0.1; done
}
# A blocking exclusive flock of ./lk: granted only once the holder let go, by the server's
# GRANTED callback (the client would otherwise ask again only after 30 s).
granted_after_release() {
  t0=$(cut -d' ' -f1 /proc/uptime)
  flock -x lk -c 'cat state > seen' || result "FAIL blocking lock"
  t1=$(cut -d' ' -f1 /proc/uptime)
  [ "$(cat seen)" = released ] || result "FAIL granted while still held ($(cat seen))"
  echo "FTNFS-LOCK granted after release, waited $t0 -> $t1 s"
  [ "$(awk "BEGIN { print ($t1 - $t0 < 20) }")" = 1 ] || result "FAIL granted only by the client's own retry after 30 s"
  wait $HOLDER
}
# No terminal for the workloads: busybox mv would ask "overwrite?" on the console when a
# concurrent client removes its target between two checks, and wait forever.
exec </dev/null
LOCK=nolock
if [ "${WORK#locks}" != "$WORK" ]; then
  # locking through NLM: the kernel's lock client needs the local rpcbind and rpc.statd
  hostname guest; mkdir -p /run/rpcbind /var/lib/nfs/sm /var/lib/nfs/sm.bak
  rpcbind -w || result "FAIL rpcbind"
  rpc.statd -F -d --no-notify -n guest > /tmp/statd.log 2>&1 &
  sleep 1; kill -0 $! 2>/dev/null || { cat /tmp/statd.log; result "FAIL statd"; }
  LOCK=lock
fi
# busybox hands the options to the kernel, whose MOUNT call gives up after a few seconds;
# the mount.nfs helper a real client uses retries for 2 minutes (retry=2): so do we, so that
# a guest that boots during a failover (tests/chaos.sh) mounts once the group serves again
tries=0
# ftnfs.mountopts=…: more mount options for one workload (e.g. actimeo=0)
MOPTS=$(arg mountopts); MOPTS=${MOPTS:+,$MOPTS}
# an IPv6 server (ftnfs.srv=fd99::1): [ADDR]:PATH over tcp6
SPEC="$SRV:$P"; PROTO=tcp
case "$SRV" in *:*) SPEC="[$SRV]:$P"; PROTO=tcp6 ;; esac
# ftnfs.proto=udp: NFS and MOUNT over UDP (needs the rebuilt modules of
# scripts/lab/prepare-udp-modules.sh: Debian's refuse proto=udp)
[ "$(arg proto)" = udp ] && PROTO=udp
until mount -t nfs -o vers=3,proto=$PROTO,port=$PORT,mountport=$PORT,mountproto=$PROTO,$LOCK,hard,timeo=20,addr=$SRV$MOPTS "$SPEC" /mnt; do
  tries=$((tries+1)); [ $tries -ge 60 ] && result "FAIL mount"
  echo "mount failed, again in 1 s ($tries)"; sleep 1
done
# what the kernel mounted with (tests check proto=)
echo "FTNFS-MOUNT $(grep " /mnt " /proc/mounts | head -1)"
cd /mnt || result "FAIL cd"
case "$WORK" in
seqio)
  dd if=/dev/urandom of=/tmp/src bs=1M count=32 2>/dev/null
  dd if=/tmp/src of=/mnt/big bs=1M conv=fsync 2>/dev/null || result "FAIL write"
  cd /; umount /mnt; mount -t nfs -o vers=3,proto=tcp,port=$PORT,mountport=$PORT,mountproto=tcp,nolock,addr=$SRV "$SRV:$P" /mnt || result "FAIL remount"
  a=$(md5sum < /tmp/src); b=$(md5sum < /mnt/big)
  [ "$a" = "$b" ] || result "FAIL checksum"
  ;;
locks)
  # two processes contend for one file (and tests/locks.sh asks from another host meanwhile)
  hold_lock 'sleep 6'
  flock -x -n lk -c true 2>/dev/null && result "FAIL a second exclusive lock was granted"
  flock -s -n lk -c true 2>/dev/null && result "FAIL a shared lock was granted beside an exclusive one"
  echo "FTNFS-LOCK denied while held"
  granted_after_release
  # shared locks share
  flock -s lk -c 'flock -s -n lk -c true' || result "FAIL two shared locks"
  ;;
locks-failover)
  # a lock held across a kill -9 of the primary (tests/locks.sh kills it once "held" shows)
  hold_lock 'while [ ! -e release ]; do sleep 0.2; done'
  echo "FTNFS-LOCK held"
  # before, during and after the takeover, another owner is denied (exit 75: a conflict;
  # anything else is an error): the new primary holds the lock, no grace period, no reclaim
  i=0
  while [ $i -lt 24 ]; do
    t0=$(cut -d' ' -f1 /proc/uptime)
    flock -x -n -E 75 lk -c true 2>/tmp/err; rc=$?
    t1=$(cut -d' ' -f1 /proc/uptime)
    [ $rc = 0 ] && result "FAIL the lock was granted to another owner (try $i)"
    [ $rc = 75 ] || result "FAIL try $i: exit $rc $(cat /tmp/err)"
    echo "FTNFS-LOCK try $i denied in $(awk "BEGIN { print $t1 - $t0 }") s"
    i=$((i+1)); sleep 0.5
  done
  echo "FTNFS-LOCK still denied"
  # a waiter, granted by the new primary's callback once the holder lets go
  ( sleep 2; : > release ) &
  granted_after_release
  ;;
locks-cold)
  # a lock held while every member of the group is killed and restarted as after a power
  # loss (tests/locks.sh part 3 kills them once "held" shows and promotes one): the server
  # tells this client's status monitor it restarted (SM_NOTIFY) and the kernel reclaims the
  # lock in the grace period; another owner is never granted it — its tries wait while the
  # grace period runs (the client sleeps on NLM4_DENIED_GRACE_PERIOD) and are denied after
  hold_lock 'while [ ! -e release ]; do sleep 0.2; done'
  echo "FTNFS-LOCK held"
  i=0
  while ! grep -qi "SM_NOTIFY" /tmp/statd.log; do
    i=$((i+1)); [ $i -gt 1200 ] && { cat /tmp/statd.log; result "FAIL no SM_NOTIFY from the server"; }
    sleep 0.1
  done
  echo "FTNFS-LOCK notified: $(grep -i "SM_NOTIFY" /tmp/statd.log | head -1)"
  i=0; t00=$(cut -d' ' -f1 /proc/uptime)
  # (30 tries: the lock stays held past the grace period, where tests/locks.sh probes it
  # from another client host)
  while [ $i -lt 30 ]; do
    t0=$(cut -d' ' -f1 /proc/uptime)
    flock -x -n -E 75 lk -c true 2>/tmp/err; rc=$?
    t1=$(cut -d' ' -f1 /proc/uptime)
    [ $rc = 0 ] && result "FAIL the lock was granted to another owner (try $i)"
    [ $rc = 75 ] || result "FAIL try $i: exit $rc $(cat /tmp/err)"
    echo "FTNFS-LOCK try $i denied in $(awk "BEGIN { print $t1 - $t0 }") s"
    i=$((i+1)); sleep 0.5
  done
  t11=$(cut -d' ' -f1 /proc/uptime)
  echo "FTNFS-LOCK still denied, tries from $t00 to $t11 s"
  ( sleep 2; : > release ) &
  granted_after_release
  ;;
ipv6)
  # mounted over IPv6 (tests/kernel-client.sh): write, read back, list, remove
  grep -q "$SRV" /proc/mounts || result "FAIL not mounted from $SRV"
  dd if=/dev/urandom of=/tmp/src bs=64k count=16 2>/dev/null
  dd if=/tmp/src of=v6file bs=64k conv=fsync 2>/dev/null || result "FAIL write over IPv6"
  [ "$(md5sum < /tmp/src)" = "$(md5sum < v6file)" ] || result "FAIL read back over IPv6"
  mkdir v6dir && mv v6file v6dir/f && [ "$(ls v6dir)" = f ] || result "FAIL metadata over IPv6"
  echo "FTNFS-IPV6 $(grep " /mnt " /proc/mounts)"
  ;;
reload)
  # tests/kernel-client.sh edits the exports and reloads ftnfsd under this mount (actimeo=0,
  # so that a name the host creates shows at once): a bad file first (refused: still
  # writable), then read-only, then read-write again — each seen without a remount.
  echo one > a || result "FAIL write before the reload"
  echo "FTNFS-RELOAD mounted"
  i=0; until [ -e bad-done ]; do i=$((i+1)); [ $i -gt 1200 ] && result "FAIL no bad-done"; sleep 0.1; done
  echo two > a || result "FAIL a refused reload changed the export (not writable)"
  echo "FTNFS-RELOAD rw"
  i=0; while echo x > probe 2>/dev/null; do i=$((i+1)); [ $i -gt 1200 ] && result "FAIL still writable after the reload to ro"; sleep 0.1; done
  [ "$(cat a)" = two ] || result "FAIL reading under ro"
  echo "FTNFS-RELOAD ro after $i tries"
  i=0; until echo three > b 2>/dev/null; do i=$((i+1)); [ $i -gt 1200 ] && result "FAIL not writable after the reload back to rw"; sleep 0.1; done
  [ "$(cat b)" = three ] || result "FAIL read back"
  echo "FTNFS-RELOAD rw again after $i tries"
  ;;
meta)
  mkdir -p d || result "FAIL mkdir"
  i=0
  while [ $i -lt 100 ]; do
    echo $i > d/f$i || result "FAIL create $i"
    mv d/f$i d/g$i || result "FAIL rename $i"
    ln d/g$i d/h$i || result "FAIL link $i"
    ln -s g$i d/s$i || result "FAIL symlink $i"
    chmod 600 d/g$i || result "FAIL chmod $i"
    : > d/h$i || result "FAIL truncate $i"
    mkdir d/dir$i && rmdir d/dir$i || result "FAIL mkdir/rmdir $i"
    rm d/g$i d/h$i d/s$i || result "FAIL remove $i"
    i=$((i+1))
  done
  [ "$(ls d | wc -l)" = 0 ] || result "FAIL leftovers"
  rmdir d || result "FAIL rmdir"
  ;;
mixed)
  # Runs against a mirrored group while other clients work on the same file and directory:
  # overlapping writes to /mnt/shared and renames in /mnt/r race with them (those may find
  # nothing to rename); the guest's own subtree must read back exactly.
  mkdir -p r own 2>/dev/null
  [ -f shared ] || : > shared
  i=0
  while [ $i -lt 150 ]; do
    off=$(( (i * 37) % 96 ))
    dd if=/dev/urandom of=shared bs=1k seek=$off count=$((1 + i % 16)) conv=notrunc 2>/dev/null || result "FAIL shared write $i"
    a=$((i % 8)); b=$(( (i * 3) % 8 ))
    mv -f r/n$a r/n$b 2>/dev/null
    echo "guest $i" > r/n$a 2>/dev/null
    mkdir own/d$i || result "FAIL mkdir $i"
    echo "own $i" > own/d$i/f || result "FAIL create $i"
    mv own/d$i/f own/d$i/g || result "FAIL rename $i"
    ln -s g own/d$i/s || result "FAIL symlink $i"
    chmod 640 own/d$i/g || result "FAIL chmod $i"
    if [ $((i % 3)) = 0 ]; then rm -r own/d$i || result "FAIL rm $i"; fi
    i=$((i+1))
  done
  i=0
  while [ $i -lt 150 ]; do
    if [ $((i % 3)) != 0 ]; then [ "$(cat own/d$i/g)" = "own $i" ] || result "FAIL verify $i"; fi
    i=$((i+1))
  done
  ;;
ackmeta)
  # ackwrite and a metadata storm interleaved: each round writes one acknowledged record and
  # creates, renames, links, symlinks, chmods, truncates, mkdirs/rmdirs and removes names.
  N=$(arg n); N=${N:-50}
  mkdir -p m || result "FAIL mkdir m"
  i=0
  while [ $i -lt $N ]; do
    ack_record $i
    echo $i > m/f$i || result "FAIL create $i"
    mv m/f$i m/g$i || result "FAIL rename $i"
    ln m/g$i m/h$i || result "FAIL link $i"
    ln -s g$i m/s$i || result "FAIL symlink $i"
    chmod 600 m/g$i || result "FAIL chmod $i"
    : > m/h$i || result "FAIL truncate $i"
    mkdir m/d$i && rmdir m/d$i || result "FAIL mkdir/rmdir $i"
    rm m/g$i m/h$i m/s$i || result "FAIL remove $i"
    i=$((i+1))
  done
  [ "$(ls m | wc -l)" = 0 ] || result "FAIL leftovers"
  ;;
ackwrite)
  # Writes N 64-byte records, each at offset 64*seq with conv=fsync, and prints
  # "FTNFS-ACK seq md5" only after the write returned: the host later proves that every
  # acknowledged record is in the file (scripts/lab/check-acks.py).
  N=$(arg n); N=${N:-50}
  i=0
  while [ $i -lt $N ]; do
    ack_record $i
    i=$((i+1))
  done
  ;;
longwrite)
  # Writes for ~10 s while the host restarts the server; a hard mount must hide it.
  i=0
  while [ $i -lt 50 ]; do
    echo "record $i" > w$i || result "FAIL write $i"
    sleep 0.2
    i=$((i+1))
  done
  i=0
  while [ $i -lt 50 ]; do
    [ "$(cat w$i)" = "record $i" ] || result "FAIL verify $i"
    i=$((i+1))
  done
  ;;
esac
cd /; umount /mnt || result "FAIL umount"
result PASS
