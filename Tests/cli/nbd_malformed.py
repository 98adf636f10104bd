#!/usr/bin/env python3
"""Malformed NBD clients against a running server: each case must get a clear refusal (an
error reply, or the connection closed where the protocol leaves no other way) and leave the
server serving. Usage: nbd_malformed.py SOCKET EXPORT READONLY_EXPORT SIZE
Prints one line per case, "ok - ..." or "not ok - ...", then exits 1 if any failed."""
import socket
import struct
import sys

sys.path.insert(0, __import__("os").path.dirname(__file__))
import tapcheck  # noqa: E402

SOCK, EXPORT, RO_EXPORT, SIZE = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
INIT, OPT, REPLY = 0x4E42444D41474943, 0x49484156454F5054, 0x3E889045565A9
REQ, SIMPLE = 0x25609513, 0x67446698


def check(name, cond, detail=""):
    tapcheck.check("nbd", name, cond, detail)


def recv(s, n):
    data = b""
    while len(data) < n:
        part = s.recv(n - len(data))
        if not part:
            raise EOFError(f"closed after {len(data)} of {n} bytes")
        data += part
    return data


def connect(flags=3):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(SOCK)
    init, opt, hflags = struct.unpack(">QQH", recv(s, 18))
    assert init == INIT and opt == OPT, "bad greeting"
    s.sendall(struct.pack(">I", flags))
    return s


def option(s, code, data=b""):
    s.sendall(struct.pack(">QII", OPT, code, len(data)) + data)


def option_reply(s):
    magic, opt, typ, length = struct.unpack(">QIII", recv(s, 20))
    assert magic == REPLY, "bad option reply magic"
    return opt, typ, recv(s, length)


def go(s, name):
    n = name.encode()
    option(s, 7, struct.pack(">I", len(n)) + n + struct.pack(">H", 0))
    while True:
        opt, typ, data = option_reply(s)
        if typ != 3:
            return typ, data


def request(s, typ, offset, length, flags=0, cookie=1, payload=b""):
    s.sendall(struct.pack(">IHHQQI", REQ, flags, typ, cookie, offset, length) + payload)


def simple_reply(s):
    magic, err, cookie = struct.unpack(">IIQ", recv(s, 16))
    assert magic == SIMPLE, f"bad reply magic {magic:#x}"
    return err, cookie


def closed(s):
    try:
        return s.recv(1) == b""
    except (ConnectionResetError, socket.timeout):
        return True


def still_serving():
    s = connect()
    typ, _ = go(s, EXPORT)
    request(s, 0, 0, 512, cookie=77)
    err, cookie = simple_reply(s)
    data = recv(s, 512)
    s.close()
    return typ == 1 and err == 0 and cookie == 77 and len(data) == 512


# Wrong magic in the option phase: the connection ends, the server goes on.
s = connect()
s.sendall(struct.pack(">QII", 0x1122334455667788, 7, 0))
check("wrong option magic closes the connection", closed(s))
check("server serves after a wrong option magic", still_serving())

# Unknown client flags: the protocol says to drop the connection.
s = connect(flags=0x80)
check("unknown client flags close the connection", closed(s))

# Unknown option and oversized option: error replies, same connection goes on.
s = connect()
option(s, 4242)
_, typ, msg = option_reply(s)
check("unknown option gets NBD_REP_ERR_UNSUP", typ == 2**31 + 1, f"type {typ:#x}")
option(s, 6, b"\0" * (1 << 17))
_, typ, msg = option_reply(s)
check("oversized option gets NBD_REP_ERR_TOO_BIG", typ == 2**31 + 9, f"type {typ:#x} {msg!r}")
typ, msg = go(s, "no-such-export")
check("unknown export gets NBD_REP_ERR_UNKNOWN with a message", typ == 2**31 + 6 and b"no export" in msg, f"{typ:#x} {msg!r}")
typ, _ = go(s, EXPORT)
check("GO after refusals succeeds", typ == 1)

# Transmission: out of range, oversized, unknown command, wrong request magic.
request(s, 0, SIZE - 256, 512, cookie=1)
check("read past the end gets EINVAL", simple_reply(s) == (22, 1))
request(s, 1, SIZE, 512, cookie=2, payload=b"x" * 512)
check("write past the end gets ENOSPC", simple_reply(s) == (28, 2))
request(s, 0, 0, 64 << 20, cookie=3)
check("oversized read gets EOVERFLOW", simple_reply(s) == (75, 3))
request(s, 1, 0, (32 << 20) + 4096, cookie=4, payload=b"\0" * ((32 << 20) + 4096))
check("oversized write gets EOVERFLOW, its data skipped", simple_reply(s) == (75, 4))
request(s, 0x55, 0, 0, cookie=5)
check("unknown command gets EINVAL", simple_reply(s) == (22, 5))
request(s, 0, 2**64 - 256, 512, cookie=6)
check("offset that overflows gets EINVAL", simple_reply(s) == (22, 6))
request(s, 0, 0, 512, cookie=7)
err, cookie = simple_reply(s)
check("connection still in step after the refusals", err == 0 and cookie == 7 and len(recv(s, 512)) == 512)
s.sendall(struct.pack(">IHHQQI", 0xDEADBEEF, 0, 0, 8, 0, 512))
check("wrong request magic closes the connection", closed(s))
check("server serves after a wrong request magic", still_serving())

# Read-only export refuses writes.
s = connect()
typ, _ = go(s, RO_EXPORT)
request(s, 1, 0, 512, cookie=9, payload=b"y" * 512)
check("read-only export refuses a write with EPERM", simple_reply(s) == (1, 9))
request(s, 6, 0, 4096, cookie=10)
check("read-only export refuses WRITE_ZEROES with EPERM", simple_reply(s) == (1, 10))
s.close()

# A pipelined burst of origin writes shares one group commit, each answered on its own: a bad
# one in the middle fails alone. Then WRITE_ZEROES, with and without NO_HOLE, reads as zeros,
# and the snapshot export keeps what it had there.
BASE = 120 << 20


def read_range(s, offset, length, cookie):
    request(s, 0, offset, length, cookie=cookie)
    err, got = simple_reply(s)
    return recv(s, length) if err == 0 and got == cookie else None


snap = connect()
go(snap, RO_EXPORT)
snap_before = read_range(snap, BASE, 16 * 4096, 40)
s = connect()
go(s, EXPORT)
original = read_range(s, BASE, 8 * 4096, 19)
blocks = [bytes([i + 1]) * 4096 for i in range(8)]
for i, b in enumerate(blocks):
    request(s, 1, BASE + i * 4096 if i != 4 else SIZE, 4096, cookie=20 + i, payload=b)
replies = sorted((simple_reply(s) for _ in blocks), key=lambda r: r[1])
check("a pipelined burst of writes: each answered (by cookie), the bad one alone with ENOSPC",
      replies == [(0 if i != 4 else 28, 20 + i) for i in range(8)], str(replies))
got = read_range(s, BASE, 8 * 4096, 30)
check("the burst's good writes read back", got is not None and all(got[i * 4096:(i + 1) * 4096] == (blocks[i] if i != 4 else got[4 * 4096:5 * 4096]) for i in range(8)))
request(s, 6, BASE, 4 * 4096, cookie=31)
check("WRITE_ZEROES succeeds", simple_reply(s) == (0, 31))
request(s, 6, BASE + 4 * 4096, 4 * 4096, flags=2, cookie=32)
check("WRITE_ZEROES with NO_HOLE succeeds", simple_reply(s) == (0, 32))
got = read_range(s, BASE, 8 * 4096, 33)
check("both zeroed ranges read as zeros", got == b"\0" * (8 * 4096))
check("the snapshot export keeps its data under the zeroed range", read_range(snap, BASE, 16 * 4096, 41) == snap_before)
request(s, 1, BASE, 8 * 4096, flags=1, cookie=34, payload=original)
check("the range written back as it was", simple_reply(s) == (0, 34))
s.close()
snap.close()

# A connection that dies mid-request does not disturb anyone.
s = connect()
go(s, EXPORT)
s.sendall(struct.pack(">IHHQQI", REQ, 0, 1, 11, 0, 4096) + b"z" * 100)
s.close()
check("server serves after a client died mid-write", still_serving())
sys.exit(1 if tapcheck.failures else 0)
