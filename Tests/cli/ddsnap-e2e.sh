#!/usr/bin/env bash
# ddsnap end to end on files: every command, and every kind of bad input the tool must refuse
# with a clear message and a non-zero exit, without changing anything.
# Usage: Tests/cli/ddsnap-e2e.sh PATH/TO/ddsnap
. "$(dirname "$0")/lib.sh"
D=${1:?usage: ddsnap-e2e.sh PATH/TO/ddsnap}
cd "$WORK"

truncate -s 16M origin
truncate -s 24M store
expect_ok "initialize" "$D" initialize -c 4K store origin
head -c 2M /dev/urandom > gen0.bin
expect_ok "write origin" sh -c "'$D' write store < gen0.bin"
expect_ok "create 1" "$D" create store 1
head -c 64K /dev/urandom > patch.bin
expect_ok "write over snapshot 1" sh -c "'$D' write store --offset 1M < patch.bin"
expect_ok "create 2" "$D" create store 2 --name second --priority 3
expect_eq "snapshot 1 unchanged" "$(md5sum < gen0.bin)" "$("$D" read store --snapshot 1 --length 2M | md5sum)"
cp gen0.bin gen1.bin
dd if=patch.bin of=gen1.bin bs=1M seek=1 conv=notrunc status=none
expect_eq "origin has the patch" "$(md5sum < gen1.bin)" "$("$D" read store --length 2M | md5sum)"
expect_eq "changelist 1..2 is the 16 patched chunks" "$(seq 256 271)" "$("$D" changelist store 1 2)"
expect_eq "changelist 2..origin is empty" "" "$("$D" changelist store 2 origin)"
expect_eq "list --json tags" "1 2" "$("$D" list store --json | python3 -c 'import json,sys; print(*[s["tag"] for s in json.load(sys.stdin)])')"
expect_eq "list shows the name" "second" "$("$D" list store --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[1]["name"])')"
expect_eq "status --size 1: 64K unique" "65536" "$("$D" status store --size 1 --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["snapshots"][0]["uniqueBytes"])')"
expect_ok "status --size (bare)" "$D" status store --size
expect_ok "status text" "$D" status store
out=$("$D" status store 2>&1)
echo "$out" | grep -q "16,777,216 bytes" && ok "sizes print with thousands separators" || not_ok "sizes print with thousands separators" "$out"

# Snapshot writes (writable snapshots) and private copies.
head -c 4K /dev/urandom > snapwrite.bin
expect_ok "write into snapshot 1" sh -c "'$D' write store --snapshot 1 --offset 8K < snapwrite.bin"
expect_eq "snapshot 1 reads its private chunk" "$(md5sum < snapwrite.bin)" "$("$D" read store --snapshot 1 --offset 8K --length 4K | md5sum)"
expect_eq "origin unaffected by the snapshot write" "$(head -c 12K gen1.bin | tail -c 4K | md5sum)" "$("$D" read store --offset 8K --length 4K | md5sum)"

# use counts, priority, state
expect_eq "usecount +2" "2" "$("$D" usecount store 1 2)"
expect_eq "usecount -1" "1" "$("$D" usecount store 1 -1)"
expect_fail "usecount underflow" "Usecount underflow" "$D" usecount store 1 -5
expect_ok "priority -3" "$D" priority store 1 -3
expect_fail "priority out of range" "priority|range|invalid|128" "$D" priority store 1 200
"$D" status store --state 1 >/dev/null; expect_eq "state normal exits 0" "0" "$?"
"$D" status store --state 77 >/dev/null; expect_eq "state absent exits 1" "1" "$?"

# revert
expect_ok "revert to 1" "$D" revert store 1
cp gen0.bin gen0p.bin
dd if=snapwrite.bin of=gen0p.bin bs=4K seek=2 conv=notrunc status=none
expect_eq "origin equals snapshot 1 after revert" "$(md5sum < gen0p.bin)" "$("$D" read store --length 2M | md5sum)"
expect_eq "snapshot 2 kept its contents" "$(md5sum < gen1.bin)" "$("$D" read store --snapshot 2 --length 2M | md5sum)"

# resize
expect_ok "grow origin" "$D" resize store --origin-size 20M
expect_eq "origin file grew" "20971520" "$(stat -c %s origin)"
expect_ok "shrink origin" "$D" resize store --origin-size 1M
expect_eq "snapshot 2 intact after origin shrink" "$(md5sum < gen1.bin)" "$("$D" read store --snapshot 2 --length 2M | md5sum)"
expect_ok "grow store" "$D" resize store --snapshot 28M
expect_eq "store file grew" "29360128" "$(stat -c %s store)"
expect_ok "shrink store" "$D" resize store --snapshot 26M
expect_fail "shrink store below chunks in use" "in use|minimum" "$D" resize store --snapshot 400K
expect_fail "resize origin to an odd size" "multiple of 512" "$D" resize store --origin-size 1000
expect_fail "resize with nothing to do" "give --origin-size" "$D" resize store
expect_ok "check after resizes" "$D" check store

# delete
expect_ok "delete 1" "$D" delete store 1
expect_fail "delete again" "doesn't exist" "$D" delete store 1
expect_fail "create existing" "already exists" "$D" create store 2
expect_ok "check clean" "$D" check store

# Bad arguments.
expect_fail "unknown command" "unexpected|unknown|usage" "$D" frobnicate store
expect_fail "missing tag" "missing|usage" "$D" create store
expect_fail "negative tag" "not a snapshot tag|unknown option|usage" "$D" create store -- -4
expect_fail "tag not a number" "not a snapshot tag" "$D" create store abc
expect_fail "absurd offset" "past the end|out of range" "$D" read store --offset 1T --length 1
expect_fail "bad size suffix" "not a size" "$D" read store --offset 12Q
expect_fail "size overflow" "too large|not a size" "$D" read store --offset 99999999999T
expect_fail "read past snapshot end" "past" "$D" read store --snapshot 2 --offset 2M --length 20M
expect_fail "missing store" "No such file" "$D" list /nonexistent/store
expect_fail "chunk size not a power of two" "power of two" "$D" initialize -y -c 5K store origin
expect_fail "chunk size too large" "power of two" "$D" initialize -y -c 2M store origin
truncate -s 64K tiny
expect_fail "store too small" "too small" "$D" initialize -y -c 4K tiny origin
expect_fail "initialize refuses to overwrite without -y" "not overwriting" sh -c "'$D' initialize store origin < /dev/null"
expect_fail "a directory is not a device" "Is a directory|neither a regular file" "$D" list .
expect_fail "not a store" "not a snapshot store" "$D" list origin

# Lock: a second process cannot open a store in use.
# One process holds the lock (no child inherits it), killed by its PID afterwards.
python3 -c 'import fcntl, sys, time; f = open(sys.argv[1], "r+"); fcntl.flock(f, fcntl.LOCK_EX); open(sys.argv[2], "w").close(); time.sleep(60)' store locked &
locker=$!
PIDS+=("$locker")
for _ in $(seq 50); do [ -e locked ] && break; sleep 0.1; done
expect_fail "store in use" "in use" "$D" list store
kill "$locker" 2>/dev/null; wait "$locker" 2>/dev/null

# A store from another origin, an origin that shrank behind our back.
cp store store.bak
truncate -s 16M other
expect_fail "origin swapped behind our back" "not the device this store was made for" sh -c "mv origin origin.real && cp origin.real origin && '$D' list store"
rm -f origin; mv origin.real origin
expect_ok "explicit --origin overrides the recorded one" "$D" list store --origin "$WORK/origin"
cp origin origin.full
truncate -s 512K origin
expect_fail "origin shrank" "shrank behind our back" "$D" list store
cp origin.full origin

# Corrupt images: every kind gives a clear error, never a crash.
size=$(stat -c %s store)
cp store.bak store
python3 - store <<'PY'
import sys
p = sys.argv[1]
b = bytearray(open(p, 'rb').read())
for off in (0, 4096):   # both superblock slots
    b[off + 100] ^= 0xFF
open(p, 'wb').write(b)
PY
expect_fail "both superblocks corrupt" "not a snapshot store|checksum" "$D" list store
cp store.bak store
python3 - store <<'PY'
import sys
p = sys.argv[1]
b = bytearray(open(p, 'rb').read())
b[100] ^= 0xFF          # only slot 0: slot 1 still opens
open(p, 'wb').write(b)
PY
expect_ok "one torn superblock: the other slot opens" "$D" list store
cp store.bak store
# Flip a byte in every metadata block that is not a superblock: open or check must name it.
python3 - store <<'PY'
import struct, sys
p = sys.argv[1]
b = bytearray(open(p, 'rb').read())
cs = 4096
hit = 0
for blk in range(2, len(b) // cs):
    t = struct.unpack_from('<H', b, blk * cs + 4)[0]
    if t in (0x4E44,):           # tree nodes
        b[blk * cs + 40] ^= 0x55
        hit += 1
open(p, 'wb').write(b)
assert hit > 0
PY
expect_fail "corrupt tree node named by block" "block [0-9]+.*(checksum|tree node)" sh -c "'$D' list store && '$D' check store"
cp store.bak store
truncate -s 1M store
expect_fail "truncated store" "smaller than|truncated|not a snapshot store" "$D" list store
cp store.bak store
python3 - store <<'PY'
import struct, sys
p = sys.argv[1]
b = bytearray(open(p, 'rb').read())
struct.pack_into('<H', b, 6, 9)       # format version 9 in slot 0
struct.pack_into('<H', b, 4096 + 6, 9)
open(p, 'wb').write(b)
PY
expect_fail "unknown format version" "version 9 is not supported|not a snapshot store" "$D" list store
cp store.bak store
expect_ok "restored store checks clean" "$D" check store

# Copy-outs on a filesystem with reflinks: the store shares the origin's old extents
# (FICLONERANGE) instead of copying them, and snapshots still read their old data. As root: an
# XFS image on a loop device, unmounted and detached by id on exit.
if [ "$(id -u)" -eq 0 ] && command -v mkfs.xfs >/dev/null; then
    truncate -s 600M xfs.img
    mkfs.xfs -q -m reflink=1 xfs.img
    mkdir xfsmnt
    xfsloop=$(losetup --find --show xfs.img)
    trap 'umount "$WORK/xfsmnt" 2>/dev/null; losetup -d "$xfsloop" 2>/dev/null; cleanup' EXIT
    mount "$xfsloop" xfsmnt
    truncate -s 64M xfsmnt/origin
    truncate -s 64M xfsmnt/store
    expect_ok "initialize on xfs" "$D" initialize -c 16K xfsmnt/store xfsmnt/origin
    head -c 8M /dev/urandom > xgen0.bin
    expect_ok "write origin on xfs" sh -c "'$D' write xfsmnt/store < xgen0.bin"
    expect_ok "create on xfs" "$D" create xfsmnt/store 1
    # physical_blocks FILE: every physical block of FILE (filefrag -v), one per line.
    physical_blocks() {
        filefrag -v "$1" | python3 -c '
import re, sys
for line in sys.stdin:
    m = re.match(r"\s*\d+:\s+(\d+)\.\.\s*(\d+):\s+(\d+)\.\.\s*(\d+):", line)
    if m:
        for b in range(int(m.group(3)), int(m.group(4)) + 1): print(b)'
    }
    # The origin blocks about to be overwritten (bytes 2M..3M, 4 KiB blocks 512..767).
    filefrag -v xfsmnt/origin | python3 -c '
import re, sys
for line in sys.stdin:
    m = re.match(r"\s*\d+:\s+(\d+)\.\.\s*(\d+):\s+(\d+)\.\.\s*(\d+):", line)
    if m:
        lo, hi, p = int(m.group(1)), int(m.group(2)), int(m.group(3))
        for b in range(max(lo, 512), min(hi, 767) + 1): print(p + b - lo)' | sort > xold.txt
    head -c 1M /dev/urandom > xpatch.bin
    expect_ok "copy-out write on xfs" sh -c "'$D' write xfsmnt/store --offset 2M < xpatch.bin"
    expect_eq "snapshot on xfs keeps its data" "$(md5sum < xgen0.bin)" "$("$D" read xfsmnt/store --snapshot 1 --length 8M | md5sum)"
    cp xgen0.bin xgen1.bin
    dd if=xpatch.bin of=xgen1.bin bs=1M seek=2 conv=notrunc status=none
    expect_eq "origin on xfs has the patch" "$(md5sum < xgen1.bin)" "$("$D" read xfsmnt/store --length 8M | md5sum)"
    # Reflinked, not copied: the store now owns exactly the origin's old blocks.
    physical_blocks xfsmnt/store | sort > xstore.txt
    taken=$(comm -12 xold.txt xstore.txt | wc -l)
    expect_eq "the copy-out took over the origin's old blocks (256 of them), no copy" "256 256" "$(wc -l < xold.txt) $taken"
    expect_ok "check on xfs" "$D" check xfsmnt/store
    umount "$WORK/xfsmnt" && losetup -d "$xfsloop"
    trap cleanup EXIT
fi

# Help text names every command.
help=$("$D" --help)
for verb in initialize create delete list status usecount priority read write changelist revert resize check; do
    echo "$help" | grep -q "  $verb" || not_ok "help lists $verb" "$help"
done
ok "help lists every command"
expect_ok "version" "$D" --version

finish
