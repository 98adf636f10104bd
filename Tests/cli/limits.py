#!/usr/bin/env python3
"""The server's limits against a greedy client: 1,000 control connections and 1,000 NBD
connections at once (at most the documented number stay open, the rest are closed at once,
and the server keeps serving), and 1 GiB of NBD writes pipelined without reading a reply
(the connection stops reading once its in-flight bytes are used: the server's memory stays
within its bound). Usage: limits.py CONTROL_SOCKET NBD_SOCKET EXPORT SERVER_PID
Prints one line per case, "ok - ..." or "not ok - ...", then exits 1 if any failed."""
import os
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
import tapcheck  # noqa: E402

CONTROL, NBD, EXPORT, PID = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
CONTROL_MAX, NBD_MAX = 32, 32          # ControlListener.connectionsMax, NBDContext.connectionsMax
IN_FLIGHT_BYTES = 32 << 20             # NBDConnectionHandler.inFlightBytesMax
# What one greedy NBD connection may hold: its in-flight bytes, one request being decoded, read
# buffers; plus the pool's batch. Twice that, for the allocator's slack.
MEMORY_BOUND = 2 * (2 * IN_FLIGHT_BYTES + (32 << 20) + (4 << 20))
# One control connection: 8 queued frames of up to 1 MiB, the frame being cut, one read event's
# bytes, the reply being written; twice that, for the allocator's slack.
CONTROL_QUEUE_BOUND = 2 * (8 * (1 << 20) + (1 << 20) + 4 * (64 << 10) + (1 << 20)) + (8 << 20)


def check(name, cond, detail=""):
    tapcheck.check("limits", name, cond, detail)


def rss():
    with open(f"/proc/{PID}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def open_many(path, n):
    """n connections; returns (still open after a moment, sockets)."""
    socks = []
    for _ in range(n):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(5)
        try:
            s.connect(path)
            socks.append(s)
        except OSError:
            s.close()
    time.sleep(1.0)
    alive = 0
    for s in socks:
        s.setblocking(False)
        try:
            data = s.recv(1 << 16)
            alive += 1 if data else 0       # NBD sends its greeting; a closed one reads b""
        except BlockingIOError:
            alive += 1                       # control: open, nothing said yet
        except OSError:
            pass
    return alive, socks


def nbd_serves():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(NBD)
    greeting = s.recv(18)
    s.close()
    return len(greeting) == 18


started = time.time()
base = rss()
alive, socks = open_many(CONTROL, 1000)
check(f"1,000 control connections: at most {CONTROL_MAX} stay open", 0 < alive <= CONTROL_MAX, f"{alive} open")
for s in socks:
    s.close()
alive, socks = open_many(NBD, 1000)
check(f"1,000 NBD connections: at most {NBD_MAX} stay open", 0 < alive <= NBD_MAX, f"{alive} open")
peak = rss()
for s in socks:
    s.close()
time.sleep(0.5)
check("the server serves NBD again once they are gone", nbd_serves())
check(f"a thousand connections cost less than 256 MiB ({(peak - base) >> 20} MiB)", peak - base < (256 << 20))
print(f"# connections: {time.time() - started:.1f} s", file=sys.stderr)
started = time.time()

# One connection pipelines 1 GiB of 32 MiB writes and reads no reply until all are sent.
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(NBD)
s.recv(18)
s.sendall(struct.pack(">I", 3))
name = EXPORT.encode()
s.sendall(struct.pack(">QII", 0x49484156454F5054, 7, 4 + len(name) + 2) + struct.pack(">I", len(name)) + name + struct.pack(">H", 0))
while True:
    magic, opt, typ, length = struct.unpack(">QIII", s.recv(20, socket.MSG_WAITALL))
    if length:
        s.recv(length, socket.MSG_WAITALL)
    if typ != 3:
        break
chunk = b"\xa5" * (32 << 20)
requests = 32
base = rss()
peak = [base]
done = threading.Event()


def sample():
    while not done.is_set():
        peak[0] = max(peak[0], rss())
        time.sleep(0.02)


sampler = threading.Thread(target=sample)
sampler.start()
for i in range(requests):
    s.sendall(struct.pack(">IHHQQI", 0x25609513, 0, 1, 100 + i, (i % 2) * (32 << 20), len(chunk)) + chunk)
replies = []
for _ in range(requests):
    magic, err, cookie = struct.unpack(">IIQ", s.recv(16, socket.MSG_WAITALL))
    replies.append((err, cookie))
done.set()
sampler.join()
s.close()
check("1 GiB of pipelined writes all answered", sorted(replies) == [(0, 100 + i) for i in range(requests)], str(replies[:4]))
check(f"the server's memory stays within {MEMORY_BOUND >> 20} MiB over its start meanwhile ({(peak[0] - base) >> 20} MiB)",
      peak[0] - base < MEMORY_BOUND)
print(f"# pipelined writes: {time.time() - started:.1f} s", file=sys.stderr)
started = time.time()

# One control connection pipelines 256 MiB of frames (requests and 1 MiB data frames outside a
# write, each answered with a failure) and reads no reply: the worker blocks on its first
# unread replies, the connection stops reading, and the server's memory stays put.
def frame(kind, payload):
    return struct.pack("<IBB", len(payload) + 2, 1, kind) + payload


s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(CONTROL)
base = rss()
piece = frame(1, b'{"hello":{}}') * 64 + frame(2, b"\x5a" * (1 << 20))
sent = [0]


def flood():
    try:
        for _ in range(256):
            s.sendall(piece)
            sent[0] += len(piece)
    except OSError:
        pass


flooder = threading.Thread(target=flood, daemon=True)
flooder.start()
time.sleep(3)
flood_peak = rss()
check(f"a control client pipelining frames without reading is held back ({sent[0] >> 20} MiB of 256 taken in 3 s)",
      sent[0] < (64 << 20))
check(f"its queue stays within {CONTROL_QUEUE_BOUND >> 20} MiB of the server's memory ({(flood_peak - base) >> 20} MiB)",
      flood_peak - base < CONTROL_QUEUE_BOUND)
s.close()
flooder.join(10)
time.sleep(0.5)
c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
c.settimeout(10)
c.connect(CONTROL)
c.sendall(frame(1, b'{"hello":{}}'))
header = c.recv(6, socket.MSG_WAITALL)
reply = c.recv(struct.unpack("<I", header[:4])[0] - 2, socket.MSG_WAITALL) if len(header) == 6 else b""
c.close()
check("the server answers a new control connection after it", b'"ok"' in reply, reply[:80].decode(errors="replace"))
print(f"# pipelined control frames: {time.time() - started:.1f} s", file=sys.stderr)
sys.exit(1 if tapcheck.failures else 0)
