#!/usr/bin/env bash
# Builds the delta-stream decoder fuzzer (libFuzzer + AddressSanitizer) and runs it for
# SECONDS (default 60) on the seed corpus (valid streams, see make-corpus.sh); new inputs go
# to a scratch copy. Exits non-zero if the fuzzer finds a crash (its input is kept as crash-*).
# Usage: Fuzz/run.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-60}
swift build -c release 2>&1 | tail -n 1
work=$(mktemp -d /tmp/zuma-fuzz.XXXXXX)
trap 'rm -rf "$work"' EXIT
cp corpus/* "$work/"
.build/release/delta-fuzz -max_total_time="$seconds" -max_len=65536 -print_final_stats=1 "$work" 2>&1 | tail -n 12
