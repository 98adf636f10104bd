#!/usr/bin/env bash
# Makes the fuzzer's seed corpus: small valid streams (full, incremental, compressed), each
# prefixed with the harness's two control bytes. Usage: Fuzz/make-corpus.sh PATH/TO/ddsnap
set -euo pipefail
D=${1:?usage: make-corpus.sh PATH/TO/ddsnap}
cd "$(dirname "$0")"
dir=$(mktemp -d /tmp/zuma-corpus.XXXXXX)
trap 'rm -rf "$dir"' EXIT
truncate -s 64K "$dir/o"; truncate -s 4M "$dir/s"
"$D" initialize -y -c 4K "$dir/s" "$dir/o" >/dev/null
head -c 5000 /dev/urandom | "$D" write "$dir/s" --offset 4096 2>/dev/null
"$D" create "$dir/s" 1 --name seed >/dev/null
printf "abc\n%.0s" $(seq 2250) | "$D" write "$dir/s" --offset 20000 2>/dev/null
"$D" create "$dir/s" 2 >/dev/null
mkdir -p delta-corpus
emit() { { printf '\x3f\x00'; "$D" delta create "$dir/s" "$@" --quiet; } > "delta-corpus/$name"; }
name=full emit 1
name=incremental emit 1 2
name=incremental-lzma emit 1 2 --compress lzma
name=incremental-zstd emit 1 2 --compress zstd
name=empty emit 2 2
ls -l delta-corpus
