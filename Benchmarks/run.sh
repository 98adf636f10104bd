#!/usr/bin/env bash
# Runs every benchmark and writes docs/BENCHMARKS.md: our curves with their plain-file
# references, the btrfs peer, and the block devices of `ddsnap server` against a plain loop
# device and nbdkit+nbdfuse, all measured in this one run. As root (loop devices, mounts,
# page-cache drops). Usage: Benchmarks/run.sh [--quick | --devices-only | --replication-only | --network-only | --skip-devices]
#   --quick: snapshot counts up to 1,000, changelists up to 10,000, one fio repeat.
#   --devices-only: measure only the block devices; the other sections keep the figures of
#     the last full run (docs/benchmarks.json) and say so.
#   --replication-only: the same for the replication comparison with rsync (section 7).
#   --network-only: the same for replication between hosts against rsync over ssh (section 8).
#   --skip-devices: measure everything but the block devices (section 6 keeps the figures of
#     the last run that measured them).
set -euo pipefail
cd "$(dirname "$0")/.."
quick=0
devices_only=0
[ "${1:-}" = "--quick" ] && quick=1
[ "${1:-}" = "--devices-only" ] && devices_only=1
replication_only=0
[ "${1:-}" = "--replication-only" ] && replication_only=1
skip_devices=0
[ "${1:-}" = "--skip-devices" ] && skip_devices=1
network_only=0
[ "${1:-}" = "--network-only" ] && network_only=1
need=()
for p in btrfs-progs python3 fio nbdkit libnbd-bin fuse3 e2fsprogs rsync openssh-server openssh-client iproute2 libzstd-dev; do dpkg -s "$p" >/dev/null 2>&1 || need+=("$p"); done
if [ ${#need[@]} -gt 0 ]; then apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"; fi
swift build -c release --static-swift-stdlib --scratch-path .build/static 2>&1 | tail -n 1
dir=${ZUMA_BENCH_DIR:-/var/tmp/zuma-bench}
mkdir -p "$dir"
levels=0,1,64,1000,10000,100000
counts=1,10,100,1000,10000,100000,1000000
btrfs_counts=0,10,100,1000
repeats=3
small_cache=8
many_files=1000000
if [ $quick -eq 1 ]; then many_files=100000; fi
if [ $quick -eq 1 ]; then levels=0,1,64,1000; counts=1,10,100,1000,10000; btrfs_counts=0,10,100; repeats=1; fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# Sections measured earlier keep their small-cache memory figures too (when that run had them).
small_cache_args=()
keep_small_cache() {
    python3 -c 'import json, sys; d = json.load(open("docs/benchmarks.json")); "zuma_small_cache" in d and json.dump(d["zuma_small_cache"], open(sys.argv[1], "w")); print(d.get("small_cache_mib", 8), file=open(sys.argv[2], "w"))' \
        "$out/zuma_small_cache.json" "$out/small_cache_mib.txt"
    [ -f "$out/zuma_small_cache.json" ] && small_cache_args=(--zuma-small-cache "$out/zuma_small_cache.json" --small-cache-mib "$(cat "$out/small_cache_mib.txt")")
    return 0
}
replication() {
    python3 Benchmarks/replication_peer.py --dir "$dir/replication" --bin "$PWD/.build/static/release" --files "$many_files" \
        --repeat $repeats --output "$out/replication.json"
}
# Section 8: replication between two network namespaces, ours against rsync over ssh.
network_args=()
network() {
    local slow=100000
    [ $quick -eq 1 ] && slow=20000
    python3 Benchmarks/network_peer.py --bin "$PWD/.build/static/release" --dir "$dir/network" --repeat $repeats \
        --slow-files $slow --output "$out/network.json"
    network_args=(--network "$out/network.json")
}
# Section 8 of an earlier run, kept by the modes that do not measure it.
keep_network() {
    python3 -c 'import json, sys; d = json.load(open("docs/benchmarks.json")); "network" in d and json.dump(d["network"], open(sys.argv[1], "w"))' "$out/network.json"
    [ -f "$out/network.json" ] && network_args=(--network "$out/network.json")
    return 0
}
if [ $network_only -eq 1 ]; then
    [ -f docs/benchmarks.json ] || { echo "run.sh: --network-only needs docs/benchmarks.json from a full run" >&2; exit 1; }
    python3 -c 'import json, sys; d = json.load(open("docs/benchmarks.json")); [json.dump(d[k], open(f"{sys.argv[1]}/{k}.json", "w")) for k in ("zuma", "btrfs", "devices", "replication")]; print(d.get("earlier", "an earlier run"), file=open(f"{sys.argv[1]}/earlier.txt", "w"))' "$out"
    network
    keep_small_cache
    python3 Benchmarks/render.py --zuma "$out/zuma.json" --btrfs "$out/btrfs.json" --devices "$out/devices.json" "${small_cache_args[@]}" \
        --replication "$out/replication.json" --network "$out/network.json" --network-only --earlier "$(cat "$out/earlier.txt")" \
        --command "Benchmarks/run.sh" > docs/BENCHMARKS.md
    python3 -c 'import json, sys; d = json.load(open("docs/benchmarks.json")); d["network"] = json.load(open(sys.argv[1])); json.dump(d, open("docs/benchmarks.json", "w"), indent=1)' "$out/network.json"
    echo "wrote docs/BENCHMARKS.md (section 8 measured now, the rest from docs/benchmarks.json)"
    exit 0
fi
if [ $replication_only -eq 1 ]; then
    [ -f docs/benchmarks.json ] || { echo "run.sh: --replication-only needs docs/benchmarks.json from a full run" >&2; exit 1; }
    python3 -c 'import json, sys; d = json.load(open("docs/benchmarks.json")); [json.dump(d[k], open(f"{sys.argv[1]}/{k}.json", "w")) for k in ("zuma", "btrfs", "devices")]; print(d.get("earlier", "an earlier run"), file=open(f"{sys.argv[1]}/earlier.txt", "w")); print(d.get("earlier_devices", d.get("earlier", "an earlier run")), file=open(f"{sys.argv[1]}/earlier_devices.txt", "w"))' "$out"
    replication
    keep_small_cache
    keep_network
    python3 Benchmarks/render.py --zuma "$out/zuma.json" --btrfs "$out/btrfs.json" --devices "$out/devices.json" "${small_cache_args[@]}" "${network_args[@]}" \
        --replication "$out/replication.json" --earlier "$(cat "$out/earlier.txt")" --earlier-devices "$(cat "$out/earlier_devices.txt")" \
        --command "Benchmarks/run.sh" > docs/BENCHMARKS.md
    python3 -c 'import json, sys; d = json.load(open("docs/benchmarks.json")); d["replication"] = json.load(open(sys.argv[1])); json.dump(d, open("docs/benchmarks.json", "w"), indent=1)' "$out/replication.json"
    echo "wrote docs/BENCHMARKS.md (replication measured now, the rest from docs/benchmarks.json)"
    exit 0
fi
if [ $devices_only -eq 1 ]; then
    [ -f docs/benchmarks.json ] || { echo "run.sh: --devices-only needs docs/benchmarks.json from a full run" >&2; exit 1; }
    python3 -c 'import json, sys; d = json.load(open("docs/benchmarks.json")); json.dump(d["zuma"], open(sys.argv[1], "w")); json.dump(d["btrfs"], open(sys.argv[2], "w")); json.dump(d.get("earlier", "an earlier run"), open(sys.argv[3], "w")); json.dump(d.get("replication"), open(sys.argv[4], "w"))' \
        "$out/zuma.json" "$out/btrfs.json" "$out/earlier.json" "$out/replication.json"
    python3 Benchmarks/devices_peer.py --dir "$dir/devices" --ddsnap "$PWD/.build/static/release/ddsnap" --repeats $repeats \
        --output "$out/devices.json"
    # Section 7 (replication) stays, from the same earlier run as sections 1-5.
    replication_args=()
    [ "$(cat "$out/replication.json")" != "null" ] && replication_args=(--replication "$out/replication.json")
    keep_small_cache
    keep_network
    python3 Benchmarks/render.py --zuma "$out/zuma.json" --btrfs "$out/btrfs.json" --devices "$out/devices.json" "${replication_args[@]}" "${small_cache_args[@]}" "${network_args[@]}" \
        --earlier "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])))' "$out/earlier.json")" \
        --command "Benchmarks/run.sh" > docs/BENCHMARKS.md
    python3 -c 'import json, sys; d = json.load(open("docs/benchmarks.json")); d["devices"] = json.load(open(sys.argv[1])); json.dump(d, open("docs/benchmarks.json", "w"), indent=1)' "$out/devices.json"
    echo "wrote docs/BENCHMARKS.md (devices measured now, the rest from docs/benchmarks.json)"
    exit 0
fi
if [ $skip_devices -eq 1 ]; then
    [ -f docs/benchmarks.json ] || { echo "run.sh: --skip-devices needs docs/benchmarks.json from a full run" >&2; exit 1; }
    python3 -c 'import json, sys; d = json.load(open("docs/benchmarks.json")); json.dump(d["devices"], open(f"{sys.argv[1]}/devices.json", "w")); print(d.get("earlier_devices", d.get("earlier", "an earlier run")), file=open(f"{sys.argv[1]}/earlier_devices.txt", "w"))' "$out"
fi
/usr/bin/time -v .build/static/release/zuma-bench --directory "$dir" --levels "$levels" --changelist-counts "$counts" \
    --drop-caches --output "$out/zuma.json" 2> "$out/time.txt" | tee "$out/zuma.log"
# Memory with a small node cache: the fewest and the most snapshots again, to show the peak
# follows the configured cache, not the snapshot count.
.build/static/release/zuma-bench --directory "$dir" --levels "0,${levels##*,}" --skip-changelist --cache-mib $small_cache \
    --drop-caches --output "$out/zuma_small_cache.json" | tail -n 1
python3 Benchmarks/btrfs_peer.py --dir "$dir/btrfs" --counts "$btrfs_counts" --output "$out/btrfs.json" 2>&1 | grep -v -e NOTE -e '^ *-' -e 'this does not' -e '^$' || true
if [ $skip_devices -eq 0 ]; then
    python3 Benchmarks/devices_peer.py --dir "$dir/devices" --ddsnap "$PWD/.build/static/release/ddsnap" --repeats $repeats \
        --output "$out/devices.json"
fi
replication
network
if [ $skip_devices -eq 1 ]; then
    python3 Benchmarks/render.py --zuma "$out/zuma.json" --btrfs "$out/btrfs.json" --devices "$out/devices.json" "${network_args[@]}" \
        --replication "$out/replication.json" --earlier-devices "$(cat "$out/earlier_devices.txt")" \
        --zuma-small-cache "$out/zuma_small_cache.json" --small-cache-mib $small_cache \
        --command "Benchmarks/run.sh" > docs/BENCHMARKS.md
    python3 -c 'import json, sys, datetime; json.dump({"zuma": json.load(open(sys.argv[1])), "btrfs": json.load(open(sys.argv[2])), "devices": json.load(open(sys.argv[3])), "replication": json.load(open(sys.argv[4])), "zuma_small_cache": json.load(open(sys.argv[6])), "small_cache_mib": int(sys.argv[7]), "network": json.load(open(sys.argv[8])), "earlier": "the run of " + datetime.date.today().isoformat(), "earlier_devices": open(sys.argv[5]).read().strip()}, open("docs/benchmarks.json", "w"), indent=1)' \
        "$out/zuma.json" "$out/btrfs.json" "$out/devices.json" "$out/replication.json" "$out/earlier_devices.txt" "$out/zuma_small_cache.json" $small_cache "$out/network.json"
    echo "wrote docs/BENCHMARKS.md (block devices from docs/benchmarks.json, the rest measured now)"
    exit 0
fi
python3 Benchmarks/render.py --zuma "$out/zuma.json" --btrfs "$out/btrfs.json" --devices "$out/devices.json" "${network_args[@]}" \
    --replication "$out/replication.json" --zuma-small-cache "$out/zuma_small_cache.json" --small-cache-mib $small_cache \
    --command "Benchmarks/run.sh${1:+ $1}" > docs/BENCHMARKS.md
# The raw figures beside the report, to re-render or compare runs.
python3 -c 'import json, sys, datetime; json.dump({"zuma": json.load(open(sys.argv[1])), "btrfs": json.load(open(sys.argv[2])), "devices": json.load(open(sys.argv[3])), "replication": json.load(open(sys.argv[4])), "zuma_small_cache": json.load(open(sys.argv[5])), "small_cache_mib": int(sys.argv[6]), "network": json.load(open(sys.argv[7])), "earlier": "the full run of " + datetime.date.today().isoformat()}, open("docs/benchmarks.json", "w"), indent=1)' \
    "$out/zuma.json" "$out/btrfs.json" "$out/devices.json" "$out/replication.json" "$out/zuma_small_cache.json" $small_cache "$out/network.json"
echo "wrote docs/BENCHMARKS.md and docs/benchmarks.json"
