#!/usr/bin/env bash
# Replication between hosts with zumastor, as the seed guide's 10.10 and 10.11 do it: three
# hosts in network namespaces joined by veth pairs (A-B, B-C, A-C), each with its own
# ZUMASTOR_ROOT, service, volumes and key. Push and pull, by hand and by period; names that
# differ on each side; a chain A -> B -> C; fan-out with one target unreachable; transfers cut
# by kill -9 of the sender and of the receiver, a link down and a stop of either service, each
# resumed; a lost acknowledgement; IPv6; trust (an
# unpinned key, a source for another volume, a replica of another volume); and bad input on
# every new command, each refused in one line with the configuration unchanged.
# Usage: Tests/cli/remote-e2e.sh PATH/TO/zumastor
. "$(dirname "$0")/lib.sh"
Z=$(realpath "${1:?usage: remote-e2e.sh PATH/TO/zumastor}")
cd "$WORK"
require_root_and_fuse "replication between hosts"
command -v ip >/dev/null || { not_ok "iproute2 is needed"; finish; exit 1; }
# Seconds without traffic after which a link counts as broken (the default is 120).
export ZUMASTOR_LINK_IDLE_SECONDS=4

A="zra$$"; B="zrb$$"; C="zrc$$"
VA="ra$$"; VA2="ra2$$"; VB="rb$$"; VB2="rb2$$"; VC="rc$$"; VC2="rc2$$"; VC3="rc3$$"
NETNS=()
HOSTS=(a b c)
declare -A NS=([a]="$A" [b]="$B" [c]="$C")
on() { local h=$1; shift; ZUMASTOR_ROOT="$WORK/$h" nsenter --net=/run/netns/"${NS[$h]}" "$@"; }
run_dir() { echo "$WORK/$1/var/run/zumastor"; }
r_cleanup() {
    for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; done
    for h in "${HOSTS[@]}"; do
        [ -d "$WORK/$h" ] || continue
        local pid
        pid=$(cat "$(run_dir "$h")/replicator.pid" 2>/dev/null) && kill -TERM "$pid" 2>/dev/null
        on "$h" "$Z" stop >/dev/null 2>&1
        ZUMASTOR_ROOT="$WORK/$h" stop_volume_processes "$Z" "$VA" "$VA2" "$VB" "$VB2" "$VC" "$VC2" "$VC3" "rc4$$"
    done
    unmount_under "$WORK"
    release_devices_under "$WORK"
    remove_device_names "$VA" "$VA2" "$VB" "$VB2" "$VC" "$VC2" "$VC3" "rc4$$"
    for n in "${NETNS[@]}"; do ip netns del "$n" 2>/dev/null; done
    cleanup
}
trap r_cleanup EXIT
for n in "$A" "$B" "$C"; do ip netns add "$n" && NETNS+=("$n") || { not_ok "ip netns add"; finish; exit 1; }; ip -n "$n" link set lo up; done
link() { # link NS1 IF1 ADDR1 NS2 IF2 ADDR2
    ip link add "$2" netns "$1" type veth peer name "$5" netns "$4"
    ip -n "$1" addr add "$3/24" dev "$2"; ip -n "$1" link set "$2" up
    ip -n "$4" addr add "$6/24" dev "$5"; ip -n "$4" link set "$5" up
}
link "$A" "ab$$" 10.79.1.1 "$B" "ba$$" 10.79.1.2
link "$B" "bc$$" 10.79.2.2 "$C" "cb$$" 10.79.2.3
link "$A" "ac$$" 10.79.3.1 "$C" "ca$$" 10.79.3.3

KA=$(on a "$Z" key); KB=$(on b "$Z" key); KC=$(on c "$Z" key)
M="$(run_dir a)/mount/$VA"
view() { echo "$(run_dir "$1")/mount/$2"; }
sum() { md5sum "$1" 2>/dev/null | cut -d' ' -f1; }
# wait_same FILE_A FILE_B [SECONDS]: until both files have the same md5.
wait_same() {
    for _ in $(seq $((${3:-30} * 5))); do [ "$(sum "$1")" = "$(sum "$2")" ] && return 0; sleep 0.2; done
    return 1
}
truncate -s 256M a.origin b.origin; truncate -s 384M a.store b.store
truncate -s 64M a2.origin a2.store b2.origin b2.store c.origin c.store c2.origin c2.store c3.origin c3.store
on a "$Z" define volume "$VA" a.origin a.store --initialize >/dev/null
mkfs.ext4 -q -E lazy_itable_init=0,lazy_journal_init=0 "/dev/mapper/$VA"
on a "$Z" define master "$VA" >/dev/null
on b "$Z" define volume "$VB" b.origin b.store --initialize >/dev/null

# Seed 10.10: target on the master, source on the replica, a file appended, replicate --wait.
expect_ok "define target on the original" on a "$Z" define target "$VA" 10.79.1.2 --key "$KB" --name "$VB"
expect_ok "define source on the replica" on b "$Z" define source "$VB" 10.79.1.1:11235 --key "$KA" --name "$VA"
expect_ok "the service runs on both hosts" test -s "$(run_dir a)/replicator.pid" -a -s "$(run_dir b)/replicator.pid"
date >> "$M/testfile"
out=$(on a "$Z" replicate "$VA" 10.79.1.2 --wait 2>&1)
[ "$(echo "$out" | tail -n 1)" = 0 ] && ok "replicate --wait prints the snapshot id" || not_ok "first replicate" "$out"
expect_eq "the replica's mount shows testfile with the same md5" "$(sum "$M/testfile")" "$(sum "$(view b "$VB")/testfile")"
date >> "$M/testfile"; head -c 3M /dev/urandom > "$M/more"
out=$(on b "$Z" replicate "$VB" 2>&1)
echo "$out" | grep -q "as changes since snapshot 0" && ok "a pull by hand on the replica: a delta" || not_ok "pull" "$out"
expect_eq "after the pull, testfile matches" "$(sum "$M/testfile")" "$(sum "$(view b "$VB")/testfile")"
expect_eq "... and a new file too" "$(sum "$M/more")" "$(sum "$(view b "$VB")/more")"
expect_eq "the original keeps only the snapshot the target holds" "2" \
    "$(on a "$Z" status "$VA" --json | python3 -c 'import json,sys; print(" ".join(str(s["id"]) for s in json.load(sys.stdin)["snapshots"]))')"

# Periods: a push every 2 s from the original, then a pull every 2 s by the replica.
expect_ok "a push period" on a "$Z" define target "$VA" 10.79.1.2 --key "$KB" --name "$VB" --period 2
date >> "$M/testfile"
wait_same "$M/testfile" "$(view b "$VB")/testfile" && ok "the pushed period brings the change" || not_ok "push period" "$(tail -n 3 "$WORK/a/var/log/zumastor/$VA/replication.log")"
expect_ok "back to cycles by hand" on a "$Z" define target "$VA" 10.79.1.2 --key "$KB" --name "$VB"
expect_ok "a pull period" on b "$Z" define source "$VB" 10.79.1.1 --key "$KA" --name "$VA" --period 2
sleep 3; date >> "$M/testfile"
sleep 3
[ "$(sum "$M/testfile")" != "$(sum "$(view b "$VB")/testfile")" ] && ok "no pull before 'start source'" || not_ok "pulled before start source"
expect_ok "start source" on b "$Z" start source "$VB"
wait_same "$M/testfile" "$(view b "$VB")/testfile" && ok "the pulled period brings the change" || not_ok "pull period" "$(tail -n 3 "$WORK/b/var/log/zumastor/$VB/replication.log")"
expect_ok "stop source" on b "$Z" stop source "$VB"
text=$(on a "$Z" status "$VA")
echo "$text" | grep -q "target:.*10.79.1.2:11235 (volume $VB), key $KB" && ok "status shows the target, its volume and key" || not_ok "status target" "$text"
echo "$text" | grep -qE "lag: +[0-9]+ s" && ok "status shows the lag" || not_ok "status lag" "$text"
lag=$(on b "$Z" status "$VB" --json | python3 -c 'import json,sys; d=json.load(sys.stdin)["source"]; print(d["lastSnapshot"] is not None and d["lagSeconds"] >= 0 and d["lastError"] is None)')
expect_eq "status --json on the replica: last snapshot, lag, no error" "True" "$lag"

# IPv6: a push to the replica's IPv6 address, then a pull from the original's.
ip -n "$A" addr add fd79:1::1/64 dev "ab$$" nodad; ip -n "$B" addr add fd79:1::2/64 dev "ba$$" nodad
expect_ok "a target at an IPv6 address" on a "$Z" define target "$VA" "[fd79:1::2]" --key "$KB" --name "$VB"
date >> "$M/testfile"
expect_ok "a push over IPv6" on a "$Z" replicate "$VA" "[fd79:1::2]"
expect_eq "the change arrived over IPv6" "$(sum "$M/testfile")" "$(sum "$(view b "$VB")/testfile")"
# (The replica logs a cycle once it has cleaned up after DONE.)
logged() { for _ in $(seq 50); do grep -q "$1" "$2" 2>/dev/null && return 0; sleep 0.1; done; return 1; }
logged "from \[fd79:1::1\]" "$WORK/b/var/log/zumastor/$VB/replication.log" && ok "the replica logs the peer's IPv6 address" \
    || not_ok "IPv6 peer logged" "$(tail -n 3 "$WORK/b/var/log/zumastor/$VB/replication.log")"
expect_ok "a source at an IPv6 address" on b "$Z" define source "$VB" "[fd79:1::1]:11235" --key "$KA" --name "$VA"
date >> "$M/testfile"
expect_ok "a pull over IPv6" on b "$Z" replicate "$VB"
expect_eq "the pulled change arrived over IPv6" "$(sum "$M/testfile")" "$(sum "$(view b "$VB")/testfile")"
on b "$Z" define source "$VB" 10.79.1.1 --key "$KA" --name "$VA" >/dev/null
expect_ok "forget the IPv6 target" on a "$Z" forget target "$VA" "[fd79:1::2]"

# A lost acknowledgement: the original's state as if it died after the replica took snapshot S
# and before DONE arrived (S still 'sending'); the next cycle sees that the replica holds S and
# sends only what came after it.
st=$(ls "$WORK"/a/var/lib/zumastor/volumes/"$VA"/replication/target-10.79.1.2-*.json)
cp "$st" state.before
date >> "$M/testfile"
on a "$Z" replicate "$VA" 10.79.1.2 >/dev/null
s=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["held"])' "$st")
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); d["sending"]=int(sys.argv[2]); json.dump(d, open(sys.argv[3], "w"))' state.before "$s" "$st"
date >> "$M/testfile"
out=$(on a "$Z" replicate "$VA" 10.79.1.2 2>&1)
echo "$out" | grep -q "as changes since snapshot $s" && ok "a lost acknowledgement: the next cycle starts from the snapshot the replica took" || not_ok "lost ack" "$out"
logged "already holds snapshot $s: its acknowledgement was lost" "$WORK/a/var/log/zumastor/$VA/replication.log" && ok "... and the original's log says so" \
    || not_ok "lost ack logged" "$(tail -n 3 "$WORK/a/var/log/zumastor/$VA/replication.log")"
expect_eq "... and the replica matches" "$(sum "$M/testfile")" "$(sum "$(view b "$VB")/testfile")"

# Trust: a host whose key nobody pinned is refused at the handshake, and logged.
on c "$Z" define volume "$VC" c.origin c.store --initialize >/dev/null
mkfs.ext4 -q "/dev/mapper/$VC"
expect_ok "C targets B's volume (B does not pin C)" on c "$Z" define target "$VC" 10.79.2.2 --key "$KB" --name "$VB"
expect_fail "an unpinned host is refused" "refused|handshake|closed|TLS" on c "$Z" replicate "$VC" 10.79.2.2
grep -q "refused 10.79.2.3:.*$KC" "$WORK/b/var/log/zumastor/replication.log" && ok "B logs the refused address and key" \
    || not_ok "refusal logged" "$(tail -n 3 "$WORK/b/var/log/zumastor/replication.log")"
expect_ok "C forgets that target" on c "$Z" forget target "$VC" 10.79.2.2
# A source defined for one volume cannot write another.
on a "$Z" define volume "$VA2" a2.origin a2.store --initialize >/dev/null
expect_ok "A's second volume targets B's volume under its name" on a "$Z" define target "$VA2" 10.79.1.2 --key "$KB" --name "$VB"
expect_fail "B's volume takes snapshots only from its own source" "takes no snapshots from volume '$VA2'" on a "$Z" replicate "$VA2" 10.79.1.2
expect_eq "the replica still shows the original's file" "$(sum "$M/testfile")" "$(sum "$(view b "$VB")/testfile")"
# A replica of another volume shares no base.
on b "$Z" define volume "$VB2" b2.origin b2.store --initialize >/dev/null
on b "$Z" define source "$VB2" 10.79.1.1 --key "$KA" --name "$VA2" >/dev/null
on a "$Z" define target "$VA2" 10.79.1.2 --key "$KB" --name "$VB2" >/dev/null
expect_ok "B's second volume becomes a replica of A's second volume" on a "$Z" replicate "$VA2" 10.79.1.2
on b "$Z" define source "$VB2" 10.79.2.3 --key "$KC" --name "$VC" >/dev/null
on c "$Z" define target "$VC" 10.79.2.2 --key "$KB" --name "$VB2" >/dev/null
expect_fail "a replica of another volume gets a clear error" "replica of volume .* shares no base" on c "$Z" replicate "$VC" 10.79.2.2
on c "$Z" forget target "$VC" 10.79.2.2 >/dev/null; on a "$Z" forget target "$VA2" 10.79.1.2 >/dev/null

# Seed 10.11, chained: A -> B -> C.
on c "$Z" define volume "$VC2" c2.origin c2.store --initialize >/dev/null
truncate -s 256M c2.origin
expect_ok "C's volume is a replica of B's" on c "$Z" define source "$VC2" 10.79.2.2 --key "$KB" --name "$VB"
expect_ok "B forwards to C" on b "$Z" define target "$VB" 10.79.2.3 --key "$KC" --name "$VC2"
date >> "$M/testfile"
expect_ok "A replicates to B" on a "$Z" replicate "$VA" 10.79.1.2
expect_ok "B replicates to C" on b "$Z" replicate "$VB" 10.79.2.3
expect_eq "the chain's end shows the original's testfile" "$(sum "$M/testfile")" "$(sum "$(view c "$VC2")/testfile")"
expect_eq "... on all three hosts" "$(sum "$(view b "$VB")/testfile")" "$(sum "$(view c "$VC2")/testfile")"
out=$(on b "$Z" replicate "$VB" 10.79.2.3 2>&1)
echo "$out" | grep -q "already holds snapshot" && ok "forwarding again with nothing new sends nothing" || not_ok "forward again" "$out"
# The same chain by periods: A pushes every 2 s, B forwards every 2 s.
on a "$Z" define target "$VA" 10.79.1.2 --key "$KB" --name "$VB" --period 2 >/dev/null
on b "$Z" define target "$VB" 10.79.2.3 --key "$KC" --name "$VC2" --period 2 >/dev/null
date >> "$M/testfile"
wait_same "$M/testfile" "$(view c "$VC2")/testfile" && ok "a periodic chain brings the change to its end" \
    || not_ok "periodic chain" "$(tail -n 3 "$WORK/b/var/log/zumastor/$VB/replication.log")"
on a "$Z" define target "$VA" 10.79.1.2 --key "$KB" --name "$VB" >/dev/null
expect_ok "B forgets its target on C" on b "$Z" forget target "$VB" 10.79.2.3

# Catch-up: a period missed while the original's service was down runs as soon as it is back
# (within 5 s here, where the period is 8 s).
on a "$Z" define target "$VA" 10.79.1.2 --key "$KB" --name "$VB" --period 8 >/dev/null
wait_same "$M/testfile" "$(view b "$VB")/testfile" 20 >/dev/null
rpid=$(cat "$(run_dir a)/replicator.pid"); kill -TERM "$rpid"
for _ in $(seq 50); do kill -0 "$rpid" 2>/dev/null || break; sleep 0.1; done
date >> "$M/testfile"; echo "while down" >> "$M/testfile"
sleep 9
on a "$Z" start >/dev/null
wait_same "$M/testfile" "$(view b "$VB")/testfile" 5 && ok "a cycle missed while the service was down runs when it starts" \
    || not_ok "catch-up" "$(tail -n 3 "$WORK/a/var/log/zumastor/$VA/replication.log")"
on a "$Z" define target "$VA" 10.79.1.2 --key "$KB" --name "$VB" >/dev/null

# Downstream retention: the replica keeps 2 hourlies of its own (an hour is 3 s here) from
# what it receives, mounted and linked as on a master, while the original keeps none.
expect_ok "the replica mounts what it keeps" on b "$Z" define source "$VB" 10.79.1.1 --key "$KA" --name "$VA" --mount-snap
expect_ok "the replica's own schedule" on b env ZUMASTOR_SCHEDULE_HOUR_SECONDS=3 "$Z" define schedule "$VB" --hourly 2
SB="$(run_dir b)/snapshot/$VB"
for v in 1 2 3; do
    echo "version $v" > "$M/kept"
    on a "$Z" replicate "$VA" 10.79.1.2 --quiet >/dev/null
    sleep 4
done
expect_eq "the replica links exactly its 2 newest hourlies" "hourly.0 hourly.1" "$(ls "$SB" | grep '^hourly\.' | sort | tr '\n' ' ' | sed 's/ $//')"
expect_eq "hourly.0 holds the last version received" "version 3" "$(cat "$SB/hourly.0/kept" 2>&1)"
expect_eq "hourly.1 the one before" "version 2" "$(cat "$SB/hourly.1/kept" 2>&1)"
expect_eq "the original keeps none of them" "" "$(on a "$Z" status "$VA" --json | python3 -c 'import json,sys; print(" ".join(",".join(s["kinds"]) for s in json.load(sys.stdin)["snapshots"] if s["kinds"] != ["replication"]))')"
kept=$(on b "$Z" status "$VB" --json | python3 -c 'import json,sys; print(len([s for s in json.load(sys.stdin)["snapshots"] if s["kinds"] == ["hourly"]]))')
expect_eq "the replica's status shows 2 hourly snapshots" "2" "$kept"
expect_ok "the replica's schedule cleared" on b "$Z" define schedule "$VB"
expect_eq "... and its kept snapshots unmounted" "0" "$(awk -v d="$SB/" 'index($2, d) == 1' /proc/mounts | wc -l)"

# Fan-out: A pushes to B and to C every 2 s; C unreachable, then reachable again.
on c "$Z" define volume "$VC3" c3.origin c3.store --initialize >/dev/null
truncate -s 256M c3.origin
on c "$Z" define source "$VC3" 10.79.3.1 --key "$KA" --name "$VA" >/dev/null
expect_ok "a second target, on C" on a "$Z" define target "$VA" 10.79.3.3 --key "$KC" --name "$VC3" --period 2
on a "$Z" define target "$VA" 10.79.1.2 --key "$KB" --name "$VB" --period 2 >/dev/null
wait_same "$M/testfile" "$(view c "$VC3")/testfile" 60 && ok "C's replica catches up" || not_ok "fan-out first copy" "$(tail -n 3 "$WORK/a/var/log/zumastor/$VA/replication.log")"
ip -n "$A" link set "ac$$" down
date >> "$M/testfile"
wait_same "$M/testfile" "$(view b "$VB")/testfile" && ok "with C unreachable, B still gets the change" || not_ok "fan-out B"
[ "$(sum "$M/testfile")" != "$(sum "$(view c "$VC3")/testfile")" ] && ok "C does not have it" || not_ok "C has it while unreachable"
ip -n "$A" link set "ac$$" up
wait_same "$M/testfile" "$(view c "$VC3")/testfile" 60 && ok "C catches up once reachable" || not_ok "fan-out C back"
on a "$Z" define target "$VA" 10.79.1.2 --key "$KB" --name "$VB" >/dev/null
expect_ok "forget the target on C" on a "$Z" forget target "$VA" 10.79.3.3

# Resume: 80 MiB at 16 MiB/s, cut after the replica made its first checkpoint durable.
on a "$Z" define target "$VA" 10.79.1.2 --key "$KB" --name "$VB" --ratelimit 16M --uncompressed >/dev/null
checkpointed() { # until the replica's state names an interrupted transfer
    for _ in $(seq 150); do grep -q '"nextChunk"' "$WORK/b/var/lib/zumastor/volumes/$VB/replication/source.json" 2>/dev/null && return 0; sleep 0.1; done
    return 1
}
cut_and_resume() { # cut_and_resume NAME CUT-COMMAND...: the sender's pid is $SENDER
    local name=$1; shift
    head -c 80M /dev/urandom > "$M/big"; sync
    # nsenter itself in the background, not a function: $! is the sender's pid.
    ZUMASTOR_ROOT="$WORK/a" nsenter --net=/run/netns/"$A" "$Z" replicate "$VA" 10.79.1.2 --quiet > push.log 2>&1 &
    SENDER=$!
    PIDS+=("$SENDER")
    checkpointed || { not_ok "$name: a checkpoint before the cut" "$(cat push.log)"; return; }
    if [ "$name" = "kill -9 of the sender" ]; then
        t=$(on a "$Z" status "$VA" --json | python3 -c 'import json,sys; t=[t for t in json.load(sys.stdin)["targets"] if t["host"] == "10.79.1.2"][0].get("transfer"); print(t is not None and t["chunksTotal"] > 0 and t["bytes"] > 0)')
        expect_eq "status shows the transfer under way (chunks, bytes)" "True" "$t"
    fi
    "$@"
    wait "$SENDER" 2>/dev/null
    sleep 1
    out=$(on a "$Z" replicate "$VA" 10.79.1.2 --quiet 2>&1)
    echo "$out" | grep -q "resumed at chunk" && ok "$name: the next cycle resumes" || not_ok "$name: resume" "$out"
    expect_eq "$name: the replica ends bit-identical" "$(sum "$M/big")" "$(sum "$(view b "$VB")/big")"
}
# The rate limit caps the bytes on the wire: 32 MiB at 16 MiB/s cannot take less than 2 s
# (a bound a slow machine cannot break).
head -c 32M /dev/urandom > "$M/paced"; sync
t0=$(date +%s.%N); on a "$Z" replicate "$VA" 10.79.1.2 --quiet >/dev/null; t1=$(date +%s.%N)
python3 -c 'import sys; sys.exit(0 if float(sys.argv[2]) - float(sys.argv[1]) >= 2.0 else 1)' "$t0" "$t1" \
    && ok "--ratelimit 16M: 32 MiB take at least 2 s" || not_ok "rate limit" "$t0 $t1"
rm -f "$M/paced"
kill_sender() { kill -9 "$SENDER"; }
cut_and_resume "kill -9 of the sender" kill_sender
grep -q "resuming snapshot" "$WORK/b/var/log/zumastor/$VB/replication.log" && ok "the replica's log says it resumed" || not_ok "resume logged"
kill_receiver() { kill -9 "$(cat "$(run_dir b)/replicator.pid")"; sleep 0.5; on b "$Z" start >/dev/null; }
cut_and_resume "kill -9 of the receiver" kill_receiver
link_down() { ip -n "$A" link set "ab$$" down; sleep 8; ip -n "$A" link set "ab$$" up; }
cut_and_resume "the link down" link_down
stop_start() { on b "$Z" stop >/dev/null; on b "$Z" start >/dev/null; }
cut_and_resume "a stop and start of the replica's service" stop_start
stop_start_original() { on a "$Z" stop >/dev/null; on a "$Z" start >/dev/null; }
cut_and_resume "a stop and start of the original's service" stop_start_original
on a "$Z" define target "$VA" 10.79.1.2 --key "$KB" --name "$VB" >/dev/null

# Resize during the relationship (the seed's lvm-resize acceptance test): the origin grown,
# then shrunk; both stores grown, then shrunk; replication goes on and the replica follows.
origin_bytes() { on "$1" "$Z" status "$2" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["originBytes"])'; }
resized() { # resized NAME: a new file on A, replicated, equal on B
    head -c 2M /dev/urandom > "$M/after-$2"
    out=$(on a "$Z" replicate "$VA" 10.79.1.2 --quiet 2>&1)
    [ $? -eq 0 ] && [ "$(sum "$M/after-$2")" = "$(sum "$(view b "$VB")/after-$2")" ] && ok "$1: replicated, equal on the replica" || not_ok "$1" "$out"
}
on a "$Z" stop master "$VA" >/dev/null
truncate -s 320M a.origin
expect_ok "resize: the original's origin grows to 320M" on a "$Z" resize "$VA" --origin 320M
e2fsck -fy "/dev/mapper/$VA" >/dev/null 2>&1; resize2fs "/dev/mapper/$VA" 320M >/dev/null 2>&1
on a "$Z" start master "$VA" >/dev/null
resized "the origin grown" grown
expect_eq "the replica's origin grew too" "335544320" "$(origin_bytes b "$VB")"
on a "$Z" stop master "$VA" >/dev/null
e2fsck -fy "/dev/mapper/$VA" >/dev/null 2>&1
expect_ok "resize2fs down to 288M" resize2fs "/dev/mapper/$VA" 288M
expect_ok "resize: the original's origin shrinks to 288M" on a "$Z" resize "$VA" --origin 288M
on a "$Z" start master "$VA" >/dev/null
resized "the origin shrunk" shrunk
expect_eq "the replica's origin shrank too" "301989888" "$(origin_bytes b "$VB")"
expect_ok "resize: the original's store grows" on a "$Z" resize "$VA" --snapshot 448M
expect_ok "resize: the replica's store grows" on b "$Z" resize "$VB" --snapshot 448M
resized "both stores grown" storegrown
expect_ok "resize: the original's store shrinks" on a "$Z" resize "$VA" --snapshot 416M
expect_ok "resize: the replica's store shrinks" on b "$Z" resize "$VB" --snapshot 416M
resized "both stores shrunk" storeshrunk

# A lost hold: the snapshot the target holds deleted by hand here; the next cycle sends a full
# copy and says so.
held=$(on a "$Z" status "$VA" --json | python3 -c 'import json,sys; print([t["held"] for t in json.load(sys.stdin)["targets"] if t["host"] == "10.79.1.2"][0])')
expect_ok "the held snapshot deleted by hand" on a "$Z" delete "$VA" "$held"
date >> "$M/testfile"
out=$(on a "$Z" replicate "$VA" 10.79.1.2 2>&1)
echo "$out" | grep -q "in full.*no snapshot the target holds" && ok "a lost hold: a full copy, said so" || not_ok "lost hold" "$out"
expect_eq "after the full copy the replica matches" "$(sum "$M/testfile")" "$(sum "$(view b "$VB")/testfile")"

# A replica whose origin device is too small: a clear error, nothing sent or written.
truncate -s 64M c4.origin c4.store
C4=$(losetup -f --show "$WORK/c4.origin")
VC4="rc4$$"
on c "$Z" define volume "$VC4" "$C4" c4.store --initialize >/dev/null
on c "$Z" define source "$VC4" 10.79.3.1 --key "$KA" --name "$VA" >/dev/null
on a "$Z" define target "$VA" 10.79.3.3 --key "$KC" --name "$VC4" >/dev/null
expect_fail "a replica's origin too small for the volume" "origin device holds 67108864 bytes.*grow the replica's origin first" on a "$Z" replicate "$VA" 10.79.3.3
expect_eq "the small replica holds nothing" "0" "$(on c "$Z" status "$VC4" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["snapshotCount"])')"
on a "$Z" forget target "$VA" 10.79.3.3 >/dev/null
on c "$Z" forget volume "$VC4" >/dev/null; losetup -d "$C4"

# Bad input: one line, non-zero, the configuration unchanged.
cfg() { md5sum < "$WORK/$1/var/lib/zumastor/volumes/$2/config.json"; }
refused() { # refused NAME PATTERN HOST VOL CMD...
    local name=$1 pattern=$2 h=$3 v=$4; shift 4
    local before out rc
    before=$(cfg "$h" "$v")
    out=$(on "$h" "$@" 2>&1); rc=$?
    # The reason is on the first line (a parser's usage lines may follow it).
    if [ $rc -ne 0 ] && echo "$out" | head -n 1 | grep -qiE -- "$pattern" && [ "$before" = "$(cfg "$h" "$v")" ]; then
        ok "$name"
    else
        not_ok "$name" "exit $rc: $out"
    fi
}
refused "an unknown host" "unknown host" a "$VA" "$Z" define target "$VA" no-such-host.invalid --key "$KB"
refused "a period of 0" "--period 0 must be" a "$VA" "$Z" define target "$VA" 10.79.1.2 --key "$KB" --period 0
refused "a period that is not a number" "period" a "$VA" "$Z" define target "$VA" 10.79.1.2 --key "$KB" --period soon
refused "a rate limit of 0" "ratelimit|too low" a "$VA" "$Z" define target "$VA" 10.79.1.2 --key "$KB" --ratelimit 0
refused "a rate with a bad suffix" "size|ratelimit" a "$VA" "$Z" define target "$VA" 10.79.1.2 --key "$KB" --ratelimit 10X
refused "an unknown compression" "compress" a "$VA" "$Z" define target "$VA" 10.79.1.2 --key "$KB" --compress brotli
refused "a missing --key" "key" a "$VA" "$Z" define target "$VA" 10.79.1.2
refused "a malformed key" "not a key fingerprint" a "$VA" "$Z" define target "$VA" 10.79.1.2 --key SHA256:nope
refused "this host's own key" "own key" a "$VA" "$Z" define target "$VA" 10.79.1.2 --key "$KA"
refused "a source on a master" "is a master" a "$VA" "$Z" define source "$VA" 10.79.1.2 --key "$KB"
refused "a bad --name" "--name" a "$VA" "$Z" define target "$VA" 10.79.1.2 --key "$KB" --name "bad/name"
refused "forget an unknown target" "no target" a "$VA" "$Z" forget target "$VA" 10.9.9.9
refused "replicate to an unknown target" "no target" a "$VA" "$Z" replicate "$VA" 10.9.9.9
refused "master on a replica" "is a replica" b "$VB" "$Z" define master "$VB"
# The port in use: C's service is stopped and another program holds 11235.
on c "$Z" stop >/dev/null
on c python3 -c 'import socket,time; s=socket.socket(socket.AF_INET6); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("::", 11235)); s.listen(); time.sleep(60)' &
PIDS+=("$!"); sleep 0.5
on c "$Z" start volume "$VC" >/dev/null
refused "the replication port in use" "cannot listen for replication" c "$VC" "$Z" define source "$VC" 10.79.2.2 --key "$KB" --name "$VB"

finish
