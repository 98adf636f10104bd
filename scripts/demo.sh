#!/usr/bin/env bash
# The demo: a snapshot store on plain files, end to end with ddsnap. Initialize, write,
# snapshot, overwrite, read the snapshot back unchanged, list the changed chunks, make the
# snapshot writable, revert, delete, and check the store.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
D="$PWD/.build/release/ddsnap"
dir=$(mktemp -d /tmp/zumastor-demo.XXXXXX)
trap 'rm -rf "$dir"' EXIT
cd "$dir"
# Shows each command as a user would type it, then runs it.
step() { echo; echo "\$ ddsnap $*"; "$D" "$@"; }
step_in() { local input=$1; shift; echo; echo "\$ ddsnap $* < $input"; "$D" "$@" < "$input"; }

truncate -s 256M origin        # the volume (sparse file)
truncate -s 64M snapstore      # the shared snapshot store
step initialize -c 16K snapstore origin
head -c 32M /dev/urandom > data
step_in data write snapstore
step create snapstore 1 --name before-upgrade
head -c 1M /dev/urandom > patch
step_in patch write snapstore --offset 8M
step create snapstore 2
echo; echo "snapshot 1 still reads the original data:"
"$D" read snapstore --snapshot 1 --length 32M | cmp - data && echo "  identical to what was written before the snapshot"
echo "chunks changed between snapshots 1 and 2: $("$D" changelist snapstore 1 2 | wc -l) (1 MiB / 16 KiB = 64)"
step status snapstore --size
step list snapstore
step revert snapstore 1
"$D" read snapstore --length 32M | cmp - data && echo "  origin equals snapshot 1 again"
step delete snapstore 1
step check snapstore
