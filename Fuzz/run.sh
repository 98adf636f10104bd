#!/usr/bin/env bash
# Builds the fuzzers (libFuzzer and AddressSanitizer, with this package's libraries instrumented
# too) and runs each on a scratch copy of its seed corpus:
#   delta    delta-stream decoder          delta-corpus    (make-corpus.sh)
#   link     replication messages          link-corpus
#   store    store open path, on images    store-corpus    (store-fuzz with ZUMA_STORE_FUZZ_CORPUS)
#   nbd      NBD handshake and requests    nbd-corpus      (nbd-fuzz with ZUMA_NBD_FUZZ_CORPUS)
#   control  control-socket frames         control-corpus  (control-fuzz with ZUMA_CONTROL_FUZZ_CORPUS)
# Usage: Fuzz/run.sh [SECONDS]          each target for SECONDS (default 30)
#        Fuzz/run.sh --debug [SECONDS]  the same from a debug build (builds in two thirds of
#                                       the time, runs slower: CI's short run)
#        Fuzz/run.sh --long [RUNS]      each target for RUNS executions (default 1,000,000)
# Prints a line per target (executions, seconds, coverage, corpus). Exits non-zero when a target
# crashes; the input is kept as Fuzz/findings/TARGET-crash-*, to replay with
# .build/release/TARGET-fuzz FILE.
set -uo pipefail
cd "$(dirname "$0")"
configuration=release
case "${1:-}" in
--long) limit="-runs=${2:-1000000}" ;;
--debug) configuration=debug; limit="-max_total_time=${2:-30}" ;;
*) limit="-max_total_time=${1:-30}" ;;
esac
log=$(mktemp)
if ! ZUMA_FUZZ_INSTRUMENT=1 swift build -c "$configuration" -Xswiftc -enable-testing > "$log" 2>&1; then
    grep -E "error" "$log" | head -n 20; rm -f "$log"; exit 1
fi
work=$(mktemp -d /tmp/zuma-fuzz.XXXXXX)
trap 'rm -rf "$work" "$log"' EXIT
failed=0
for spec in delta:65536 link:8192 store:1100000 nbd:16384 control:8192; do
    target=${spec%%:*} max_len=${spec#*:}
    mkdir "$work/$target"
    cp "$target-corpus"/* "$work/$target/"
    started=$(date +%s)
    SWIFT_BACKTRACE=enable=no ".build/$configuration/$target-fuzz" "$limit" -max_len="$max_len" -print_final_stats=1 \
        -artifact_prefix="$work/$target-" "$work/$target" > "$log" 2>&1
    rc=$?
    runs=$(grep -oE 'stat::number_of_executed_units: [0-9]+' "$log" | grep -oE '[0-9]+$')
    cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -n 1)
    corpus=$(ls "$work/$target" | wc -l)
    echo "$target: ${runs:-0} runs in $(( $(date +%s) - started )) s, $cov, corpus $corpus inputs"
    if [ $rc -ne 0 ]; then
        failed=1
        mkdir -p findings
        cp "$work/$target"-crash-* findings/ 2>/dev/null
        grep -E "Fatal error|ERROR: AddressSanitizer|SUMMARY|Test unit written" "$log" | sed "s|$work/|Fuzz/findings/|" | head -n 6
    fi
done
exit $failed
