#!/usr/bin/env bash
# `zumastor stop` and `start` around a mounted ext4 master under writes (issue 18), as the init
# script and a reboot do. Usage (as root, after a release build):
#   scripts/soak/zumastor-restarts.sh [PATH/TO/zumastor] [CYCLES]
# Each cycle: files written into the mounted master and fsync'd (new ones, and old ones
# rewritten in place, so copy-outs go low and high), an hourly snapshot (hourly 4: rotation
# deletes), `zumastor stop`, `ddsnap check` of the store, `zumastor start`, and every file read
# back from the master and from hourly.0. Prints one line per cycle, "N passed, N failed" last;
# removes what it made, by id.
. "$(dirname "$0")/../../Tests/cli/lib.sh"
Z=$(realpath "${1:-$(dirname "$0")/../../.build/static/release/zumastor}")
CYCLES=${2:-50}
D=$(dirname "$Z")/ddsnap
S=$WORK
export ZUMASTOR_ROOT="$S/root"
V=zsoak$$
M="$ZUMASTOR_ROOT/var/run/zumastor/mount/$V"
H="$ZUMASTOR_ROOT/var/run/zumastor/snapshot/$V/hourly.0"
LOG_TO_SHOW="$ZUMASTOR_ROOT/var/log/zumastor/$V/server.log"
soak_cleanup() {
    stop_volume_processes "$Z" "$V"
    unmount_under "$S"
    release_devices_under "$S"
    remove_device_names "$V"
    cleanup
}
trap soak_cleanup EXIT

truncate -s 256M "$S/origin.img"; truncate -s 256M "$S/store.img"
"$Z" define volume "$V" "$S/origin.img" "$S/store.img" --initialize >/dev/null || stop_at "define volume"
mkfs.ext4 -q "/dev/mapper/$V" || stop_at "mkfs.ext4"
"$Z" define master "$V" >/dev/null || stop_at "define master"
"$Z" define schedule "$V" --hourly 4 >/dev/null || stop_at "define schedule"
declare -A sum
for cycle in $(seq 1 "$CYCLES"); do
    # A new file of 2 MiB, and one of the first eight rewritten in place.
    head -c 2M /dev/urandom > "$S/new"
    cp "$S/new" "$M/file$cycle" && sync -f "$M/file$cycle" || stop_at "cycle $cycle: write"
    sum[file$cycle]=$(md5 < "$S/new")
    old=file$(( (cycle % 8) + 1 ))
    if [ -e "$M/$old" ]; then
        head -c 512K /dev/urandom | dd of="$M/$old" bs=64K seek=$((RANDOM % 24)) conv=notrunc,fsync status=none || stop_at "cycle $cycle: rewrite"
        sum[$old]=$(md5 < "$M/$old")
    fi
    "$Z" snapshot "$V" hourly >/dev/null || stop_at "cycle $cycle: snapshot"
    snapshot_sum=$(md5 < "$M/file$cycle")
    "$Z" stop >/dev/null || stop_at "cycle $cycle: zumastor stop"
    "$D" check "$S/store.img" > "$S/check.out" 2>&1 || stop_at "cycle $cycle: check after stop: $(grep -m1 problem "$S/check.out" || tail -n 1 "$S/check.out")"
    "$Z" start >/dev/null || stop_at "cycle $cycle: zumastor start"
    for f in "${!sum[@]}"; do
        [ "$(md5 < "$M/$f")" = "${sum[$f]}" ] || stop_at "cycle $cycle: $f differs on the master after the restart"
    done
    [ "$(md5 < "$H/file$cycle")" = "$snapshot_sum" ] || stop_at "cycle $cycle: hourly.0 lost file$cycle"
    ok "cycle $cycle: stop, store checks clean, start; ${#sum[@]} files on the master and hourly.0 read back"
done
finish
