#!/usr/bin/env bash
# The demo, as root: a snapshot store on plain files, end to end. First with ddsnap on the
# files (initialize, write, snapshot, overwrite, read the snapshot back unchanged, changed
# chunks, revert, delete, check); then served by `ddsnap server`: ext4 made and mounted on
# /dev/mapper/<vol>, a snapshot taken while mounted and mounted read-only beside it, the same
# snapshot read by NBD clients, status through the control socket, and a clean stop; last,
# the seed guide's story with `zumastor` (10.3 and 10.7): a volume on loopback devices, a
# master mounted for you, hourly snapshots mounted at their time with hourly.N links, df
# showing the origin change while the snapshots do not, `zumastor replicate` to a replica
# store on files (a full copy, then a delta); replication to a second host (a network
# namespace) with define source/target over TLS 1.3 with pinned keys, pushed, then pulled, the
# replica's mount showing the master's files; `zumastor status` on both; and the metrics
# `zumastor start` serves, scraped with curl.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
D="$PWD/.build/static/release/ddsnap"
Z="$PWD/.build/static/release/zumastor"
dir=$(mktemp -d /tmp/zumastor-demo.XXXXXX)
VOL=demo$$
SERVER=""
MOUNTS=()
ZVOL=""
LOOPS=()
NETNS=()
HOSTB_VOL=""
finish() {
    if [ -n "$HOSTB_VOL" ]; then
        ZUMASTOR_ROOT="$dir/hostb" "$Z" stop >/dev/null 2>&1
        ZUMASTOR_ROOT="$dir/hostb" "$Z" forget volume "$HOSTB_VOL" >/dev/null 2>&1
    fi
    for f in "$dir"/root/var/run/zumastor/replicator.pid "$dir"/hostb/var/run/zumastor/replicator.pid; do
        [ -s "$f" ] && kill -TERM "$(cat "$f")" 2>/dev/null
    done
    [ -n "$ZVOL" ] && ZUMASTOR_ROOT="$dir/root" "$Z" forget volume "$ZVOL" >/dev/null 2>&1
    for l in "${LOOPS[@]}"; do losetup -d "$l" 2>/dev/null; done
    for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do umount "${MOUNTS[i]}" 2>/dev/null || umount -l "${MOUNTS[i]}"; done
    [ -n "$SERVER" ] && kill -TERM "$SERVER" 2>/dev/null && while kill -0 "$SERVER" 2>/dev/null; do sleep 0.1; done
    for n in "${NETNS[@]}"; do ip netns del "$n" 2>/dev/null; done
    rm -rf "$dir"
}
trap 'cd /; finish' EXIT
cd "$dir"
# Shows each command as a user would type it, then runs it.
step() { echo; echo "\$ ddsnap $*"; "$D" "$@"; }
step_in() { local input=$1; shift; echo; echo "\$ ddsnap $* < $input"; "$D" "$@" < "$input"; }

truncate -s 256M origin        # the volume (sparse file)
truncate -s 64M snapstore      # the shared snapshot store
step initialize -c 16K snapstore origin
head -c 32M /dev/urandom > data
step_in data write snapstore
step create snapstore 1 --name before-upgrade
head -c 1M /dev/urandom > patch
step_in patch write snapstore --offset 8M
step create snapstore 2
echo; echo "snapshot 1 still reads the original data:"
"$D" read snapstore --snapshot 1 --length 32M | cmp - data && echo "  identical to what was written before the snapshot"
echo "chunks changed between snapshots 1 and 2: $("$D" changelist snapstore 1 2 | wc -l) (1 MiB / 16 KiB = 64)"
step status snapstore --size
step list snapstore
step revert snapstore 1
"$D" read snapstore --length 32M | cmp - data && echo "  origin equals snapshot 1 again"
step delete snapstore 1
step check snapstore

# ---- The same kind of store, served: real block devices on an unmodified kernel.
echo; echo "=== ddsnap server: the volume and its snapshots as block devices ==="
truncate -s 512M vol.origin
truncate -s 256M vol.store
"$D" initialize -y vol.store vol.origin >/dev/null
S="$dir/$VOL.sock"
echo; echo "\$ ddsnap server vol.store --name $VOL --socket $S --block-files $dir/blocks --log $dir/server.log"
out=$("$D" server vol.store --name "$VOL" --socket "$S" --block-files "$dir/blocks" --log "$dir/server.log")
echo "$out"
SERVER=$(echo "$out" | sed -n 's/.*(pid \([0-9]*\)).*/\1/p')
step attach "$S"
echo; echo "\$ mkfs.ext4 -q /dev/mapper/$VOL && mount /dev/mapper/$VOL $dir/mnt"
mkfs.ext4 -q "/dev/mapper/$VOL"
mkdir -p mnt snap
mount "/dev/mapper/$VOL" mnt && MOUNTS+=("$dir/mnt")
echo "version 1 of the report" > mnt/report.txt
sync
echo; echo "\$ fsfreeze -f mnt; ddsnap create $S 1; fsfreeze -u mnt"
fsfreeze -f mnt; "$D" create "$S" 1; fsfreeze -u mnt
echo "version 2 of the report" > mnt/report.txt
sync
step attach "$S" 1
echo; echo "\$ mount -o ro,noload '/dev/mapper/$VOL(1)' $dir/snap"
mount -o ro,noload "/dev/mapper/$VOL(1)" snap && MOUNTS+=("$dir/snap")
echo "  origin:     $(cat mnt/report.txt)"
echo "  snapshot 1: $(cat snap/report.txt)"
df -h mnt snap | sed 's/^/  /'
echo; echo "\$ nbdinfo --list 'nbd+unix:///?socket=$S.nbd'   (the same devices over NBD)"
nbdinfo --list "nbd+unix:///?socket=$S.nbd" | grep -E '^export=|export-size|is_read_only' | sed 's/^/  /'
echo "  snapshot 1 through NBD and through its loop device: $(nbdcopy "nbd+unix:///$VOL@1?socket=$S.nbd" - | md5sum | cut -c1-12) / $(md5sum < "/dev/mapper/$VOL(1)" | cut -c1-12)"
step status "$S" --size
step delete "$S" 1 || true
umount snap; umount mnt; MOUNTS=()
step detach "$S" 1
step detach "$S"
step delete "$S" 1
echo; echo "\$ kill -TERM $SERVER    (finishes in-flight requests, detaches, unmounts, commits)"
kill -TERM "$SERVER"; while kill -0 "$SERVER" 2>/dev/null; do sleep 0.1; done; SERVER=""
step check vol.store

# ---- zumastor: the seed guide's 10.3 and 10.7, state kept under ZUMASTOR_ROOT.
echo; echo "=== zumastor: a snapshotted volume on loopback devices, with hourly snapshots ==="
export ZUMASTOR_ROOT="$dir/root"
ZVOL=zumatest; [ -e /dev/mapper/zumatest ] && ZVOL=zumatest$$
zstep() { echo; echo "# zumastor $*"; "$Z" "$@"; }
truncate -s 512M vg.img; truncate -s 256M vg_snap.img
ORIGIN=$(losetup -f --show "$dir/vg.img"); LOOPS+=("$ORIGIN")
STORE=$(losetup -f --show "$dir/vg_snap.img"); LOOPS+=("$STORE")
echo "# (ZUMASTOR_ROOT=$ZUMASTOR_ROOT; origin $ORIGIN, snapshot store $STORE)"
echo "# mkfs.ext4 $ORIGIN"; mkfs.ext4 -q "$ORIGIN"
zstep define volume "$ZVOL" "$ORIGIN" "$STORE" --initialize
zstep define master "$ZVOL"
MP="$ZUMASTOR_ROOT/var/run/zumastor/mount/$ZVOL"
SP="$ZUMASTOR_ROOT/var/run/zumastor/snapshot/$ZVOL"
echo; echo "# df | grep $ZVOL"; df | grep "$ZVOL"
zstep define schedule "$ZVOL" --hourly 24
zstep snapshot "$ZVOL" hourly
echo; echo "# df | grep $ZVOL"; df | grep "$ZVOL"
echo; echo "# ls -l $SP"; ls -l "$SP" | tail -n +2
echo; echo "# echo 'This is the first file!' > $MP/foo.txt; sync"
echo 'This is the first file!' > "$MP/foo.txt"; sync
echo "# df | grep $ZVOL    (the origin's blocks change, the snapshot's do not)"; df | grep "$ZVOL"
zstep snapshot "$ZVOL" hourly
echo; echo "# df | grep $ZVOL"; df | grep "$ZVOL"
echo; echo "# cat $SP/hourly.0/foo.txt; ls $SP/hourly.1"
cat "$SP/hourly.0/foo.txt"; ls "$SP/hourly.1"
echo; echo "# a replica on this machine: ddsnap initialize replica.store replica.origin"
truncate -s 512M replica.origin; truncate -s 256M replica.store
"$D" initialize -y "$dir/replica.store" "$dir/replica.origin" >/dev/null
zstep replicate "$ZVOL" "$dir/replica.store" --quiet
echo; echo "# echo 'Replicated as a delta' > $MP/bar.txt"
echo 'Replicated as a delta' > "$MP/bar.txt"
zstep replicate "$ZVOL" "$dir/replica.store" --quiet
RTAG=$("$D" list "$dir/replica.store" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[-1]["tag"])')
echo; echo "# the replica's snapshot $RTAG, byte for byte against the volume's:"
cmp <("$D" read "$ZUMASTOR_ROOT/var/run/zumastor/servers/$ZVOL" --snapshot "$RTAG") <("$D" read "$dir/replica.store" --snapshot "$RTAG") \
    && echo "identical"

# ---- A second host: its own network namespace, replicated to with zumastor over TLS 1.3
# with pinned keys (seed guide 10.10). /dev/mapper is shared by the two "hosts" of this one
# machine, so the replica's volume has a name of its own (--name maps the two).
echo; echo "=== a second host: zumastor replication over the network ==="
HA=zdemoa$$; HB=zdemob$$
ip netns add "$HA" && NETNS+=("$HA"); ip netns add "$HB" && NETNS+=("$HB")
ip link add "zda$$" netns "$HA" type veth peer name "zdb$$" netns "$HB"
ip -n "$HA" addr add 10.78.0.1/24 dev "zda$$"; ip -n "$HA" link set "zda$$" up; ip -n "$HA" link set lo up
ip -n "$HB" addr add 10.78.0.2/24 dev "zdb$$"; ip -n "$HB" link set "zdb$$" up; ip -n "$HB" link set lo up
echo "# (this host speaks from namespace $HA as 10.78.0.1; the second host is namespace $HB, 10.78.0.2)"
RVOL="${ZVOL}r"
HOSTB="$dir/hostb"
here() { nsenter --net=/run/netns/"$HA" "$Z" "$@"; }
hostb() { ZUMASTOR_ROOT="$HOSTB" nsenter --net=/run/netns/"$HB" "$Z" "$@"; }
hstep() { echo; echo "# zumastor $*"; here "$@"; }
bstep() { echo; echo "hostb# zumastor $*"; hostb "$@"; }
KA=$(here key); KB=$(hostb key)
echo "# zumastor key          -> $KA"
echo "hostb# zumastor key     -> $KB"
truncate -s 512M hostb.origin; truncate -s 256M hostb.store
HOSTB_VOL="$RVOL"
bstep define volume "$RVOL" "$dir/hostb.origin" "$dir/hostb.store" --initialize
bstep define source "$RVOL" 10.78.0.1 --key "$KA" --name "$ZVOL"
hstep define target "$ZVOL" 10.78.0.2 --key "$KB" --name "$RVOL"
hstep replicate "$ZVOL" 10.78.0.2 --wait --quiet
RMP="$HOSTB/var/run/zumastor/mount/$RVOL"
echo; echo "hostb# cat $RMP/bar.txt"; cat "$RMP/bar.txt"
echo; echo "# date > $MP/testfile"; date > "$MP/testfile"
bstep replicate "$RVOL" --quiet
echo; echo "# md5sum $MP/testfile; hostb# md5sum $RMP/testfile"
md5sum "$MP/testfile" | cut -d' ' -f1; md5sum "$RMP/testfile" | cut -d' ' -f1
bstep status "$RVOL"

# The service on this host (zumastor start, as at boot) serves its metrics for Prometheus.
hstep start
echo; echo "# curl -s http://127.0.0.1:9339/metrics | grep -E '^zumastor_(snapshots_by_kind|store_used_percent|replication_lag_seconds|replication_bytes_total)'"
nsenter --net=/run/netns/"$HA" curl -s http://127.0.0.1:9339/metrics \
    | grep -E '^zumastor_(snapshots_by_kind|store_used_percent|replication_lag_seconds|replication_bytes_total)\{'

zstep status
bstep stop
bstep forget volume "$RVOL"
HOSTB_VOL=""
here stop >/dev/null
zstep forget volume "$ZVOL"
ZVOL=""
