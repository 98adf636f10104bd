#!/usr/bin/env bash
# The whole test suite: unit, model, crash-simulation, format and scale tests (swift test),
# the ddsnap end-to-end tests on files, the server end-to-end tests (as root: FUSE, loop
# devices, ext4/xfs, NBD clients, fio, kill -9), the zumastor end-to-end tests and the seed
# guide's examples (ext4 and xfs), and a smoke run of every benchmark (tiny sizes, no
# timing asserted: it only proves they still run). Prints "N passed, N failed" last.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit 1

log=$(mktemp)
trap 'rm -f "$log"' EXIT
swift test -c release 2>&1 | tee "$log"
swift_rc=${PIPESTATUS[0]}
# Swift Testing's closing line: "Test run with N tests in M suites passed|failed ...".
swift_total=$(grep -oE 'Test run with [0-9]+ tests' "$log" | tail -n 1 | grep -oE '[0-9]+' || echo 0)
swift_failed=$(grep -cE '^✘ Test [^r].*failed' "$log" || true)

bash Tests/cli/ddsnap-e2e.sh "$PWD/.build/release/ddsnap" 2>&1 | tee "$log"
cli_rc=${PIPESTATUS[0]}
cli_passed=$(tail -n 1 "$log" | grep -oE '^[0-9]+' || echo 0)
cli_failed=$(tail -n 1 "$log" | grep -oE '[0-9]+ failed' | grep -oE '[0-9]+' || echo 1)

# The server on the real kernel: FUSE, loop devices, filesystems, NBD clients, fio (root).
bash Tests/cli/server-e2e.sh "$PWD/.build/release/ddsnap" 2>&1 | tee "$log"
server_rc=${PIPESTATUS[0]}
server_passed=$(tail -n 1 "$log" | grep -oE '^[0-9]+' || echo 0)
server_failed=$(tail -n 1 "$log" | grep -oE '[0-9]+ failed' | grep -oE '[0-9]+' || echo 1)
[ "$server_rc" -ne 0 ] && [ "$server_failed" -eq 0 ] && server_failed=1

# zumastor on one machine (root, own ZUMASTOR_ROOT): define, start/stop, status, forget, bad input.
bash Tests/cli/zumastor-e2e.sh "$PWD/.build/release/zumastor" 2>&1 | tee "$log"
z_rc=${PIPESTATUS[0]}
z_passed=$(tail -n 1 "$log" | grep -oE '^[0-9]+' || echo 0)
z_failed=$(tail -n 1 "$log" | grep -oE '[0-9]+ failed' | grep -oE '[0-9]+' || echo 1)
[ "$z_rc" -ne 0 ] && [ "$z_failed" -eq 0 ] && z_failed=1

# The seed guide's single-machine examples on ext4 and xfs (root, own ZUMASTOR_ROOT and loop devices).
bash Tests/cli/zumastor-seed-e2e.sh "$PWD/.build/release/zumastor" 2>&1 | tee "$log"
seed_rc=${PIPESTATUS[0]}
seed_passed=$(tail -n 1 "$log" | grep -oE '^[0-9]+' || echo 0)
seed_failed=$(tail -n 1 "$log" | grep -oE '[0-9]+ failed' | grep -oE '[0-9]+' || echo 1)
[ "$seed_rc" -ne 0 ] && [ "$seed_failed" -eq 0 ] && seed_failed=1

bench_dir=$(mktemp -d /tmp/zuma-bench-smoke.XXXXXX)
if .build/release/zuma-bench --smoke --directory "$bench_dir" > "$log" 2>&1; then
    bench_passed=1; bench_failed=0; echo "ok - benchmark smoke run ($(tail -n 1 "$log"))"
else
    bench_passed=0; bench_failed=1; echo "not ok - benchmark smoke run"; sed 's/^/#   /' "$log"
fi
rm -rf "$bench_dir"

if [ "$swift_rc" -ne 0 ] && [ "$swift_failed" -eq 0 ]; then swift_failed=1; fi
passed=$(( swift_total - swift_failed + cli_passed + server_passed + z_passed + seed_passed + bench_passed ))
failed=$(( swift_failed + cli_failed + server_failed + z_failed + seed_failed + bench_failed ))
echo
echo "swift test: $swift_total tests, exit $swift_rc; ddsnap end to end: $cli_passed passed, $cli_failed failed; server end to end: $server_passed passed, $server_failed failed; zumastor end to end: $z_passed passed, $z_failed failed; seed guide examples: $seed_passed passed, $seed_failed failed; benchmark smoke: $([ $bench_failed -eq 0 ] && echo ok || echo FAILED)"
echo "$passed passed, $failed failed"
[ "$swift_rc" -eq 0 ] && [ "$cli_rc" -eq 0 ] && [ "$server_failed" -eq 0 ] && [ "$z_failed" -eq 0 ] && [ "$seed_failed" -eq 0 ] && [ "$bench_failed" -eq 0 ]
