#!/usr/bin/env bash
# `ddsnap server` end to end, as root on the real kernel: filesystems on the volume and its
# snapshots through FUSE block files and loop devices, real NBD clients, fio with verify
# while snapshots come and go, kill -9 and restart, SIGTERM, and malformed input.
# Everything it creates (servers, mounts, loop devices, device names) is removed by id on exit.
# Usage: Tests/cli/server-e2e.sh PATH/TO/ddsnap
. "$(dirname "$0")/lib.sh"
D=${1:?usage: server-e2e.sh PATH/TO/ddsnap}
HERE=$(cd "$(dirname "$0")" && pwd)
cd "$WORK"

if [ "$(id -u)" -ne 0 ] || [ ! -e /dev/fuse ] || [ ! -e /dev/loop-control ]; then
    echo "server-e2e: needs root, /dev/fuse and loop devices" >&2
    not_ok "server tests need root, /dev/fuse and /dev/loop-control"
    finish; exit 1
fi

MOUNTS=()   # mount points we mounted, unmounted in reverse order
VOLS=()     # volume names whose /dev/mapper names we may have made
server_cleanup() {
    unmount_listed "${MOUNTS[@]}"
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || continue
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null
    done
    # Loop devices still bound to our block files (a killed server's), and block-file mounts.
    release_devices_under "$WORK"
    remove_device_names "${VOLS[@]}"
    cleanup
}
trap server_cleanup EXIT

# start_server NAME STORE [ARGS...]: a foreground server in the background; waits until it serves.
start_server() {
    local name=$1 store=$2; shift 2
    VOLS+=("$name")
    "$D" server "$store" --name "$name" --socket "$WORK/$name.sock" --block-files "$WORK/blocks-$name" \
        --log "$WORK/$name.log" --foreground "$@" 2>>"$WORK/$name.stderr" &
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    for _ in $(seq 100); do
        [ -S "$WORK/$name.sock" ] && "$D" status "$WORK/$name.sock" >/dev/null 2>&1 && return 0
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    echo "server $name did not start:" >&2; cat "$WORK/$name.stderr" >&2
    return 1
}

# stop_server PID: SIGTERM, wait (at most 60 s, then SIGKILL); the exit status is left in STOP_RC.
stop_server() {
    kill -TERM "$1"
    for _ in $(seq 600); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$1" 2>/dev/null && { echo "server $1 ignored SIGTERM for 60 s" >&2; kill -KILL "$1"; }
    wait "$1"; STOP_RC=$?
}

# attach SOCKET [TAG]: attaches and prints the device name.
attach() { "$D" attach "$@" 2>/dev/null; }

mount_at() { mkdir -p "$2"; mount "${@:3}" "$1" "$2" && MOUNTS+=("$2"); }

files_md5() { (cd "$1" && find . -type f ! -path './lost+found/*' -print0 | sort -z | xargs -0 md5sum); }

new_store() { truncate -s "$2" "$1.origin"; truncate -s "$3" "$1.store"; "$D" initialize -y "$1.store" "$1.origin" >/dev/null; }

# ---------------------------------------------------------------------------------------
# ext4: mkfs on /dev/mapper/<vol>, snapshots while mounted, several mounted at once.
E=ze$$
new_store "$E" 256M 512M
start_server "$E" "$E.store" || { not_ok "ext4 server starts"; finish; exit 1; }
S="$WORK/$E.sock"
expect_eq "attach prints the device name" "/dev/mapper/$E" "$(attach "$S")"
expect_ok "mkfs.ext4 on /dev/mapper/$E" mkfs.ext4 -q "/dev/mapper/$E"
mount_at "/dev/mapper/$E" "$WORK/m-ext4" && ok "mount ext4" || not_ok "mount ext4"
mkdir -p m-ext4/dir
for i in 1 2 3 4 5; do head -c $((i * 300))K /dev/urandom > "m-ext4/dir/file$i"; done
sync
files_md5 m-ext4 > ext4-at-1.md5
fsfreeze -f m-ext4 && expect_ok "snapshot 1 while mounted (frozen)" "$D" create "$S" 1; fsfreeze -u m-ext4
head -c 700K /dev/urandom > m-ext4/dir/file2
rm m-ext4/dir/file3
echo "after one" > m-ext4/new-after-1
sync
files_md5 m-ext4 > ext4-at-2.md5
fsfreeze -f m-ext4 && expect_ok "snapshot 2 while mounted (frozen)" "$D" create "$S" 2; fsfreeze -u m-ext4
head -c 900K /dev/urandom > m-ext4/dir/file1
echo "after two" > m-ext4/new-after-2
sync
expect_eq "attach snapshot 1" "/dev/mapper/$E(1)" "$(attach "$S" 1)"
expect_eq "attach snapshot 2" "/dev/mapper/$E(2)" "$(attach "$S" 2)"
mount_at "/dev/mapper/$E(1)" "$WORK/s1-ext4" -o ro,noload && ok "mount snapshot 1 ro,noload" || not_ok "mount snapshot 1 ro,noload"
mount_at "/dev/mapper/$E(2)" "$WORK/s2-ext4" -o ro,noload && ok "mount snapshot 2 ro,noload (both mounted)" || not_ok "mount snapshot 2"
expect_eq "snapshot 1 holds exactly the files at its time" "$(cat ext4-at-1.md5)" "$(files_md5 s1-ext4)"
expect_eq "snapshot 2 holds exactly the files at its time" "$(cat ext4-at-2.md5)" "$(files_md5 s2-ext4)"
[ ! -e s1-ext4/new-after-1 ] && [ ! -e s2-ext4/new-after-2 ] && ok "later origin writes do not show in snapshots" || not_ok "later origin writes show in a snapshot"
expect_fail "snapshot device refuses writes" "read-only|Permission denied|Operation not permitted" \
    dd if=/dev/zero of="/dev/mapper/$E(1)" bs=4k count=1 oflag=direct status=none
expect_fail "delete of a mounted snapshot is refused" "in use" "$D" delete "$S" 1
expect_fail "direct form refuses while the server holds the store" "served by .*give its control socket" "$D" status "$E.store"
expect_fail "a second server on the same store is refused" "served by|in use" \
    "$D" server "$E.store" --name "${E}b" --socket "$WORK/second.sock" --block-files "$WORK/blocks-second" --log "$WORK/second.log" --foreground
expect_ok "the first server still serves" "$D" list "$S"
out=$("$D" list "$S" --json)
expect_eq "list through the socket" "1 2" "$(echo "$out" | python3 -c 'import json,sys; print(*[s["tag"] for s in json.load(sys.stdin)])')"
expect_eq "attached snapshots count as open (in use)" "1 1" "$(echo "$out" | python3 -c 'import json,sys; print(*[s["openCount"] for s in json.load(sys.stdin)])')"
umount s1-ext4 && umount s2-ext4 && ok "unmount snapshots" || not_ok "unmount snapshots"
expect_ok "detach snapshot 1" "$D" detach "$S" 1
expect_ok "detach snapshot 2" "$D" detach "$S" 2
[ ! -e "/dev/mapper/$E(1)" ] && ok "detach removes the name" || not_ok "detach removes the name"
expect_ok "delete snapshot 1 once detached" "$D" delete "$S" 1
umount m-ext4 && ok "unmount origin" || not_ok "unmount origin"
stop_server "$SERVER_PID"; expect_eq "SIGTERM: clean exit 0" "0" "$STOP_RC"
[ ! -e "/dev/mapper/$E" ] && ! grep -q "$WORK/blocks-$E" /proc/mounts && ! losetup -l | grep -q "$WORK/blocks-$E" \
    && ok "SIGTERM detaches, removes names and unmounts" || not_ok "SIGTERM left devices behind" "$(losetup -l; ls /dev/mapper)"
expect_ok "store checks clean after SIGTERM" "$D" check "$E.store"
grep -q " $E info: " "$WORK/$E.log" && ok "log lines carry the volume name" || not_ok "log lines carry the volume name"

# ---------------------------------------------------------------------------------------
# xfs: the same on a second volume.
X=zx$$
new_store "$X" 512M 512M
PORT=$((20000 + $$ % 20000))
start_server "$X" "$X.store" --nbd-listen "127.0.0.1:$PORT" || not_ok "xfs server starts"
S="$WORK/$X.sock"
expect_eq "NBD on TCP when asked (--nbd-listen)" "536870912" "$(nbdinfo --size "nbd://127.0.0.1:$PORT/$X" 2>&1)"
attach "$S" >/dev/null
expect_ok "mkfs.xfs on /dev/mapper/$X" mkfs.xfs -q "/dev/mapper/$X"
mount_at "/dev/mapper/$X" "$WORK/m-xfs" && ok "mount xfs" || not_ok "mount xfs"
for i in 1 2 3; do head -c $((i * 500))K /dev/urandom > "m-xfs/f$i"; done
sync
files_md5 m-xfs > xfs-at-1.md5
fsfreeze -f m-xfs && expect_ok "xfs snapshot while mounted (frozen)" "$D" create "$S" 1; fsfreeze -u m-xfs
head -c 800K /dev/urandom > m-xfs/f1; echo later > m-xfs/later; sync
attach "$S" 1 >/dev/null
mount_at "/dev/mapper/$X(1)" "$WORK/s1-xfs" -o ro,nouuid,norecovery && ok "mount xfs snapshot ro,nouuid,norecovery" || not_ok "mount xfs snapshot"
expect_eq "xfs snapshot holds exactly the files at its time" "$(cat xfs-at-1.md5)" "$(files_md5 s1-xfs)"
umount s1-xfs
# SIGTERM with the origin still mounted: the server still stops (the mounted device's I/O
# fails from then on; unmounting it releases the loop device).
stop_server "$SERVER_PID"; expect_eq "SIGTERM with a filesystem still mounted: exit 0" "0" "$STOP_RC"
umount m-xfs 2>/dev/null || umount -l m-xfs
expect_ok "xfs store checks clean after that stop" "$D" check "$X.store"
sleep 0.5
! losetup -l | grep -q "$WORK/blocks-$X" && ok "the mounted device's loop went with its unmount" || not_ok "loop left behind" "$(losetup -l)"

# ---------------------------------------------------------------------------------------
# Every ddsnap command through the control socket, as on the files.
C=zc$$
truncate -s 32M "$C.origin"; truncate -s 64M "$C.store"
"$D" initialize -y -c 4K "$C.store" "$C.origin" >/dev/null
start_server "$C" "$C.store" || not_ok "command server starts"
S="$WORK/$C.sock"
head -c 2M /dev/urandom > c0.bin
expect_ok "write through the socket" sh -c "'$D' write '$S' < c0.bin"
expect_ok "create through the socket" "$D" create "$S" 1 --name first --priority 2
head -c 64K /dev/urandom > c1.bin
expect_ok "write at an offset through the socket" sh -c "'$D' write '$S' --offset 1M < c1.bin"
expect_eq "read a snapshot through the socket" "$(md5sum < c0.bin)" "$("$D" read "$S" --snapshot 1 --length 2M | md5sum)"
cp c0.bin c01.bin; dd if=c1.bin of=c01.bin bs=1M seek=1 conv=notrunc status=none
expect_eq "read the origin through the socket" "$(md5sum < c01.bin)" "$("$D" read "$S" --length 2M | md5sum)"
expect_eq "changelist through the socket" "$(seq 256 271)" "$("$D" changelist "$S" 1 origin)"
expect_eq "usecount through the socket" "1" "$("$D" usecount "$S" 1 1)"
expect_eq "usecount -1 through the socket" "0" "$("$D" usecount "$S" 1 -1)"
expect_ok "priority through the socket" "$D" priority "$S" 1 -5
expect_eq "list --json through the socket" "first -5" "$("$D" list "$S" --json | python3 -c 'import json,sys; s=json.load(sys.stdin)[0]; print(s["name"], s["priority"])')"
expect_eq "status --size through the socket" "65536" "$("$D" status "$S" --size 1 --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["snapshots"][0]["uniqueBytes"])')"
expect_eq "status names the store, not the socket" "$WORK/$C.store" "$("$D" status "$S" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["store"])')"
"$D" status "$S" --state 9 >/dev/null 2>&1; expect_eq "status --state of a missing snapshot exits 1" "1" "$?"
expect_fail "errors read as in the direct form" "snapshot 9 doesn't exist" "$D" delete "$S" 9
expect_fail "bad offsets are refused through the socket" "past the end" "$D" read "$S" --offset 40M
expect_fail "--origin is refused with a socket" "directly" "$D" status "$S" --origin /dev/null
attach "$S" >/dev/null
expect_fail "revert refuses while the origin is attached" "in use" "$D" revert "$S" 1
"$D" detach "$S" >/dev/null
expect_ok "revert through the socket" "$D" revert "$S" 1
expect_eq "origin reverted" "$(md5sum < c0.bin)" "$("$D" read "$S" --length 2M | md5sum)"
attach "$S" >/dev/null
expect_ok "grow the origin through the socket while attached" "$D" resize "$S" --origin-size 48M
expect_eq "the attached device grew with it" "50331648" "$(blockdev --getsize64 "/dev/mapper/$C")"
"$D" detach "$S" >/dev/null
expect_ok "resize the store through the socket" "$D" resize "$S" --snapshot 96M
expect_eq "store grew" "100663296" "$("$D" status "$S" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["storeBytes"])')"
expect_ok "check through the socket" "$D" check "$S"
expect_ok "delete through the socket" "$D" delete "$S" 1
stop_server "$SERVER_PID"; expect_eq "command server: SIGTERM exit 0" "0" "$STOP_RC"

# ---------------------------------------------------------------------------------------
# Store full: an attached (in-use) snapshot is squashed, not deleted; an unused one goes
# first. Reads of the squashed snapshot's device fail with EIO.
F=zf$$
truncate -s 64M "$F.origin"; truncate -s 4M "$F.store"
"$D" initialize -y -c 16K "$F.store" "$F.origin" >/dev/null
start_server "$F" "$F.store" || not_ok "store-full server starts"
S="$WORK/$F.sock"
FDEV=$(attach "$S")
dd if=/dev/urandom of="$FDEV" bs=1M count=8 oflag=direct status=none
"$D" create "$S" 1 >/dev/null; "$D" create "$S" 2 >/dev/null
attach "$S" 1 >/dev/null
dd if=/dev/urandom of="$FDEV" bs=1M count=8 oflag=direct conv=notrunc status=none && ok "writes go on when the store fills" || not_ok "writes failed when the store filled"
"$D" status "$S" --state 2 >/dev/null 2>&1; expect_eq "the unused snapshot was deleted first" "1" "$?"
"$D" status "$S" --state 1 >/dev/null 2>&1; expect_eq "the attached snapshot was squashed, not deleted" "2" "$?"
expect_fail "reads of the squashed snapshot's device fail with EIO" "Input/output error" \
    dd if="/dev/mapper/$F(1)" of=/dev/null bs=64k count=1 iflag=direct status=none
"$D" detach "$S" 1 >/dev/null; "$D" detach "$S" >/dev/null
stop_server "$SERVER_PID"; expect_eq "store-full server: SIGTERM exit 0" "0" "$STOP_RC"

# ---------------------------------------------------------------------------------------
# Raw volume: md5 of each snapshot device equals the origin's at snapshot time, NBD
# clients, fio --verify with snapshots underneath, malformed input, kill -9.
R=zr$$
new_store "$R" 128M 512M
start_server "$R" "$R.store" || not_ok "raw server starts"
RAW_PID=$SERVER_PID
S="$WORK/$R.sock"
N="$WORK/$R.sock.nbd"
DEV=$(attach "$S")
for tag in 1 2 3 4; do
    for _ in $(seq 40); do
        dd if=/dev/urandom of="$DEV" bs=4k count=$((RANDOM % 16 + 1)) seek=$((RANDOM * 2 % 32752)) oflag=direct conv=notrunc status=none
    done
    "$D" create "$S" "$tag" >/dev/null
    md5sum < "$DEV" > "raw-$tag.md5"
done
dd if=/dev/urandom of="$DEV" bs=1M count=16 oflag=direct conv=notrunc status=none
all=ok
for tag in 1 2 3 4; do
    attach "$S" "$tag" >/dev/null
    [ "$(md5sum < "/dev/mapper/$R($tag)")" = "$(cat "raw-$tag.md5")" ] || all="snapshot $tag differs"
    "$D" detach "$S" "$tag" >/dev/null
done
expect_eq "md5 of every snapshot device equals the origin's at snapshot time" ok "$all"

# Both sockets are root's alone: an unprivileged user reaching the directory is refused.
chmod 755 "$WORK"
expect_eq "the control and NBD sockets are 0600" "600 600" "$(stat -c %a "$S" "$N" | tr '\n' ' ' | sed 's/ $//')"
expect_ok "... an unprivileged user reaches their directory" setpriv --reuid=65534 --regid=65534 --clear-groups test -x "$WORK"
for sock in "$S" "$N"; do
    expect_fail "... and cannot connect to $(basename "$sock")" "Permission denied" \
        setpriv --reuid=65534 --regid=65534 --clear-groups python3 -c "import socket; socket.socket(socket.AF_UNIX).connect('$sock')"
done
chmod 700 "$WORK"


# Discard and write-zeroes of the origin device (fallocate on the block file): the range reads
# as zeros, snapshot 4 keeps its data (copied out first), the origin file gets a hole.
before=$(du -k "$WORK/$R.origin" | cut -f1)
expect_ok "blkdiscard of 16 MiB of the origin" blkdiscard -o 8M -l 16M "$DEV"
expect_ok "blkdiscard --zeroout of 8 MiB more" blkdiscard -z -o 40M -l 8M "$DEV"
expect_eq "the discarded ranges read as zeros" "$(head -c 16M /dev/zero | md5sum)$(head -c 8M /dev/zero | md5sum)" \
    "$(dd if="$DEV" bs=1M skip=8 count=16 iflag=direct status=none | md5sum)$(dd if="$DEV" bs=1M skip=40 count=8 iflag=direct status=none | md5sum)"
expect_eq "snapshot 4 keeps the discarded data" "$(cat raw-4.md5)" "$("$D" read "$S" --snapshot 4 | md5sum)"
after=$(du -k "$WORK/$R.origin" | cut -f1)
[ "$after" -lt "$before" ] && ok "the origin file has holes where it was discarded ($before KiB -> $after KiB)" || not_ok "origin holes" "$before KiB -> $after KiB"

out=$(nbdinfo --list "nbd+unix:///?socket=$N" 2>&1)
echo "$out" | grep -q "export=\"$R@3\"" && echo "$out" | grep -q "export=\"$R\"" && ok "nbdinfo --list shows the volume and its snapshots" || not_ok "nbdinfo --list" "$out"
expect_eq "nbdinfo size of a snapshot" "134217728" "$(nbdinfo --size "nbd+unix:///$R@2?socket=$N")"
expect_eq "NBD snapshot export reads the snapshot" "$(cat raw-2.md5)" "$(nbdcopy "nbd+unix:///$R@2?socket=$N" - | md5sum)"
head -c 64M /dev/urandom > in.raw
truncate -s 128M in.raw
expect_ok "nbdcopy into the origin export (4 connections)" nbdcopy -C 4 in.raw "nbd+unix:///$R?socket=$N"
expect_eq "nbdcopy out of the origin export" "$(md5sum < in.raw)" "$(nbdcopy "nbd+unix:///$R?socket=$N" - | md5sum)"
expect_eq "the loop device sees the NBD writes" "$(md5sum < in.raw)" "$(md5sum < "$DEV")"
expect_ok "qemu-img compare origin export with the file" qemu-img compare -f raw -F raw "nbd+unix:///$R?socket=$N" in.raw
expect_ok "qemu-img convert a snapshot export" qemu-img convert -f raw -O qcow2 "nbd+unix:///$R@1?socket=$N" snap1.qcow2
expect_ok "qemu-img compare the converted snapshot" qemu-img compare -f raw -F qcow2 "nbd+unix:///$R@1?socket=$N" snap1.qcow2
expect_fail "read-only export refuses nbdcopy in" "read-only" nbdcopy in.raw "nbd+unix:///$R@1?socket=$N"
expect_eq "snapshots unchanged by NBD writes to the origin" "$(cat raw-4.md5)" "$("$D" read "$S" --snapshot 4 | md5sum)"

python3 "$HERE/nbd_malformed.py" "$N" "$R" "$R@1" 134217728 > nbd-malformed.out 2>&1
nbd_rc=$?
while read -r line; do
    case "$line" in "ok - "*) ok "${line#ok - }" ;; "not ok - "*) not_ok "${line#not ok - }" ;; esac
done < nbd-malformed.out
[ $nbd_rc -eq 0 ] || not_ok "nbd_malformed.py" "$(cat nbd-malformed.out)"
python3 "$HERE/control_malformed.py" "$S" > control-malformed.out 2>&1
ctl_rc=$?
while read -r line; do
    case "$line" in "ok - "*) ok "${line#ok - }" ;; "not ok - "*) not_ok "${line#not ok - }" ;; esac
done < control-malformed.out
[ $ctl_rc -eq 0 ] || not_ok "control_malformed.py" "$(cat control-malformed.out)"
# The client's side of the versions, against fake servers: one of protocol 1 (started before
# an upgrade) and one newer than this build, each failing a request it cannot read.
for v in 1 3; do
    python3 "$HERE/control_fake_server.py" "$WORK/fake-$v.sock" "$v" > "fake-$v.out" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 50); do grep -q ready "fake-$v.out" 2>/dev/null && break; sleep 0.1; done
done
expect_fail "a server of protocol 1: restart it after the upgrade" \
    "runs an older zumastor \(control protocol 1\) and does not know 'status' .*restart it after the upgrade" "$D" status "$WORK/fake-1.sock"
expect_fail "a newer server: use the tools of its version" \
    "runs zumastor 3.0.0 \(control protocol 3\), newer than this .*use the zumastor and ddsnap of the server's version" "$D" status "$WORK/fake-3.sock"
expect_eq "malformed input changed nothing" "$(md5sum < in.raw)" "$(md5sum < "$DEV")"

# The limits against a greedy client (docs/INVARIANTS.md 36): 1,000 control and NBD
# connections, 1 GiB of NBD writes pipelined without reading a reply.
python3 "$HERE/limits.py" "$S" "$N" "$R" "$RAW_PID" > limits.out 2>&1
limits_rc=$?
while read -r line; do
    case "$line" in "ok - "*) ok "${line#ok - }" ;; "not ok - "*) not_ok "${line#not ok - }" ;; esac
done < limits.out
[ $limits_rc -eq 0 ] || not_ok "limits.py" "$(cat limits.out)"
expect_ok "store checks clean after the greedy client" "$D" check "$S"

# fio --verify through the device while snapshots are created and deleted underneath.
fio --name=verify --filename="$DEV" --rw=randwrite --bs=4k --size=64M --offset=32M --direct=1 --ioengine=libaio \
    --iodepth=16 --verify=crc32c --verify_fatal=1 --do_verify=1 --output=fio.out >/dev/null 2>&1 &
FIO=$!
PIDS+=("$FIO")
tag=100
while kill -0 "$FIO" 2>/dev/null; do
    "$D" create "$S" $tag >/dev/null 2>&1
    [ $tag -gt 102 ] && "$D" delete "$S" $((tag - 3)) >/dev/null 2>&1
    tag=$((tag + 1))
    sleep 0.2
done
wait "$FIO"; fio_rc=$?
[ $fio_rc -eq 0 ] && ok "fio --verify with $((tag - 100)) snapshots created underneath" || not_ok "fio --verify" "$(tail -20 fio.out)"
expect_ok "store checks clean through the socket" "$D" check "$S"

# kill -9 in the middle of a write workload; restart recovers to the last commit.
for tag in 1 2 3 4; do "$D" read "$S" --snapshot $tag | md5sum > "after-$tag.md5"; done
head -c 8M /dev/urandom > flushed.bin
dd if=flushed.bin of="$DEV" bs=1M seek=100 oflag=direct conv=fsync,notrunc status=none
"$D" create "$S" 500 >/dev/null
"$D" read "$S" --snapshot 500 | md5sum > after-500.md5
fio --name=load --filename="$DEV" --rw=randwrite --bs=64k --size=64M --direct=1 --ioengine=libaio --iodepth=8 \
    --time_based --runtime=30 --output=/dev/null >/dev/null 2>&1 &
LOAD=$!
PIDS+=("$LOAD")
sleep 2
kill -KILL "$SERVER_PID"
wait "$SERVER_PID" 2>/dev/null
kill -KILL "$LOAD" 2>/dev/null; wait "$LOAD" 2>/dev/null
start_server "$R" "$R.store" && ok "restart after kill -9" || not_ok "restart after kill -9" "$(tail "$WORK/$R.stderr")"
expect_ok "store checks clean after kill -9" "$D" check "$S"
all=ok
for tag in 1 2 3 4 500; do
    [ "$("$D" read "$S" --snapshot $tag | md5sum)" = "$(cat "after-$tag.md5")" ] || all="snapshot $tag differs"
done
expect_eq "every snapshot reads back its checksum after kill -9" ok "$all"
expect_eq "flushed writes are present after kill -9" "$(md5sum < flushed.bin)" "$("$D" read "$S" --offset 100M --length 8M | md5sum)"
grep -q "earlier server" "$WORK/$R.log" && ok "restart clears the loop devices the killed server left" || not_ok "restart clears leftovers" "$(tail "$WORK/$R.log")"
stop_server "$SERVER_PID"; expect_eq "raw server: SIGTERM exit 0" "0" "$STOP_RC"

# A store whose newest commit holds a node with its keys out of order (issue 18's damage),
# left by a server killed after that commit: check says so and writes nothing; --repair says
# what a rollback to the previous commit loses and changes nothing; --repair --roll-back does
# it, and every snapshot of the previous commit reads back.
B=rb$$
truncate -s 8M "$B.origin"; truncate -s 16M "$B.store"
"$D" initialize -c 4K "$B.store" "$B.origin" >/dev/null
head -c 1M /dev/urandom > rb0.bin
"$D" write "$B.store" < rb0.bin >/dev/null
if start_server "$B" "$B.store"; then
    rbpid=$SERVER_PID
    "$D" create "$WORK/$B.sock" 1 >/dev/null && "$D" create "$WORK/$B.sock" 2 >/dev/null
    head -c 3M /dev/urandom | "$D" write "$WORK/$B.sock" >/dev/null
    "$D" create "$WORK/$B.sock" 3 >/dev/null && "$D" create "$WORK/$B.sock" 4 >/dev/null
    kill -9 "$rbpid"; wait "$rbpid" 2>/dev/null
    release_devices_under "$WORK"
    damaged=$(python3 "$HERE/damage_node.py" "$B.store" | cut -d' ' -f1)
    before=$(md5sum < "$B.store")
    expect_fail "rollback: check finds the damage" "keys out of order" "$D" check "$B.store"
    expect_eq "rollback: check wrote nothing" "$before" "$(md5sum < "$B.store")"
    out=$("$D" check --repair "$B.store" 2>&1); rc=$?
    [ $rc -ne 0 ] && echo "$out" | grep -q "commit $damaged is damaged: .*keys out of order" \
        && echo "$out" | grep -q "commit $((damaged - 1)), the one before it, opens and checks clean" \
        && echo "$out" | grep -q "1 snapshot created in it" && echo "$out" | grep -q -- "--roll-back" \
        && ok "rollback: --repair names the commits and the losses, and refuses" || not_ok "rollback: --repair names the commits and the losses, and refuses" "exit $rc: $out"
    expect_eq "rollback: --repair alone wrote nothing" "$before" "$(md5sum < "$B.store")"
    expect_fail "rollback: --roll-back needs --repair" "goes with --repair" "$D" check --roll-back "$B.store"
    expect_ok "rollback: --repair --roll-back" "$D" check --repair --roll-back "$B.store"
    expect_ok "rollback: clean afterwards" "$D" check "$B.store"
    expect_eq "rollback: the previous commit's snapshots" "1 2 3" "$("$D" list "$B.store" --json | python3 -c 'import json,sys; print(*[s["tag"] for s in json.load(sys.stdin)])')"
    expect_eq "rollback: snapshot 1 intact" "$(md5sum < rb0.bin)" "$("$D" read "$B.store" --snapshot 1 --length 1M | md5sum)"
    out=$("$D" check --repair --roll-back "$B.store" 2>&1) && echo "$out" | grep -q "nothing to roll back" \
        && ok "rollback: a clean store has nothing to roll back" || not_ok "rollback: a clean store has nothing to roll back" "$out"
else
    not_ok "rollback: server for the damaged store" "$(tail -n 3 "$WORK/$B.stderr")"
fi

# ---------------------------------------------------------------------------------------
# NBD over TLS (NBD_OPT_STARTTLS) with X.509 certificates, tested with libnbd's clients:
# a client with a certificate of the server's authority reads and writes through nbds://;
# plain NBD, a client without a certificate, one of another authority, and one whose
# certificate copies the authority's name but not its key are refused before any export.
T=zt$$
new_store "$T" 64M 128M
PKI="$WORK/pki"
bash "$HERE/../../scripts/nbd-tls-certificates.sh" "$PKI" authority >/dev/null \
    && bash "$HERE/../../scripts/nbd-tls-certificates.sh" "$PKI" server 127.0.0.1 localhost >/dev/null \
    && bash "$HERE/../../scripts/nbd-tls-certificates.sh" "$PKI" client alice >/dev/null \
    && ok "nbd-tls-certificates.sh makes an authority, a server and a client" || not_ok "nbd-tls-certificates.sh"
expect_eq "the keys are root's alone" "600 600 600" "$(stat -c %a "$PKI/authority/ca-key.pem" "$PKI/server/server-key.pem" "$PKI/client-alice/client-key.pem" | xargs)"
# Another authority's client, a client without a certificate, and an impostor: a certificate
# signed by a key of its own under the authority's very name.
bash "$HERE/../../scripts/nbd-tls-certificates.sh" "$WORK/pki-other" authority >/dev/null
bash "$HERE/../../scripts/nbd-tls-certificates.sh" "$WORK/pki-other" client mallory >/dev/null
cp "$PKI/server/ca-cert.pem" "$WORK/pki-other/client-mallory/ca-cert.pem"
mkdir -p "$WORK/pki-none" && cp "$PKI/server/ca-cert.pem" "$WORK/pki-none/"
mkdir -p "$WORK/pki-impostor/authority"
openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj "$(openssl x509 -in "$PKI/authority/ca-cert.pem" -noout -subject -nameopt compat | sed 's/^subject=//')" \
    -keyout "$WORK/pki-impostor/authority/ca-key.pem" -out "$WORK/pki-impostor/authority/ca-cert.pem" 2>/dev/null
bash "$HERE/../../scripts/nbd-tls-certificates.sh" "$WORK/pki-impostor" client alice >/dev/null
cp "$PKI/server/ca-cert.pem" "$WORK/pki-impostor/client-alice/ca-cert.pem"

TPORT=$(free_port)
expect_fail "NBD on a non-loopback address without TLS is refused" "would let anyone who reaches it read and write the volume: give --nbd-tls" \
    "$D" server "$T.store" --name "$T" --socket "$WORK/$T.sock" --nbd-listen "0.0.0.0:$TPORT" --foreground
expect_fail "--nbd-tls without --nbd-listen is refused" "no NBD TCP address" \
    "$D" server "$T.store" --name "$T" --socket "$WORK/$T.sock" --nbd-tls "$PKI/server" --foreground
chmod 644 "$PKI/server/server-key.pem"
expect_fail "a server key readable by others is refused" "server-key.pem is readable by others \(mode 644\); chmod 600" \
    "$D" server "$T.store" --name "$T" --socket "$WORK/$T.sock" --nbd-listen "127.0.0.1:$TPORT" --nbd-tls "$PKI/server" --foreground
chmod 600 "$PKI/server/server-key.pem"
if start_server "$T" "$T.store" --nbd-listen "127.0.0.1:$TPORT" --nbd-tls "$PKI/server"; then
    URI="nbds://127.0.0.1:$TPORT/$T?tls-certificates=$PKI/client-alice"
    expect_eq "nbdinfo over TLS with the client's certificate" "67108864" "$(nbdinfo --size "$URI" 2>&1)"
    head -c 24M /dev/urandom > tls-in.raw
    expect_ok "nbdcopy into the volume over TLS" nbdcopy tls-in.raw "$URI"
    expect_eq "nbdcopy out of the volume over TLS" "$(md5sum < tls-in.raw)" "$(nbdcopy "$URI" - | head -c 24M | md5sum)"
    "$D" create "$WORK/$T.sock" 1 >/dev/null
    expect_eq "a snapshot export over TLS" "$(md5sum < tls-in.raw)" \
        "$(nbdcopy "nbds://127.0.0.1:$TPORT/$T@1?tls-certificates=$PKI/client-alice" - | head -c 24M | md5sum)"
    opened=$(grep -c "opened" "$WORK/$T.log")
    expect_fail "plain NBD is refused: TLS required" "requires TLS" nbdinfo --size "nbd://127.0.0.1:$TPORT/$T"
    expect_fail "a client without a certificate is refused" "TLS|handshake|alert" nbdinfo --size "nbds://127.0.0.1:$TPORT/$T?tls-certificates=$WORK/pki-none"
    expect_fail "a client of another authority is refused" "TLS|handshake|alert" \
        nbdinfo --size "nbds://127.0.0.1:$TPORT/$T?tls-certificates=$WORK/pki-other/client-mallory"
    expect_fail "a certificate under the authority's name but not its key is refused" "TLS|handshake|alert" \
        nbdcopy tls-in.raw "nbds://127.0.0.1:$TPORT/$T?tls-certificates=$WORK/pki-impostor/client-alice"
    expect_eq "the refused clients opened no export" "$opened" "$(grep -c "opened" "$WORK/$T.log")"
    expect_eq "the refusals are logged" "3" "$(grep -c "TLS handshake refused" "$WORK/$T.log")"
    expect_eq "the volume is as the accepted client wrote it" "$(md5sum < tls-in.raw)" "$("$D" read "$WORK/$T.sock" --length 24M | md5sum)"
    expect_eq "the Unix socket stays plain (root's alone)" "67108864" "$(nbdinfo --size "nbd+unix:///$T?socket=$WORK/$T.sock.nbd" 2>&1)"
    stop_server "$SERVER_PID"
else
    not_ok "server with NBD over TLS" "$(tail -n 3 "$WORK/$T.stderr")"
fi

finish
