#!/usr/bin/env bash
# Installs what building and testing need on a fresh Debian machine (run as root), then
# builds the release binaries (.build/static/release). Idempotent: packages already present are not reinstalled.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the build (libfuse3, liblzma), the tests (filesystems, fio, NBD clients) and the
# benchmarks (nbdkit; nbdfuse comes with libnbd-bin; rsync) use; openssl checks key fingerprints;
# the NFS and Samba exports are tested with nfs-ganesha, libnfs's client tools, smbd and smbclient;
# the metrics endpoint with curl; the Debian package with lintian, man and logrotate.
PACKAGES=(python3 coreutils util-linux libfuse3-dev liblzma-dev libzstd-dev fuse3 e2fsprogs xfsprogs fio nbdkit libnbd-bin qemu-utils kmod rsync openssl
          nfs-ganesha nfs-ganesha-vfs libnfs-utils samba samba-vfs-modules smbclient curl
          lintian man-db logrotate)
missing=()
for p in "${PACKAGES[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "setup: missing packages ${missing[*]}; run as root to install them" >&2
        exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi

# The metrics test parses /metrics with Prometheus' own Python client (PyPI, else Debian's).
if ! python3 -c 'import prometheus_client' 2>/dev/null; then
    python3 -m pip install -q prometheus-client 2>/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-prometheus-client
fi

command -v swift >/dev/null || { echo "setup: the Swift toolchain is not on PATH" >&2; exit 1; }
# --packages: the packages only (the test suite builds once, for its tests and programs alike).
[ "${1:-}" = "--packages" ] && exit 0
# The programs link the Swift runtime and Foundation statically (.build/static/release): each
# start skips about 4 ms of dynamic symbol binding, and they run without a Swift toolchain.
# (`swift test` builds the libraries and tests into .build/release; Swift Testing has no
# static form.)
swift build -c release --static-swift-stdlib --scratch-path .build/static 2>&1 | tail -n 3
