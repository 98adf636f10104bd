#!/usr/bin/env python3
"""Two builds of `ddsnap server` against each other on the same machine in one run (as root):
the raw block device of each (a volume's FUSE block file behind a loop device, as in section 6
of docs/BENCHMARKS.md), fio's write patterns, the builds taking turns round after round so that
the machine's drift falls on both alike. Prints the medians, min-max, and B over A.

With --record, the comparison goes into docs/benchmarks.json beside section 6's figures
(`devices.ab`, dropped by the next measurement of the devices), and section 6 shows it once
BENCHMARKS.md is rendered again.

Usage: ab_devices.py --dir DIR --a PATH/ddsnap --b PATH/ddsnap [--labels A B] [--rounds N]
                     [--runtime S] [--record docs/benchmarks.json]"""
import argparse
import json
import os
import statistics

from devices_peer import Cleanup, fio, remove_new_entries, start_ours

PATTERNS = [
    ("seq write 1M", "write", "1M", 1),
    ("rand write 4K QD1", "randwrite", "4k", 1),
    ("rand write 4K QD32", "randwrite", "4k", 32),
]
SIZE = 1 << 30


def one_round(d, ddsnap, runtime):
    """A fresh volume of this build, each pattern once; MB/s by pattern."""
    cleanup = Cleanup()
    existing = set(os.listdir(d))
    try:
        dev = start_ours(d, ddsnap, cleanup)
        return {label: fio(dev, rw, bs, depth, runtime, SIZE) for label, rw, bs, depth in PATTERNS}
    finally:
        cleanup.run()
        remove_new_entries(d, existing)


def main():
    a = argparse.ArgumentParser()
    a.add_argument("--dir", required=True)
    a.add_argument("--a", required=True)
    a.add_argument("--b", required=True)
    a.add_argument("--rounds", type=int, default=5)
    a.add_argument("--runtime", type=int, default=6)
    a.add_argument("--labels", nargs=2, default=["A", "B"])
    a.add_argument("--record")
    args = a.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    results = {"a": {p[0]: [] for p in PATTERNS}, "b": {p[0]: [] for p in PATTERNS}}
    for r in range(args.rounds):
        for side in ("a", "b") if r % 2 == 0 else ("b", "a"):
            for label, value in one_round(args.dir, getattr(args, side), args.runtime).items():
                results[side][label].append(value)
        print(f"round {r + 1} of {args.rounds} done", flush=True)
    print(f"{'pattern':22} {'A (MB/s)':>22} {'B (MB/s)':>22} {'B / A':>7}")
    rows = []
    for label, *_ in PATTERNS:
        va, vb = results["a"][label], results["b"][label]
        ma, mb = statistics.median(va), statistics.median(vb)
        print(f"{label:22} {ma:8.0f} ({min(va):5.0f}-{max(va):5.0f}) {mb:8.0f} ({min(vb):5.0f}-{max(vb):5.0f}) {mb / ma:6.2f}x")
        rows.append({"pattern": label, "a": {"median": ma, "min": min(va), "max": max(va)},
                     "b": {"median": mb, "min": min(vb), "max": max(vb)}})
    if args.record:
        with open(args.record) as f:
            d = json.load(f)
        d["devices"]["ab"] = {"a": args.labels[0], "b": args.labels[1], "rounds": args.rounds, "runtime": args.runtime, "rows": rows}
        with open(args.record, "w") as f:
            json.dump(d, f, indent=1)


if __name__ == "__main__":
    main()
