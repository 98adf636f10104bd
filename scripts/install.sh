#!/usr/bin/env bash
# Installs zumastor and ddsnap (release build) into PREFIX/sbin (default /usr/local), the
# init script as /etc/init.d/zumastor and the systemd unit as zumastor.service, then enables
# the unit when systemd runs. Usage: scripts/install.sh [--prefix DIR] [--no-service]
set -euo pipefail
cd "$(dirname "$0")/.."
PREFIX=/usr/local
SERVICE=1
while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) PREFIX=$2; shift 2 ;;
        --no-service) SERVICE=0; shift ;;
        *) echo "usage: $0 [--prefix DIR] [--no-service]" >&2; exit 2 ;;
    esac
done
bash scripts/setup.sh
install -d "$PREFIX/sbin"
install -m 0755 .build/static/release/zumastor .build/static/release/ddsnap "$PREFIX/sbin/"
echo "installed $PREFIX/sbin/zumastor and $PREFIX/sbin/ddsnap"
[ "$SERVICE" = 1 ] || exit 0
install -m 0755 etc/init.d/zumastor /etc/init.d/zumastor
sed "s|/usr/local/sbin/zumastor|$PREFIX/sbin/zumastor|" etc/systemd/zumastor.service > /etc/systemd/system/zumastor.service
echo "installed /etc/init.d/zumastor and /etc/systemd/system/zumastor.service"
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    systemctl enable zumastor.service
    echo "enabled zumastor.service (systemctl start zumastor)"
else
    echo "systemd is not running here: start the service with /etc/init.d/zumastor start"
fi
