#!/usr/bin/env bash
# Installs zumastor and ddsnap (release build) into PREFIX/sbin (default /usr/local), their
# man pages and bash and zsh completions under PREFIX/share, the init script as
# /etc/init.d/zumastor and the systemd unit as zumastor.service, then enables the unit when
# systemd runs. (scripts/build-deb.sh makes a Debian package of the same instead.) Usage: scripts/install.sh [--prefix DIR] [--no-service]
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
# Man pages and completions, generated from the programs' command definitions.
generated=$(mktemp -d /tmp/zumastor-install.XXXXXX)
trap 'rm -rf "$generated"' EXIT
bash scripts/man-and-completions.sh .build/static/release "$generated" > /dev/null
install -d "$PREFIX/share/man/man8" "$PREFIX/share/bash-completion/completions" "$PREFIX/share/zsh/site-functions"
for program in zumastor ddsnap; do
    gzip -9n < "$generated/man8/$program.8" > "$PREFIX/share/man/man8/$program.8.gz"
    sed '1{/^#!/d}' "$generated/bash/$program" > "$PREFIX/share/bash-completion/completions/$program"
    install -m 0644 "$generated/zsh/_$program" "$PREFIX/share/zsh/site-functions/_$program"
done
chmod 0644 "$PREFIX"/share/man/man8/zumastor.8.gz "$PREFIX"/share/man/man8/ddsnap.8.gz "$PREFIX"/share/bash-completion/completions/zumastor "$PREFIX"/share/bash-completion/completions/ddsnap
echo "installed the man pages zumastor(8) and ddsnap(8), and bash and zsh completions, under $PREFIX/share"
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
