#!/usr/bin/env bash
# The whole test suite: unit, model, crash- and EIO-simulation, format and scale tests (swift
# test), the ddsnap end-to-end tests on files, the server end-to-end tests (as root: FUSE, loop
# devices, ext4/xfs, NBD clients, NBD over TLS, fio, kill -9), a full host filesystem under a
# server, delta streams, the zumastor end-to-end tests, the seed
# guide's examples (ext4 and xfs), zumastor replicate, short forms of the restart soaks
# (scripts/soak), 10 seconds of each fuzz target (Fuzz/run.sh --debug), and a smoke run of every benchmark (tiny sizes, no
# timing asserted: it only proves they still run). Prints "N passed, N failed" last.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --packages || exit 1
# One release build of everything, the tests included: the shell suites run the programs it
# makes (.build/release, with the Swift runtime linked dynamically), so every dependency
# (BoringSSL among them) compiles once. The static programs of setup.sh are for the demo,
# the benchmarks and installs.
# (-enable-testing: the tests' @testable imports need it in a release build; `swift test`
# would add it itself.)
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! swift build -c release --build-tests -Xswiftc -enable-testing > "$log" 2>&1; then
    grep -E "error:" "$log" | head -n 20
    echo "not ok - build"; echo "0 passed, 1 failed"; exit 1
fi
BIN="$PWD/.build/release"

# The debug self-check: the trees and the space map verified after every commit of every store
# the tests open (StoreOptions.selfCheck).
ZUMA_SELF_CHECK=1 swift test -c release --skip-build 2>&1 | tee "$log"
swift_rc=${PIPESTATUS[0]}
# Swift Testing's closing line: "Test run with N tests in M suites passed|failed ...".
swift_total=$(grep -oE 'Test run with [0-9]+ tests' "$log" | tail -n 1 | grep -oE '[0-9]+' || echo 0)
swift_failed=$(grep -cE '^✘ Test [^r].*failed' "$log" || true)

# The shell suites, each ending with "N passed, N failed": ddsnap on files; the server on the
# real kernel (FUSE, loop devices, filesystems, NBD clients, fio; root); delta streams on files,
# pipes and a server's socket; zumastor (root, own ZUMASTOR_ROOT); the seed guide's examples on
# ext4 and xfs; NFS exports and Samba shares with real servers and clients; the metrics
# endpoints scraped while volumes work and replicate; the Debian package built, linted,
# installed, checked and purged, and the install step (static programs, man pages,
# completions); zumastor replicate
# to replicas on files and through a replica server's socket;
# replication between hosts in network namespaces (push, pull, periods, chains, fan-out, resume).
shell_passed=0
shell_failed=0
shell_summary=""
run_suite() {
    local name=$1 script=$2 binary=$3 rc passed failed started
    shift 3
    started=$(date +%s)
    bash "$script" "$BIN/$binary" "$@" 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    echo "# $name took $(( $(date +%s) - started )) s"
    passed=$(tail -n 1 "$log" | grep -oE '^[0-9]+' || echo 0)
    failed=$(tail -n 1 "$log" | grep -oE '[0-9]+ failed' | grep -oE '[0-9]+' || echo 1)
    [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ] && failed=1
    shell_passed=$((shell_passed + passed))
    shell_failed=$((shell_failed + failed))
    shell_summary="$shell_summary; $name: $passed passed, $failed failed"
}
run_suite "ddsnap end to end" Tests/cli/ddsnap-e2e.sh ddsnap
run_suite "server end to end" Tests/cli/server-e2e.sh ddsnap
run_suite "host filesystem full under a server (ENOSPC, recovery without restart)" Tests/cli/faults-e2e.sh ddsnap
run_suite "delta streams end to end" Tests/cli/delta-e2e.sh ddsnap
run_suite "zumastor end to end" Tests/cli/zumastor-e2e.sh zumastor
run_suite "seed guide examples" Tests/cli/zumastor-seed-e2e.sh zumastor
run_suite "NFS and Samba exports (nfs-ganesha, smbd, real clients)" Tests/cli/exports-e2e.sh zumastor
run_suite "Prometheus metrics (curl, prometheus_client)" Tests/cli/metrics-e2e.sh zumastor
run_suite "Debian package and install (dpkg-deb, lintian, apt-get, man, bash completion)" Tests/cli/package-e2e.sh zumastor
run_suite "zumastor replicate end to end" Tests/cli/replicate-e2e.sh zumastor
run_suite "delta streams between hosts (TLS, pinned keys)" Tests/cli/network-e2e.sh ddsnap
run_suite "zumastor replication between three hosts" Tests/cli/remote-e2e.sh zumastor
# Short forms of the restart soaks (scripts/soak: 100, 100, 50 and 100 cycles by default).
run_suite "server restarts under load, kill -9" scripts/soak/server-restarts.sh ddsnap 6 KILL
run_suite "server restarts under load, SIGTERM" scripts/soak/server-restarts.sh ddsnap 6 TERM
run_suite "zumastor stop and start around a mounted ext4" scripts/soak/zumastor-restarts.sh zumastor 5
run_suite "kill -9 under an ext4 workload with snapshots" scripts/soak/ext4-kill.sh ddsnap 10

# Every decoder of outside input under libFuzzer and AddressSanitizer (delta streams,
# replication messages, store images, NBD, control socket), 10 seconds each from its seeds,
# built in debug (it builds faster; the long runs use release builds).
started=$(date +%s)
if Fuzz/run.sh --debug 10 > "$log" 2>&1; then
    fuzz_passed=1; fuzz_failed=0; echo "ok - fuzzing, 10 s per target ($(tr '\n' ';' < "$log"))"
else
    fuzz_passed=0; fuzz_failed=1; echo "not ok - fuzzing"; sed 's/^/#   /' "$log"
fi
echo "# fuzzing took $(( $(date +%s) - started )) s"

bench_dir=$(mktemp -d /tmp/zuma-bench-smoke.XXXXXX)
if "$BIN/zuma-bench" --smoke --directory "$bench_dir" > "$log" 2>&1; then
    bench_passed=1; bench_failed=0; echo "ok - benchmark smoke run ($(tail -n 1 "$log"))"
else
    bench_passed=0; bench_failed=1; echo "not ok - benchmark smoke run"; sed 's/^/#   /' "$log"
fi
rm -rf "$bench_dir"

if [ "$swift_rc" -ne 0 ] && [ "$swift_failed" -eq 0 ]; then swift_failed=1; fi
passed=$(( swift_total - swift_failed + shell_passed + fuzz_passed + bench_passed ))
failed=$(( swift_failed + shell_failed + fuzz_failed + bench_failed ))
echo
echo "swift test: $swift_total tests, exit $swift_rc$shell_summary; fuzzing: $([ $fuzz_failed -eq 0 ] && echo ok || echo FAILED); benchmark smoke: $([ $bench_failed -eq 0 ] && echo ok || echo FAILED)"
echo "$passed passed, $failed failed"
[ "$swift_rc" -eq 0 ] && [ "$shell_failed" -eq 0 ] && [ "$fuzz_failed" -eq 0 ] && [ "$bench_failed" -eq 0 ]
