#!/usr/bin/env bash
# zumastor replicate end to end, as root with its own ZUMASTOR_ROOT: a master volume with ext4
# replicated to a replica store on files (a full copy, then deltas), the replication snapshots
# that are no longer a base deleted, a replica served by `ddsnap server` reached through its
# socket, the replica's snapshots mounted and read as files, and the refusals (another volume's
# replica, a replica sharing no snapshot, a busy store, the reserved kind) leaving both sides as
# they were.
# Usage: Tests/cli/replicate-e2e.sh PATH/TO/zumastor
. "$(dirname "$0")/lib.sh"
Z=${1:?usage: replicate-e2e.sh PATH/TO/zumastor}
D="$(dirname "$Z")/ddsnap"
export ZUMASTOR_ROOT="$WORK/root"
cd "$WORK"

require_root_and_fuse "replication tests"

VOLS=()
MOUNTS=()
SERVERS=()
r_cleanup() {
    unmount_listed "${MOUNTS[@]}"
    for pid in "${SERVERS[@]}"; do kill -TERM "$pid" 2>/dev/null; for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done; done
    stop_volume_processes "$Z" "${VOLS[@]}"
    release_devices_under "$WORK"
    remove_device_names "${VOLS[@]}"
    cleanup
}
trap r_cleanup EXIT

tags() { "$D" list "$@" --json | python3 -c 'import json,sys; print(" ".join(str(s["tag"]) for s in json.load(sys.stdin)))'; }
SOCK="$ZUMASTOR_ROOT/var/run/zumastor/servers"
# same SNAP REPLICA...: the replica's snapshot SNAP equals the source's, byte for byte.
same() { local t=$1; shift; cmp -s <("$D" read "$SOCK/$V" --snapshot "$t") <("$D" read "$@" --snapshot "$t"); }

V=zr$$
VOLS+=("$V")
truncate -s 128M origin.img rep.origin other.origin; truncate -s 64M store.img rep.store other.store
"$Z" define volume "$V" origin.img store.img --initialize >/dev/null
mkfs.ext4 -q -E lazy_itable_init=0,lazy_journal_init=0 "/dev/mapper/$V"
"$Z" define master "$V" --no-snapmount >/dev/null
M="$ZUMASTOR_ROOT/var/run/zumastor/mount/$V"
mkdir -p "$M/docs" && for i in $(seq 50); do head -c 10K /dev/urandom > "$M/docs/f$i"; done
"$D" initialize -y rep.store rep.origin >/dev/null
"$D" initialize -y other.store other.origin >/dev/null

# A full copy, then deltas.
out=$("$Z" replicate "$V" rep.store --origin rep.origin 2>progress)
echo "$out" | grep -qE "^Replicated snapshot 0 of '$V' to rep.store in full: [0-9]+ chunk\(s\) of data, [0-9]+ zero.$" \
    && ok "first replication: a full copy" || not_ok "first replication" "$out"
expect_ok "progress on stderr" grep -qE "replicate: .*chunks" progress
expect_ok "the replica's snapshot 0 equals the source's" same 0 rep.store --origin rep.origin
expect_eq "the source keeps snapshot 0 as the replica's base" "0" "$(tags "$SOCK/$V")"
kinds=$("$D" list "$SOCK/$V" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["name"].split(" ")[1])')
expect_eq "the snapshot is of kind replication" "replication" "$kinds"
echo "changed after the first replication" > "$M/docs/f7"
out=$("$Z" replicate "$V" rep.store --origin rep.origin --quiet)
echo "$out" | grep -qE "^Replicated snapshot 2 of '$V' to rep.store as changes since snapshot 0: " && ok "second replication: a delta from snapshot 0" || not_ok "second replication" "$out"
expect_ok "the replica's snapshot 2 equals the source's" same 2 rep.store --origin rep.origin
expect_eq "the source deleted snapshot 0, no longer a base" "2" "$(tags "$SOCK/$V")"
expect_eq "the replica keeps both snapshots" "0 2" "$(tags rep.store --origin rep.origin)"
expect_eq "status --json names the target and its base" "2" \
    "$("$Z" status "$V" --json | python3 -c "import json,sys; print(json.load(sys.stdin)['replicated']['$WORK/rep.store'])")"
expect_ok "status shows the target" sh -c "'$Z' status '$V' | grep -q 'replicated to: *$WORK/rep.store (snapshot 2)'"
expect_ok "master.log records the replication" grep -q "replicated snapshot 2 to $WORK/rep.store from snapshot 0" "$ZUMASTOR_ROOT/var/log/zumastor/$V/master.log"
expect_ok "the replica's store checks clean" "$D" check rep.store --origin rep.origin

# The replica's snapshot holds the filesystem: mount it read-only and compare the files.
mkdir -p repmnt
"$D" read rep.store --origin rep.origin --snapshot 2 > rep2.img
if mount -o ro,loop,noload rep2.img repmnt; then
    MOUNTS+=("$WORK/repmnt")
    expect_ok "the replica's files equal the source's" diff -r "$M/docs" repmnt/docs
    umount repmnt
else
    not_ok "mount the replica's snapshot"
fi

# Nothing changed: still a snapshot and a (nearly empty) delta.
out=$("$Z" replicate "$V" rep.store --origin rep.origin --quiet)
echo "$out" | grep -q "as changes since snapshot 2" && ok "a replication with nothing changed" || not_ok "idle replication" "$out"

# A replica served by its own server, through the socket.
out=$("$D" server rep.store --name zrr$$ --socket "$WORK/rep.sock" --block-files "$WORK/blocks" --log "$WORK/rep.log")
SERVERS+=("$(echo "$out" | sed -n 's/.*(pid \([0-9]*\)).*/\1/p')")
expect_fail "a served replica's store is refused as busy" "in use.*control socket" "$Z" replicate "$V" rep.store --origin rep.origin
echo "through the replica's server" > "$M/docs/f9"
out=$("$Z" replicate "$V" rep.sock --quiet)
echo "$out" | grep -q "as changes since snapshot 4" && ok "replication through the replica server's socket" || not_ok "socket replication" "$out"
expect_ok "the served replica's snapshot 6 equals the source's" same 6 rep.sock
expect_eq "the source holds one base per target" "4 6" "$(tags "$SOCK/$V")"
expect_fail "--origin with a socket is refused" "origin.*socket" "$Z" replicate "$V" rep.sock --origin rep.origin

# Refusals: nothing taken on the source, nothing written on the replica.
before=$(tags "$SOCK/$V")
"$D" create other.store 8 >/dev/null
expect_fail "a replica of another volume" "replica of volume" "$Z" replicate "$V" other.store --origin other.origin
expect_eq "the other store is untouched" "8" "$(tags other.store --origin other.origin)"
expect_fail "a missing replica" "no such|not found|doesn't exist|cannot open" "$Z" replicate "$V" nosuch.store
expect_fail "an unknown volume" "not defined" "$Z" replicate nosuch rep.sock
expect_fail "the reserved kind in a schedule" "kind of the snapshots zumastor replicate takes" "$Z" define schedule "$V" --custom replication,3
expect_eq "the refusals left the source's snapshots alone" "$before" "$(tags "$SOCK/$V")"
# A replica whose shared snapshots are gone: the source deleted its bases.
for t in $before; do "$Z" delete "$V" "$t" >/dev/null; done
expect_fail "a replica sharing no snapshot" "shares no snapshot" "$Z" replicate "$V" rep.sock
expect_eq "and nothing was taken for it" "" "$(tags "$SOCK/$V")"
expect_eq "the replica kept its snapshots" "0 2 4 6" "$(tags rep.sock)"

finish
