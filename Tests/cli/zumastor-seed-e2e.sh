#!/usr/bin/env bash
# The seed guide's single-machine examples, end to end, on ext4 and on xfs, each with its
# own ZUMASTOR_ROOT and loop devices: 10.3 (a volume on loopback devices, symlinked paths),
# 10.7 (periodic snapshots, df, hourly.0), 10.8 (tar from hourly.0), 10.9 (50 hourly
# snapshots, 24 kept), 10.17 (revert), 10.16 (enlarge and shrink origin and store, ext4),
# 10.4 (restart after the devices went away, through /etc/init.d/zumastor), 10.5 (removal
# leaving nothing behind); then the schedule firing by itself, --zero, the define master
# options, the systemd unit, and the bad input of these verbs.
# Usage: Tests/cli/zumastor-seed-e2e.sh PATH/TO/zumastor
. "$(dirname "$0")/lib.sh"
Z=${1:?usage: zumastor-seed-e2e.sh PATH/TO/zumastor}
HERE=$(cd "$(dirname "$0")/../.." && pwd)
cd "$WORK"

require_root_and_fuse "zumastor tests"

VOLS=()
LOOPS=()
ROOTS=()
seed_cleanup() {
    # The exporters, agents and servers of our roots and volumes, by their pids.
    for r in "${ROOTS[@]}"; do ZUMASTOR_ROOT=$r stop_volume_processes "$Z" "${VOLS[@]}"; done
    unmount_under "$WORK"
    release_devices_under "$WORK"
    for l in "${LOOPS[@]}"; do losetup -d "$l" 2>/dev/null; done
    remove_device_names "${VOLS[@]}"
    cleanup
}
trap seed_cleanup EXIT

# used DIR: the used 1K blocks df reports for the filesystem mounted at DIR.
used() { df -P "$1" | awk 'NR == 2 { print $3 }'; }
json() { "$Z" status "$1" --json | python3 -c "import json,sys; d=json.load(sys.stdin); print($2)"; }

# scenario FS: the seed's examples 10.3 to 10.17 on filesystem FS.
scenario() {
    local fs=$1
    export ZUMASTOR_ROOT="$WORK/root-$fs"
    ROOTS+=("$ZUMASTOR_ROOT")
    local V=zs$$$fs
    VOLS+=("$V")
    local M="$ZUMASTOR_ROOT/var/run/zumastor/mount/$V" S="$ZUMASTOR_ROOT/var/run/zumastor/snapshot/$V"
    local mkfs mountopts=() shortfs
    case $fs in
        ext4) mkfs="mkfs.ext4 -q" ;;
        xfs) mkfs="mkfs.xfs -q -f"; mountopts=(--mountopts nouuid) ;;
    esac

    # 10.3: a volume on loopback devices (symbolic links to them, as LVM gives).
    truncate -s 512M "vg-$fs.img"; truncate -s 256M "snap-$fs.img"
    local origin store
    origin=$(losetup -f --show "$WORK/vg-$fs.img") && LOOPS+=("$origin")
    store=$(losetup -f --show "$WORK/snap-$fs.img") && LOOPS+=("$store")
    mkdir -p "sysvg-$fs"; ln -s "$origin" "sysvg-$fs/test"; ln -s "$store" "sysvg-$fs/test_snap"
    $mkfs "sysvg-$fs/test" >/dev/null 2>&1
    expect_eq "$fs 10.3: define volume on symlinked loop devices" "Successfully created and initialized volume '$V'." \
        "$("$Z" define volume "$V" "sysvg-$fs/test" "sysvg-$fs/test_snap" --initialize "${mountopts[@]}" 2>&1)"
    expect_eq "$fs 10.3: the symlinks are resolved" "$origin $store" "$(json "$V" 'd["origin"], d["store"]')"
    expect_eq "$fs 10.3: define master" "Volume '$V' is a master, mounted at $M." "$("$Z" define master "$V" 2>&1)"
    expect_ok "$fs 10.3: df shows the volume mounted" sh -c "df | grep -q '^/dev/mapper/$V .*$M\$'"
    echo "before any snapshot" > "$M/base.txt"

    # 10.7: hourly snapshots, df, links.
    expect_eq "$fs 10.7: define schedule --hourly 24" "Schedule of '$V': hourly 24." "$("$Z" define schedule "$V" --hourly 24 2>&1)"
    expect_eq "$fs 10.7: the first snapshot is 0" "0" "$("$Z" snapshot "$V" hourly 2>&1)"
    local first; first=$(readlink "$S/hourly.0")
    expect_ok "$fs 10.7: hourly.0 names a YYYY.MM.DD-HH.MM.SS directory" sh -c "echo '$first' | grep -qE '^[0-9]{4}\.[0-9]{2}\.[0-9]{2}-[0-9]{2}\.[0-9]{2}\.[0-9]{2}(\.[0-9]+)?\$'"
    expect_ok "$fs 10.7: df shows $V(0) at the snapshot directory" sh -c "df | grep -qF '/dev/mapper/$V(0) ' && df | grep -qF '$S/$first'"
    sync
    local origin_before snap_before
    origin_before=$(used "$M"); snap_before=$(used "$S/$first")
    for i in $(seq 20); do echo "This is the first file!" > "$M/foo$i.txt"; done
    sync
    [ "$(used "$M")" != "$origin_before" ] && ok "$fs 10.7: writing changes the origin's df" || not_ok "$fs 10.7: origin df unchanged" "$origin_before"
    expect_eq "$fs 10.7: the snapshot's df does not change" "$snap_before" "$(used "$S/$first")"
    expect_ok "$fs 10.7: the snapshot does not see the new file" test ! -e "$S/$first/foo1.txt"
    expect_eq "$fs 10.7: the second snapshot is 2 (ids advance by two)" "2" "$("$Z" snapshot "$V" hourly 2>&1)"
    expect_ok "$fs 10.7: df shows $V(2)" sh -c "df | grep -qF '/dev/mapper/$V(2) '"
    expect_eq "$fs 10.7: hourly.1 is the first snapshot" "$first" "$(readlink "$S/hourly.1")"
    expect_eq "$fs 10.7: hourly.0 sees the file" "This is the first file!" "$(cat "$S/hourly.0/foo1.txt" 2>&1)"
    expect_eq "$fs 10.7: status --json lists kinds and mount directories" "[0, 2] hourly $S/$first" \
        "$(json "$V" '[s["id"] for s in d["snapshots"]], d["snapshots"][0]["kinds"][0], d["snapshots"][0]["mountDirectory"]')"

    # 10.8: a backup with tar from hourly.0, consistent while the origin changes.
    "$Z" snapshot "$V" hourly >/dev/null
    tar -czf "backup-$fs.tgz" -C "$S/hourly.0" . && ok "$fs 10.8: tar from hourly.0" || not_ok "$fs 10.8: tar"
    echo "after the backup" > "$M/base.txt"
    mkdir -p "restore-$fs" && tar -xzf "backup-$fs.tgz" -C "restore-$fs"
    expect_eq "$fs 10.8: the backup holds the snapshot's state" "before any snapshot" "$(cat "restore-$fs/base.txt" 2>&1)"
    expect_eq "$fs 10.8: the snapshot keeps its state after origin writes" "before any snapshot" "$(cat "$S/hourly.0/base.txt" 2>&1)"

    # 10.9: 50 hourly snapshots: 24 kept, the rest unmounted and deleted.
    local n=0 failures=0
    while [ $n -lt 50 ]; do "$Z" snapshot "$V" hourly >/dev/null 2>>"err-$fs" || failures=$((failures + 1)); n=$((n + 1)); done
    [ "$failures" -eq 0 ] && ok "$fs 10.9: 50 snapshots taken without error" || not_ok "$fs 10.9: $failures of 50 snapshots failed" "$(cat "err-$fs")"
    expect_eq "$fs 10.9: df shows 24 snapshots plus the origin" "25" "$(df -P | grep -c "$V")"
    expect_eq "$fs 10.9: the store holds 24 snapshots" "24" "$(json "$V" 'd["snapshotCount"]')"
    expect_eq "$fs 10.9: hourly.0 to hourly.23, no hourly.24" "24 no" "$(ls "$S" | grep -c '^hourly\.') $([ -e "$S/hourly.24" ] && echo yes || echo no)"
    expect_eq "$fs 10.9: only the kept snapshots' directories remain" "24" "$(find "$S" -mindepth 1 -maxdepth 1 -type d | wc -l)"
    expect_eq "$fs 10.9: read-only devices only for the kept snapshots" "24" "$(json "$V" 'sum(1 for x in d["devices"] if not x["writable"])')"

    # 10.17: revert to a snapshot.
    local keep; keep=$("$Z" snapshot "$V" 2>&1)
    rm -f "$M"/foo*.txt; echo "changed after $keep" > "$M/base.txt"; sync
    expect_fail "$fs 10.17: revert refuses while the origin is mounted" "is mounted at .*zumastor stop master" "$Z" revert "$V" "$keep"
    expect_eq "$fs 10.17: nothing changed by the refusal" "changed after $keep" "$(cat "$M/base.txt")"
    expect_ok "$fs 10.17: stop master" "$Z" stop master "$V"
    expect_eq "$fs 10.17: stop master unmounts origin and snapshots" "" "$(df -P | grep "$V")"
    expect_ok "$fs 10.17: the volume keeps running (device there)" test -b "/dev/mapper/$V"
    expect_fail "$fs 10.17: revert to a missing snapshot" "doesn't exist" "$Z" revert "$V" 999
    expect_ok "$fs 10.17: revert" "$Z" revert "$V" "$keep"
    expect_ok "$fs 10.17: start master" "$Z" start master "$V"
    local dir; dir=$(json "$V" "[s['mountDirectory'] for s in d['snapshots'] if s['id'] == $keep][0]")
    expect_ok "$fs 10.17: the origin equals the snapshot again" diff -r "$M" "$dir"
    expect_eq "$fs 10.17: the origin and the 25 snapshots (24 hourly, 1 manual) are mounted again" "26" "$(df -P | grep -c "$V")"

    # 10.16 (ext4): enlarge and shrink the origin and the store.
    if [ "$fs" = ext4 ]; then
        local md5_before; md5_before=$(md5sum < "$S/hourly.0/base.txt")
        expect_fail "$fs 10.16: resize of a mounted origin" "zumastor stop master" "$Z" resize "$V" --origin 1G
        "$Z" stop master "$V" >/dev/null
        expect_fail "$fs 10.16: resize beyond the device, master stopped" "grow it before" "$Z" resize "$V" --origin 1G
        truncate -s 768M "vg-$fs.img" && losetup -c "$origin"
        expect_ok "$fs 10.16.1: resize --origin 768M" "$Z" resize "$V" --origin 768M
        e2fsck -fy "/dev/mapper/$V" >/dev/null 2>&1
        expect_ok "$fs 10.16.1: resize2fs to 768M" resize2fs "/dev/mapper/$V" 768M
        "$Z" start master "$V" >/dev/null
        expect_ok "$fs 10.16.1: df shows the larger origin" sh -c "[ \$(df -P '$M' | awk 'NR==2{print \$2}') -gt 600000 ]"
        expect_ok "$fs 10.16.1: snapshots keep their size" sh -c "[ \$(df -P '$S/hourly.0' | awk 'NR==2{print \$2}') -lt 600000 ]"
        "$Z" stop master "$V" >/dev/null
        e2fsck -fy "/dev/mapper/$V" >/dev/null 2>&1
        expect_ok "$fs 10.16.2: resize2fs down to 384M" resize2fs "/dev/mapper/$V" 384M
        expect_ok "$fs 10.16.2: resize --origin 384M (copies out what snapshots need)" "$Z" resize "$V" --origin 384M
        "$Z" start master "$V" >/dev/null
        expect_ok "$fs 10.16.2: df shows the smaller origin" sh -c "[ \$(df -P '$M' | awk 'NR==2{print \$2}') -lt 400000 ]"
        expect_eq "$fs 10.16.2: the snapshots read as before" "$md5_before" "$(md5sum < "$S/hourly.0/base.txt")"
        truncate -s 384M "vg-$fs.img" && losetup -c "$origin" && ok "$fs 10.16.2: the origin device shrinks after" || not_ok "$fs shrink device"
        expect_ok "$fs 10.16.2: e2fsck of a snapshot after the shrink" e2fsck -fn "/dev/mapper/$V($keep)"
        truncate -s 512M "snap-$fs.img" && losetup -c "$store"
        expect_ok "$fs 10.16.3: resize --snapshot 512M" "$Z" resize "$V" --snapshot 512M
        expect_eq "$fs 10.16.3: status --usage shows the new store size" "536870912" "$(json "$V" 'd["storeBytes"]')"
        expect_ok "$fs 10.16.4: resize --snapshot 200M" "$Z" resize "$V" --snapshot 200M
        truncate -s 200M "snap-$fs.img" && losetup -c "$store"
        expect_eq "$fs 10.16.4: the smaller store" "209715200" "$(json "$V" 'd["storeBytes"]')"
        expect_fail "$fs 10.16: a store below the minimum" "below the minimum" "$Z" resize "$V" --snapshot 64K
    fi

    # 10.4: the devices vanish (a reboot without the loop set-up), then come back.
    local agent server
    agent=$(json "$V" 'd["agentPID"]'); server=$(json "$V" 'd["serverPID"]')
    expect_ok "$fs 10.4: /etc/init.d/zumastor stop" env ZUMASTOR="$Z" "$HERE/etc/init.d/zumastor" stop
    expect_ok "$fs 10.4: the agent and the server are gone" sh -c "! kill -0 $agent 2>/dev/null && ! kill -0 $server 2>/dev/null"
    expect_fail "$fs 10.4: init script status says not running" "not running" env ZUMASTOR="$Z" "$HERE/etc/init.d/zumastor" status
    expect_ok "$fs 10.4: the store checks clean" "$(dirname "$Z")/ddsnap" check "$store"
    losetup -d "$origin" "$store"
    expect_fail "$fs 10.4: start without the devices fails clearly" "$V" "$Z" start
    expect_eq "$fs 10.4: nothing is mounted" "" "$(df -P | grep "$V")"
    losetup "$origin" "$WORK/vg-$fs.img" && losetup "$store" "$WORK/snap-$fs.img"
    expect_ok "$fs 10.4: /etc/init.d/zumastor restart" env ZUMASTOR="$Z" "$HERE/etc/init.d/zumastor" restart
    expect_eq "$fs 10.4: df shows the origin and its 25 snapshots again" "26" "$(df -P | grep -c "$V")"
    expect_ok "$fs 10.4: init script status says running" env ZUMASTOR="$Z" "$HERE/etc/init.d/zumastor" status
    expect_eq "$fs 10.4: the origin's data after the restart" "after the backup" "$(cat "$M/base.txt" 2>&1)"

    # The schedule fires by itself (a scaled clock: an "hour" of 1 second).
    local before; before=$(json "$V" 'd["snapshots"][-1]["id"]')
    "$Z" stop master "$V" >/dev/null
    ZUMASTOR_SCHEDULE_HOUR_SECONDS=1 "$Z" start master "$V" >/dev/null
    sleep 3.5
    "$Z" stop master "$V" >/dev/null
    local after; after=$(json "$V" 'd["snapshots"][-1]["id"]')
    [ "$after" -gt "$before" ] && ok "$fs: the schedule took snapshots by itself ($before -> $after)" || not_ok "$fs: no scheduled snapshot" "$(cat "$ZUMASTOR_ROOT/var/log/zumastor/$V/master.log")"
    expect_ok "$fs: master.log records them" grep -q "took hourly snapshot" "$ZUMASTOR_ROOT/var/log/zumastor/$V/master.log"
    expect_eq "$fs: the rotation still keeps 24 hourly (and the manual one)" "25" "$(json "$V" 'd["snapshotCount"]')"
    "$Z" start master "$V" >/dev/null

    # 10.5: removal leaves no mounts, loop devices, processes or files.
    agent=$(json "$V" 'd["agentPID"]'); server=$(json "$V" 'd["serverPID"]')
    expect_eq "$fs 10.5: forget volume" "Forgot volume '$V'." "$("$Z" forget volume "$V" 2>&1)"
    expect_ok "$fs 10.5: no agent or server left" sh -c "! kill -0 $agent 2>/dev/null && ! kill -0 $server 2>/dev/null"
    expect_ok "$fs 10.5: nothing mounted" sh -c "! grep -q '$ZUMASTOR_ROOT' /proc/mounts"
    expect_ok "$fs 10.5: no device names" sh -c "! ls /dev/mapper | grep -q '$V'"
    expect_eq "$fs 10.5: no loop device but the two we made" "2" "$(losetup -l -n -O BACK-FILE | grep -c "$WORK")"
    # This host's key (etc/zumastor, made by the first start) belongs to the host: it stays.
    expect_eq "$fs 10.5: no files left under ZUMASTOR_ROOT but this host's key" "" \
        "$(find "$ZUMASTOR_ROOT" \( -type f -o -type s -o -type l \) -not -path "$ZUMASTOR_ROOT/etc/zumastor/*")"
    losetup -d "$origin" "$store"
    rm -f "vg-$fs.img" "snap-$fs.img"
}

scenario ext4
scenario xfs

# --zero, the define master options, and bad input, on a small ext4 volume.
export ZUMASTOR_ROOT="$WORK/root-opts"
ROOTS+=("$ZUMASTOR_ROOT")
V=zo$$
VOLS+=("$V")
M="$ZUMASTOR_ROOT/var/run/zumastor/mount/$V"
S="$ZUMASTOR_ROOT/var/run/zumastor/snapshot/$V"
head -c 64M /dev/urandom > o.img; truncate -s 64M s.img
expect_fail "--zero needs --initialize" "only with --initialize" "$Z" define volume "$V" o.img s.img --zero
expect_ok "define volume --initialize --zero" "$Z" define volume "$V" o.img s.img --initialize --zero
expect_ok "--zero: the volume reads as zeros" cmp -n $((64 << 20)) "/dev/mapper/$V" /dev/zero
mkfs.ext4 -q "/dev/mapper/$V"
expect_fail "schedule on a volume that is not a master" "neither a master" "$Z" define schedule "$V" --hourly 2
expect_fail "--export through the kernel's NFS server, which this kernel lacks" "does not run here" "$Z" define master "$V" --export --nfs-server kernel
expect_ok "define master --dotsnapshot" "$Z" define master "$V" --dotsnapshot
echo "the snapshot sees this" > "$M/file"
expect_fail "snapshot of a kind not in the schedule" "no 'hourly' snapshots in its schedule" "$Z" snapshot "$V" hourly
expect_fail "a bad kind name" "must be 1 to 16" "$Z" snapshot "$V" "Bad/Kind"
expect_ok "define schedule --custom backup,2" "$Z" define schedule "$V" --custom backup,2
id=$("$Z" snapshot "$V" backup)
expect_eq "the first snapshot of this volume is 0" "0" "$id"
expect_eq "--dotsnapshot: .snapshot/backup.0 in the origin" "the snapshot sees this" "$(cat "$M/.snapshot/backup.0/file" 2>&1)"
sleep 1.1; "$Z" snapshot "$V" backup >/dev/null; sleep 1.1; "$Z" snapshot "$V" backup >/dev/null
expect_eq "custom kinds rotate (2 kept)" "2 2" "$(find "$S" -mindepth 1 -maxdepth 1 -type d | wc -l) $(json "$V" 'd["snapshotCount"]')"
expect_ok "status VOL SNAP" sh -c "'$Z' status '$V' 4 | grep -q 'kinds: *backup'"
expect_ok "status --usage shows unique and shared space" sh -c "'$Z' status '$V' --usage | grep -q UNIQUE"
expect_fail "status of a missing snapshot" "doesn't exist" "$Z" status "$V" 99
id=$("$Z" snapshot "$V")
dir=$(json "$V" "[s['mountDirectory'] for s in d['snapshots'] if s['id'] == $id][0]")
expect_ok "a manual snapshot is mounted" mountpoint -q "$dir"
expect_ok "delete a mounted manual snapshot" "$Z" delete "$V" "$id"
expect_eq "delete: unmounted, directory gone, not listed" "no no" "$([ -e "$dir" ] && echo yes || echo no) $(json "$V" "'yes' if any(s['id'] == $id for s in d['snapshots']) else 'no'")"
expect_fail "delete of a missing snapshot" "doesn't exist" "$Z" delete "$V" "$id"
expect_ok "define master --no-snapmount" "$Z" define master "$V" --no-snapmount
expect_ok "--no-snapmount: no snapshot mounted" sh -c "! df -P | grep -q '$S'"
id=$("$Z" snapshot "$V")
expect_eq "--no-snapmount: a manual snapshot is not mounted" "False None" "$(json "$V" "[(s['mounted'], s['mountDirectory']) for s in d['snapshots'] if s['id'] == $id][0][0], [s['mountDirectory'] for s in d['snapshots'] if s['id'] == $id][0]")"
expect_ok "remount to another directory" "$Z" remount "$V" "$WORK/elsewhere" -
expect_ok "remount: mounted at the new directory" mountpoint -q "$WORK/elsewhere"
expect_ok "remount: not at the old one" sh -c "! mountpoint -q '$M'"
expect_fail "remount to a relative path" "absolute" "$Z" remount "$V" relative -
expect_fail "revert of an unknown volume" "not defined" "$Z" revert nosuch 0
expect_fail "resize without a size" "--origin SIZE and/or --snapshot SIZE" "$Z" resize "$V"
expect_fail "start master of a volume that is not running" "not running" sh -c "'$Z' stop volume '$V' >/dev/null && '$Z' start master '$V'"
expect_fail "snapshot of a stopped volume tells to start the service" "start the service" "$Z" snapshot "$V"
expect_ok "forget volume" "$Z" forget volume "$V"
expect_ok "forget: nothing mounted" sh -c "! grep -q '$WORK/' /proc/mounts"

# The store nearly full, then full: the warning (status, snapshot, log) and the policy's effect.
V=zf$$
VOLS+=("$V")
M="$ZUMASTOR_ROOT/var/run/zumastor/mount/$V"
truncate -s 64M fo.img; truncate -s 16M fs.img
expect_fail "a fill level out of range" "1 to 100" "$Z" define volume "$V" fo.img fs.img --initialize --warn-fill 0
expect_ok "define volume --warn-fill 20" "$Z" define volume "$V" fo.img fs.img --initialize --warn-fill 20
mkfs.ext4 -q "/dev/mapper/$V"
"$Z" define master "$V" >/dev/null
"$Z" define schedule "$V" --hourly 4 >/dev/null
S="$ZUMASTOR_ROOT/var/run/zumastor/snapshot/$V"
id=$("$Z" snapshot "$V" hourly)
head -c 8M /dev/urandom > "$M/eight"; sync
out=$("$Z" snapshot "$V" hourly 2>&1)
echo "$out" | grep -q "warning: the snapshot store of '$V' is [0-9]*% full (warning level 20%)" && ok "snapshot warns past the fill level" || not_ok "no fill warning" "$out"
out=$("$Z" status 2>&1 >/dev/null)
echo "$out" | grep -q "warning: the snapshot store of '$V' is [0-9]*% full" && ok "any command warns on stderr past the fill level" || not_ok "no fill warning from status on stderr" "$out"
squashed_dirs=$(json "$V" '" ".join(s["mountDirectory"] or "" for s in d["snapshots"])')
expect_ok "status warns past the fill level" sh -c "'$Z' status '$V' | grep -q 'warning: *the snapshot store is'"
expect_ok "master.log records the warning" grep -q "warning.*full (warning level 20%)" "$ZUMASTOR_ROOT/var/log/zumastor/$V/master.log"
head -c 40M /dev/urandom > forty.src
cp forty.src "$M/forty" && sync && echo 3 > /proc/sys/vm/drop_caches
expect_ok "writes go on when the store fills (read back from the device)" cmp forty.src "$M/forty"
expect_eq "the mounted snapshots are squashed (store-full policy)" "squashed squashed" "$(json "$V" '" ".join(s["state"] for s in d["snapshots"])')"
expect_ok "status shows the squashed snapshots" sh -c "'$Z' status '$V' | grep -q 'squashed:'"
# Issue 19, item 6: squashed snapshots are unmounted by the running master (its agent looks
# every 10 s), their directories and hourly.N links removed.
# The links follow the directories in the same pass: wait for both.
for _ in $(seq 150); do
    left=$(for d in $squashed_dirs; do [ -e "$d" ] && echo "$d"; done)
    [ -z "$left" ] && [ -z "$(find "$S" -maxdepth 1 -name 'hourly.*')" ] && break; sleep 0.1
done
expect_eq "19.6: the squashed snapshots are unmounted and their directories gone" "" "$left"
expect_eq "19.6: no hourly.N link names a squashed snapshot" "" "$(find "$S" -maxdepth 1 -name 'hourly.*')"
expect_eq "19.6: nothing of the volume's snapshots is mounted" "0" "$(grep -c "$S/" /proc/mounts)"
expect_eq "19.6: no snapshot device stays attached" "1" "$(json "$V" 'len(d["devices"])')"
expect_ok "forget the full volume" "$Z" forget volume "$V"

# The systemd unit is valid (pointing at this build).
if command -v systemd-analyze >/dev/null; then
    sed "s|/usr/local/sbin/zumastor|$Z|" "$HERE/etc/systemd/zumastor.service" > zumastor.service
    expect_ok "systemd-analyze verify zumastor.service" systemd-analyze verify "$WORK/zumastor.service"
fi
finish
