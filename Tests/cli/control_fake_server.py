#!/usr/bin/env python3
"""A control-socket server of another protocol version, for the client's side of version
negotiation: it answers `hello` as a server of VERSION would (version 1: no protocolVersion,
no release, no features) and every other request with the "malformed request" failure a server
gives a request it cannot read. Serves until killed.
Usage: control_fake_server.py SOCKET VERSION"""
import json
import os
import socket
import struct
import sys

path, version = sys.argv[1], int(sys.argv[2])


def frame(payload):
    return struct.pack("<IBB", len(payload) + 2, 1, 1) + payload


def read_exactly(c, n):
    data = b""
    while len(data) < n:
        part = c.recv(n - len(data))
        if not part:
            return None
        data += part
    return data


info = {"volume": "fake", "storePath": "/nonexistent/fake.store", "originPath": "/nonexistent/fake.origin",
        "processID": os.getpid(), "blockFileDirectory": "/nonexistent/fake"}
if version >= 2:
    info.update({"protocolVersion": version, "release": f"{version}.0.0", "features": []})
if os.path.exists(path):
    os.unlink(path)
server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
server.bind(path)
server.listen(4)
print("ready", flush=True)
while True:
    c, _ = server.accept()
    while True:
        head = read_exactly(c, 6)
        if head is None:
            break
        length, _, kind = struct.unpack("<IBB", head)
        body = read_exactly(c, length - 2)
        if body is None or kind != 1:
            break
        request = json.loads(body)
        if "hello" in request:
            answer = {"ok": {"_0": {"server": {"_0": info}}}}
        else:
            name = next(iter(request))
            answer = {"failed": {"_0": {"volume": {"_0": {"protocolViolation": {"_0": f"malformed request: no request '{name}' in this version"}}}}}}
        c.sendall(frame(json.dumps(answer).encode()))
    c.close()
