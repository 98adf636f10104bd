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
step() { echo; echo "\$ $*"; "$@"; }

truncate -s 256M origin        # the volume (sparse file)
truncate -s 64M snapstore      # the shared snapshot store
step "$D" initialize -c 16K snapstore origin
head -c 32M /dev/urandom > data
step sh -c "\"$D\" write snapstore < data"
step "$D" create snapstore 1 --name before-upgrade
head -c 1M /dev/urandom > patch
step sh -c "\"$D\" write snapstore --offset 8M < patch"
step "$D" create snapstore 2
echo; echo "snapshot 1 still reads the original data:"
"$D" read snapstore --snapshot 1 --length 32M | cmp - data && echo "  identical to what was written before the snapshot"
echo "chunks changed between snapshots 1 and 2: $("$D" changelist snapstore 1 2 | wc -l) (1 MiB / 16 KiB = 64)"
step "$D" status snapstore --size
step "$D" list snapstore
step "$D" revert snapstore 1
"$D" read snapstore --length 32M | cmp - data && echo "  origin equals snapshot 1 again"
step "$D" delete snapstore 1
step "$D" check snapstore
