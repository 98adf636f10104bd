#!/usr/bin/env bash
# Delta streams between two hosts: network namespaces joined by a veth pair, each with its
# own key directory. `ddsnap delta send` to `ddsnap delta listen` over TLS 1.3 with pinned keys:
# a full and an incremental stream end bit-identical; a host with another key is refused (and
# logged with its address and fingerprint), as is a sender pinning the wrong key, and the
# replica keeps its last snapshot; a forged base is refused with the replica's reason.
# Usage: Tests/cli/network-e2e.sh PATH/TO/ddsnap (zumastor beside it makes the keys)
. "$(dirname "$0")/lib.sh"
D=${1:?usage: network-e2e.sh PATH/TO/ddsnap}
cd "$WORK"
if [ "$(id -u)" -ne 0 ] || ! command -v ip >/dev/null; then
    not_ok "network tests need root and iproute2"; finish; exit 1
fi

# Two hosts: zna (10.77.0.1) and znb (10.77.0.2); names carry this shell's pid.
A="zna$$"; B="znb$$"
NETNS=()
net_cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; done
    for n in "${NETNS[@]}"; do ip netns del "$n" 2>/dev/null; done
    cleanup
}
trap net_cleanup EXIT
ip netns add "$A" && NETNS+=("$A") && ip netns add "$B" && NETNS+=("$B") || { not_ok "ip netns add"; finish; exit 1; }
ip link add "va$$" netns "$A" type veth peer name "vb$$" netns "$B"
ip -n "$A" addr add 10.77.0.1/24 dev "va$$"; ip -n "$A" link set "va$$" up; ip -n "$A" link set lo up
ip -n "$B" addr add 10.77.0.2/24 dev "vb$$"; ip -n "$B" link set "vb$$" up; ip -n "$B" link set lo up
on() { local host=$1; shift; nsenter --net=/run/netns/"$host" "$@"; }
expect_eq "the hosts reach each other" "reachable" "$(on "$A" python3 -c '
import socket
try:
    socket.create_connection(("10.77.0.2", 9), 2)
except ConnectionRefusedError:
    print("reachable")' 2>&1)"

same() { "$D" read "$1" --snapshot "$3" > a.img && "$D" read "$2" --snapshot "$3" > b.img && cmp -s a.img b.img; }
snapshots() { "$D" list "$1" --json | python3 -c 'import json,sys; print(" ".join(str(s["tag"]) for s in json.load(sys.stdin)))'; }
# Each host's identity, made by `zumastor key` under its own root.
key() { ZUMASTOR_ROOT="$WORK/$1" "$(dirname "$D")/zumastor" key; }

truncate -s 64M src.origin src.store rep.origin rep.store
"$D" initialize -y src.store src.origin >/dev/null
"$D" initialize -y rep.store rep.origin >/dev/null
head -c 6M /dev/urandom | "$D" write src.store --offset 1M 2>/dev/null
"$D" create src.store 1 >/dev/null
head -c 300K /dev/urandom | "$D" write src.store --offset 3M 2>/dev/null
"$D" create src.store 2 >/dev/null

expect_fail "a send with a malformed key is refused before anything" "not a key fingerprint" "$D" delta send src.store 1 10.77.0.2 --key SHA256:nope
KA=$(key hostA); KB=$(key hostB); KC=$(key hostC)
keysA="$WORK/hostA/etc/zumastor"; keysB="$WORK/hostB/etc/zumastor"; keysC="$WORK/hostC/etc/zumastor"
expect_ok "the key files are readable by root only" test "$(stat -c %a "$keysA/host-key.pem")$(stat -c %a "$keysB/host-key.pem")" = 600600

listen() { # listen LOG: one stream on B, pinning A's key
    # nsenter itself, not a subshell, in the background: $! is the listener's pid.
    nsenter --net=/run/netns/"$B" "$D" delta listen rep.store 10.77.0.2:11235 --key "$KA" --identity "$keysB" --once > "$1" 2>&1 &
    LPID=$!; PIDS+=("$LPID")
    for _ in $(seq 50); do grep -q "listening on" "$1" && return 0; sleep 0.1; done
    return 1
}

listen l1.log || not_ok "listener started" "$(cat l1.log)"
out=$(on "$A" "$D" delta send src.store 1 10.77.0.2 --key "$KB" --identity "$keysA" --quiet 2>&1)
expect_eq "a full stream sent to the other host" "applied snapshot 1 (384 chunks of data, 3712 zero) as a full copy" "$out"
wait "$LPID"; expect_eq "the listener exits 0 after one stream with --once" "0" "$?"
expect_ok "replica snapshot 1 equals the source's, byte for byte" same src.store rep.store 1

listen l2.log
out=$(on "$A" "$D" delta send src.store 1 2 10.77.0.2:11235 --key "$KB" --identity "$keysA" --quiet 2>&1)
expect_ok "an incremental stream on snapshot 1" sh -c "echo '$out' | grep -q 'applied snapshot 2 .* on snapshot 1'"
wait "$LPID"
expect_ok "replica snapshot 2 equals the source's" same src.store rep.store 2

# Trust: a third key is refused at the handshake, logged with its address and fingerprint.
listen l3.log
out=$(on "$A" "$D" delta send src.store 2 10.77.0.2 --key "$KB" --identity "$keysC" --quiet 2>&1); rc=$?
[ $rc -ne 0 ] && ok "a sender with an unpinned key fails" || not_ok "unpinned sender" "$out"
for _ in $(seq 30); do grep -q "refused" l3.log && break; sleep 0.1; done
expect_ok "the listener logs the refused address and key" grep -qF "refused 10.77.0.1:" l3.log
expect_ok "... with the refused key and the pinned one" grep -qF "its key $KC is not the pinned $KA" l3.log
# A sender that pins another key for the listener refuses it (and says which key it saw).
out=$(on "$A" "$D" delta send src.store 2 10.77.0.2 --key "$KC" --identity "$keysA" --quiet 2>&1); rc=$?
[ $rc -ne 0 ] && echo "$out" | grep -qF "refused 10.77.0.2:11235: its key $KB is not the one pinned" \
    && ok "a sender pinning the wrong key refuses the listener, naming the key it saw" || not_ok "sender pinning the wrong key" "exit $rc: $out"
kill "$LPID" 2>/dev/null; wait "$LPID" 2>/dev/null
expect_eq "the replica still holds snapshots 1 and 2 only" "1 2" "$(snapshots rep.store)"

# A replica whose base differs is refused with its own reason, and keeps its snapshots.
head -c 64K /dev/urandom | "$D" write src.store --offset 10M 2>/dev/null
"$D" create src.store 3 >/dev/null
listen l4.log
expect_fail "a stream on a base the replica does not hold gets the replica's reason" "does not hold the base snapshot 3" \
    on "$A" "$D" delta send src.store 3 3 10.77.0.2 --key "$KB" --identity "$keysA" --quiet
wait "$LPID"; expect_eq "the listener exits non-zero for a refused stream with --once" "1" "$?"
expect_eq "the replica still holds snapshots 1 and 2" "1 2" "$(snapshots rep.store)"
expect_ok "the replica checks clean" "$D" check rep.store

# A forged stream from the pinned host (its own key, over TLS, garbage inside the frames) is
# refused with a reason, the replica keeps its snapshots, and the listener serves on.
nsenter --net=/run/netns/"$B" "$D" delta listen rep.store 10.77.0.2:11235 --key "$KA" --identity "$keysB" > l6.log 2>&1 &
LPID=$!; PIDS+=("$LPID")
for _ in $(seq 50); do grep -q "listening on" l6.log && break; sleep 0.1; done
forged=$(on "$A" python3 - "$keysA" <<'PY'
import json, os, socket, ssl, struct, sys
keys = sys.argv[1]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.minimum_version = ssl.TLSVersion.TLSv1_3
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE          # the test trusts the listener; the listener pins us
ctx.load_cert_chain(keys + "/host-certificate.pem", keys + "/host-key.pem")
s = ctx.wrap_socket(socket.create_connection(("10.77.0.2", 11235), 10))
body = b"ZUMADELT" + os.urandom(4000)
s.sendall(struct.pack("<I", len(body)) + body + struct.pack("<I", 0))
data = b""
while True:
    piece = s.recv(65536)
    if not piece:
        break
    data += piece
length = struct.unpack("<I", data[:4])[0]
print(json.loads(data[4:4 + length])["ok"])
PY
)
expect_eq "a forged stream from the pinned host is refused with a reply" "False" "$forged"
out=$(on "$A" "$D" delta send src.store 2 3 10.77.0.2 --key "$KB" --identity "$keysA" --quiet 2>&1)
expect_ok "the listener serves the next sender after it" sh -c "echo '$out' | grep -q 'applied snapshot 3 .* on snapshot 2'"
kill "$LPID" 2>/dev/null; wait "$LPID" 2>/dev/null
expect_eq "the replica holds snapshots 1 2 3" "1 2 3" "$(snapshots rep.store)"
expect_ok "replica snapshot 3 equals the source's" same src.store rep.store 3
expect_ok "the replica checks clean after it all" "$D" check rep.store

# Plain TCP gets nothing: the listener answers it with a TLS alert at most.
listen l5.log
reply=$(on "$A" python3 -c 'import socket; s=socket.create_connection(("10.77.0.2", 11235), 5); s.sendall(b"GET / HTTP/1.0\r\n\r\n"); s.settimeout(5); print(len(s.recv(4096)) < 64)' 2>&1)
expect_eq "plain TCP gets no more than an alert" "True" "$reply"
kill "$LPID" 2>/dev/null; wait "$LPID" 2>/dev/null

finish
