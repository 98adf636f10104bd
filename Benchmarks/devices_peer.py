#!/usr/bin/env python3
"""Block-device benchmarks of `ddsnap server` against its peers, all in one run (as root):

  ours     the volume's FUSE block file behind a loop device with direct I/O (/dev/mapper/<vol>)
  plain    a loop device on a plain file
  nbdkit   the generic userspace path: `nbdkit file` + `nbdfuse` + a loop device

Every loop device does direct I/O (`losetup --direct-io=on`, as our volumes do), so no path
answers reads from a page cache of its own block file; the backing files are regular files on
the same filesystem. For reference the nbdkit path is also measured with a buffered loop
(reads then come from the kernel's cache of the nbdfuse file). fio runs sequential 1 MiB and random 4 KiB (queue depth 1 and 32), reads and
writes, on each device and on ext4 made on each; nbdcopy copies 1 GiB into and out of our NBD
export and `nbdkit file`. Writes JSON. Everything started (servers, mounts, loop devices) is
removed by id at the end, also on failure.

Usage: devices_peer.py --dir DIR --ddsnap PATH --output FILE [--repeats N] [--runtime S]"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

PATTERNS = [
    ("seq write 1M", "write", "1M", 1),
    ("seq read 1M", "read", "1M", 1),
    ("rand write 4K QD1", "randwrite", "4k", 1),
    ("rand write 4K QD32", "randwrite", "4k", 32),
    ("rand read 4K QD1", "randread", "4k", 1),
    ("rand read 4K QD32", "randread", "4k", 32),
]
DEVICE_BYTES = 2 << 30


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


class Cleanup:
    """Undo actions, run in reverse order."""

    def __init__(self):
        self.actions = []

    def add(self, description, fn):
        self.actions.append((description, fn))

    def run(self):
        for description, fn in reversed(self.actions):
            try:
                fn()
            except Exception as e:  # keep undoing the rest
                print(f"cleanup: {description}: {e}", file=sys.stderr)
        self.actions = []


def stop_process(p):
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def wait_for(path, timeout=20, what="socket"):
    deadline = time.time() + timeout
    while not os.path.exists(path):
        if time.time() > deadline:
            raise RuntimeError(f"{what} {path} did not appear")
        time.sleep(0.05)


def sparse(path, size):
    with open(path, "wb") as f:
        f.truncate(size)


def loop_attach(path, cleanup, direct=True):
    dev = run(["losetup", f"--direct-io={'on' if direct else 'off'}", "-f", "--show", path]).stdout.strip()
    cleanup.add(f"detach {dev}", lambda: run(["losetup", "-d", dev]))
    return dev


def start_server(d, ddsnap, name, size, cleanup):
    origin, store = f"{d}/{name}.origin", f"{d}/{name}.store"
    sparse(origin, size)
    sparse(store, size)
    run([ddsnap, "initialize", "-y", store, origin])
    sock = f"{d}/{name}.sock"
    if os.path.exists(sock):
        os.unlink(sock)
    server = subprocess.Popen([ddsnap, "server", store, "--name", name, "--socket", sock,
                               "--block-files", f"{d}/{name}-blocks", "--log", f"{d}/{name}.log", "--foreground"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cleanup.add(f"stop ddsnap server {name}", lambda: stop_process(server))
    wait_for(sock)
    time.sleep(0.2)
    return sock


def start_ours(d, ddsnap, cleanup):
    sock = start_server(d, ddsnap, "zumabench", DEVICE_BYTES, cleanup)
    name = run([ddsnap, "attach", sock]).stdout.strip()
    loop = os.path.realpath(name)
    cleanup.add(f"detach {name}", lambda: run([ddsnap, "detach", sock]))
    return loop


def start_nbdkit(d, cleanup, name="nbdkit", size=DEVICE_BYTES):
    image = f"{d}/{name}.img"
    sparse(image, size)
    sock = f"{d}/{name}.sock"
    if os.path.exists(sock):
        os.unlink(sock)
    server = subprocess.Popen(["nbdkit", "--foreground", "--unix", sock, "file", image],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cleanup.add(f"stop {name}", lambda: stop_process(server))
    wait_for(sock)
    return sock


def start_nbdfuse(d, sock, cleanup):
    mnt = f"{d}/nbdfuse"
    os.makedirs(mnt, exist_ok=True)
    pidfile = f"{d}/nbdfuse.pid"
    if os.path.exists(pidfile):
        os.unlink(pidfile)
    fuse = subprocess.Popen(["nbdfuse", "-P", pidfile, mnt, "--unix", sock],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cleanup.add("stop nbdfuse", lambda: stop_process(fuse))
    cleanup.add(f"unmount {mnt}", lambda: subprocess.run(["fusermount3", "-u", mnt], capture_output=True))
    wait_for(pidfile, what="nbdfuse pid file")
    return f"{mnt}/nbd"


def fio(target, rw, bs, depth, runtime, size):
    out = run(["fio", "--name=b", f"--filename={target}", f"--rw={rw}", f"--bs={bs}", f"--iodepth={depth}",
               "--direct=1", "--ioengine=libaio", f"--size={size}", f"--runtime={runtime}", "--time_based",
               "--ramp_time=1", "--output-format=json"]).stdout
    job = json.loads(out[out.index("{"):])["jobs"][0]
    side = job["read"] if "read" in rw else job["write"]
    return side["bw_bytes"] / 1e6


def measure(name, target, runtime, repeats, size, prefill):
    if prefill:
        # Reads of never-written (sparse) data would measure holes: write everything once.
        run(["fio", "--name=fill", f"--filename={target}", "--rw=write", "--bs=1M", "--direct=1",
             "--ioengine=libaio", "--iodepth=4", f"--size={size}"])
    rows = []
    for label, rw, bs, depth in PATTERNS:
        values = [fio(target, rw, bs, depth, runtime, size) for _ in range(repeats)]
        rows.append({"target": name, "pattern": label, "median": statistics.median(values),
                     "min": min(values), "max": max(values), "unit": "MB/s"})
        print(f"  {name:18} {label:20} {statistics.median(values):10.1f} MB/s", flush=True)
    return rows


def with_ext4(name, dev, d, runtime, repeats, cleanup):
    run(["mkfs.ext4", "-q", "-F", dev])
    mnt = f"{d}/ext4-{name}"
    os.makedirs(mnt, exist_ok=True)
    run(["mount", dev, mnt])
    local = Cleanup()
    local.add(f"unmount {mnt}", lambda: run(["umount", mnt]))
    cleanup.add(f"unmount {mnt} (if still mounted)", lambda: subprocess.run(["umount", mnt], capture_output=True))
    try:
        return measure(f"ext4 on {name}", f"{mnt}/fio.dat", runtime, repeats, "1G", prefill=True)
    finally:
        local.run()


def nbdcopy_time(src, dst, repeats):
    times = []
    for _ in range(repeats):
        t = time.monotonic()
        run(["nbdcopy", src, dst])
        times.append(time.monotonic() - t)
    return times


def remove_new_entries(d, existing):
    for name in set(os.listdir(d)) - existing:
        path = f"{d}/{name}"
        if os.path.isdir(path) and not os.path.islink(path) and not os.path.ismount(path):
            shutil.rmtree(path)
        elif not os.path.isdir(path):
            os.unlink(path)


def main():
    a = argparse.ArgumentParser()
    a.add_argument("--dir", required=True)
    a.add_argument("--ddsnap", required=True)
    a.add_argument("--output", required=True)
    a.add_argument("--repeats", type=int, default=3)
    a.add_argument("--runtime", type=int, default=4)
    args = a.parse_args()
    d = os.path.abspath(args.dir)
    os.makedirs(d, exist_ok=True)
    cleanup = Cleanup()
    # Registered first, so it runs last (after every unmount, detach and stop): the images,
    # sockets and directories this run made in d (several GiB), and nothing that was there.
    existing = set(os.listdir(d))
    cleanup.add("scratch files", lambda: remove_new_entries(d, existing))
    results = {"fio": [], "nbdcopy": []}
    try:
        ours = start_ours(d, args.ddsnap, cleanup)
        sparse(f"{d}/plain.img", DEVICE_BYTES)
        plain = loop_attach(f"{d}/plain.img", cleanup)
        kit_file = start_nbdfuse(d, start_nbdkit(d, cleanup), cleanup)
        kit = loop_attach(kit_file, cleanup)
        print(f"devices: ours {ours}, plain {plain}, nbdkit+nbdfuse {kit}", flush=True)
        targets = [("ours", ours), ("plain loop", plain), ("nbdkit+nbdfuse", kit)]
        for name, dev in targets:
            results["fio"] += measure(name, dev, args.runtime, args.repeats, "1G", prefill=True)
        for name, dev in targets:
            results["fio"] += with_ext4(name, dev, d, args.runtime, args.repeats, cleanup)
        kit_buffered = loop_attach(kit_file, cleanup, direct=False)
        results["fio"] += measure("nbdkit+nbdfuse, buffered loop", kit_buffered, args.runtime, args.repeats, "1G", prefill=True)

        # nbdcopy of 1 GiB into and out of a 1 GiB export: ours against `nbdkit file`. One
        # untimed copy first, so no side pays for allocating its sparse file.
        data = f"{d}/copy.raw"
        with open(data, "wb") as f:
            for _ in range(1024):
                f.write(os.urandom(1 << 20))
        copy_sock = start_server(d, args.ddsnap, "zumacopy", 1 << 30, cleanup)
        kit_copy_sock = start_nbdkit(d, cleanup, "nbdkit-copy", 1 << 30)
        for name, uri in [("ours", f"nbd+unix:///zumacopy?socket={copy_sock}.nbd"),
                          ("nbdkit file", f"nbd+unix:///?socket={kit_copy_sock}")]:
            run(["nbdcopy", data, uri])
            for direction, src, dst in [("into", data, uri), ("out of", uri, "null:")]:
                times = nbdcopy_time(src, dst, args.repeats)
                rates = [(1 << 30) / 1e6 / t for t in times]
                results["nbdcopy"].append({"target": name, "direction": direction, "median": statistics.median(rates),
                                           "min": min(rates), "max": max(rates), "unit": "MB/s"})
                print(f"  nbdcopy {direction:7} {name:12} {statistics.median(rates):10.1f} MB/s", flush=True)
    finally:
        cleanup.run()
    with open(args.output, "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
