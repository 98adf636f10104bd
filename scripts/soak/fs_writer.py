#!/usr/bin/env python3
"""Writes files into a filesystem until killed, recording each one only once it is durable.

Usage: fs_writer.py DIRECTORY LEDGER
Each file gets random bytes (4 KiB to 256 KiB), is fsync'd, and its directory fsync'd; then a
line "add NAME MD5" is appended to LEDGER (outside the filesystem) and LEDGER fsync'd. Past 150
files the oldest goes: "del NAME" is recorded first, then the file is unlinked. So every "add"
without a later "del" names a file an fsync acknowledged, which must survive a crash.
"""
import hashlib, os, random, sys

directory, ledger_path = sys.argv[1], sys.argv[2]
ledger = os.open(ledger_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
dir_fd = os.open(directory, os.O_RDONLY)
live = []
seq = 0
for line in open(ledger_path):
    word, name = line.split()[:2]
    if word == "add": live.append(name)
    elif name in live: live.remove(name)
    seq = max(seq, int(name[1:]) + 1)

def record(text):
    os.write(ledger, text.encode())
    os.fsync(ledger)

while True:
    name = "f%07d" % seq
    seq += 1
    data = os.urandom(random.randint(1, 64) * 4096)
    fd = os.open(os.path.join(directory, name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.write(fd, data)
    os.fsync(fd)
    os.close(fd)
    os.fsync(dir_fd)
    record("add %s %s\n" % (name, hashlib.md5(data).hexdigest()))
    live.append(name)
    if len(live) > 150:
        old = live.pop(0)
        record("del %s\n" % old)
        os.unlink(os.path.join(directory, old))
