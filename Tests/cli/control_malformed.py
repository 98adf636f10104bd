#!/usr/bin/env python3
"""Malformed control-socket messages: each gets a failure reply naming the problem (or, for a
frame that cannot be trusted, that reply and a closed connection); the server goes on. The
server's `hello` must list the batched origin write, whose bad lists and data are refused too.
Usage: control_malformed.py SOCKET"""
import json
import socket
import struct
import sys

sys.path.insert(0, __import__("os").path.dirname(__file__))
import tapcheck  # noqa: E402

SOCK = sys.argv[1]


def check(name, cond, detail=""):
    tapcheck.check("control", name, cond, detail)


def frame(kind, payload=b"", version=1):
    return struct.pack("<IBB", len(payload) + 2, version, kind) + payload


def connect():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(SOCK)
    return s


def reply(s):
    head = b""
    while len(head) < 6:
        part = s.recv(6 - len(head))
        if not part:
            return None
        head += part
    length, version, kind = struct.unpack("<IBB", head)
    body = b""
    while len(body) < length - 2:
        body += s.recv(length - 2 - len(body))
    return json.loads(body) if kind == 1 else body


def failure_text(r):
    return json.dumps(r) if r else ""


s = connect()
s.sendall(frame(1, b"this is not json"))
r = reply(s)
check("garbage message gets a failure", r and "failed" in r and "malformed request" in failure_text(r), failure_text(r))
s.sendall(frame(1, json.dumps({"create": {"tag": 5}}).encode()))
r = reply(s)
check("request missing a field is named", r and "missing field 'name'" in failure_text(r), failure_text(r))
s.sendall(frame(1, json.dumps({"selfdestruct": {}}).encode()))
r = reply(s)
check("unknown request gets a failure", r and "failed" in r, failure_text(r))
s.sendall(frame(2, b"stray data"))
r = reply(s)
check("stray data frame gets a failure", r and "data frame outside" in failure_text(r), failure_text(r))
s.sendall(frame(1, json.dumps({"status": {}}).encode()))
r = reply(s)
check("same connection still answers", r and "ok" in r, failure_text(r))
s.sendall(frame(1, b"{}", version=9))
r = reply(s)
check("wrong version gets a failure", r and "version 9" in failure_text(r), failure_text(r))
check("wrong version closes the connection", reply(s) is None)

s = connect()
s.sendall(struct.pack("<IBB", 0x7FFFFFFF, 1, 1))
r = reply(s)
check("oversized frame gets a failure", r and "larger than the limit" in failure_text(r), failure_text(r))

s = connect()
s.sendall(frame(1, json.dumps({"read": {"offset": 0, "length": 2**63}}).encode()))
r = reply(s)
check("read past the end is refused", r and "past the end" in failure_text(r), failure_text(r))
for ranges, text, name in [
        ([[0]], "not an [offset, length] pair", "a range without a length"),
        ([[0, 0]], "read range of 0 bytes", "an empty range"),
        ([[0, 4096]] * 1025, "at most 1024", "more ranges than allowed"),
        ([[0, 2**40]], "at most", "a range larger than allowed"),
        ([[0, 4096], [2**62, 4096]], "past its end", "a range past the end")]:
    s.sendall(frame(1, json.dumps({"readRanges": {"ranges": ranges}}).encode()))
    r = reply(s)
    while isinstance(r, bytes):  # the ranges before a bad one arrive first
        r = reply(s)
    check(f"readRanges with {name} is refused", r and "failed" in r and text in failure_text(r), failure_text(r))
s.sendall(frame(1, json.dumps({"readRanges": {"ranges": [[4096, 100], [0, 8192]]}}).encode()))
pieces = []
r = reply(s)
while isinstance(r, bytes):
    pieces.append(len(r))
    r = reply(s)
check("readRanges streams each range, then replies", r and "ok" in r and pieces == [100, 8192], f"{pieces} {failure_text(r)}")
# Batched origin writes: bad lists are refused after their data (drained to the end frame);
# data that does not match the list is refused; the connection goes on either way.
for extents, data, text, name in [
        ([[0]], b"", "not an [offset, length] pair", "an extent without a length"),
        ([[0, 0]], b"", "not an [offset, length] pair", "an empty extent"),
        ([[0, 512]] * 8193, b"x" * 512, "at most 8192", "more extents than allowed"),
        ([[0, 2**24], [2**24, 1]], b"", "16777216 bytes in all", "more bytes than allowed"),
        ([[0, 100]], b"y" * 101, "carry more than", "more data than the extents"),
        ([[0, 100], [4096, 100]], b"z" * 150, "carry 150 of the extents' 200 bytes", "less data than the extents"),
        ([[2**62, 100]], b"w" * 100, "past its end", "an extent past the end")]:
    s.sendall(frame(1, json.dumps({"writeExtents": {"extents": extents}}).encode()) + frame(2, data) * (1 if data else 0) + frame(3))
    r = reply(s)
    check(f"writeExtents with {name} is refused", r and "failed" in r and text in failure_text(r), failure_text(r))

# A request where a write's data or end frame was due: the write fails, and the request that
# cut it is answered after it (not dropped).
for name, cut in [
        ("a failed write's drain", frame(1, json.dumps({"write": {"offset": 2**62}}).encode()) + frame(2, b"abc")),
        ("a batched write's data", frame(1, json.dumps({"writeExtents": {"extents": [[0, 100]]}}).encode()) + frame(2, b"d" * 50))]:
    s.sendall(cut + frame(1, json.dumps({"status": {}}).encode()))
    r1, r2 = reply(s), reply(s)
    check(f"a request cutting {name}: the write fails", r1 and "failed" in r1, failure_text(r1))
    check(f"a request cutting {name}: the request is answered", r2 and "ok" in r2 and "status" in json.dumps(r2), failure_text(r2))


def read_extents(s):
    s.sendall(frame(1, json.dumps({"readRanges": {"ranges": [[8192, 3], [12288, 2]]}}).encode()))
    got = b""
    r = reply(s)
    while isinstance(r, bytes):
        got += r
        r = reply(s)
    return got


def write_extents(s, data):
    s.sendall(frame(1, json.dumps({"writeExtents": {"extents": [[8192, 3], [12288, 2]]}}).encode()) + frame(2, data[:3]) + frame(2, data[3:]) + frame(3))
    return reply(s)


before = read_extents(s)
r = write_extents(s, b"abcde")
check("writeExtents writes its extents", r and "ok" in r, failure_text(r))
check("the extents read back", read_extents(s) == b"abcde")
r = write_extents(s, before)  # the volume as it was (the caller compares it)
check("and the bytes before them are back", r and "ok" in r and read_extents(s) == before, failure_text(r))
s.sendall(frame(1, json.dumps({"delete": {"tag": 999999}}).encode()))
r = reply(s)
check("delete of a missing snapshot is refused", r and "snapshotMissing" in failure_text(r), failure_text(r))
s.close()

s = connect()
s.sendall(frame(1, json.dumps({"hello": {}}).encode()))
r = reply(s)
check("server still serves", r and "ok" in r, failure_text(r))
check("the server lists writeExtents among its features", "writeExtents" in json.dumps(r.get("ok", {})) if r else False, failure_text(r))
# Versions: a client of protocol 1 (its hello says nothing) is told why a request it sends
# cannot be read; one of this server's own version gets the plain answer.
s.sendall(frame(1, json.dumps({"selfdestruct": {}}).encode()))
r = reply(s)
check("a protocol 1 client's unreadable request: the versions named",
      "malformed request" in failure_text(r) and "the client speaks control protocol 1, this server 2" in failure_text(r), failure_text(r))
s.close()
s = connect()
s.sendall(frame(1, json.dumps({"hello": {"client": 2}}).encode()))
r = reply(s)
info = r.get("ok", {}).get("_0", {}).get("server", {}).get("_0", {}) if r else {}
check("hello of a protocol 2 client: the server says its protocol and release",
      info.get("protocolVersion") == 2 and bool(info.get("release")), failure_text(r))
s.sendall(frame(1, json.dumps({"selfdestruct": {}}).encode()))
r = reply(s)
check("the same version's unreadable request: no talk of versions",
      "malformed request" in failure_text(r) and "speaks control protocol" not in failure_text(r), failure_text(r))
s.close()
sys.exit(1 if tapcheck.failures else 0)
