#!/usr/bin/env python3
"""Replication latency against rsync, all in one run (as root): the seed guide's replatbench
(section 11.5) and the case Zumastor was made for.

Each case makes a volume with `zumastor define volume` (files as devices, its own
ZUMASTOR_ROOT), ext4 on it, `define master --no-snapmount` (mounted), and fills it: D
directories (1, 10 or 100) of 1 MB each, as 1,000 files of 1 KiB ("small") or one file of
1 MiB ("large"). Then three replications, each timed:
  a) the first, to an empty replica;
  b) after `touch` of one file;
  c) after rewriting one file in every directory.
Ours: `zumastor replicate VOL REPLICA` (one process: freeze, snapshot, the delta from the
last snapshot the replica holds, applied to a replica store on files). Peers: `rsync -a` and
`rsync -a --checksum` from the mounted origin to directories on a second ext4 filesystem
(loop device on a file). Both filesystems are made without lazy initialisation. Caches stay
warm for every tool; rsync does not fsync what it writes, a replica apply does. After each case the replica's
snapshot is compared byte for byte with the source's (outside the timing).

The big case (--files N, at least 1,000,000 in the report): N files of 4 KiB in directories of
1,000, then N/1000 files rewritten between replications.

Each replatbench case runs --repeat times (3 by default), each on fresh volumes; the report
gives each step's median with its minimum and maximum (one run of a step is a single
replication, and this machine's timings vary by tens of percent from run to run).

Usage: replication_peer.py --dir DIR --bin BUILD_DIR --output FILE [--sizes 100M,1G]
       [--dirs 1,10,100] [--files N] [--repeat N]"""
import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time

MiB = 1 << 20


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def sh(command):
    return subprocess.run(["bash", "-c", command], check=True, capture_output=True, text=True)


def timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def size_bytes(text):
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(text[:-1]) * units[text[-1]] if text[-1] in units else int(text)


class Case:
    """A source volume served by zumastor, a replica store, and rsync's second filesystem."""

    def __init__(self, base, bindir, name, volume_bytes, inode_ratio=4096):
        self.base = base
        self.bin = bindir
        self.name = name
        self.root = f"{base}/root"
        self.env = dict(os.environ, ZUMASTOR_ROOT=self.root)
        self.loop = None
        self.defined = False
        self.peer_mounted = False
        os.makedirs(base, exist_ok=True)
        for f, size in [("origin", volume_bytes), ("store", max(volume_bytes // 2, 64 * MiB)),
                        ("rep.origin", volume_bytes), ("rep.store", max(volume_bytes // 2, 64 * MiB)),
                        # rsync's filesystem holds two copies (rsync -a and rsync -a --checksum).
                        ("peer.img", volume_bytes * 5 // 2)]:
            with open(f"{base}/{f}", "wb") as fh:
                fh.truncate(size)
        # noatime: reads (rsync's among them) would otherwise change inodes between replications.
        self.z(["define", "volume", name, f"{base}/origin", f"{base}/store", "--initialize", "--mountopts", "noatime"])
        self.defined = True
        # Inode tables and journal written now: no lazy initialisation in the background
        # changing blocks between replications.
        run(["mkfs.ext4", "-q", "-i", str(inode_ratio), "-E", "lazy_itable_init=0,lazy_journal_init=0", f"/dev/mapper/{name}"])
        self.z(["define", "master", name, "--no-snapmount"])
        self.mount = f"{self.root}/var/run/zumastor/mount/{name}"
        self.socket = f"{self.root}/var/run/zumastor/servers/{name}"
        run([f"{bindir}/ddsnap", "initialize", "-y", f"{base}/rep.store", f"{base}/rep.origin"])
        self.loop = run(["losetup", "-f", "--show", f"{base}/peer.img"]).stdout.strip()
        run(["mkfs.ext4", "-q", "-i", str(inode_ratio), "-E", "lazy_itable_init=0,lazy_journal_init=0", self.loop])
        self.peer = f"{base}/peer"
        os.makedirs(self.peer, exist_ok=True)
        run(["mount", "-o", "noatime", self.loop, self.peer])
        self.peer_mounted = True
        for d in ("plain", "checksum"):
            os.makedirs(f"{self.peer}/{d}", exist_ok=True)
        self.previous = None

    def z(self, args):
        return run([f"{self.bin}/zumastor"] + args, env=self.env)

    def ours(self):
        out = self.z(["replicate", self.name, f"{self.base}/rep.store", "--origin", f"{self.base}/rep.origin", "--quiet"]).stdout
        self.previous = int(out.split()[2])

    def rsync(self, checksum):
        target = f"{self.peer}/{'checksum' if checksum else 'plain'}/"
        run(["rsync", "-a"] + (["--checksum"] if checksum else []) + [self.mount + "/", target])

    def step(self):
        """One replication by each tool: seconds for ours, rsync -a, rsync -a --checksum."""
        sh("sync")
        return {"ours": timed(self.ours), "rsync": timed(lambda: self.rsync(False)),
                "rsync_checksum": timed(lambda: self.rsync(True))}

    def verify(self):
        """The replica's last snapshot equals the source's, byte for byte."""
        d = f"{self.bin}/ddsnap"
        src = sh(f"'{d}' read '{self.socket}' --snapshot {self.previous} | md5sum").stdout.split()[0]
        rep = sh(f"'{d}' read '{self.base}/rep.store' --origin '{self.base}/rep.origin' --snapshot {self.previous} | md5sum").stdout.split()[0]
        if src != rep:
            raise RuntimeError(f"{self.name}: replica snapshot {self.previous} differs from the source's")
        diff = subprocess.run(["diff", "-r", "-q", self.mount, f"{self.peer}/plain"], capture_output=True, text=True)
        if diff.returncode != 0:
            raise RuntimeError(f"{self.name}: rsync's copy differs: {diff.stdout[:300]}")

    def close(self):
        errors = []
        for fn in [lambda: self.defined and self.z(["forget", "volume", self.name]),
                   lambda: self.peer_mounted and run(["umount", self.peer]),
                   lambda: self.loop and run(["losetup", "-d", self.loop])]:
            try:
                fn()
            except Exception as e:
                errors.append(str(e))
        shutil.rmtree(self.base, ignore_errors=True)
        if errors:
            print(f"cleanup of {self.name}: {errors}", file=sys.stderr)


def write_file(path, size, rng):
    with open(path, "wb") as f:
        f.write(rng.randbytes(size))


def replatbench(args, volume, dirs, layout, index):
    rng = random.Random(index)
    case = Case(f"{args.dir}/case{index}", args.bin, f"rb{os.getpid() % 10000}x{index}", volume)
    try:
        files = 1000 if layout == "small" else 1
        fsize = 1024 if layout == "small" else MiB
        for d in range(dirs):
            os.makedirs(f"{case.mount}/dir{d}")
            for i in range(files):
                write_file(f"{case.mount}/dir{d}/f{i}", fsize, rng)
        result = {"volume": volume, "dirs": dirs, "layout": layout, "files": dirs * files}
        result["first"] = case.step()
        # rsync's quick check compares size and mtime in whole seconds: change files in a later
        # second, or it would skip them (untimed).
        time.sleep(1.1)
        os.utime(f"{case.mount}/dir0/f0")
        result["touch"] = case.step()
        time.sleep(1.1)
        for d in range(dirs):
            write_file(f"{case.mount}/dir{d}/f{files // 2}", fsize, rng)
        result["rewrite"] = case.step()
        case.verify()
        return result
    finally:
        case.close()


def summarize(runs):
    """Per step and tool: the median, with every sample kept (the medians stand as the figures)."""
    out = {k: v for k, v in runs[0].items() if k not in ("first", "touch", "rewrite")}
    for step in ("first", "touch", "rewrite"):
        out[step] = {tool: statistics.median(r[step][tool] for r in runs) for tool in runs[0][step]}
        out[step]["samples"] = {tool: [r[step][tool] for r in runs] for tool in runs[0][step]}
    return out


def million(args):
    n = args.files
    rng = random.Random(7)
    volume = max(6 << 30, n * 4096 * 3 // 2)
    case = Case(f"{args.dir}/million", args.bin, f"rbm{os.getpid() % 10000}", volume)
    try:
        per_dir = 1000
        t = time.perf_counter()
        block = rng.randbytes(4096)
        for d in range(n // per_dir):
            os.makedirs(f"{case.mount}/d{d}")
            for i in range(per_dir):
                with open(f"{case.mount}/d{d}/f{i}", "wb") as f:
                    f.write(block[i % 64:] + block[:i % 64])
        sh("sync")
        result = {"volume": volume, "files": n, "changed": n // 1000, "populate_seconds": time.perf_counter() - t}
        result["first"] = case.step()
        changes = []
        for round_ in range(2):
            time.sleep(1.1)
            for k in range(n // 1000):
                d = rng.randrange(n // per_dir)
                write_file(f"{case.mount}/d{d}/f{rng.randrange(per_dir)}", 4096, rng)
            changes.append(case.step())
        result["changes"] = changes
        case.verify()
        return result
    finally:
        case.close()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dir", required=True)
    p.add_argument("--bin", required=True, help="directory with zumastor and ddsnap")
    p.add_argument("--output", required=True)
    p.add_argument("--sizes", default="100M,1G")
    p.add_argument("--dirs", default="1,10,100")
    p.add_argument("--files", type=int, default=0, help="the big case: this many 4 KiB files (0: skip)")
    p.add_argument("--repeat", type=int, default=3, help="runs of each replatbench case (fresh volumes each)")
    args = p.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    results = {"cases": [], "skipped": []}
    index = 0
    for volume_text in [v for v in args.sizes.split(",") if v]:
        volume = size_bytes(volume_text)
        for dirs in [int(x) for x in args.dirs.split(",")]:
            for layout in ("small", "large"):
                # 1 KiB files take a 4 KiB block each: skip what does not fit in the volume.
                need = dirs * (1000 * 4096 if layout == "small" else MiB + 4096)
                if need > volume * 6 // 10:
                    results["skipped"].append({"volume": volume, "dirs": dirs, "layout": layout,
                                               "why": f"{need // MiB} MiB of blocks do not fit a {volume // MiB} MiB volume"})
                    continue
                runs = []
                for _ in range(max(1, args.repeat)):
                    index += 1
                    runs.append(replatbench(args, volume, dirs, layout, index))
                r = summarize(runs)
                print(f"{volume_text} {dirs} dirs {layout}: " + ", ".join(
                    f"{k} ours {r[k]['ours']:.3f}s rsync {r[k]['rsync']:.3f}s ({r[k]['rsync'] / r[k]['ours']:.1f}x)"
                    for k in ("first", "touch", "rewrite")), flush=True)
                results["cases"].append(r)
    if args.files:
        r = million(args)
        results["million"] = r
        print(f"{args.files} files: first ours {r['first']['ours']:.1f}s rsync {r['first']['rsync']:.1f}s; " + "; ".join(
            f"change ours {c['ours']:.2f}s rsync {c['rsync']:.2f}s" for c in r["changes"]), flush=True)
    with open(args.output, "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
