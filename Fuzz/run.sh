#!/usr/bin/env bash
# Builds the fuzzers (libFuzzer + AddressSanitizer) and runs the delta-stream decoder's for
# SECONDS (default 60) on its seed corpus (valid streams, see make-corpus.sh), then the
# replication messages' for half as long on theirs (link-corpus: a valid conversation); new
# inputs go to scratch copies. Exits non-zero if a fuzzer finds a crash (its input is kept as
# crash-*).
# Usage: Fuzz/run.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-60}
swift build -c release 2>&1 | tail -n 1
work=$(mktemp -d /tmp/zuma-fuzz.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir "$work/delta" "$work/link"
cp corpus/* "$work/delta/"
cp link-corpus/* "$work/link/"
.build/release/delta-fuzz -max_total_time="$seconds" -max_len=65536 -print_final_stats=1 "$work/delta" 2>&1 | tail -n 12
.build/release/link-fuzz -max_total_time="$(( (seconds + 1) / 2 ))" -max_len=8192 -print_final_stats=1 "$work/link" 2>&1 | tail -n 12
