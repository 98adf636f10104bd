#!/usr/bin/env python3
"""Malformed control-socket messages: each gets a failure reply naming the problem (or, for a
frame that cannot be trusted, that reply and a closed connection); the server goes on.
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
s.sendall(frame(1, json.dumps({"delete": {"tag": 999999}}).encode()))
r = reply(s)
check("delete of a missing snapshot is refused", r and "snapshotMissing" in failure_text(r), failure_text(r))
s.close()

s = connect()
s.sendall(frame(1, json.dumps({"hello": {}}).encode()))
r = reply(s)
check("server still serves", r and "ok" in r, failure_text(r))
sys.exit(1 if tapcheck.failures else 0)
