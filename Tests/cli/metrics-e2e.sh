#!/usr/bin/env bash
# Prometheus metrics end to end, as root: `zumastor start` serves the host's metrics (every
# volume server's figures and zumastor's own), scraped with curl and parsed with Prometheus'
# own Python client while a master on ext4 takes writes, snapshots and replications to a
# second ZUMASTOR_ROOT on loopback; `ddsnap server --metrics-listen`; the bad input.
# Usage: Tests/cli/metrics-e2e.sh PATH/TO/zumastor
. "$(dirname "$0")/lib.sh"
Z=${1:?usage: metrics-e2e.sh PATH/TO/zumastor}
D="$(dirname "$Z")/ddsnap"
HERE=$(cd "$(dirname "$0")/../.." && pwd)
export ZUMASTOR_ROOT="$WORK/root"
R2="$WORK/replica"
cd "$WORK"

require_root_and_fuse "metrics tests"
python3 -c 'import prometheus_client' 2>/dev/null || { not_ok "prometheus_client is installed (scripts/setup.sh --packages)"; finish; exit 1; }

V=zm$$
W=zn$$
M="$ZUMASTOR_ROOT/var/run/zumastor/mount/$V"
DPID=""
BLOCKER_PID=""
metrics_cleanup() {
    [ -n "$BLOCKER_PID" ] && kill "$BLOCKER_PID" 2>/dev/null
    [ -n "$DPID" ] && stop_pid "$DPID"
    local root
    for root in "$ZUMASTOR_ROOT" "$R2"; do
        [ -d "$root" ] && ZUMASTOR_ROOT=$root stop_volume_processes "$Z" "$V" "$W"
    done
    unmount_under "$WORK"
    release_devices_under "$WORK"
    remove_device_names "$V" "$W" "d$V"
    cleanup
}
trap metrics_cleanup EXIT

PORT=$(free_port)
URL="http://127.0.0.1:$PORT/metrics"
SCRAPE="$WORK/scrape"
# scrape: the samples, parsed, into $SCRAPE; value SAMPLE: one sample's value from it.
scrape() { curl -sf --max-time 20 "$URL" | python3 "$HERE/Tests/cli/prom_scrape.py" > "$SCRAPE" 2>&1; }
value() { awk -v k="$1" '$1 == k { print $2; found = 1 } END { if (!found) print "absent" }' "$SCRAPE"; }
# grew BEFORE AFTER: AFTER is larger.
grew() { python3 -c "import sys; sys.exit(0 if float('$2') > float('$1') else 1)" 2>/dev/null; }

truncate -s 256M origin.img; truncate -s 128M store.img
expect_ok "define volume" "$Z" define volume "$V" "$WORK/origin.img" "$WORK/store.img" --initialize
mkfs.ext4 -q "/dev/mapper/$V"
expect_ok "define master" "$Z" define master "$V"
expect_ok "define schedule (hourly 4)" "$Z" define schedule "$V" --hourly 4

# Bad input: one line, exit non-zero, nothing served.
expect_fail "--metrics-listen on an address other hosts reach" "only on loopback" "$Z" start --metrics-listen 0.0.0.0:"$PORT"
expect_fail "--metrics-listen that is not HOST:PORT" "not HOST:PORT" "$Z" start --metrics-listen localhost
expect_fail "--metrics-listen with one volume" "apply to the whole service" "$Z" start volume "$V" --metrics-listen 127.0.0.1:"$PORT"
expect_fail "--metrics-listen and --no-metrics" "not both" "$Z" start --metrics-listen 127.0.0.1:"$PORT" --no-metrics
mkdir -p "$ZUMASTOR_ROOT/etc/zumastor"
echo "every:where" > "$ZUMASTOR_ROOT/etc/zumastor/metrics"
expect_fail "a garbled /etc/zumastor/metrics names the file" "etc/zumastor/metrics: .*not HOST:PORT" "$Z" start
expect_eq "nothing serves metrics after the refusals" "none" "$(cat "$ZUMASTOR_ROOT/var/run/zumastor/metrics.pid" 2>/dev/null || echo none)"

# The administrator's setting: /etc/zumastor/metrics.
printf '# where the exporter listens\n127.0.0.1:%s\n' "$PORT" > "$ZUMASTOR_ROOT/etc/zumastor/metrics"
out=$("$Z" start 2>&1)
expect_ok "zumastor start serves metrics where /etc/zumastor/metrics says" grep -q "Metrics at http://127.0.0.1:$PORT/metrics" <<< "$out"
expect_ok "the exporter's pid file is root's alone" test "$(stat -c %a "$ZUMASTOR_ROOT/var/run/zumastor/metrics.pid")" = 600
expect_ok "the scrape parses (prometheus_client)" scrape
expect_eq "the volume is up" "1" "$(value "zumastor_volume_up{volume=$V}")"
expect_eq "the scheduled kind reads 0 snapshots" "0" "$(value "zumastor_snapshots_by_kind{kind=hourly,volume=$V}")"
curl -sf --max-time 20 "$URL" | python3 "$HERE/Tests/cli/prom_scrape.py" --families > families 2>&1
expect_eq "every family has a HELP line" "" "$(awk 'NF < 3 { print $1 }' families)"
missing=$(for f in $(awk '{ print $1 }' families); do grep -q "\`$f" "$HERE/docs/OPERATIONS.md" || echo "$f"; done)
expect_eq "docs/OPERATIONS.md lists every family served" "" "$missing"
expect_ok "a scrape with curl: text format 0.0.4" sh -c "curl -sfi '$URL' | tr -d '\r' | grep -qx 'Content-Type: text/plain; version=0.0.4; charset=utf-8'"
expect_eq "another path: 404" "404" "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/")"
expect_eq "POST: 405" "405" "$(curl -s -o /dev/null -w '%{http_code}' -X POST "$URL")"

# Figures move with the work: writes, a snapshot, copy-outs, commits, flushes.
before_bytes=$(value "zumastor_write_bytes_total{device=origin,volume=$V}")
before_writes=$(value "zumastor_writes_total{device=origin,volume=$V}")
before_flushes=$(value "zumastor_flushes_total{volume=$V}")
before_commits=$(value "zumastor_commit_duration_seconds_count{volume=$V}")
before_used=$(value "zumastor_store_used_bytes{volume=$V}")
head -c 8M /dev/urandom > "$M/a.bin"; sync
expect_ok "snapshot (hourly)" "$Z" snapshot "$V" hourly
head -c 8M /dev/urandom > "$M/a.bin"; sync
scrape
expect_ok "origin write bytes grew by at least the 16 MiB written" \
    python3 -c "import sys; sys.exit(0 if float('$(value "zumastor_write_bytes_total{device=origin,volume=$V}")') - float('$before_bytes') >= 16 << 20 else 1)"
expect_ok "origin writes grew" grew "$before_writes" "$(value "zumastor_writes_total{device=origin,volume=$V}")"
expect_ok "the write latency histogram counted them" grew 0 "$(value "zumastor_write_duration_seconds_count{device=origin,volume=$V}")"
expect_ok "flushes grew" grew "$before_flushes" "$(value "zumastor_flushes_total{volume=$V}")"
expect_ok "commits grew, with their latency" grew "$before_commits" "$(value "zumastor_commit_duration_seconds_count{volume=$V}")"
expect_ok "copy-outs after the snapshot (at least the 8 MiB overwritten)" \
    python3 -c "import sys; sys.exit(0 if float('$(value "zumastor_copyout_chunks_total{volume=$V}")') * float('$(value "zumastor_chunk_size_bytes{volume=$V}")') >= 8 << 20 else 1)"
expect_ok "the store's fill grew" grew "$before_used" "$(value "zumastor_store_used_bytes{volume=$V}")"
expect_ok "... in percent too" grew 0 "$(value "zumastor_store_used_percent{volume=$V}")"
expect_ok "snapshot chunks counted" grew 0 "$(value "zumastor_store_snapshot_chunks{volume=$V}")"
expect_eq "one hourly snapshot" "1" "$(value "zumastor_snapshots_by_kind{kind=hourly,volume=$V}")"
expect_eq "the store holds one snapshot, none squashed" "1 0" "$(value "zumastor_snapshots{volume=$V}") $(value "zumastor_snapshots_squashed{volume=$V}")"
age=$(value "zumastor_snapshot_newest_age_seconds{kind=hourly,volume=$V}")
expect_ok "the newest hourly's age is seconds ($age)" python3 -c "import sys; sys.exit(0 if 0 <= float('$age') < 300 else 1)"
expect_eq "no store-full event, no I/O error" "0 0 0" \
    "$(value "zumastor_store_full_events_total{action=deleted,volume=$V}") $(value "zumastor_store_full_events_total{action=squashed,volume=$V}") $(value "zumastor_io_errors_total{operation=write,volume=$V}")"
expect_ok "reads counted (the snapshot mount read its filesystem)" grew 0 "$(value "zumastor_reads_total{device=snapshot,volume=$V}")"

# Replication to a second ZUMASTOR_ROOT on loopback (each replication service on a port of
# its own): bytes, last success, lag; then a failure counted by its reason.
L1=$(free_port); L2=$(free_port)
mkdir -p "$R2/etc/zumastor"
echo "127.0.0.1:$L1" > "$ZUMASTOR_ROOT/etc/zumastor/listen"
echo "127.0.0.1:$L2" > "$R2/etc/zumastor/listen"
r2() { ZUMASTOR_ROOT=$R2 "$@"; }
truncate -s 256M r.origin; truncate -s 128M r.store
KA=$("$Z" key); KB=$(r2 "$Z" key)
expect_ok "replica: define volume" r2 "$Z" define volume "$W" "$WORK/r.origin" "$WORK/r.store" --initialize
expect_ok "master: define target" "$Z" define target "$V" "127.0.0.1:$L2" --key "$KB" --name "$W"
expect_ok "replica: define source" r2 "$Z" define source "$W" "127.0.0.1:$L1" --key "$KA" --name "$V"
expect_ok "replicate" "$Z" replicate "$V" "127.0.0.1:$L2" --quiet
scrape
T="direction=target,peer=127.0.0.1:$L2,volume=$V"
sent=$(value "zumastor_replication_bytes_total{$T}")
expect_ok "bytes sent to the target: at least the 16 MiB of data ($sent)" python3 -c "import sys; sys.exit(0 if float('$sent') >= 16 << 20 else 1)"
last=$(value "zumastor_replication_last_success_timestamp_seconds{$T}")
expect_ok "the last success is now" python3 -c "import sys, time; sys.exit(0 if abs(time.time() - float('$last')) < 120 else 1)"
lag=$(value "zumastor_replication_lag_seconds{$T}")
expect_ok "the lag is seconds ($lag)" python3 -c "import sys; sys.exit(0 if 0 <= float('$lag') < 300 else 1)"
expect_eq "no transfer running" "0" "$(value "zumastor_replication_transfer_running{$T}")"
expect_eq "a replication snapshot is counted by its kind" "1" "$(value "zumastor_snapshots_by_kind{kind=replication,volume=$V}")"
r2 "$Z" stop >/dev/null 2>&1
expect_fail "replicate to a stopped replica fails" "." "$Z" replicate "$V" "127.0.0.1:$L2" --quiet
scrape
expect_eq "... counted as a network failure" "1" "$(value "zumastor_replication_failures_total{direction=target,peer=127.0.0.1:$L2,reason=network,volume=$V}")"
expect_eq "... the bytes total kept" "$sent" "$(value "zumastor_replication_bytes_total{$T}")"

# Status for people: one line per volume against the expected text, with ages, the fill and
# the port masked; the failed replication named with the log that tells why.
mask() { sed -E "s/$V/VOL/g; s/:$L2/:PORT/g; s|$ZUMASTOR_ROOT|ROOT|g; s/[0-9]+[smhd] (ago|behind)/T \1/g; s/ [0-9]+% / P% /" | tr -s ' '; }
expect_eq "status: one line per volume, and what needs a look" "VOLUME STATE ROLE ORIGIN STORE USED SNAPS NEWEST REPLICATION
VOL running master 256M 128M P% 2 T ago (replication) to 127.0.0.1:PORT T behind, failing

VOL: the last operation failed: 127.0.0.1:PORT: FAILURE (see ROOT/var/log/zumastor/VOL/replication.log)" \
    "$("$Z" status 2>&1 | mask | sed -E 's/(the last operation failed: 127.0.0.1:PORT: ).*( \(see )/\1FAILURE\2/')"
expect_ok "status VOL: the last failure and its log" sh -c "'$Z' status '$V' | grep -qE '^  last failure: +.* \(see $ZUMASTOR_ROOT/var/log/zumastor/$V/replication.log\)$'"
timeout 5 "$Z" status --watch --interval 1 > watch.out 2>&1
expect_eq "status --watch shows the view again every second until stopped" "yes" \
    "$([ "$(grep -c '^--- ' watch.out)" -ge 3 ] && [ "$(grep -c '^VOLUME ' watch.out)" -ge 3 ] && echo yes || cat watch.out)"
expect_fail "status --watch with --json" "not with --json" "$Z" status --watch --json

# Concurrency limit: 16 idle connections are held; the next is closed at once; then a scrape works.
expect_eq "the 17th connection is closed at once" "closed" "$(python3 - "$PORT" <<'PY'
import socket, sys
port = int(sys.argv[1])
held = [socket.create_connection(("127.0.0.1", port)) for _ in range(16)]
extra = socket.create_connection(("127.0.0.1", port))
extra.settimeout(5)
try:
    print("closed" if extra.recv(1) == b"" else "open")
except (socket.timeout, ConnectionResetError) as e:
    print("closed" if isinstance(e, ConnectionResetError) else "open")
for s in held: s.close()
PY
)"
sleep 0.5
expect_ok "... and once they close, scrapes work" scrape

# A port in use: the volumes run, the start says metrics are not served.
expect_ok "--no-metrics stops the exporter" "$Z" start --no-metrics
expect_eq "... nothing listens" "000" "$(curl -s -o /dev/null -w '%{http_code}' "$URL")"
python3 -c "import socket, time; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1', $PORT)); s.listen(); time.sleep(600)" &
BLOCKER_PID=$!
sleep 0.5
expect_fail "a start whose metrics port is taken" "the volumes run, but metrics are not served: .*127.0.0.1:$PORT" "$Z" start
expect_ok "... the volume runs all the same" sh -c "'$Z' status '$V' | grep -q running"
kill "$BLOCKER_PID"; wait "$BLOCKER_PID" 2>/dev/null; BLOCKER_PID=""
P2=$(free_port)
expect_ok "--metrics-listen overrides the file" sh -c "'$Z' start --metrics-listen 127.0.0.1:$P2 | grep -q 'Metrics at http://127.0.0.1:$P2/metrics'"
expect_ok "zumastor stop stops the exporter" "$Z" stop
expect_eq "... nothing listens" "000" "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$P2/metrics")"

# ddsnap server --metrics-listen: one volume's server alone.
truncate -s 64M d.origin; truncate -s 64M d.store
"$D" initialize -y d.store d.origin >/dev/null
DP=$(free_port)
expect_fail "ddsnap server on an address other hosts reach" "only on loopback" "$D" server d.store --name "d$V" --socket "$WORK/d.sock" --metrics-listen "0.0.0.0:$DP"
out=$("$D" server d.store --name "d$V" --socket "$WORK/d.sock" --block-files "$WORK/d.files" --log "$WORK/d.log" --metrics-listen "127.0.0.1:$DP" 2>&1)
DPID=$(grep -oE 'pid [0-9]+' <<< "$out" | grep -oE '[0-9]+')
expect_ok "ddsnap server --metrics-listen" test -n "$DPID"
head -c 1M /dev/urandom | "$D" write "$WORK/d.sock" >/dev/null
URL="http://127.0.0.1:$DP/metrics"
expect_ok "its scrape parses" scrape
expect_eq "it counts the 1 MiB written through its socket" "1048576" "$(value "zumastor_write_bytes_total{device=origin,volume=d$V}")"
expect_eq "it serves no zumastor figures" "absent" "$(value "zumastor_volume_up{volume=d$V}")"

finish
