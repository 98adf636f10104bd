#!/usr/bin/env python3
"""The peer a sysadmin would pick instead: btrfs subvolume snapshots on a loop-mounted image.

At each snapshot count (each snapshot holding some distinct data) it measures 4 KiB random
overwrites right after a snapshot (pwrite + fdatasync each, like our copy-out writes), and the
time to create a snapshot after some fresh writes (the BTRFS_IOC_SNAP_CREATE_V2 ioctl, timed
in-process). Prints a line per figure and writes JSON. Removes its mount and loop device, by
their ids, whatever happens.
"""
import argparse, fcntl, json, os, random, struct, subprocess, sys, time

SNAP_CREATE_V2 = 0x50009417          # _IOW(0x94, 23, struct btrfs_ioctl_vol_args_v2), 4096 bytes
SUBVOL_RDONLY = 1 << 1


def snapshot(source_fd, dest_dir_fd, name):
    # A mutable buffer is passed to the kernel as is (an immutable one is limited to 1024 bytes).
    args = bytearray(struct.pack("<qQQ32s4040s", source_fd, 0, SUBVOL_RDONLY, b"", name.encode()))
    fcntl.ioctl(dest_dir_fd, SNAP_CREATE_V2, args, True)


def peak_rss_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dir", default="/var/tmp/zuma-bench-btrfs")
    p.add_argument("--counts", default="0,10,100,1000")
    p.add_argument("--writes", type=int, default=512)
    p.add_argument("--creates", type=int, default=20)
    p.add_argument("--file-mib", type=int, default=256)
    p.add_argument("--output")
    a = p.parse_args()
    counts = [int(x) for x in a.counts.split(",")]
    os.makedirs(a.dir, exist_ok=True)
    image, mnt = os.path.join(a.dir, "btrfs.img"), os.path.join(a.dir, "mnt")
    os.makedirs(mnt, exist_ok=True)
    with open(image, "wb") as f:
        f.truncate(16 << 30)
    subprocess.run(["mkfs.btrfs", "-q", "-f", image], check=True)
    loop = subprocess.run(["losetup", "--find", "--show", image], check=True, capture_output=True, text=True).stdout.strip()
    mounted = False
    results = []
    fds = []
    try:
        subprocess.run(["mount", loop, mnt], check=True)
        mounted = True
        vol = os.path.join(mnt, "vol")
        subprocess.run(["btrfs", "-q", "subvolume", "create", vol], check=True, capture_output=True)
        snaps = os.path.join(mnt, "snaps")
        os.makedirs(snaps)
        data = os.path.join(vol, "data")
        size = a.file_mib << 20
        fd = os.open(data, os.O_RDWR | os.O_CREAT, 0o644)
        fds.append(fd)
        block = os.urandom(1 << 20)
        for off in range(0, size, 1 << 20):
            os.pwrite(fd, block, off)
        os.fsync(fd)
        vol_fd = os.open(vol, os.O_RDONLY | os.O_DIRECTORY)
        snaps_fd = os.open(snaps, os.O_RDONLY | os.O_DIRECTORY)
        fds += [vol_fd, snaps_fd]
        rng = random.Random(42)
        made = 0
        chunk = 16 << 10

        def add(name, count, unit, value, stats=None, note=None):
            r = {"curve": "btrfs", "name": name, "snapshots": count, "unit": unit, "value": value,
                 "peakResidentKiB": peak_rss_kib()}
            if stats: r["stats"] = stats
            if note: r["note"] = note
            results.append(r)
            print(f"btrfs {name} @{count}: {value:.3f} {unit}", flush=True)

        for count in counts:
            while made < count:
                os.pwrite(fd, os.urandom(chunk), (made % (size // chunk)) * chunk)
                snapshot(vol_fd, snaps_fd, f"s{made}")
                made += 1
            # 4 KiB random overwrites right after a snapshot.
            snapshot(vol_fd, snaps_fd, f"m{count}")
            buf = os.urandom(4096)
            offsets = [rng.randrange(size // 4096) * 4096 for _ in range(a.writes)]
            t = time.monotonic()
            for off in offsets:
                os.pwrite(fd, buf, off)
                os.fdatasync(fd)
            seconds = time.monotonic() - t
            add("4KiB random overwrite after a snapshot", count + 1, "MB/s", a.writes * 4096 / seconds / 1e6,
                note="pwrite + fdatasync each")
            # Snapshot create after some fresh writes.
            samples = []
            for k in range(a.creates):
                for j in range(16):
                    os.pwrite(fd, os.urandom(chunk), rng.randrange(size // chunk) * chunk)
                t = time.monotonic()
                snapshot(vol_fd, snaps_fd, f"c{count}-{k}")
                samples.append(time.monotonic() - t)
            samples.sort()
            stats = {"median": samples[len(samples) // 2], "p99": samples[-1], "min": samples[0], "max": samples[-1],
                     "count": len(samples)}
            add("snapshot create", count + 1, "ms", stats["median"] * 1000, stats=stats,
                note="ioctl, after 16 fresh 16 KiB writes")
    finally:
        for f in fds:
            os.close(f)
        if mounted:
            subprocess.run(["umount", mnt])
        # Detach our loop device unless the kernel already did (autoclear on unmount).
        if os.path.exists(f"/sys/block/{os.path.basename(loop)}/loop/backing_file"):
            subprocess.run(["losetup", "-d", loop])
        os.unlink(image)
    if a.output:
        with open(a.output, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
