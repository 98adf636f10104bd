#!/usr/bin/env bash
# `zumastor stop` and `start` around a mounted ext4 master under writes (issue 18), as the init
# script and a reboot do. Usage (as root, after a release build):
#   scripts/soak/zumastor-restarts.sh [PATH/TO/zumastor] [CYCLES]
# Each cycle: files written into the mounted master and fsync'd (new ones, and old ones
# rewritten in place, so copy-outs go low and high), an hourly snapshot (hourly 4: rotation
# deletes), `zumastor stop`, `ddsnap check` of the store, `zumastor start`, and every file read
# back from the master and from hourly.0. Prints one line per cycle, "N passed, N failed" last;
# removes what it made, by id.
set -u
Z=${1:-$(dirname "$0")/../../.build/static/release/zumastor}
CYCLES=${2:-50}
D=$(dirname "$Z")/ddsnap
S=$(mktemp -d /tmp/zuma-soak.XXXXXX)
export ZUMASTOR_ROOT="$S/root"
V=zsoak$$
M="$ZUMASTOR_ROOT/var/run/zumastor/mount/$V"
H="$ZUMASTOR_ROOT/var/run/zumastor/snapshot/$V/hourly.0"
PASS=0
FAIL=0
cleanup() {
    local pid f
    for pid in $("$Z" status "$V" --json 2>/dev/null | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d.get("agentPID", ""), d.get("serverPID", ""))' 2>/dev/null); do
        kill -TERM "$pid" 2>/dev/null && for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    done
    awk -v w="$S/" 'index($2, w) == 1 { print $2 }' /proc/mounts | sort -r | while read -r m; do umount "$m" 2>/dev/null || umount -l "$m"; done
    for f in /sys/block/loop*/loop/backing_file; do
        [ -e "$f" ] || continue
        case "$(cat "$f" 2>/dev/null)" in "$S"/*) losetup -d "/dev/$(basename "$(dirname "$(dirname "$f")")")" 2>/dev/null ;; esac
    done
    for n in /dev/mapper/"$V" /dev/mapper/"$V"\(*\); do [ -L "$n" ] && rm -f "$n"; done
    rm -rf "$S"
}
trap cleanup EXIT
fail() {
    FAIL=$((FAIL + 1))
    echo "not ok - $*"
    tail -n 3 "$ZUMASTOR_ROOT/var/log/zumastor/$V/server.log" 2>/dev/null | sed 's/^/#   /'
    echo "$PASS passed, $FAIL failed"
    exit 1
}
md5() { md5sum | cut -d' ' -f1; }

truncate -s 256M "$S/origin.img"; truncate -s 256M "$S/store.img"
"$Z" define volume "$V" "$S/origin.img" "$S/store.img" --initialize >/dev/null || fail "define volume"
mkfs.ext4 -q "/dev/mapper/$V" || fail "mkfs.ext4"
"$Z" define master "$V" >/dev/null || fail "define master"
"$Z" define schedule "$V" --hourly 4 >/dev/null || fail "define schedule"
declare -A sum
for cycle in $(seq 1 "$CYCLES"); do
    # A new file of 2 MiB, and one of the first eight rewritten in place.
    head -c 2M /dev/urandom > "$S/new"
    cp "$S/new" "$M/file$cycle" && sync -f "$M/file$cycle" || fail "cycle $cycle: write"
    sum[file$cycle]=$(md5 < "$S/new")
    old=file$(( (cycle % 8) + 1 ))
    if [ -e "$M/$old" ]; then
        head -c 512K /dev/urandom | dd of="$M/$old" bs=64K seek=$((RANDOM % 24)) conv=notrunc,fsync status=none || fail "cycle $cycle: rewrite"
        sum[$old]=$(md5 < "$M/$old")
    fi
    "$Z" snapshot "$V" hourly >/dev/null || fail "cycle $cycle: snapshot"
    snapshot_sum=$(md5 < "$M/file$cycle")
    "$Z" stop >/dev/null || fail "cycle $cycle: zumastor stop"
    "$D" check "$S/store.img" > "$S/check.out" 2>&1 || fail "cycle $cycle: check after stop: $(grep -m1 problem "$S/check.out" || tail -n 1 "$S/check.out")"
    "$Z" start >/dev/null || fail "cycle $cycle: zumastor start"
    for f in "${!sum[@]}"; do
        [ "$(md5 < "$M/$f")" = "${sum[$f]}" ] || fail "cycle $cycle: $f differs on the master after the restart"
    done
    [ "$(md5 < "$H/file$cycle")" = "$snapshot_sum" ] || fail "cycle $cycle: hourly.0 lost file$cycle"
    PASS=$((PASS + 1))
    echo "ok - cycle $cycle: stop, store checks clean, start; ${#sum[@]} files on the master and hourly.0 read back"
done
echo "$PASS passed, $FAIL failed"
