#!/usr/bin/env bash
# kill -9 of `ddsnap server` under a filesystem workload (issue 23). Usage (as root, after a
# release build):
#   scripts/soak/ext4-kill.sh [PATH/TO/ddsnap] [CYCLES]      (100 cycles by default)
# ext4 on the served volume; each cycle a writer creates and deletes files, recording each file
# only once fsync acknowledged it (fs_writer.py, its ledger outside the volume), while
# snapshots are taken (the md5 of each recorded as it is taken) and the oldest deleted, three
# kept (and three of the cycles before). At a random moment (0.5 to 3 s) the server gets kill -9. Then, with the server down:
# `ddsnap check` is clean and every recorded snapshot that exists reads as when it was taken;
# restarted: the filesystem mounts (its journal replays), every acknowledged file reads back
# with its md5, and e2fsck finds the filesystem clean.
# Prints one line per cycle, "N passed, N failed" last; removes what it made, by id.
. "$(dirname "$0")/../../Tests/cli/lib.sh"
D=$(realpath "${1:-$(dirname "$0")/../../.build/static/release/ddsnap}")
CYCLES=${2:-100}
WRITER=$(cd "$(dirname "$0")" && pwd)/fs_writer.py
S=$WORK
V=ext4soak$$
SPID= WPID= TPID=
LOG_TO_SHOW="$S/server.log"
soak_cleanup() {
    for p in $WPID $TPID; do kill "$p" 2>/dev/null; done
    umount -l "$S/mnt" 2>/dev/null
    [ -n "$SPID" ] && kill -9 "$SPID" 2>/dev/null && wait "$SPID" 2>/dev/null
    release_devices_under "$S"
    remove_device_names "$V"
    cleanup
}
trap soak_cleanup EXIT

truncate -s 256M "$S/origin"; truncate -s 512M "$S/store"
"$D" initialize -y "$S/store" "$S/origin" >/dev/null || stop_at "initialize"
start_server() {
    "$D" server "$S/store" --name "$V" --socket "$S/ctl" --block-files "$S/dev" --foreground >>"$S/server.log" 2>&1 &
    SPID=$!
    for _ in $(seq 100); do "$D" status "$S/ctl" >/dev/null 2>&1 && break; sleep 0.1; done
    dev=$("$D" attach "$S/ctl" 2>"$S/attach.err" | tail -n 1)
    [ -b "$dev" ] || stop_at "cycle $cycle: attach: $(tail -n 1 "$S/attach.err")"
}
# The snapshotter: takes snapshots while the writer works, records each one's md5 as taken,
# deletes the oldest past three.
snapshotter() {
    local tag=$1 kept=()
    while true; do
        "$D" create "$S/ctl" "$tag" >/dev/null 2>&1 || return
        # (pipefail: a read the kill cut short records nothing.)
        sum=$(set -o pipefail; "$D" read "$S/ctl" --snapshot "$tag" 2>/dev/null | md5) && echo "$tag $sum" >> "$S/snapshots"
        kept+=("$tag")
        if [ ${#kept[@]} -gt 3 ]; then "$D" delete "$S/ctl" "${kept[0]}" >/dev/null 2>&1 || return; kept=("${kept[@]:1}"); fi
        tag=$((tag + 1))
        sleep 0.2
    done
}

cycle=0
start_server
mkfs.ext4 -q "$dev" || stop_at "mkfs.ext4"
mkdir -p "$S/mnt"
: > "$S/ledger"; : > "$S/snapshots"
next_tag=1
for cycle in $(seq 1 "$CYCLES"); do
    mount "$dev" "$S/mnt" || stop_at "cycle $cycle: mount after the restart"
    python3 "$WRITER" "$S/mnt" "$S/ledger" 2>/dev/null & WPID=$!
    snapshotter "$next_tag" & TPID=$!
    sleep "$((RANDOM % 3)).$((RANDOM % 10))"; sleep 0.5
    kill -9 "$SPID"; wait "$SPID" 2>/dev/null; SPID=
    kill "$TPID" 2>/dev/null; wait "$TPID" 2>/dev/null; TPID=
    kill "$WPID" 2>/dev/null; wait "$WPID" 2>/dev/null; WPID=
    umount -l "$S/mnt"
    release_devices_under "$S/dev"
    "$D" check "$S/store" > "$S/check.out" 2>&1 || stop_at "cycle $cycle: check after kill -9: $(grep -m1 problem "$S/check.out" || tail -n 1 "$S/check.out")"
    existing=" $("$D" list "$S/store" --json | python3 -c 'import json,sys; print(" ".join(str(s["tag"]) for s in json.load(sys.stdin)))') "
    checked=0
    while read -r tag sum; do
        case "$existing" in *" $tag "*) ;; *) continue ;; esac
        [ "$("$D" read "$S/store" --snapshot "$tag" | md5)" = "$sum" ] || stop_at "cycle $cycle: snapshot $tag does not read as when it was taken"
        checked=$((checked + 1))
    done < "$S/snapshots"
    next_tag=$(( $(tail -n 1 "$S/snapshots" | cut -d' ' -f1) + 10 ))
    start_server
    # Snapshots of earlier cycles: the newest three stay.
    for tag in $(echo $existing | tr ' ' '\n' | sort -n | head -n -3); do "$D" delete "$S/ctl" "$tag" >/dev/null || stop_at "cycle $cycle: delete $tag"; done
    mount "$dev" "$S/mnt" || stop_at "cycle $cycle: mount (journal replay)"
    files=0
    while read -r word name sum; do
        [ "$word" = add ] || continue
        grep -q "^del $name$" "$S/ledger" && continue
        [ "$(md5 < "$S/mnt/$name" 2>/dev/null)" = "$sum" ] || stop_at "cycle $cycle: $name, acknowledged by fsync, is lost or changed"
        files=$((files + 1))
    done < "$S/ledger"
    umount "$S/mnt" || stop_at "cycle $cycle: umount"
    e2fsck -fn "$dev" > "$S/fsck.out" 2>&1 || stop_at "cycle $cycle: e2fsck after the journal replay" "$(tail -n 5 "$S/fsck.out")"
    ok "cycle $cycle (kill -9): check clean; $checked snapshots read as taken; $files fsync'd files intact; e2fsck clean"
done
finish
