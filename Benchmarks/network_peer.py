#!/usr/bin/env python3
"""Replication between two hosts against rsync over ssh, all in one run (as root).

Two hosts are network namespaces joined by a veth pair (10.80.0.1 and 10.80.0.2). The replica
host runs OpenSSH's sshd (a key made for the run) and zumastor's replication service; each
side has its own ZUMASTOR_ROOT. Ours: `zumastor replicate VOL 10.80.0.2 --wait` from the
original (freeze, snapshot, the delta from the snapshot the replica holds, over TLS 1.3, applied
and mounted there). Peer: `rsync -a` from the original's mounted ext4 to a directory on an ext4
of the replica host, over real ssh (and `rsync -az` on the slow link). Caches stay warm for
every tool; rsync does not fsync what it writes, a replica apply does. After each step the
replica's files are compared with the source's (outside the timing).

Replatbench (the seed guide's 11.5): D directories (1, 10 or 100) of 1 MB each, as 1,000 files
of 1 KiB ("small") or one file of 1 MiB ("large"), then three timed replications: a) the first,
to an empty replica; b) after `touch` of one file; c) after rewriting one file per directory.

Slow link: the original's side of the veth shaped to 100 Mbit/s (tc tbf). A 1 GiB volume
holding --slow-files files of 300 MiB in all (half of each file random, half text), a) the first
copy; b) after rewriting 1% of the files. The link's own time for the bytes each tool put on the
wire is given beside it (ours counts the bytes it sent; rsync prints its own).

Each case runs --repeat times (3 by default) on fresh volumes; the report gives medians with
minimum and maximum.

Usage: network_peer.py --bin BUILD_DIR --dir DIR --output FILE [--repeat N] [--dirs 1,10,100]
       [--slow-files N] [--skip-slow]"""
import argparse
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import time

MiB = 1 << 20
A, B = f"znbA{os.getpid()}", f"znbB{os.getpid()}"
IA, IB = "10.80.0.1", "10.80.0.2"


def run(cmd, env=None, check=True):
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {p.stdout}{p.stderr}")
    return p.stdout


def on(ns, cmd, root=None, check=True):
    env = dict(os.environ)
    if root:
        env["ZUMASTOR_ROOT"] = root
    return run(["nsenter", f"--net=/run/netns/{ns}"] + cmd, env=env, check=check)


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


class Hosts:
    """The two namespaces, the veth, and sshd on the replica host."""

    def __init__(self, work):
        self.work = work
        self.sshd = None
        run(["ip", "netns", "add", A])
        run(["ip", "netns", "add", B])
        run(["ip", "link", "add", "nbA", "netns", A, "type", "veth", "peer", "name", "nbB", "netns", B])
        for ns, dev, ip in ((A, "nbA", IA), (B, "nbB", IB)):
            run(["ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", dev])
            run(["ip", "-n", ns, "link", "set", dev, "up"])
            run(["ip", "-n", ns, "link", "set", "lo", "up"])
        ssh = f"{work}/ssh"
        os.makedirs(ssh, exist_ok=True)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", f"{ssh}/host"])
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", f"{ssh}/client"])
        shutil.copy(f"{ssh}/client.pub", f"{ssh}/authorized_keys")
        os.chmod(f"{ssh}/authorized_keys", 0o600)
        with open(f"{ssh}/sshd_config", "w") as f:
            f.write(f"HostKey {ssh}/host\nAuthorizedKeysFile {ssh}/authorized_keys\nPermitRootLogin prohibit-password\n"
                    f"PasswordAuthentication no\nUsePAM no\nPidFile {ssh}/sshd.pid\nListenAddress {IB}\nStrictModes no\n")
        os.makedirs("/run/sshd", exist_ok=True)
        self.sshd = subprocess.Popen(["nsenter", f"--net=/run/netns/{B}", "/usr/sbin/sshd", "-D", "-e", "-f", f"{ssh}/sshd_config"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.ssh = f"ssh -i {ssh}/client -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"
        for _ in range(50):
            if subprocess.run(["nsenter", f"--net=/run/netns/{A}", "bash", "-c", f"{self.ssh} root@{IB} true"],
                              capture_output=True).returncode == 0:
                return
            time.sleep(0.2)
        raise RuntimeError("sshd did not answer")

    def shape(self, rate):
        on(A, ["tc", "qdisc", "replace", "dev", "nbA", "root", "tbf", "rate", rate, "burst", "256kb", "latency", "100ms"])

    def unshape(self):
        on(A, ["tc", "qdisc", "del", "dev", "nbA", "root"], check=False)

    def close(self):
        if self.sshd:
            self.sshd.terminate()
            self.sshd.wait()
        run(["ip", "netns", "del", A], check=False)
        run(["ip", "netns", "del", B], check=False)


class Pair:
    """A master on the original host, its replica on the other, and rsync's ext4 there."""

    def __init__(self, hosts, work, z, size, tag):
        self.hosts, self.work, self.z = hosts, work, z
        self.ra, self.rb = f"{work}/a", f"{work}/b"
        self.va, self.vb = f"nba{os.getpid()}{tag}", f"nbb{os.getpid()}{tag}"
        for f, n in (("a.origin", size), ("b.origin", size), ("a.store", size), ("b.store", size), ("rsync.img", size)):
            with open(f"{work}/{f}", "wb") as h:
                h.truncate(n)
        ka = on(A, [z, "key"], self.ra).strip()
        kb = on(B, [z, "key"], self.rb).strip()
        on(A, [z, "define", "volume", self.va, f"{work}/a.origin", f"{work}/a.store", "--initialize"], self.ra)
        # An inode per 4 KiB: 100,000 small files fit.
        run(["mkfs.ext4", "-q", "-i", "4096", "-E", "lazy_itable_init=0,lazy_journal_init=0", f"/dev/mapper/{self.va}"])
        on(A, [z, "define", "master", self.va, "--no-snapmount"], self.ra)
        on(B, [z, "define", "volume", self.vb, f"{work}/b.origin", f"{work}/b.store", "--initialize"], self.rb)
        on(B, [z, "define", "source", self.vb, IA, "--key", ka, "--name", self.va], self.rb)
        on(A, [z, "define", "target", self.va, IB, "--key", kb, "--name", self.vb], self.ra)
        self.src = f"{self.ra}/var/run/zumastor/mount/{self.va}"
        self.view = f"{self.rb}/var/run/zumastor/mount/{self.vb}"
        run(["mkfs.ext4", "-q", "-F", "-i", "4096", "-E", "lazy_itable_init=0,lazy_journal_init=0", f"{work}/rsync.img"])
        self.dst = f"{work}/rsync"
        os.makedirs(self.dst, exist_ok=True)
        run(["mount", "-o", "loop", f"{work}/rsync.img", self.dst])

    def ours(self):
        out = on(A, [self.z, "replicate", self.va, IB, "--wait", "--quiet"], self.ra)
        sent = sum(int(n) for n in re.findall(r"(\d+) bytes sent", out))
        return sent

    def rsync(self, compress=False):
        out = on(A, ["rsync", "-a" + ("z" if compress else ""), "--stats", "-e", self.hosts.ssh, self.src + "/", f"root@{IB}:{self.dst}/"])
        m = re.search(r"Total bytes sent: ([\d,]+)", out)
        return int(m.group(1).replace(",", "")) if m else 0

    def check(self):
        for other in (os.path.realpath(self.view), self.dst):
            r = subprocess.run(["diff", "-r", "--no-dereference", "-x", "lost+found", self.src, other], capture_output=True, text=True)
            if r.returncode != 0:
                raise RuntimeError(f"{other} differs from {self.src}: {r.stdout[:400]}{r.stderr[:400]}")

    def close(self):
        subprocess.run(["umount", self.dst], capture_output=True)
        for ns, root, vol in ((B, self.rb, self.vb), (A, self.ra, self.va)):
            on(ns, [self.z, "stop"], root, check=False)
            on(ns, [self.z, "forget", "volume", vol], root, check=False)
            pid = f"{root}/var/run/zumastor/replicator.pid"
            try:
                os.kill(int(open(pid).read()), 15)
            except (OSError, ValueError):
                pass
        shutil.rmtree(self.work, ignore_errors=True)


def fill_replatbench(root, dirs, kind, rng):
    for d in range(dirs):
        path = f"{root}/d{d}"
        os.makedirs(path)
        if kind == "small":
            for i in range(1000):
                with open(f"{path}/f{i}", "wb") as f:
                    f.write(rng.randbytes(1024))
        else:
            with open(f"{path}/big", "wb") as f:
                f.write(rng.randbytes(MiB))


def fill_slow(root, files, total, rng):
    each = total // files
    text = (b"the quick brown fox jumps over the lazy dog " * (each // 44 + 1))
    for i in range(files):
        d = f"{root}/d{i // 1000}"
        if i % 1000 == 0:
            os.makedirs(d)
        with open(f"{d}/f{i}", "wb") as f:
            f.write(rng.randbytes(each // 2) + text[: each - each // 2])


def stats(xs):
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "runs": xs}


def replatbench(hosts, args, z):
    results = []
    for dirs in [int(x) for x in args.dirs.split(",") if x]:
        for kind in ("small", "large"):
            runs = {"ours": {"first": [], "touch": [], "rewrite": []}, "rsync": {"first": [], "touch": [], "rewrite": []}}
            for r in range(args.repeat):
                work = f"{args.dir}/rb-{dirs}-{kind}-{r}"
                os.makedirs(work)
                pair = Pair(hosts, work, z, 1024 * MiB, f"{dirs}{kind[0]}{r}")
                try:
                    rng = random.Random(dirs * 100 + r)
                    fill_replatbench(pair.src, dirs, kind, rng)
                    for step in ("first", "touch", "rewrite"):
                        # rsync's quick check compares sizes and mtimes: let a second pass
                        # between steps, as it would between real replications.
                        time.sleep(1.1)
                        if step == "touch":
                            os.utime(f"{pair.src}/d0/" + ("f0" if kind == "small" else "big"))
                        if step == "rewrite":
                            for d in range(dirs):
                                name = "f7" if kind == "small" else "big"
                                with open(f"{pair.src}/d{d}/{name}", "wb") as f:
                                    f.write(rng.randbytes(1024 if kind == "small" else MiB))
                        os.sync()
                        runs["ours"][step].append(timed(pair.ours)[0])
                        runs["rsync"][step].append(timed(pair.rsync)[0])
                        pair.check()
                finally:
                    pair.close()
            case = {"dirs": dirs, "kind": kind, "steps": {tool: {s: stats(v) for s, v in steps.items()} for tool, steps in runs.items()}}
            results.append(case)
            print(f"replatbench {dirs} x {kind}: " + ", ".join(
                f"{s} ours {case['steps']['ours'][s]['median']:.2f} s rsync {case['steps']['rsync'][s]['median']:.2f} s" for s in ("first", "touch", "rewrite")),
                file=sys.stderr)
    return results


def slow_link(hosts, args, z):
    rate_bits = 100_000_000
    runs = {k: [] for k in ("ours_first", "rsync_first", "rsyncz_first", "ours_change", "rsync_change", "rsyncz_change")}
    wire = {k: [] for k in runs}
    for r in range(args.repeat):
        work = f"{args.dir}/slow-{r}"
        os.makedirs(work)
        pair = Pair(hosts, work, z, 1 << 30, f"s{r}")
        try:
            rng = random.Random(1000 + r)
            fill_slow(pair.src, args.slow_files, 300 * MiB, rng)
            os.sync()
            hosts.shape("100mbit")
            for step, change in (("first", None), ("change", True)):
                if change:
                    time.sleep(1.1)
                    hosts.unshape()
                    for i in rng.sample(range(args.slow_files), args.slow_files // 100):
                        with open(f"{pair.src}/d{i // 1000}/f{i}", "r+b") as f:
                            f.seek(0)
                            f.write(rng.randbytes(64))
                    os.sync()
                    hosts.shape("100mbit")
                t, sent = timed(pair.ours)
                runs[f"ours_{step}"].append(t); wire[f"ours_{step}"].append(sent)
                t, sent = timed(pair.rsync)
                runs[f"rsync_{step}"].append(t); wire[f"rsync_{step}"].append(sent)
                # rsync -az has a destination of its own (after -a, the same one would be up to date).
                t, sent = timed(lambda: rsync_to(pair, hosts, f"{work}/rsyncz"))
                runs[f"rsyncz_{step}"].append(t); wire[f"rsyncz_{step}"].append(sent)
                pair.check()
        finally:
            hosts.unshape()
            pair.close()
        print(f"slow link run {r}: " + ", ".join(f"{k} {v[-1]:.1f} s" for k, v in runs.items()), file=sys.stderr)
    return {"rate_bits": rate_bits, "files": args.slow_files, "bytes": 300 * MiB,
            "times": {k: stats(v) for k, v in runs.items()}, "wire": {k: statistics.median(v) for k, v in wire.items()},
            "link_seconds": {k: statistics.median(v) * 8 / rate_bits for k, v in wire.items()}}


def rsync_to(pair, hosts, dest):
    os.makedirs(dest, exist_ok=True)
    out = on(A, ["rsync", "-az", "--stats", "-e", hosts.ssh, pair.src + "/", f"root@{IB}:{dest}/"])
    m = re.search(r"Total bytes sent: ([\d,]+)", out)
    return int(m.group(1).replace(",", "")) if m else 0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bin", required=True)
    p.add_argument("--dir", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--dirs", default="1,10,100")
    p.add_argument("--slow-files", type=int, default=100000)
    p.add_argument("--skip-slow", action="store_true")
    args = p.parse_args()
    shutil.rmtree(args.dir, ignore_errors=True)
    os.makedirs(args.dir)
    z = f"{args.bin}/zumastor"
    hosts = Hosts(args.dir)
    try:
        result = {"replatbench": replatbench(hosts, args, z), "repeat": args.repeat, "date": time.strftime("%Y-%m-%d")}
        if not args.skip_slow:
            result["slow"] = slow_link(hosts, args, z)
    finally:
        hosts.close()
    json.dump(result, open(args.output, "w"), indent=1)


if __name__ == "__main__":
    main()
