# Shared helpers for the shell end-to-end tests: a scratch directory removed on exit, and
# assertions that count passes and failures and print "N passed, N failed" at the end.
set -u
PASS=0
FAIL=0
WORK=$(mktemp -d /tmp/zuma-e2e.XXXXXX)
# Helper processes a test starts; killed by PID on exit, whatever happened.
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
    remove_unbound_stable_loops
    rm -rf "$WORK"
}

# remove_unbound_stable_loops: the servers attach their devices at loop numbers from 65,536 up
# (StableLoopNumber) and remove them at detach; one detached while still mounted becomes
# unbound only at its unmount. Those left unbound (no file behind them) are removed, as a
# server's next start or stop would.
remove_unbound_stable_loops() {
    python3 - <<'PY' 2>/dev/null
import fcntl, os
control = os.open("/dev/loop-control", os.O_RDWR)
for entry in os.listdir("/sys/block"):
    if entry.startswith("loop") and entry[4:].isdigit() and 65536 <= int(entry[4:]) < 65536 + 256 * 2048 \
            and not os.path.exists("/sys/block/%s/loop" % entry):
        try:
            fcntl.ioctl(control, 0x4C81, int(entry[4:]))  # LOOP_CTL_REMOVE
        except OSError:
            pass
PY
}
trap cleanup EXIT

ok() { PASS=$((PASS + 1)); echo "ok - $1"; }
not_ok() { FAIL=$((FAIL + 1)); echo "not ok - $1"; [ -n "${2:-}" ] && echo "$2" | sed 's/^/#   /'; }

# expect_ok NAME CMD...: the command exits 0.
expect_ok() {
    local name=$1; shift
    local out
    if out=$("$@" 2>&1); then ok "$name"; else not_ok "$name" "exit $?: $out"; fi
}

# expect_fail NAME PATTERN CMD...: the command exits non-zero and its output matches PATTERN.
expect_fail() {
    local name=$1 pattern=$2; shift 2
    local out rc
    out=$("$@" 2>&1); rc=$?
    if [ $rc -eq 0 ]; then not_ok "$name" "exited 0: $out"; return; fi
    if echo "$out" | grep -qiE -- "$pattern"; then ok "$name"; else not_ok "$name" "exit $rc, output does not match /$pattern/: $out"; fi
}

# expect_eq NAME EXPECTED ACTUAL
expect_eq() {
    if [ "$2" = "$3" ]; then ok "$1"; else not_ok "$1" "expected [$2], got [$3]"; fi
}

# release_devices_under DIR: detaches loop devices whose backing file lies under DIR, then
# lazily unmounts whatever is mounted under DIR (a killed server's dead FUSE mount included).
release_devices_under() {
    local dir=$1 f
    for f in /sys/block/loop*/loop/backing_file; do
        [ -e "$f" ] || continue
        case "$(cat "$f" 2>/dev/null)" in "$dir"/*) losetup -d "/dev/$(basename "$(dirname "$(dirname "$f")")")" 2>/dev/null ;; esac
    done
    awk -v w="$dir/" 'index($2, w) == 1 { print $2 }' /proc/mounts | while read -r m; do umount -l "$m"; done
}

# unmount_listed POINT...: unmounts each, last first (lazily if busy).
unmount_listed() {
    local i points=("$@")
    for ((i = ${#points[@]} - 1; i >= 0; i--)); do umount "${points[i]}" 2>/dev/null || umount -l "${points[i]}" 2>/dev/null; done
}

# unmount_under DIR: everything mounted below DIR, deepest first (lazily if busy).
unmount_under() {
    awk -v w="$1/" 'index($2, w) == 1 { print $2 }' /proc/mounts | sort -r | while read -r m; do umount "$m" 2>/dev/null || umount -l "$m"; done
}

# require_root_and_fuse WHAT: a test that needs root and /dev/fuse fails at once without them.
require_root_and_fuse() {
    if [ "$(id -u)" -ne 0 ] || [ ! -e /dev/fuse ]; then
        not_ok "$1 need root and /dev/fuse"; finish; exit 1
    fi
}

# remove_device_names VOL...: the /dev/mapper names (symbolic links) of those volumes.
remove_device_names() {
    local v n
    for v in "$@"; do
        for n in /dev/mapper/"$v" /dev/mapper/"$v"\(*\); do [ -L "$n" ] && rm -f "$n"; done
    done
}

# stop_pid PID...: SIGTERM to each, then up to 10 s for each to go.
stop_pid() {
    local pid
    for pid in "$@"; do kill -TERM "$pid" 2>/dev/null; done
    for pid in "$@"; do for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done; done
}

# stop_volume_processes ZUMASTOR VOL...: the replication service and metrics exporter, and
# the schedule agents and servers of those volumes (in the current ZUMASTOR_ROOT), by the pids
# their pid files and status report: SIGTERM, then a wait.
stop_volume_processes() {
    local z=$1 v pid; shift
    # The host's replication service and metrics exporter of this ZUMASTOR_ROOT (their pid
    # files: the pid first).
    for pid in $(head -qn 1 "${ZUMASTOR_ROOT:-}/var/run/zumastor/replicator.pid" "${ZUMASTOR_ROOT:-}/var/run/zumastor/metrics.pid" 2>/dev/null); do
        stop_pid "$pid"
    done
    for v in "$@"; do
        for pid in $("$z" status "$v" --json 2>/dev/null | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d.get("agentPID", ""), d.get("serverPID", ""))' 2>/dev/null); do
            stop_pid "$pid"
        done
    done
}

# free_port: a TCP port of 127.0.0.1 nobody listens on now.
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# md5: the MD5 of standard input, the digest alone.
md5() { md5sum | cut -d' ' -f1; }

finish() {
    echo "$PASS passed, $FAIL failed"
    [ "$FAIL" -eq 0 ]
}

# stop_at NAME [DETAIL]: a failure that makes the cycles after it meaningless (soak tests):
# counted, shown with the last lines of LOG_TO_SHOW if set, then the counts, and exit 1.
stop_at() {
    not_ok "$1" "${2:-}"
    [ -n "${LOG_TO_SHOW:-}" ] && [ -s "$LOG_TO_SHOW" ] && tail -n 3 "$LOG_TO_SHOW" | sed 's/^/#   /'
    finish
    exit 1
}
