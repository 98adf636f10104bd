#!/usr/bin/env python3
"""Writes docs/BENCHMARKS.md from the JSON of zuma-bench and btrfs_peer.py (same run)."""
import argparse, json, os, platform, subprocess, datetime


def machine():
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal"):
                mem = int(line.split()[1]) // (1024 * 1024)
    disk = subprocess.run(["df", "-h", "--output=source,fstype", "/var/tmp"], capture_output=True, text=True).stdout.split("\n")[1].split()
    return f"{os.cpu_count()} cores ({cpu}), {mem} GiB RAM, kernel {platform.release()}, scratch on {disk[0]} ({disk[1]})"


def fmt(v, unit):
    if v is None:
        return "n/a"
    if unit == "MB/s":
        return f"{v:,.1f}"
    return f"{v:,.3f}"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--zuma", required=True)
    p.add_argument("--btrfs")
    p.add_argument("--command", default="Benchmarks/run.sh")
    a = p.parse_args()
    zuma = json.load(open(a.zuma))
    btrfs = json.load(open(a.btrfs)) if a.btrfs and os.path.exists(a.btrfs) else []
    out = []
    w = out.append
    w("# Benchmarks")
    w("")
    w(f"Measured {datetime.date.today().isoformat()} on {machine()}.")
    w(f"Reproduce with `{a.command}` (as root; `--quick` for a shorter run). Every ratio compares")
    w("two figures measured in the same run; absolute numbers on this shared VM are noisy.")
    w("Chunk size 16 KiB (curves 1, 2, 4) and 4 KiB (curve 3); metadata cache 32 MiB.")
    w("")

    def table(curve, names, header, row):
        w("| " + " | ".join(header) + " |")
        w("|" + "---|" * len(header))
        for r in zuma:
            if r["curve"] == curve and (names is None or r["name"] in names):
                w("| " + " | ".join(row(r)) + " |")
        w("")

    w("## 1. Origin write throughput (MB/s)")
    w("")
    w("Reference: the same pattern of `pwrite`s plus the same number of `fdatasync`s on a plain")
    w("file. *Rewrite*: chunks already protected against the newest snapshot. *Copy-out*: the")
    w("first write to each chunk after a snapshot (read + two writes: 0.5x is the physical bound).")
    w("Snapshots: the live count during the measurement.")
    w("")
    table("write", None, ["pattern", "snapshots", "ours", "reference", "ratio", "syncs", "write latency median / p99 (ms)", "peak RSS (MiB)"],
          lambda r: [r["name"], f'{r["snapshots"]:,}', fmt(r["value"], "MB/s"), fmt(r["reference"], "MB/s"),
                     f'{r["ratio"]:.2f}x', str(r.get("syncs", "")),
                     f'{r["stats"]["median"]*1000:.3f} / {r["stats"]["p99"]*1000:.3f}', f'{r["peakResidentKiB"]/1024:.1f}'])
    w("## 2. Snapshot create and delete latency (ms)")
    w("")
    table("snapshot", None, ["operation", "snapshots", "median", "p99", "min", "max", "note"],
          lambda r: [r["name"], f'{r["snapshots"]:,}', f'{r["stats"]["median"]*1000:.3f}', f'{r["stats"]["p99"]*1000:.3f}',
                     f'{r["stats"]["min"]*1000:.3f}', f'{r["stats"]["max"]*1000:.3f}', r.get("note", "")])
    w("## 3. Changed-chunk list time (ms)")
    w("")
    table("changelist", None, ["changed chunks", "warm median", "min", "max", "cold, and volume", "peak RSS (MiB)"],
          lambda r: [r["name"].split()[0], f'{r["stats"]["median"]*1000:.3f}', f'{r["stats"]["min"]*1000:.3f}',
                     f'{r["stats"]["max"]*1000:.3f}', r.get("note", ""), f'{r["peakResidentKiB"]/1024:.1f}'])
    w("## 4. Snapshot read throughput (MB/s)")
    w("")
    table("read", None, ["source", "snapshots", "ours", "reference (plain file)", "ratio", "note"],
          lambda r: [r["name"], f'{r["snapshots"]:,}', fmt(r["value"], "MB/s"), fmt(r["reference"], "MB/s"),
                     f'{r["ratio"]:.2f}x', r.get("note", "")])
    if btrfs:
        w("## Peer: btrfs subvolume snapshots (same run)")
        w("")
        w("btrfs on a loop-mounted 16 GiB image on the same disk; a 256 MiB file; snapshots by")
        w("ioctl. Beside it, our figure at the nearest snapshot count.")
        w("")
        w("| figure | snapshots | btrfs | btrfs vs its own first level | ours (copy-out 4 KiB random / create) |")
        w("|---|---|---|---|---|")
        base = {}
        for r in btrfs:
            base.setdefault(r["name"], r["value"])
            ours = None
            key = "copy-out 4KiB random" if r["unit"] == "MB/s" else "create"
            cands = [z for z in zuma if z["name"] == key]
            if cands:
                ours = min(cands, key=lambda z: abs(z["snapshots"] - r["snapshots"]))
            own = r["value"] / base[r["name"]] if base[r["name"]] else 0
            ours_txt = f'{fmt(ours["value"], r["unit"])} {r["unit"]} @{ours["snapshots"]:,}' if ours else "n/a"
            w(f'| {r["name"]} ({r["unit"]}) | {r["snapshots"]:,} | {fmt(r["value"], r["unit"])} | {own:.2f}x | {ours_txt} |')
        w("")
    w("## 5. Peak resident memory")
    w("")
    w("Per case above (peak RSS column; reset before each case with `/proc/self/clear_refs`).")
    w("")
    out.append("")
    print("\n".join(out))


if __name__ == "__main__":
    main()
