#!/usr/bin/env bash
# ddsnap delta end to end on files and pipes: changelists, full and incremental streams
# (compressed or not) through pipes and files, replicas equal byte for byte, interrupted
# applies, and every bad input the issue names; then a replica served by `ddsnap server`
# applying through its socket (as root with /dev/fuse).
# Usage: Tests/cli/delta-e2e.sh PATH/TO/ddsnap
. "$(dirname "$0")/lib.sh"
D=${1:?usage: delta-e2e.sh PATH/TO/ddsnap}
cd "$WORK"

same() { "$D" read "$1" --snapshot "$3" > a.img && "$D" read "$2" --snapshot "$3" > b.img && cmp -s a.img b.img; }
snapshots() { "$D" list "$1" --json | python3 -c 'import json,sys; print(" ".join(str(s["tag"]) for s in json.load(sys.stdin)))'; }

truncate -s 64M src.origin src.store rep.origin rep.store other.origin other.store
"$D" initialize -y src.store src.origin >/dev/null
"$D" initialize -y rep.store rep.origin >/dev/null
"$D" initialize -y other.store other.origin >/dev/null
head -c 6M /dev/urandom | "$D" write src.store --offset 1M 2>/dev/null
yes "compressible text" | head -c 4M | "$D" write src.store --offset 20M 2>/dev/null
"$D" create src.store 1 --name first >/dev/null
head -c 300K /dev/urandom | "$D" write src.store --offset 3M 2>/dev/null
"$D" create src.store 2 >/dev/null
head -c 64K /dev/urandom | "$D" write src.store --offset 40M 2>/dev/null
printf 'a few bytes changed in text' | "$D" write src.store --offset 21M 2>/dev/null
"$D" create src.store 3 >/dev/null

# Changelists.
n=$("$D" delta changelist src.store 1 2 | wc -l)
[ "$n" -ge 19 ] && [ "$n" -le 21 ] && ok "delta changelist 1 2: the 300 KiB rewritten ($n chunks)" || not_ok "changelist count" "$n"
expect_eq "delta changelist --json has the same chunks" "$("$D" delta changelist src.store 1 2 | tr '\n' ' ')" \
    "$("$D" delta changelist src.store 1 2 --json | python3 -c 'import json,sys; d=json.load(sys.stdin); assert d["count"] == len(d["chunks"]); print(" ".join(map(str, d["chunks"])), end=" ")')"
expect_eq "delta changelist of a snapshot with itself is empty" "0" "$("$D" delta changelist src.store 2 2 | wc -l)"

# Round trips: a full stream through a pipe, incremental ones through files, compressed.
out=$("$D" delta create src.store 1 2>progress | "$D" delta apply rep.store --quiet 2>&1)
expect_eq "full stream through a pipe" "applied snapshot 1 (640 chunks of data, 3456 zero) as a full copy" "$out"
expect_ok "progress on stderr (bytes, chunks, rate)" grep -qE "delta create: [0-9.]+ MiB, 4096/4096 chunks, [0-9.]+ MiB/s" progress
expect_ok "replica snapshot 1 equals the source's" same src.store rep.store 1
expect_ok "the replica takes the source's time and name" sh -c "[ \"\$('$D' list rep.store --json | python3 -c 'import json,sys; s=json.load(sys.stdin)[0]; print(s[\"createdNanoseconds\"], s[\"name\"])')\" = \"\$('$D' list src.store --json | python3 -c 'import json,sys; s=json.load(sys.stdin)[0]; print(s[\"createdNanoseconds\"], s[\"name\"])')\" ]"
expect_ok "delta create 1 2 -o FILE --compress lzma:6 --quiet" "$D" delta create src.store 1 2 -o inc12.zd --compress lzma:6 --quiet
expect_ok "no FILE.partial left" test ! -e inc12.zd.partial
"$D" delta create src.store 1 2 -o raw12.zd --quiet
[ "$(stat -c %s inc12.zd)" -lt "$(stat -c %s raw12.zd)" ] || [ "$(stat -c %s inc12.zd)" -eq "$(stat -c %s raw12.zd)" ] && ok "lzma records are kept only when smaller" || not_ok "lzma larger"
"$D" delta create src.store 2 3 -o inc23.zd --quiet
cp rep.store rep-at-1.store; cp rep.origin rep-at-1.origin
expect_ok "apply -i FILE" "$D" delta apply rep.store -i inc12.zd --quiet
expect_ok "replica snapshot 2 equals the source's" same src.store rep.store 2
cp rep.store rep-at-2.store; cp rep.origin rep-at-2.origin
# zstd with a base: records compressed against the base's same bytes, decoded against the
# replica's own copy of the base (a store opened here, and below a server's second connection).
expect_ok "delta create 2 3 --compress zstd" "$D" delta create src.store 2 3 -o inc23z.zd --compress zstd --quiet
expect_ok "its records are compressed against the base (feature 8, kind 5)" python3 -c "
import struct, sys
b = open('inc23z.zd', 'rb').read()
at, kinds = struct.unpack_from('<H', b, 10)[0], set()
while b[at:at + 4] == b'ZREC':
    kinds.add(b[at + 4]); at += 64 + struct.unpack_from('<I', b, at + 20)[0]
sys.exit(0 if struct.unpack_from('<I', b, 12)[0] & 8 and 5 in kinds else 1)"
expect_ok "applied to a replica at snapshot 2" "$D" delta apply rep-at-2.store --origin rep-at-2.origin -i inc23z.zd --quiet
expect_ok "its snapshot 3 equals the source's" bash -c "cmp -s <('$D' read rep-at-2.store --origin rep-at-2.origin --snapshot 3) <('$D' read src.store --snapshot 3)"
expect_eq "applying it again does nothing" "the replica already holds snapshot 2; nothing to do" "$("$D" delta apply rep.store -i inc12.zd --quiet 2>&1)"
expect_fail "a stream whose base the replica lacks" "does not hold the base snapshot 2" "$D" delta apply rep-at-1.store --origin rep-at-1.origin -i inc23.zd --quiet
"$D" delta create src.store 2 2 -o empty.zd --quiet
expect_eq "create(A, A) holds no record" "0" "$(python3 -c "import sys; d=open('empty.zd','rb').read(); print(d.count(b'ZREC'))")"

# Interrupted applies: the replica stays at snapshot 2; re-running completes.
size=$(stat -c %s inc23.zd)
for cut in 0 100 300 $((size / 2)) $((size - 1)); do
    head -c "$cut" inc23.zd > cut.zd
    expect_fail "a stream cut at byte $cut of $size" "truncated|not a delta stream|empty" "$D" delta apply rep.store -i cut.zd --quiet
    expect_eq "after the cut at $cut the replica is still at 1 2" "1 2" "$(snapshots rep.store)"
done
"$D" read rep.store > a.img; "$D" read rep.store --snapshot 2 > b.img
expect_ok "the origin is back at snapshot 2 after the interrupted apply" cmp -s a.img b.img
expect_ok "re-running the complete stream" "$D" delta apply rep.store -i inc23.zd --quiet
expect_ok "replica snapshot 3 equals the source's" same src.store rep.store 3
expect_ok "the replica checks clean" "$D" check rep.store

# Bad input, each against a replica at snapshot 2 (a copy), which must not change.
python3 - "$WORK" <<'EOF'
import hashlib, struct, sys
w = sys.argv[1]
good = open(f"{w}/inc23.zd", "rb").read()
checks = struct.unpack_from("<I", good, 36)[0]
hlen = 248 + 40 * checks + 32
def save(name, data): open(f"{w}/{name}", "wb").write(data)
def flip(i): b = bytearray(good); b[i] ^= 1; return bytes(b)
save("flip-header.zd", flip(20))
save("flip-record-header.zd", flip(hlen + 9))
save("flip-payload.zd", flip(hlen + 64 + 5))
save("flip-trailer.zd", flip(len(good) - 50))
save("flip-trailer-digest.zd", flip(len(good) - 1))
b = bytearray(good); struct.pack_into("<I", b, hlen + 20, 0x7FFFFFFF); save("forged-length.zd", bytes(b))
h = bytearray(good[:hlen]); struct.pack_into("<H", h, 8, 2); h[hlen-32:] = hashlib.sha256(bytes(h[:hlen-32])).digest()
save("version-2.zd", bytes(h) + good[hlen:])
h = bytearray(good[:hlen]); h[16:32] = bytes(16); h[hlen-32:] = hashlib.sha256(bytes(h[:hlen-32])).digest()
save("other-volume.zd", bytes(h) + good[hlen:])
save("not-a-stream.zd", b"hello, this is not a delta stream" * 20)
EOF
for case in "flip-header:checksum mismatch in the stream header" "flip-record-header:checksum mismatch|malformed" \
            "flip-payload:checksum mismatch in the record" "flip-trailer:checksum mismatch in the stream trailer" \
            "flip-trailer-digest:checksum mismatch in the stream trailer" "forged-length:malformed" \
            "version-2:version 2 is not supported" "other-volume:the stream is of volume" "not-a-stream:not a delta stream"; do
    name=${case%%:*}; pattern=${case#*:}
    cp rep-at-1.store bad.store; cp rep-at-1.origin bad.origin
    "$D" delta apply bad.store --origin bad.origin -i inc12.zd --quiet >/dev/null
    before=$(md5sum < bad.origin)
    expect_fail "bad input: $name" "$pattern" "$D" delta apply bad.store --origin bad.origin -i "$name.zd" --quiet
    expect_eq "bad input: $name leaves the replica at 1 2" "1 2" "$("$D" list bad.store --origin bad.origin --json | python3 -c 'import json,sys; print(" ".join(str(s["tag"]) for s in json.load(sys.stdin)))')"
    expect_eq "bad input: $name leaves the origin as it was" "$before" "$(md5sum < bad.origin)"
done
expect_fail "a full stream into a replica of another volume" "the stream is of volume" sh -c "'$D' create other.store 5 >/dev/null && '$D' delta create src.store 1 --quiet | '$D' delta apply other.store --quiet"
expect_fail "empty input" "empty" sh -c "'$D' delta apply rep.store --quiet < /dev/null"
expect_fail "an unknown compression" "is not none, lzma" "$D" delta create src.store 1 2 --compress brotli -o x.zd
expect_fail "a missing snapshot" "doesn't exist" "$D" delta create src.store 1 9 -o x.zd --quiet
expect_ok "no partial file after a refusal" test ! -e x.zd.partial -a ! -e x.zd
expect_fail "three tags" "give TO, or FROM and TO" "$D" delta create src.store 1 2 3

# A replica served by `ddsnap server`: apply through its socket.
if [ "$(id -u)" -eq 0 ] && [ -e /dev/fuse ]; then
    truncate -s 64M srv.origin srv.store
    "$D" initialize -y srv.store srv.origin >/dev/null
    out=$("$D" server srv.store --name dl$$ --socket "$WORK/srv.sock" --block-files "$WORK/blocks" --log "$WORK/srv.log")
    pid=$(echo "$out" | sed -n 's/.*(pid \([0-9]*\)).*/\1/p'); PIDS+=("$pid")
    expect_ok "full stream applied through a server's socket" sh -c "'$D' delta create src.store 1 --quiet | '$D' delta apply '$WORK/srv.sock' --quiet"
    expect_ok "incremental streams through the socket (zstd against the base)" sh -c "'$D' delta apply '$WORK/srv.sock' -i inc12.zd --quiet && '$D' delta apply '$WORK/srv.sock' -i inc23z.zd --quiet"
    expect_ok "the served replica's snapshot 3 equals the source's" bash -c "cmp -s <('$D' read '$WORK/srv.sock' --snapshot 3) <('$D' read src.store --snapshot 3)"
    expect_ok "a stream created through the socket equals one from the file" bash -c "cmp -s <('$D' delta create '$WORK/srv.sock' 2 3 --quiet) inc23.zd"
    kill -TERM "$pid"; for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    expect_ok "the served replica checks clean" "$D" check srv.store
fi
finish
