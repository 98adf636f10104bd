#!/usr/bin/env bash
# The seed guide's 10.12 to 10.15 with real servers and clients: a master defined with --export
# and --samba, served by nfs-ganesha (this kernel has no NFS server) and by smbd, both on
# loopback ports of their own, read and written with libnfs's nfs-ls, nfs-cat and nfs-cp and with
# smbclient. Files and snapshots over NFS, rotation, read-only snapshots, file handles across
# zumastor stop and start, previous versions over SMB, bad input, and forget volume.
# Usage: Tests/cli/exports-e2e.sh PATH/TO/zumastor
. "$(dirname "$0")/lib.sh"
Z=${1:?usage: exports-e2e.sh PATH/TO/zumastor}
HERE=$(cd "$(dirname "$0")/../.." && pwd)
cd "$WORK"
# The Samba test user reaches the share through the scratch directory.
chmod 755 "$WORK"

require_root_and_fuse "export tests"
for tool in ganesha.nfsd nfs-cat nfs-ls nfs-cp smbd smbclient smbpasswd smbcontrol; do
    command -v "$tool" >/dev/null || { not_ok "$tool is installed (scripts/setup.sh --packages)"; finish; exit 1; }
done

export ZUMASTOR_ROOT="$WORK/root"
R2="$WORK/replica"
V=zx$$
W=zy$$
USER_NAME=zx$$
M="$ZUMASTOR_ROOT/var/run/zumastor/mount/$V"
S="$ZUMASTOR_ROOT/var/run/zumastor/snapshot/$V"
GPID_FILE="$ZUMASTOR_ROOT/var/run/zumastor/nfs/ganesha.pid"
SMBD_PID=""
BLOCKER_PID=""
exports_cleanup() {
    [ -n "$BLOCKER_PID" ] && kill "$BLOCKER_PID" 2>/dev/null
    local gpid root
    for root in "$ZUMASTOR_ROOT" "$R2"; do
        [ -d "$root" ] || continue
        ZUMASTOR_ROOT=$root stop_volume_processes "$Z" "$V" "$W"
        gpid=$(cat "$root/var/run/zumastor/nfs/ganesha.pid" 2>/dev/null)
        [ -n "$gpid" ] && grep -q ganesha "/proc/$gpid/comm" 2>/dev/null && stop_pid "$gpid"
    done
    if [ -n "$SMBD_PID" ]; then
        # smbd and the processes it forked for connections (they write into $WORK/samba).
        # shellcheck disable=SC2046
        stop_pid "$SMBD_PID" $(pgrep -P "$SMBD_PID")
    fi
    unmount_under "$WORK"
    release_devices_under "$WORK"
    # (Binds of a directory onto itself stack: once more for what was below.)
    unmount_under "$WORK"
    remove_device_names "$V" "$W"
    id "$USER_NAME" >/dev/null 2>&1 && userdel "$USER_NAME"
    cleanup
}
trap exports_cleanup EXIT

NFS_PORT=$(free_port)
SMB_PORT=$(free_port)
Q="?version=4&nfsport=$NFS_PORT"
nfs() { echo "nfs://127.0.0.1$1$Q"; }

# nfs-ganesha as zumastor runs it, on a loopback port of this test's own.
mkdir -p "$ZUMASTOR_ROOT/etc/zumastor" "$ZUMASTOR_ROOT/etc/samba" samba/private samba/lock samba/state samba/cache samba/pid
cat > "$ZUMASTOR_ROOT/etc/zumastor/ganesha.conf" <<EOF
NFS_CORE_PARAM { Protocols = 4; NFS_Port = $NFS_PORT; Bind_addr = 127.0.0.1; Enable_NLM = false; Enable_RQUOTA = false; fsid_device = true; }
NFSV4 { Graceless = true; RecoveryRoot = "$WORK/ganesha-recovery"; }
%include "$ZUMASTOR_ROOT/var/run/zumastor/nfs/ganesha-exports.conf"
EOF
# smbd on loopback, with a test user.
cat > "$ZUMASTOR_ROOT/etc/samba/smb.conf" <<EOF
[global]
    workgroup = ZUMATEST
    server role = standalone server
    smb ports = $SMB_PORT
    interfaces = lo
    bind interfaces only = yes
    disable netbios = yes
    passdb backend = tdbsam:$WORK/samba/private/passdb.tdb
    private dir = $WORK/samba/private
    lock directory = $WORK/samba/lock
    state directory = $WORK/samba/state
    cache directory = $WORK/samba/cache
    pid directory = $WORK/samba/pid
    ncalrpc dir = $WORK/samba/lock/ncalrpc
    log file = $WORK/samba/log.%m
    load printers = no
    printing = bsd
    printcap name = /dev/null

[taken]
    path = $WORK
EOF
CONF="$ZUMASTOR_ROOT/etc/samba/smb.conf"
useradd -M -s /usr/sbin/nologin "$USER_NAME"
printf 'secret9\nsecret9\n' | smbpasswd -c "$CONF" -s -a "$USER_NAME" >/dev/null
# Its own session: smbd ends by signalling its whole process group.
setsid smbd -F --no-process-group -s "$CONF" </dev/null >/dev/null 2>&1 &
SMBD_PID=$!
for _ in $(seq 100); do smbclient -p "$SMB_PORT" -L 127.0.0.1 -N >/dev/null 2>&1 && break; sleep 0.1; done
smb() { smbclient -p "$SMB_PORT" "//127.0.0.1/$V" -U "$USER_NAME%secret9" -c "$1" 2>&1; }

truncate -s 256M origin.img; truncate -s 128M store.img
expect_ok "define volume" "$Z" define volume "$V" "$WORK/origin.img" "$WORK/store.img" --initialize
mkfs.ext4 -q "/dev/mapper/$V"

# Bad input first: each refused in one line, nothing changed.
expect_fail "--export with the kernel server, which this kernel lacks" "kernel's NFS server does not run here" "$Z" define master "$V" --export --nfs-server kernel
expect_fail "--export without nfs-ganesha" "needs an NFS server.*nfs-ganesha" env PATH=/nonexistent "$Z" define master "$V" --export
expect_fail "--nfs-clients without --export" "only with --export" "$Z" define master "$V" --nfs-clients '*'
expect_fail "--nfs-clients with a bad entry" "comma-separated list" "$Z" define master "$V" --export --nfs-clients 'a b;c'
expect_fail "--samba-share naming a section smb.conf has" "already has a section \[taken\]" "$Z" define master "$V" --samba --samba-share taken
expect_fail "--samba-share naming Samba's own section" "one of Samba's own sections" "$Z" define master "$V" --samba --samba-share global
expect_fail "--samba without smbd" "needs Samba" env PATH=/nonexistent "$Z" define master "$V" --samba
expect_eq "nothing was mounted by the refusals" "no" "$(mountpoint -q "$M" && echo yes || echo no)"

# A port in use: the master runs, the export fails with a clear error, and works once freed.
python3 -c "import socket, time; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1', $NFS_PORT)); s.listen(); time.sleep(600)" &
BLOCKER_PID=$!
sleep 0.5
expect_fail "--export on a port in use" "nfs-ganesha did not start" "$Z" define master "$V" --export --samba
expect_ok "... the volume is mounted all the same" mountpoint -q "$M"
out=$("$Z" snapshot "$V" 2>&1)
expect_ok "... and snapshotting: the snapshot is taken, the export's failure told" grep -q "was taken, but.*nfs-ganesha did not start" <<< "$out"
expect_ok "... (that snapshot deleted again)" "$Z" delete "$V" "$(grep -xE '[0-9]+' <<< "$out")"
kill "$BLOCKER_PID"; wait "$BLOCKER_PID" 2>/dev/null; BLOCKER_PID=""

expect_ok "define master --export --samba" "$Z" define master "$V" --export --samba
expect_ok "define schedule --hourly 2" "$Z" define schedule "$V" --hourly 2
mkdir -m 1777 "$M/pub"
head -c 300000 /dev/urandom > one.bin
cp one.bin "$M/pub/file.bin"; sync
# 10.12: the origin over NFS.
expect_eq "a file written on the master reads back over NFS (md5)" "$(md5 < one.bin)" "$(nfs-cat "$(nfs "$M/pub/file.bin")" | md5)"
head -c 1000 /dev/urandom > client.bin
expect_ok "a client writes to the origin over NFS (squashed root, a world-writable directory)" nfs-cp client.bin "$(nfs "$M/pub/from-client.bin")"
expect_eq "... the write is on the master" "$(md5 < client.bin)" "$(md5 < "$M/pub/from-client.bin")"
expect_ok "... as the anonymous user: root is squashed" test "$(stat -c %u "$M/pub/from-client.bin")" -ne 0

# 10.13: snapshots over NFS.
first=$("$Z" snapshot "$V" hourly)
first_dir=$(readlink "$S/hourly.0")
head -c 300000 /dev/urandom > two.bin
cp two.bin "$M/pub/file.bin"; sync
expect_eq "hourly.0 over NFS has the snapshot's content" "$(md5 < one.bin)" "$(nfs-cat "$(nfs "$S/hourly.0/pub/file.bin")" | md5)"
expect_eq "... and the origin over NFS the new content" "$(md5 < two.bin)" "$(nfs-cat "$(nfs "$M/pub/file.bin")" | md5)"
expect_fail "a write to the snapshot export is refused" "ROFS|read-only|Failed|failed|ACCESS|PERM" nfs-cp client.bin "$(nfs "$S/hourly.0/pub/new.bin")"
expect_fail "... and to the snapshot directory" "ROFS|read-only|Failed|failed|ACCESS|PERM" nfs-cp client.bin "$(nfs "$S/new.bin")"
sleep 1.1
second=$("$Z" snapshot "$V" hourly)
expect_eq "after a snapshot, hourly.0 over NFS is the new one" "$(md5 < two.bin)" "$(nfs-cat "$(nfs "$S/hourly.0/pub/file.bin")" | md5)"
expect_eq "... and hourly.1 the first" "$(md5 < one.bin)" "$(nfs-cat "$(nfs "$S/hourly.1/pub/file.bin")" | md5)"
echo three > "$M/pub/three.txt"; sync
sleep 1.1
third=$("$Z" snapshot "$V" hourly)
expect_eq "rotation (2 kept): the snapshot directory over NFS lists the two left" \
    "$(ls "$S" | grep -v hourly | sort | tr '\n' ' ')" "$(nfs-ls "$(nfs "$S")" | awk '$1 ~ /^d/ { print $NF }' | sort | tr '\n' ' ')"
expect_eq "... the first is gone from NFS" "gone" "$(nfs-cat "$(nfs "$S/$first_dir/pub/file.bin")" >/dev/null 2>&1 && echo served || echo gone)"
expect_eq "... hourly.0 over NFS follows" "three" "$(nfs-cat "$(nfs "$S/hourly.0/pub/three.txt")")"
expect_eq "nfs-ganesha's exports: origin, snapshot directory, two snapshots" "4" "$(grep -c '^EXPORT' "$ZUMASTOR_ROOT/var/run/zumastor/nfs/ganesha-exports.conf")"

expect_ok "status tells the exports and the share" sh -c "'$Z' status '$V' | grep -qE '^  nfs: +4 exports through nfs-ganesha \(pid [0-9]+\) to \*\$' && '$Z' status '$V' | grep -qE '^  samba: +share \[$V\], snapshots as previous versions'"
expect_eq "status --json: the exported paths, the share" "4 $M True" \
    "$("$Z" status "$V" --json | python3 -c 'import json, sys; d = json.load(sys.stdin); print(len(d["nfs"]["exports"]), d["nfs"]["exports"][0], d["samba"]["published"])')"

# The same handles across zumastor stop and start (fixed export ids and device numbers).
h_origin=$(python3 "$HERE/Tests/cli/nfs_handle.py" "$(nfs "$M/pub/file.bin")")
h_snap=$(python3 "$HERE/Tests/cli/nfs_handle.py" "$(nfs "$S/hourly.0/pub/three.txt")")
expect_ok "a client gets handles" test -n "$h_origin" -a -n "$h_snap"
expect_ok "zumastor stop" "$Z" stop
expect_eq "stopped: nothing is exported, nfs-ganesha stopped" "gone" "$(nfs-ls "$(nfs "$M")" >/dev/null 2>&1 && echo served || echo gone)"
expect_ok "status of the stopped volume: nothing exported" sh -c "'$Z' status '$V' | grep -qE '^  nfs: +not exported'"
expect_ok "zumastor start" "$Z" start
expect_eq "after stop and start, the origin file has the same handle" "$h_origin" "$(python3 "$HERE/Tests/cli/nfs_handle.py" "$(nfs "$M/pub/file.bin")" 2>&1)"
expect_eq "... and the snapshot's file too" "$h_snap" "$(python3 "$HERE/Tests/cli/nfs_handle.py" "$(nfs "$S/hourly.0/pub/three.txt")" 2>&1)"
expect_eq "... and reads the same" "$(md5 < two.bin)" "$(nfs-cat "$(nfs "$M/pub/file.bin")" | md5)"

# nfs-ganesha killed: the next change starts it again.
kill -9 "$(cat "$GPID_FILE")"
sleep 0.5
id=$("$Z" snapshot "$V" 2>&1 | head -n 1)
expect_eq "after nfs-ganesha was killed, the next snapshot serves again" "$(md5 < two.bin)" "$(nfs-cat "$(nfs "$M/pub/file.bin")" | md5)"
expect_ok "... (that snapshot deleted again)" "$Z" delete "$V" "$id"

# 10.14 and 10.15: Samba, previous versions from shadow_copy2.
versions() { smb "allinfo pub/file.bin" | grep -oE '@GMT-[0-9.-]+' | sort -u; }
expect_eq "allinfo lists one previous version per snapshot holding the file" "2" "$(versions | wc -l)"
newest=$(versions | tail -n 1)
expected_gmt=$(TZ=UTC date -d "$(readlink "$S/hourly.0" | sed -E 's/^([0-9]{4})\.([0-9]{2})\.([0-9]{2})-([0-9]{2})\.([0-9]{2})\.([0-9]{2}).*/\1-\2-\3 \4:\5:\6/')" +@GMT-%Y.%m.%d-%H.%M.%S)
expect_eq "... the newest at the newest snapshot's time" "$expected_gmt" "$newest"
rm -f got.bin
smb "get $newest/pub/file.bin $WORK/got.bin" >/dev/null
expect_eq "get of @GMT-.../file returns the snapshot's content" "$(md5 < two.bin)" "$(md5 < got.bin 2>/dev/null)"
expect_ok "the share is writable" sh -c "cd '$WORK' && smbclient -p $SMB_PORT '//127.0.0.1/$V' -U '$USER_NAME%secret9' -c 'cd pub; put client.bin smb.bin' >/dev/null 2>&1 && cmp client.bin '$M/pub/smb.bin'"
expect_fail "a previous version is read-only: a new file is refused" "NT_STATUS_[A-Z_]+" \
    smbclient -p "$SMB_PORT" "//127.0.0.1/$V" -U "$USER_NAME%secret9" -c "put $WORK/client.bin $newest/pub/smb2.bin"
expect_fail "... and so is overwriting its file" "NT_STATUS_[A-Z_]+" \
    smbclient -p "$SMB_PORT" "//127.0.0.1/$V" -U "$USER_NAME%secret9" -c "put $WORK/client.bin $newest/pub/file.bin"
rm -f got.bin
smb "get $newest/pub/file.bin $WORK/got.bin" >/dev/null
expect_eq "... which keeps the snapshot's content" "$(md5 < two.bin)" "$(md5 < got.bin 2>/dev/null)"
sleep 1.1
"$Z" snapshot "$V" hourly >/dev/null
expect_eq "after rotation the list follows (2 kept, the newest new)" "2 yes" "$(versions | wc -l) $([ "$(versions | tail -n 1)" != "$newest" ] && echo yes || echo no)"

# --dotsnapshot with nfs-ganesha: a link to the snapshot directory (a bind would put the
# snapshots inside the origin's export, which nfs-ganesha then cannot withdraw at rotation).
expect_ok "define master --export --samba --dotsnapshot" "$Z" define master "$V" --export --samba --dotsnapshot
expect_eq ".snapshot is a link to the snapshot directory" "$S" "$(readlink "$M/.snapshot")"
expect_eq "... .snapshot/hourly.0 on the master is the newest" "three" "$(cat "$M/.snapshot/hourly.0/pub/three.txt")"
sleep 1.1
"$Z" snapshot "$V" hourly >/dev/null
expect_eq "... rotation withdraws from NFS as before" "4 three" \
    "$(grep -c '^EXPORT' "$ZUMASTOR_ROOT/var/run/zumastor/nfs/ganesha-exports.conf") $(nfs-cat "$(nfs "$S/hourly.0/pub/three.txt")")"
# Without NFS: the snapshot directory bound at .snapshot, so SMB clients have it too.
expect_ok "define master --samba --dotsnapshot" "$Z" define master "$V" --samba --dotsnapshot
expect_ok ".snapshot in the origin is the snapshot directory, bound" mountpoint -q "$M/.snapshot"
expect_eq "... nothing is exported over NFS any more" "0 gone" \
    "$(grep -c '^EXPORT' "$ZUMASTOR_ROOT/var/run/zumastor/nfs/ganesha-exports.conf") $(grep -qs ganesha "/proc/$(cat "$GPID_FILE" 2>/dev/null || echo 0)/comm" && echo running || echo gone)"
rm -f got.bin
smb "get .snapshot/hourly.1/pub/three.txt $WORK/got.bin" >/dev/null
expect_eq "... .snapshot over SMB has the snapshots" "three" "$(cat got.bin 2>/dev/null)"
expect_fail "... read-only over SMB" "NT_STATUS_[A-Z_]+" \
    smbclient -p "$SMB_PORT" "//127.0.0.1/$V" -U "$USER_NAME%secret9" -c "put $WORK/client.bin .snapshot/hourly.0/pub/smb3.bin"
sleep 1.1
"$Z" snapshot "$V" hourly >/dev/null
expect_eq "... a new snapshot appears below .snapshot, and the rotated one goes" "$(ls "$S" | sort | tr '\n' ' ')" "$(ls "$M/.snapshot" | sort | tr '\n' ' ')"
expect_eq "... with its files" "three" "$(cat "$M/.snapshot/hourly.0/pub/three.txt")"
expect_ok "define master --export --samba again (for forget)" "$Z" define master "$V" --export --samba
expect_eq "... .snapshot is unbound" "no" "$(mountpoint -q "$M/.snapshot" && echo yes || echo no)"

# A replica with --mount-snap exports the snapshots it keeps the same way (its own root, its
# own nfs-ganesha; the replication service of each on a loopback port).
L1=$(free_port); L2=$(free_port); NFS2=$(free_port)
mkdir -p "$R2/etc/zumastor"
echo "127.0.0.1:$L1" > "$ZUMASTOR_ROOT/etc/zumastor/listen"
echo "127.0.0.1:$L2" > "$R2/etc/zumastor/listen"
cat > "$R2/etc/zumastor/ganesha.conf" <<EOF
NFS_CORE_PARAM { Protocols = 4; NFS_Port = $NFS2; Bind_addr = 127.0.0.1; Enable_NLM = false; Enable_RQUOTA = false; fsid_device = true; }
NFSV4 { Graceless = true; RecoveryRoot = "$WORK/ganesha-recovery2"; }
%include "$R2/var/run/zumastor/nfs/ganesha-exports.conf"
EOF
r2() { ZUMASTOR_ROOT=$R2 "$@"; }
SW="$R2/var/run/zumastor/snapshot/$W"
nfs2() { echo "nfs://127.0.0.1$1?version=4&nfsport=$NFS2"; }
truncate -s 256M r.origin; truncate -s 128M r.store
KA=$("$Z" key); KB=$(r2 "$Z" key)
expect_ok "replica: define volume" r2 "$Z" define volume "$W" "$WORK/r.origin" "$WORK/r.store" --initialize
expect_fail "replica: --export without --mount-snap" "applies to a replica with --mount-snap" r2 "$Z" define source "$W" "127.0.0.1:$L1" --key "$KA" --name "$V" --export
expect_ok "master: define target" "$Z" define target "$V" "127.0.0.1:$L2" --key "$KB" --name "$W"
expect_ok "replica: define source --mount-snap --export" r2 "$Z" define source "$W" "127.0.0.1:$L1" --key "$KA" --name "$V" --mount-snap --export
expect_ok "replica: its own schedule (an hour of 3 s)" r2 env ZUMASTOR_SCHEDULE_HOUR_SECONDS=3 "$Z" define schedule "$W" --hourly 2
for v in 1 2; do
    echo "version $v" > "$M/pub/kept.txt"
    "$Z" replicate "$V" "127.0.0.1:$L2" --quiet >/dev/null
    sleep 4
done
expect_eq "the replica keeps two hourlies" "hourly.0 hourly.1" "$(ls "$SW" | grep '^hourly\.' | sort | tr '\n' ' ' | sed 's/ $//')"
expect_eq "... hourly.0 over NFS from the replica holds the last version" "version 2" "$(nfs-cat "$(nfs2 "$SW/hourly.0/pub/kept.txt")" 2>&1)"
expect_eq "... hourly.1 the one before" "version 1" "$(nfs-cat "$(nfs2 "$SW/hourly.1/pub/kept.txt")" 2>&1)"
expect_fail "... read-only" "ROFS|read-only|Failed|failed|ACCESS|PERM" nfs-cp client.bin "$(nfs2 "$SW/hourly.0/pub/new.bin")"
echo "version 3" > "$M/pub/kept.txt"
"$Z" replicate "$V" "127.0.0.1:$L2" --quiet >/dev/null
sleep 4
expect_eq "... rotation on the replica: hourly.0 over NFS follows, two exported" "version 3 2" \
    "$(nfs-cat "$(nfs2 "$SW/hourly.0/pub/kept.txt")" 2>&1) $(nfs-ls "$(nfs2 "$SW")" | awk '$1 ~ /^d/' | wc -l)"
expect_ok "replica: status tells its exports" sh -c "ZUMASTOR_ROOT='$R2' '$Z' status '$W' | grep -qE '^  nfs: +3 exports through nfs-ganesha \(pid [0-9]+\)'"
expect_ok "replica: forget volume (its exports go)" r2 "$Z" forget volume "$W"
expect_eq "... nothing exported from the replica" "0" "$(grep -c '^EXPORT' "$R2/var/run/zumastor/nfs/ganesha-exports.conf")"

# forget volume takes the exports and the share away.
gpid=$(cat "$GPID_FILE")
expect_ok "zumastor forget volume" "$Z" forget volume "$V"
expect_eq "forgotten: nothing exported, nfs-ganesha stopped" "gone gone" \
    "$(nfs-ls "$(nfs "$M")" >/dev/null 2>&1 && echo served || echo gone) $(grep -qs ganesha "/proc/$gpid/comm" && echo running || echo gone)"
expect_eq "... no export block left" "0" "$(grep -c '^EXPORT' "$ZUMASTOR_ROOT/var/run/zumastor/nfs/ganesha-exports.conf")"
expect_eq "... the share is gone from Samba" "no" "$(smbclient -p "$SMB_PORT" -L 127.0.0.1 -U "$USER_NAME%secret9" 2>/dev/null | grep -qw "$V" && echo yes || echo no)"
finish
