#!/usr/bin/env bash
# Generates the man pages zumastor(8) and ddsnap(8), and the bash and zsh completions, from the
# command definitions of the programs in BINDIR (swift-argument-parser's generate-manual and
# --generate-completion-script), so that neither can drift from the programs.
# Usage: scripts/man-and-completions.sh BINDIR OUTDIR
#   OUTDIR/man8/{zumastor,ddsnap}.8, OUTDIR/bash/{zumastor,ddsnap}, OUTDIR/zsh/{_zumastor,_ddsnap}
set -euo pipefail
BIN=${1:?usage: man-and-completions.sh BINDIR OUTDIR}
OUT=${2:?usage: man-and-completions.sh BINDIR OUTDIR}
cd "$(dirname "$0")/.."
BIN=$(cd "$BIN" && pwd)
# generate-manual is swift-argument-parser's own tool, built from the package's dependency.
swift build -c release --product generate-manual > /dev/null
# The date of the sources (the last commit), so that a rebuild makes the same pages.
date=$(git log -1 --format=%cs 2>/dev/null || date +%F)
mkdir -p "$OUT/man8" "$OUT/bash" "$OUT/zsh"
for program in zumastor ddsnap; do
    .build/release/generate-manual "$BIN/$program" --section 8 --date "$date" \
        --authors "The Zumastor for Swift project" --output-directory "$OUT/man8" > /dev/null
    "$BIN/$program" --generate-completion-script bash > "$OUT/bash/$program"
    "$BIN/$program" --generate-completion-script zsh > "$OUT/zsh/_$program"
done
echo "man pages and completions in $OUT"
