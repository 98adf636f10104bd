#!/usr/bin/env bash
# zumastor end to end, as root, with its own ZUMASTOR_ROOT and loop files: define, status,
# stop and start (one volume and the whole service), forget leaving nothing behind, and the
# bad input the tool must refuse without changing anything.
# Usage: Tests/cli/zumastor-e2e.sh PATH/TO/zumastor
. "$(dirname "$0")/lib.sh"
Z=${1:?usage: zumastor-e2e.sh PATH/TO/zumastor}
HERE=$(cd "$(dirname "$0")/../.." && pwd)
export ZUMASTOR_ROOT="$WORK/root"
cd "$WORK"

require_root_and_fuse "zumastor tests"

VOLS=()
MOUNTS=()
z_cleanup() {
    unmount_listed "${MOUNTS[@]}"
    # Agents and servers of our volumes, by the pids their status reports, then anything bound to our files.
    stop_volume_processes "$Z" "${VOLS[@]}"
    release_devices_under "$WORK"
    remove_device_names "${VOLS[@]}"
    cleanup
}
trap z_cleanup EXIT

V=zz$$
VOLS+=("$V" "${V}b")
truncate -s 256M origin.img; truncate -s 128M store.img
ln -s "$WORK/origin.img" origin-link
ln -s "$WORK/store.img" store-link
expect_eq "define volume (symlinked paths, --initialize)" "Successfully created and initialized volume '$V'." \
    "$("$Z" define volume "$V" origin-link store-link --initialize 2>&1)"
expect_eq "the origin appears as /dev/mapper/$V" "yes" "$([ -b "$(readlink -f "/dev/mapper/$V")" ] && echo yes)"
expect_eq "the configuration records the resolved paths" "$WORK/origin.img $WORK/store.img" \
    "$("$Z" status "$V" --json | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["origin"], d["store"])')"
expect_ok "config under ZUMASTOR_ROOT/var/lib/zumastor" test -f "$ZUMASTOR_ROOT/var/lib/zumastor/volumes/$V/config.json"
expect_ok "server socket under ZUMASTOR_ROOT/var/run/zumastor/servers" test -S "$ZUMASTOR_ROOT/var/run/zumastor/servers/$V"
expect_ok "log under ZUMASTOR_ROOT/var/log/zumastor/$V" test -s "$ZUMASTOR_ROOT/var/log/zumastor/$V/server.log"
# Root's alone: the state, the host's key and the server's socket; an unprivileged user
# reaching their directories is refused.
"$Z" key >/dev/null
chmod 755 "$WORK"
expect_eq "modes: state, configuration, /etc/zumastor, host key, server socket" "700 600 700 600 600" \
    "$(stat -c %a "$ZUMASTOR_ROOT/var/lib/zumastor" "$ZUMASTOR_ROOT/var/lib/zumastor/volumes/$V/config.json" "$ZUMASTOR_ROOT/etc/zumastor" \
        "$ZUMASTOR_ROOT/etc/zumastor/host-key.pem" "$ZUMASTOR_ROOT/var/run/zumastor/servers/$V" | tr '\n' ' ' | sed 's/ $//')"
as_nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }
expect_ok "an unprivileged user reaches the socket's directory" as_nobody test -x "$ZUMASTOR_ROOT/var/run/zumastor/servers"
expect_fail "... and cannot connect to the control socket" "Permission denied" \
    as_nobody python3 -c "import socket; socket.socket(socket.AF_UNIX).connect('$ZUMASTOR_ROOT/var/run/zumastor/servers/$V')"
expect_fail "... nor read a volume's configuration" "Permission denied" as_nobody cat "$ZUMASTOR_ROOT/var/lib/zumastor/volumes/$V/config.json"
expect_fail "... nor the host's key" "Permission denied" as_nobody cat "$ZUMASTOR_ROOT/etc/zumastor/host-key.pem"
expect_fail "... nor get a volume's status" "not defined|denied" as_nobody "$Z" status "$V"
chmod 700 "$WORK"
expect_ok "mkfs.ext4 on the volume" mkfs.ext4 -q "/dev/mapper/$V"
mkdir -p mnt && mount "/dev/mapper/$V" mnt && MOUNTS+=("$WORK/mnt") && echo "kept across restarts" > mnt/file && umount mnt
out=$("$Z" status --usage 2>&1)
echo "$out" | grep -q "Volume $V: running" && echo "$out" | grep -q "device:  *\/dev\/mapper\/$V" && ok "status --usage shows the volume running with its device" || not_ok "status --usage" "$out"
# One line per volume, against the expected text (sizes are the files'; no snapshot yet).
# (Columns compared with their spacing squeezed: the name's length sets the first one's width.)
expect_eq "status: one line per volume" "VOLUME STATE ROLE ORIGIN STORE USED SNAPS NEWEST REPLICATION
VOL running volume 256M 128M 0% 0 - -" "$("$Z" status 2>&1 | sed "s/$V/VOL/g" | tr -s ' ')"

# Bad input: clear message, non-zero exit, nothing changed.
truncate -s 256M o2.img; truncate -s 64K tiny.img; truncate -s 128M s2.img
expect_fail "unknown volume" "not defined" "$Z" status nosuch
expect_fail "name with a slash" "must be 1 to 64 letters" "$Z" define volume "a/b" o2.img s2.img --initialize
expect_fail "name with a space" "must be 1 to 64 letters" "$Z" define volume "a b" o2.img s2.img --initialize
expect_fail "device already used by another volume" "already used by volume '$V'" "$Z" define volume "${V}b" o2.img store.img --initialize
expect_fail "missing device" "doesn't exist" "$Z" define volume "${V}b" "$WORK/nope.img" s2.img --initialize
expect_fail "snapstore smaller than the minimum" "too small|at least|minimum" "$Z" define volume "${V}b" o2.img tiny.img --initialize
expect_fail "store of another origin without --initialize" "no snapshot store on .*s2.img; use --initialize|snapshot store of" "$Z" define volume "${V}b" o2.img s2.img
expect_fail "the same volume twice" "already defined" "$Z" define volume "$V" o2.img s2.img --initialize
expect_fail "start of an unknown volume" "not defined" "$Z" start volume nosuch
expect_fail "stray words" "expected nothing" "$Z" stop everything now
expect_eq "nothing was defined by the refusals" "$V" "$(ls "$ZUMASTOR_ROOT/var/lib/zumastor/volumes")"

# Stop and start: one volume, then the whole service.
expect_ok "stop volume" "$Z" stop volume "$V"
out=$("$Z" status "$V"); echo "$out" | grep -q "stopped" && [ ! -e "/dev/mapper/$V" ] && ok "stopped: no server, no device" || not_ok "stop volume" "$out"
expect_ok "store checks clean after stop" "$(dirname "$Z")/ddsnap" check store.img
expect_ok "start volume" "$Z" start volume "$V"
mount "/dev/mapper/$V" mnt && expect_eq "data kept across stop and start" "kept across restarts" "$(cat mnt/file)"; umount mnt
expect_ok "stop (the whole service)" "$Z" stop
expect_ok "start (the whole service)" "$Z" start
expect_ok "the volume runs again" sh -c "'$Z' status '$V' | grep -q running"

# Logs: each line stamped with the time, the program, the volume and the level; rotated by
# logrotate with the package's file (paths under this test's ZUMASTOR_ROOT), the running
# server writing on into a new file at its next line, without a signal.
LOG="$ZUMASTOR_ROOT/var/log/zumastor/$V/server.log"
expect_ok "server log lines carry the time, program, volume and level" \
    sh -c "tail -n 1 '$LOG' | grep -qE '^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3} ddsnap\[[0-9]+\] $V (info|notice|warning|error): '"
sed "s|/var/log/zumastor|$ZUMASTOR_ROOT/var/log/zumastor|g" "$HERE/etc/logrotate.d/zumastor" > logrotate.conf
expect_ok "the package's logrotate file, for this root" grep -q "$ZUMASTOR_ROOT/var/log/zumastor/\*/\*.log" logrotate.conf
expect_ok "logrotate rotates the logs" logrotate -f -s "$WORK/logrotate.state" logrotate.conf
expect_ok "... server.log.1 is the old log" grep -q "serving store" "$LOG.1"
"$(dirname "$Z")/ddsnap" create "$ZUMASTOR_ROOT/var/run/zumastor/servers/$V" 900 >/dev/null
expect_ok "... the running server writes its next line to a new server.log" grep -q "created snapshot 900" "$LOG"
expect_ok "... and nothing more to the old one" sh -c "! grep -q 'created snapshot 900' '$LOG.1'"
"$(dirname "$Z")/ddsnap" delete "$ZUMASTOR_ROOT/var/run/zumastor/servers/$V" 900 >/dev/null

# define master: the origin is mounted while the volume runs.
M="$ZUMASTOR_ROOT/var/run/zumastor/mount/$V"
expect_fail "define master of an unknown volume" "not defined" "$Z" define master nosuch
expect_eq "define master" "Volume '$V' is a master, mounted at $M." "$("$Z" define master "$V" 2>&1)"
expect_ok "the origin is mounted at ZUMASTOR_ROOT/var/run/zumastor/mount/$V" mountpoint -q "$M"
expect_eq "the master mount holds the volume's files" "kept across restarts" "$(cat "$M/file" 2>&1)"
echo "written through the master mount" > "$M/second"
expect_ok "status names the role" sh -c "'$Z' status '$V' | grep -q 'master, origin mounted at $M'"
exec 9<"$M/second"
expect_fail "stop refuses while files are open on the mount, naming the user" "in use, nothing was stopped: pid [0-9]+ \\(.*\\): $M/second" "$Z" stop volume "$V"
exec 9<&-
expect_ok "the volume still runs after the refusal" sh -c "'$Z' status '$V' | grep -q running"
expect_ok "stop volume unmounts the master" "$Z" stop volume "$V"
! mountpoint -q "$M" && ok "stopped master: not mounted" || not_ok "stopped master still mounted"
expect_ok "start volume mounts the master again" "$Z" start volume "$V"
expect_eq "the master's files after stop and start" "written through the master mount" "$(cat "$M/second" 2>&1)"

# forget leaves no mounts, loop devices, processes or files behind.
pid=$("$Z" status "$V" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["serverPID"])')
expect_eq "forget volume" "Forgot volume '$V'." "$("$Z" forget volume "$V" 2>&1)"
! kill -0 "$pid" 2>/dev/null && ok "forget: the server is gone" || not_ok "forget: server $pid still runs"
! losetup -l | grep -q "$WORK" && ok "forget: no loop device left" || not_ok "forget: loop devices left" "$(losetup -l)"
! grep -q "$WORK" /proc/mounts && ok "forget: nothing mounted" || not_ok "forget: mounts left" "$(grep "$WORK" /proc/mounts)"
[ ! -e "/dev/mapper/$V" ] && ok "forget: no device name" || not_ok "forget: /dev/mapper/$V left"
# This host's key (etc/zumastor) belongs to the host, not to the volume: it stays.
left=$(find "$ZUMASTOR_ROOT" \( -type f -o -type s -o -type l \) -not -path "$ZUMASTOR_ROOT/etc/zumastor/*")
expect_eq "forget: no files left under ZUMASTOR_ROOT but this host's key" "" "$left"
expect_ok "the origin keeps its data after forget" sh -c "e2fsck -fn '$WORK/origin.img' >/dev/null 2>&1"

# Issue 19: what a sysadmin broke in half an hour. A second volume W, on files.
W=zw$$
VOLS+=("$W")
WM="$ZUMASTOR_ROOT/var/run/zumastor/mount/$W"
WS="$ZUMASTOR_ROOT/var/run/zumastor/snapshot/$W"
wjson() { "$Z" status "$W" --json | python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
truncate -s 256M w-origin.img; truncate -s 32M w-store.img

# 2. One disk under two names: identities are compared, not names.
wloop=$(losetup -f --show "$WORK/w-origin.img")
expect_fail "19.2: a loop device over the origin as the store" "same storage" "$Z" define volume "$W" w-origin.img "$wloop" --initialize
expect_fail "19.2: the store as the file behind the origin's loop device" "same storage" "$Z" define volume "$W" "$wloop" w-origin.img --initialize
mkfs.ext4 -q "$wloop" && mkdir -p wmnt && mount "$wloop" wmnt && MOUNTS+=("$WORK/wmnt")
expect_fail "19.2: a mounted filesystem as the origin" "holds the filesystem mounted at $WORK/wmnt" "$Z" define volume "$W" "$wloop" w-store.img --initialize
expect_fail "19.2: the file behind a mounted loop device as the origin" "mounted at $WORK/wmnt" "$Z" define volume "$W" w-origin.img w-store.img --initialize
umount wmnt; losetup -d "$wloop"
expect_eq "19.2: nothing was defined by the refusals" "" "$(ls "$ZUMASTOR_ROOT/var/lib/zumastor/volumes")"
expect_ok "19.2: the same files, unmounted, are accepted" "$Z" define volume "$W" w-origin.img w-store.img --initialize
truncate -s 256M w2-origin.img
wloop=$(losetup -f --show "$WORK/w-store.img")
expect_fail "19.2: another volume's store under another name" "already used by volume '$W'" "$Z" define volume "${W}x" w2-origin.img "$wloop" --initialize
losetup -d "$wloop"

# 1. A shrink never deletes a snapshot: below the filesystem's size it needs --force, and a
#    store too small for the copy-outs is refused with the shortfall, every snapshot kept.
mkfs.ext4 -q "/dev/mapper/$W"
for _ in 1 2 3; do "$Z" snapshot "$W" >/dev/null; done
expect_fail "19.1: shrink below the ext4 filesystem" "ext filesystem on volume '$W' is 268,435,456 bytes.*resize2fs.*--force" "$Z" resize "$W" --origin 64M
expect_fail "19.1: --force, the store too small for the copy-outs" "bytes short.*no snapshot was touched" "$Z" resize "$W" --origin 64M --force
expect_eq "19.1: all three snapshots are still there" "3" "$(wjson 'len(d["snapshots"])')"
expect_eq "19.1: the origin keeps its size" "268435456" "$(wjson 'd["originBytes"]')"
expect_ok "19.1: the store checks clean" sh -c "'$Z' stop volume '$W' && '$(dirname "$Z")/ddsnap' check '$WORK/w-store.img' && '$Z' start volume '$W'"

# 3. After kill -9 of the server, stop releases its devices, names and block-file mount.
wpid=$(wjson 'd["serverPID"]')
kill -9 "$wpid"; for _ in $(seq 50); do kill -0 "$wpid" 2>/dev/null || break; sleep 0.1; done
expect_ok "19.3: stop after the server died" "$Z" stop volume "$W"
[ ! -e "/dev/mapper/$W" ] && ok "19.3: no /dev/mapper name left" || not_ok "19.3: /dev/mapper/$W left" "$(ls -l /dev/mapper/)"
! grep -q "$ZUMASTOR_ROOT/var/run/zumastor/devices/$W" /proc/mounts && ok "19.3: no dead block-file mount left" || not_ok "19.3: block-file mount left" "$(grep "$W" /proc/mounts)"
left=$(for f in /sys/block/loop*/loop/backing_file; do grep -l "devices/$W/" "$f" 2>/dev/null; done)
expect_eq "19.3: no loop device bound to the dead block files" "" "$left"
expect_ok "19.3: start again" "$Z" start volume "$W"

# 4. forget with a shell inside the master: refused before anything is unmounted.
"$Z" define master "$W" >/dev/null
"$Z" snapshot "$W" >/dev/null
snapdir=$(wjson '[s["mountDirectory"] for s in d["snapshots"] if s["mountDirectory"]][-1]')
( cd "$WM" && exec sleep 60 ) & holder=$!
PIDS+=("$holder")
sleep 0.3
expect_fail "19.4: forget with a process inside the origin mount" "in use, nothing was stopped: pid $holder \\(sleep\\)" "$Z" forget volume "$W"
mountpoint -q "$snapdir" && ok "19.4: the snapshot is still mounted" || not_ok "19.4: the snapshot was unmounted by the refused forget"
expect_ok "19.4: the origin is still mounted" mountpoint -q "$WM"
expect_eq "19.4: status still shows the snapshot mounted" "$snapdir" "$(wjson '[s["mountDirectory"] for s in d["snapshots"] if s["mountDirectory"]][-1]')"
kill "$holder"; wait "$holder" 2>/dev/null

# 5. Rotation never hands a directory name out again, even within one second.
"$Z" define schedule "$W" --hourly 1 >/dev/null
names=""
for _ in 1 2 3 4; do
    "$Z" snapshot "$W" hourly >/dev/null
    names="$names $(wjson '[s["mountDirectory"] for s in d["snapshots"] if "hourly" in s.get("kinds", [])][-1]' | xargs basename)"
done
expect_eq "19.5: four hourly snapshots, four names" "4" "$(echo $names | tr ' ' '\n' | sort -u | wc -l)"
expect_eq "19.5: names sort in creation order" "$(echo $names | tr ' ' '\n')" "$(echo $names | tr ' ' '\n' | sort)"
# 8. Messages and counts.
hourlies() { wjson 'sum(1 for s in d["snapshots"] if "hourly" in s["kinds"])'; }
"$Z" define schedule "$W" --hourly 3 >/dev/null
for _ in 1 2 3; do "$Z" snapshot "$W" hourly >/dev/null; done
expect_eq "19.8: three hourly snapshots kept" "3" "$(hourlies)"
expect_ok "19.8: lower the hourly count to 1" "$Z" define schedule "$W" --hourly 1
expect_eq "19.8: the rotation ran when the schedule was defined" "1" "$(hourlies)"
expect_fail "19.8: --hourly -1" "'-1' is not a count of snapshots to keep" "$Z" define schedule "$W" --hourly -1
expect_fail "19.8: --hourly too large" "from 1 to 100000" "$Z" define schedule "$W" --hourly 9223372036854775807
expect_fail "19.8: --custom hourly,3" "'hourly' is a scheduled kind, not a custom one: use --hourly 3" "$Z" define schedule "$W" --custom hourly,3
out=$("$Z" define schedule "$W" --custom foo 2>&1)
echo "$out" | grep -q "custom takes NAME,N" && echo "$out" | grep -q "Usage: zumastor define schedule" \
    && ok "19.8: --custom foo shows define schedule's usage" || not_ok "19.8: --custom foo shows define schedule's usage" "$out"
expect_fail "19.8: --origin -5M" "'-5M' is not a size" "$Z" resize "$W" --origin -5M
expect_eq "19.8: the schedule is unchanged by the refusals" "hourly 1" "$(wjson 'd["schedule"][0]["kind"], d["schedule"][0]["keep"], len(d["schedule"])' | sed 's/ 1$//')"
truncate -s 64M blank-origin.img; truncate -s 32M blank-store.img
expect_fail "19.8: a blank store without --initialize" "no snapshot store on $WORK/blank-store.img; use --initialize" "$Z" define volume "${W}b" blank-origin.img blank-store.img
expect_eq "19.8: resize prints byte counts with thousands separators" "Volume '$W': origin 268,435,456 bytes, snapshot store 50,331,648 bytes." "$("$Z" resize "$W" --snapshot 48M 2>&1)"

# 7. A damaged configuration: one line naming the file, the field and the way back; status
#    shows the healthy volumes and marks the damaged one.
WC="$ZUMASTOR_ROOT/var/lib/zumastor/volumes/$W/config.json"
expect_ok "19.7: the previous version of the configuration is kept" test -s "$WC.previous"
cp "$WC" good-config.json
echo "garbage{" > "$WC"
expect_fail "19.7: garbage: status VOL names the file and the way back" "^zumastor: $WC is not valid JSON .*the previous version is in $WC.previous" "$Z" status "$W"
[ "$("$Z" status "$W" 2>&1 | wc -l)" = 1 ] && ok "19.7: one line" || not_ok "19.7: one line" "$("$Z" status "$W" 2>&1)"
expect_fail "19.7: garbage: snapshot refuses clearly" "$WC is not valid JSON" "$Z" snapshot "$W"
python3 -c "import json; d=json.load(open('good-config.json')); d['nextSnapshotTag']=-7; json.dump(d, open('$WC', 'w'))"
expect_fail "19.7: a negative id names the field and its value" "$WC: field 'nextSnapshotTag' is -7" "$Z" status "$W"
truncate -s 256M w3-origin.img; truncate -s 64M w3-store.img
VOLS+=("${W}c")
"$Z" define volume "${W}c" w3-origin.img w3-store.img --initialize >/dev/null
out=$("$Z" status 2>&1); rc=$?
[ $rc -eq 1 ] && echo "$out" | grep -qE "^${W}c +running " && echo "$out" | grep -qE "^$W +damaged " \
    && echo "$out" | grep -q "^$W: CONFIGURATION DAMAGED: $WC: field 'nextSnapshotTag' is -7" \
    && ok "19.7: status shows the healthy volume and marks the damaged one (exit 1)" || not_ok "19.7: status of all volumes" "exit $rc: $out"
out=$("$Z" status --usage 2>&1); rc=$?
[ $rc -eq 1 ] && echo "$out" | grep -q "Volume ${W}c: running" && echo "$out" | grep -q "Volume $W: CONFIGURATION DAMAGED: $WC: field 'nextSnapshotTag' is -7" \
    && ok "19.7: status --usage too" || not_ok "19.7: status --usage of all volumes" "exit $rc: $out"
# A running volume whose configuration is damaged still stops: what is mounted from its
# devices is unmounted and its server stopped (no process left that no command can stop);
# it refuses to start, naming the file.
cp good-config.json "$WC"
wpid=$(wjson 'd["serverPID"]')
# (A master: its origin is mounted, and its snapshots below their directory.)
mount_point="$ZUMASTOR_ROOT/var/run/zumastor/mount/$W"
mountpoint -q "$mount_point" || not_ok "19.7: the master's origin is mounted before the damage"
echo "garbage{" > "$WC"
expect_ok "19.7: stop volume with a damaged configuration" "$Z" stop volume "$W"
! kill -0 "$wpid" 2>/dev/null && ok "19.7: its server is gone" || not_ok "19.7: its server is gone" "pid $wpid still runs"
! mountpoint -q "$mount_point" && ok "19.7: the filesystem mounted from its device was unmounted" || not_ok "19.7: the mount from its device was left"
expect_fail "19.7: start refuses, naming the file" "could not start|$WC is not valid JSON" "$Z" start volume "$W"
expect_ok "19.7: the healthy volume kept running" sh -c "'$Z' status '${W}c' | grep -q 'running'"
cp "$WC.previous" "$WC"
expect_ok "19.7: restored from the previous version" "$Z" status "$W"
expect_ok "19.7: and it starts again" "$Z" start volume "$W"
expect_ok "19: forget the third volume" "$Z" forget volume "${W}c"
# The advice for a damaged configuration without a previous version: forget the volume.
echo "garbage{" > "$WC"; rm -f "$WC.previous"
expect_ok "19.7: forget a running volume whose configuration is damaged" "$Z" forget volume "$W"
[ ! -e "$ZUMASTOR_ROOT/var/lib/zumastor/volumes/$W" ] && [ ! -e "/dev/mapper/$W" ] && ! grep -q "devices/$W" /proc/mounts \
    && ok "19.7: nothing of it is left" || not_ok "19.7: something of the forgotten volume is left" "$(ls "$ZUMASTOR_ROOT/var/lib/zumastor/volumes"; grep "$W" /proc/mounts)"

# Two zumastor commands on one volume at once: each completes or is refused with a clear
# message, never a half state (the volume lock serializes them).
K=${V}k
VOLS+=("$K")
truncate -s 128M k-origin.img; truncate -s 64M k-store.img
"$Z" define volume "$K" k-origin.img k-store.img --initialize >/dev/null && mkfs.ext4 -q "/dev/mapper/$K" && "$Z" define master "$K" >/dev/null \
    || not_ok "concurrency: a master to work on"
kjson() { "$Z" status "$K" --json | python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
for _ in 1 2 3 4 5; do
    "$Z" snapshot "$K" > k-a.out 2>&1 & a=$!
    "$Z" snapshot "$K" > k-b.out 2>&1 & b=$!
    wait $a; ra=$?; wait $b; rb=$?
    [ $ra -eq 0 ] && [ $rb -eq 0 ] || not_ok "concurrency: two snapshots at once" "$(cat k-a.out k-b.out)"
done
expect_eq "concurrency: ten snapshots from five pairs, ten distinct ids, all mounted" "10 10 10" \
    "$(kjson 'len(d["snapshots"]), len(set(s["id"] for s in d["snapshots"])), sum(1 for s in d["snapshots"] if s["mounted"])')"
# The schedule firing (an "hour" of 1 second) while manual snapshots are taken: every manual one
# succeeds, every snapshot gets its own id, and each is mounted after a restart.
"$Z" define schedule "$K" --hourly 100 >/dev/null
"$Z" stop master "$K" >/dev/null
ZUMASTOR_SCHEDULE_HOUR_SECONDS=1 "$Z" start master "$K" >/dev/null
before=$(kjson 'len(d["snapshots"])')
manual=0
for _ in 1 2 3 4 5 6; do "$Z" snapshot "$K" > k-m.out 2>&1 && manual=$((manual + 1)); sleep 0.4; done
"$Z" stop master "$K" >/dev/null && "$Z" start master "$K" >/dev/null
counts=$(kjson 'len(d["snapshots"]), len(set(s["id"] for s in d["snapshots"])), sum(1 for s in d["snapshots"] if "hourly" in s["kinds"]), sum(1 for s in d["snapshots"] if s["mounted"])')
read -r total distinct hourly mounted <<< "$counts"
[ "$manual" -eq 6 ] && [ "$hourly" -ge 1 ] && [ "$total" -eq $((before + 6 + hourly)) ] && [ "$distinct" -eq "$total" ] && [ "$mounted" -eq "$total" ] \
    && ok "concurrency: manual snapshots while the schedule fires ($manual manual, $hourly scheduled, all distinct and mounted)" \
    || not_ok "concurrency: manual snapshots while the schedule fires" "manual $manual of 6; total, distinct, hourly, mounted: $counts (before $before): $(cat k-m.out)"
"$Z" snapshot "$K" > k-a.out 2>&1 & a=$!
"$Z" stop master "$K" > k-b.out 2>&1 & b=$!
wait $a; ra=$?; wait $b; rb=$?
[ $rb -eq 0 ] && { [ $ra -eq 0 ] || grep -qE "not running|not a running master|stopped" k-a.out; } \
    && ok "concurrency: a snapshot during a stop completes or is refused clearly" || not_ok "concurrency: snapshot during stop" "exit $ra $rb: $(cat k-a.out k-b.out)"
expect_ok "concurrency: the master starts again after it" "$Z" start master "$K"
# A revert (the master stopped first) and a snapshot at once: the revert completes; the snapshot
# either comes before it or is refused, naming why.
first=$(kjson 'min(s["id"] for s in d["snapshots"])')
"$Z" stop master "$K" >/dev/null
"$Z" revert "$K" "$first" > k-a.out 2>&1 & a=$!
"$Z" snapshot "$K" > k-b.out 2>&1 & b=$!
wait $a; ra=$?; wait $b; rb=$?
[ $ra -eq 0 ] && { [ $rb -eq 0 ] || grep -qE "not mounted|stopped|not running|zumastor start master" k-b.out; } \
    && ok "concurrency: a snapshot during a revert completes or is refused clearly" || not_ok "concurrency: snapshot during revert" "exit $ra $rb: $(cat k-a.out k-b.out)"
expect_ok "concurrency: the reverted master starts" "$Z" start master "$K"
n=$(kjson 'len(d["snapshots"])')
"$Z" snapshot "$K" > k-a.out 2>&1 & a=$!
"$Z" forget volume "$K" > k-b.out 2>&1 & b=$!
wait $a; ra=$?; wait $b; rb=$?
if [ $rb -eq 0 ]; then
    [ ! -e "$ZUMASTOR_ROOT/var/lib/zumastor/volumes/$K" ] && [ ! -e "/dev/mapper/$K" ] && ! grep -q "/$K" /proc/mounts \
        && ok "concurrency: forget during a snapshot forgot all of it" || not_ok "concurrency: forget during a snapshot left something" "$(grep "$K" /proc/mounts; ls "$ZUMASTOR_ROOT/var/lib/zumastor/volumes")"
else
    grep -qE "busy|in use|mounted|running" k-b.out && [ "$(kjson 'len(d["snapshots"])')" -ge "$n" ] \
        && ok "concurrency: forget during a snapshot refused clearly, the volume whole" || not_ok "concurrency: forget during a snapshot" "exit $ra $rb: $(cat k-a.out k-b.out)"
    "$Z" forget volume "$K" >/dev/null 2>&1
fi

# A volume whose origin went missing: its start fails naming the file; the others run on and
# status shows them.
M2=${V}m
VOLS+=("$M2")
truncate -s 64M m-origin.img; truncate -s 64M m-store.img
"$Z" define volume "$M2" m-origin.img m-store.img --initialize >/dev/null
"$Z" stop volume "$M2" >/dev/null
mv m-origin.img m-origin.moved
expect_fail "a missing origin: start names the file" "$WORK/m-origin.img: No such file" "$Z" start volume "$M2"
out=$("$Z" status 2>&1)
echo "$out" | grep -qE "^$M2 +stopped" && echo "$out" | grep -q "^$M2: the last operation failed: .*m-origin.img: No such file" \
    && ok "a missing origin: status shows the volume stopped and why" || not_ok "a missing origin: status" "$out"
mv m-origin.moved m-origin.img
expect_ok "a missing origin: back in place, the volume starts" "$Z" start volume "$M2"
"$Z" forget volume "$M2" >/dev/null

# 8. This host's key (issue 21): made at the first start, kept private, printed by `key`.
KEYDIR="$ZUMASTOR_ROOT/etc/zumastor"
rm -rf "$KEYDIR"
expect_ok "21: zumastor start makes this host's key" "$Z" start
expect_eq "21: the key is readable by root only" "600" "$(stat -c %a "$KEYDIR/host-key.pem" 2>&1)"
fp=$("$Z" key 2>&1)
echo "$fp" | grep -qE '^SHA256:[A-Za-z0-9+/]{43}$' && ok "21: zumastor key prints a SHA256 fingerprint" || not_ok "21: zumastor key" "$fp"
expect_eq "21: the key stays the same across starts" "$fp" "$("$Z" start >/dev/null 2>&1; "$Z" key 2>&1)"
spki=$(openssl x509 -in "$KEYDIR/host-certificate.pem" -pubkey -noout | openssl pkey -pubin -outform DER | openssl dgst -sha256 -binary | base64 | tr -d '=')
expect_eq "21: the fingerprint is SHA-256 of the certificate's public key (as openssl computes it)" "SHA256:$spki" "$fp"

finish
