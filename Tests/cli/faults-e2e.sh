#!/usr/bin/env bash
# Host faults under a running `ddsnap server`, as root: the store and the origin on a small
# ext4 filesystem of their own that fills up (ENOSPC from the host, not the store's full
# policy). Writes fail cleanly, nothing acknowledged is lost, the store checks clean, and the
# volume takes writes again once space is freed, without a restart.
# Removes what it made (server, mounts, loop devices, device names) by id, whatever happens.
# Usage: Tests/cli/faults-e2e.sh PATH/TO/ddsnap
. "$(dirname "$0")/lib.sh"
D=${1:?usage: faults-e2e.sh PATH/TO/ddsnap}
cd "$WORK"
require_root_and_fuse "the fault tests"

V=zf$$
SPID=
HOSTLOOP=
faults_cleanup() {
    [ -n "$SPID" ] && { kill -TERM "$SPID" 2>/dev/null; for _ in $(seq 100); do kill -0 "$SPID" 2>/dev/null || break; sleep 0.1; done; kill -KILL "$SPID" 2>/dev/null; }
    # The server's loop devices and block-file mount first, then the host filesystem.
    for f in /sys/block/loop*/loop/backing_file; do
        [ -e "$f" ] || continue
        case "$(cat "$f" 2>/dev/null)" in "$WORK/blocks"/*) losetup -d "/dev/$(basename "$(dirname "$(dirname "$f")")")" 2>/dev/null ;; esac
    done
    umount -l "$WORK/blocks" 2>/dev/null
    umount "$WORK/host" 2>/dev/null || umount -l "$WORK/host" 2>/dev/null
    [ -n "$HOSTLOOP" ] && losetup -d "$HOSTLOOP" 2>/dev/null
    remove_device_names "$V"
    cleanup
}
trap faults_cleanup EXIT

start_server() {
    "$D" server "$WORK/host/store" --name "$V" --socket "$WORK/ctl" --block-files "$WORK/blocks" \
        --log "$WORK/server.log" --foreground 2>>"$WORK/server.stderr" &
    SPID=$!
    for _ in $(seq 100); do "$D" status "$WORK/ctl" >/dev/null 2>&1 && return 0; kill -0 "$SPID" 2>/dev/null || break; sleep 0.1; done
    return 1
}

# A 64 MiB ext4 of its own holds a 128 MiB origin and a 128 MiB store, both sparse.
truncate -s 64M host.img
mkfs.ext4 -q -m 0 host.img
HOSTLOOP=$(losetup -f --show host.img) || { not_ok "losetup of the host filesystem"; finish; exit 1; }
mkdir -p host && mount "$HOSTLOOP" host || { not_ok "mount the host filesystem"; finish; exit 1; }
truncate -s 128M host/origin host/store
"$D" initialize -y host/store host/origin >/dev/null
start_server || { not_ok "server starts" "$(cat server.stderr)"; finish; exit 1; }
DEV=$("$D" attach "$WORK/ctl" 2>/dev/null)
[ -b "$DEV" ] && ok "the volume attached on a filesystem of its own" || { not_ok "attach"; finish; exit 1; }

head -c 16M /dev/urandom > a.bin
expect_ok "16 MiB written and fsync'd" dd if=a.bin of="$DEV" bs=1M oflag=direct conv=fsync status=none
expect_ok "snapshot 1" "$D" create "$WORK/ctl" 1
# Fill the host filesystem, leaving 2 MiB.
avail=$(df -k --output=avail host | tail -n 1)
fallocate -l $(( (avail - 2048) * 1024 )) host/filler
head -c 32M /dev/urandom > b.bin
expect_fail "a write past the free space fails" "No space left|Input/output error" \
    dd if=b.bin of="$DEV" bs=1M seek=32 oflag=direct conv=fsync status=none
expect_fail "an overwrite that needs copy-outs fails" "No space left|Input/output error" \
    dd if=b.bin of="$DEV" bs=1M count=16 oflag=direct conv=fsync status=none
grep -q "No space left on device" server.log && ok "the server logs ENOSPC" || not_ok "the server logs ENOSPC" "$(tail -n 3 server.log)"
expect_ok "the server still answers" "$D" status "$WORK/ctl"
expect_eq "snapshot 1 reads as taken" "$(md5 < a.bin)" "$("$D" read "$WORK/ctl" --snapshot 1 --length 16M | md5)"

# Space back: the volume takes writes again, the same server.
rm -f host/filler
expect_ok "after space is freed, the overwrite succeeds" dd if=b.bin of="$DEV" bs=1M count=16 oflag=direct conv=fsync status=none
expect_ok "and 8 MiB past it" dd if=b.bin of="$DEV" bs=1M seek=32 count=8 oflag=direct conv=fsync status=none
grep -q "the store works again, reopened at its last commit" server.log && ok "the server says the store works again" \
    || not_ok "the server says the store works again" "$(tail -n 3 server.log)"
expect_eq "the overwrite reads back" "$(head -c 16M b.bin | md5)" "$("$D" read "$WORK/ctl" --length 16M | md5)"
expect_eq "snapshot 1 still reads as taken" "$(md5 < a.bin)" "$("$D" read "$WORK/ctl" --snapshot 1 --length 16M | md5)"
expect_ok "snapshot 2 after the recovery" "$D" create "$WORK/ctl" 2
expect_eq "snapshot 2 holds the overwrite" "$(head -c 16M b.bin | md5)" "$("$D" read "$WORK/ctl" --snapshot 2 --length 16M | md5)"
"$D" detach "$WORK/ctl" >/dev/null 2>&1
kill -TERM "$SPID"; wait "$SPID"; rc=$?; SPID=
expect_eq "the server stops cleanly" "0" "$rc"
expect_ok "the store checks clean" "$D" check host/store
expect_eq "snapshot 1 after the stop" "$(md5 < a.bin)" "$("$D" read host/store --snapshot 1 --length 16M | md5)"
finish
