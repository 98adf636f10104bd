#!/usr/bin/env bash
# Restarts of `ddsnap server` under write load (issue 18's reproduction, kept as a soak test).
# Usage (as root, after a release build):
#   scripts/soak/server-restarts.sh [PATH/TO/ddsnap] [CYCLES] [KILL|TERM]
# KILL (the default) stops the server with kill -9, TERM with a clean stop; SIGNAL=TERM in the
# environment does the same.
# Each cycle: an fsync'd 4 MiB direct write through the volume's device, a snapshot, a direct
# writer of 32 MiB in the background, the signal at a random moment, the devices released,
# `ddsnap check` of the store, every snapshot and every fsync'd write read back, a restart.
# Copy-outs go to low and high chunks in turn (the order that broke the exceptions tree).
# Prints one line per cycle and "N passed, N failed" last; removes what it made, by id.
. "$(dirname "$0")/../../Tests/cli/lib.sh"
D=$(realpath "${1:-$(dirname "$0")/../../.build/static/release/ddsnap}")
CYCLES=${2:-100}
SIGNAL=${3:-${SIGNAL:-KILL}}
KEEP=5
S=$WORK
V=soak$$
SPID=
WPID=
LOG_TO_SHOW="$S/server.log"
soak_cleanup() {
    [ -n "$WPID" ] && kill "$WPID" 2>/dev/null
    [ -n "$SPID" ] && kill -9 "$SPID" 2>/dev/null && wait "$SPID" 2>/dev/null
    release_devices_under "$S"
    remove_device_names "$V"
    cleanup
}
trap soak_cleanup EXIT

truncate -s 128M "$S/origin"; truncate -s 256M "$S/store"
"$D" initialize -y -c 16k "$S/store" "$S/origin" >/dev/null || stop_at "initialize"
start_server() {
    "$D" server "$S/store" --name "$V" --socket "$S/ctl" --block-files "$S/dev" --foreground >>"$S/server.log" 2>&1 &
    SPID=$!
    for _ in $(seq 100); do "$D" status "$S/ctl" >/dev/null 2>&1 && break; sleep 0.2; done
    "$D" status "$S/ctl" >/dev/null 2>&1 || stop_at "cycle $cycle: the server did not come up"
    dev=$("$D" attach "$S/ctl" 2>"$S/attach.err" | tail -n 1)
    [ -b "$dev" ] || stop_at "cycle $cycle: attach: $(tail -n 1 "$S/attach.err")"
}
cycle=0
start_server
declare -A sum
for cycle in $(seq 1 "$CYCLES"); do
    # Fsync'd writes walk up through the first 64 MiB and wrap; the background writer takes
    # the upper half: copy-outs of low chunks follow copy-outs of higher ones every cycle.
    at=$(( (cycle % 16) * 4 ))
    head -c 4M /dev/urandom > "$S/data"; sum[$at]=$(md5 < "$S/data")
    dd if="$S/data" of="$dev" bs=1M seek="$at" oflag=direct conv=fsync status=none || stop_at "cycle $cycle: write"
    "$D" create "$S/ctl" $((cycle * 2)) >/dev/null || stop_at "cycle $cycle: create"
    snap[$cycle]=$at; snapsum[$cycle]=${sum[$at]}
    ( dd if=/dev/urandom of="$dev" bs=1M seek=64 count=32 oflag=direct status=none 2>/dev/null ) &
    WPID=$!
    sleep 0.$((RANDOM % 9 + 1))
    kill -"$SIGNAL" "$SPID"; wait "$WPID" 2>/dev/null; WPID=; wait "$SPID" 2>/dev/null; SPID=
    release_devices_under "$S"
    "$D" check "$S/store" > "$S/check.out" 2>&1 || stop_at "cycle $cycle: check after kill -$SIGNAL: $(grep -m1 problem "$S/check.out" || tail -n 1 "$S/check.out")"
    for c in $(seq $(( cycle > KEEP ? cycle - KEEP : 1 )) "$cycle"); do
        [ "$("$D" read "$S/store" --snapshot $((c * 2)) --offset $((${snap[$c]} << 20)) --length $((4 << 20)) | md5)" = "${snapsum[$c]}" ] \
            || stop_at "cycle $cycle: snapshot $((c * 2)) changed"
    done
    for a in "${!sum[@]}"; do
        [ "$("$D" read "$S/store" --offset $((a << 20)) --length $((4 << 20)) | md5)" = "${sum[$a]}" ] || stop_at "cycle $cycle: the fsync'd write at ${a}M was lost"
    done
    # Keep the store from filling: the oldest snapshot past KEEP is deleted.
    if [ "$cycle" -gt "$KEEP" ]; then "$D" delete "$S/store" $(( (cycle - KEEP) * 2 )) >/dev/null || stop_at "cycle $cycle: delete"; fi
    ok "cycle $cycle (kill -$SIGNAL): store checks clean; snapshots and fsync'd writes read back"
    start_server
done
finish
