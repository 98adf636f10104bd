#!/usr/bin/env bash
# Builds dist/zumastor_<version>_amd64.deb with dpkg-deb: the static programs (stripped),
# the systemd unit and the init script, the man pages and the bash and zsh completions, a
# logrotate file, the conffile /etc/zumastor/metrics, and docs/OPERATIONS.md. Its dependencies
# are Debian's: the shared libraries the programs load (dpkg-shlibdeps), fuse3, e2fsprogs,
# util-linux and mount. Package files: etc/debian.
# Usage: scripts/build-deb.sh   (as root, on Debian: installs what the build needs)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh > /dev/null    # packages, and the static programs in .build/static/release
BIN=.build/static/release
version=$("$BIN/zumastor" --version)
# The maintainer: DEBFULLNAME and DEBEMAIL, as Debian's tools take them, else the author of the
# sources' last commit.
maintainer="${DEBFULLNAME:-$(git log -1 --format=%an)} <${DEBEMAIL:-$(git log -1 --format=%ae)}>"
work=$(mktemp -d /tmp/zumastor-deb.XXXXXX)
trap 'rm -rf "$work"' EXIT
pkg="$work/zumastor"

install -d -m 0755 "$pkg/DEBIAN" "$pkg/usr/sbin" "$pkg/lib/systemd/system" "$pkg/etc/init.d" "$pkg/etc/logrotate.d" \
    "$pkg/usr/share/man/man8" "$pkg/usr/share/bash-completion/completions" "$pkg/usr/share/zsh/vendor-completions" \
    "$pkg/usr/share/doc/zumastor"
# This host's key goes in /etc/zumastor: root's alone.
install -d -m 0700 "$pkg/etc/zumastor"
for program in zumastor ddsnap; do
    install -m 0755 "$BIN/$program" "$pkg/usr/sbin/$program"
    strip --strip-unneeded --remove-section=.comment --remove-section=.note "$pkg/usr/sbin/$program"
done
sed 's|/usr/local/sbin/zumastor|/usr/sbin/zumastor|g' etc/systemd/zumastor.service > "$pkg/lib/systemd/system/zumastor.service"
chmod 0644 "$pkg/lib/systemd/system/zumastor.service"
install -m 0755 etc/init.d/zumastor "$pkg/etc/init.d/zumastor"
install -m 0644 etc/logrotate.d/zumastor "$pkg/etc/logrotate.d/zumastor"
install -m 0600 etc/debian/metrics "$pkg/etc/zumastor/metrics"

generated="$work/generated"
bash scripts/man-and-completions.sh "$BIN" "$generated" > /dev/null
for program in zumastor ddsnap; do
    gzip -9n < "$generated/man8/$program.8" > "$pkg/usr/share/man/man8/$program.8.gz"
    # (bash-completion sources these: no #! line.)
    sed '1{/^#!/d}' "$generated/bash/$program" > "$pkg/usr/share/bash-completion/completions/$program"
    install -m 0644 "$generated/zsh/_$program" "$pkg/usr/share/zsh/vendor-completions/_$program"
done
chmod 0644 "$pkg"/usr/share/man/man8/* "$pkg"/usr/share/bash-completion/completions/*
install -m 0644 etc/debian/copyright "$pkg/usr/share/doc/zumastor/copyright"
install -m 0644 docs/OPERATIONS.md "$pkg/usr/share/doc/zumastor/OPERATIONS.md"
date=$(date -R -d "$(git log -1 --format=%cI 2>/dev/null || date -Iseconds)")
printf 'zumastor (%s) unstable; urgency=medium\n\n  * Release %s.\n\n -- %s  %s\n' \
    "$version" "$version" "$maintainer" "$date" | gzip -9n > "$pkg/usr/share/doc/zumastor/changelog.gz"

# The shared libraries the programs load, as Debian's package names and versions.
mkdir -p "$work/shlibs/debian"
printf 'Source: zumastor\n\nPackage: zumastor\nArchitecture: amd64\n' > "$work/shlibs/debian/control"
shlibs=$(cd "$work/shlibs" && dpkg-shlibdeps -O "$pkg/usr/sbin/zumastor" "$pkg/usr/sbin/ddsnap" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
[ -n "$shlibs" ] || { echo "build-deb: dpkg-shlibdeps found no libraries" >&2; exit 1; }
size=$(du -sk --exclude=DEBIAN "$pkg" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@SIZE@/$size/" -e "s/@SHLIBS@/$shlibs/" -e "s|@MAINTAINER@|$maintainer|" etc/debian/control > "$pkg/DEBIAN/control"
install -m 0644 etc/debian/conffiles "$pkg/DEBIAN/conffiles"
install -m 0755 etc/debian/postinst etc/debian/prerm etc/debian/postrm "$pkg/DEBIAN/"
(cd "$pkg" && find . -path ./DEBIAN -prune -o -type f ! -path './etc/*' -printf '%P\0' | sort -z | xargs -0 md5sum) > "$pkg/DEBIAN/md5sums"
chmod 0644 "$pkg/DEBIAN/md5sums"

mkdir -p dist
out="dist/zumastor_${version}_amd64.deb"
dpkg-deb --root-owner-group -Zxz --build "$pkg" "$out" > /dev/null
echo "$out"
