#!/usr/bin/env bash
# The Debian package and the install step, as root: scripts/build-deb.sh builds
# dist/zumastor_<version>_amd64.deb; lintian finds no error in it; `apt-get install ./...deb`
# installs it and the seed guide's 10.2 checks pass (usage, the init script's status, the
# systemd unit verified), the man pages render with `man -l` and the bash completion completes
# `zumastor def<TAB>`; `apt-get purge` leaves nothing behind. Then scripts/install.sh into a
# prefix of the test's own. Refuses to run where a zumastor package is installed already.
# Usage: Tests/cli/package-e2e.sh
. "$(dirname "$0")/lib.sh"
HERE=$(cd "$(dirname "$0")/../.." && pwd)
[ "$(id -u)" -eq 0 ] || { not_ok "package tests need root"; finish; exit 1; }
for tool in dpkg-deb lintian man systemd-analyze logrotate apt-get; do
    command -v "$tool" >/dev/null || { not_ok "$tool is installed (scripts/setup.sh --packages)"; finish; exit 1; }
done
if dpkg -s zumastor >/dev/null 2>&1; then
    not_ok "no zumastor package is installed before this test (it installs and purges its own)"; finish; exit 1
fi
INSTALLED=0
package_cleanup() {
    [ "$INSTALLED" = 1 ] && DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq zumastor >/dev/null 2>&1
    cleanup
}
trap package_cleanup EXIT

out=$(cd "$HERE" && bash scripts/build-deb.sh 2>&1)
DEB="$HERE/$(tail -n 1 <<< "$out")"
expect_ok "scripts/build-deb.sh builds dist/zumastor_<version>_amd64.deb" sh -c "echo '$DEB' | grep -qE '/dist/zumastor_[0-9.]+_amd64\.deb$' && test -s '$DEB'"
lint=$(lintian "$DEB" 2>&1 | grep -v "running with root privileges")
expect_eq "lintian reports no error" "" "$(grep '^E:' <<< "$lint")"
grep '^W:' <<< "$lint" | sed 's/^/# lintian: /'
contents=$(dpkg-deb -c "$DEB" | awk '{ print $6 }')
missing=$(for f in ./usr/sbin/zumastor ./usr/sbin/ddsnap ./lib/systemd/system/zumastor.service ./etc/init.d/zumastor \
    ./usr/share/man/man8/zumastor.8.gz ./usr/share/man/man8/ddsnap.8.gz ./usr/share/bash-completion/completions/zumastor \
    ./usr/share/zsh/vendor-completions/_zumastor ./etc/logrotate.d/zumastor ./etc/zumastor/metrics ./usr/share/doc/zumastor/copyright; do
    grep -qx "$f" <<< "$contents" || echo "$f"; done)
expect_eq "it holds the programs, unit, init script, man pages, completions, logrotate file and conffile" "" "$missing"
expect_eq "its conffiles" "/etc/init.d/zumastor /etc/logrotate.d/zumastor /etc/zumastor/metrics" \
    "$(dpkg-deb -I "$DEB" conffiles | tr '\n' ' ' | sed 's/ $//')"
expect_ok "it depends on Debian's fuse3, libfuse3-3, liblzma5, e2fsprogs" \
    sh -c "dpkg-deb -f '$DEB' Depends | grep -q 'libfuse3-3' && dpkg-deb -f '$DEB' Depends | grep -q 'liblzma5' && dpkg-deb -f '$DEB' Depends | grep -q 'fuse3,' && dpkg-deb -f '$DEB' Depends | grep -q 'e2fsprogs'"

install_deb() { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$DEB" > "$WORK/apt.log" 2>&1; }
INSTALLED=1
if ! install_deb; then apt-get update -qq >/dev/null 2>&1; install_deb; fi
expect_eq "apt-get install ./zumastor_*.deb" "install ok installed" "$(dpkg-query -W -f '${Status}' zumastor 2>&1)"
# The seed guide's 10.2.
expect_ok "10.2: zumastor prints its usage" sh -c "/usr/sbin/zumastor | grep -q '^USAGE: zumastor'"
expect_ok "10.2: zumastor is on PATH" sh -c "command -v zumastor | grep -qx /usr/sbin/zumastor"
out=$(/etc/init.d/zumastor status 2>&1); rc=$?
[ $rc -eq 0 ] && grep -q "zumastor is running (no volumes defined)" <<< "$out" && grep -q "use 'zumastor status' for more info" <<< "$out" \
    && ok "10.2: /etc/init.d/zumastor status answers" || not_ok "10.2: /etc/init.d/zumastor status" "exit $rc: $out"
expect_ok "systemd-analyze verify accepts the unit" systemd-analyze verify /lib/systemd/system/zumastor.service
expect_ok "the init script is registered (rc links)" sh -c "ls /etc/rc2.d/ | grep -q 'S[0-9]*zumastor'"
expect_eq "/etc/zumastor is root's alone, the conffile in it" "700 127.0.0.1:9339" \
    "$(stat -c %a /etc/zumastor) $(grep -v '^#' /etc/zumastor/metrics)"
for page in zumastor ddsnap; do
    text=$(MANWIDTH=100 man -l "/usr/share/man/man8/$page.8.gz" 2>&1)
    grep -q "^NAME" <<< "$text" && grep -qE "^ +$page [-—]" <<< "$text" && ok "man -l renders $page(8)" || not_ok "man -l $page(8)" "$(head -n 5 <<< "$text")"
done
expect_ok "man finds zumastor(8)" sh -c "man -w 8 zumastor | grep -qx /usr/share/man/man8/zumastor.8.gz"
expect_ok "zumastor(8) documents the subcommands" sh -c "MANWIDTH=100 man -l /usr/share/man/man8/zumastor.8.gz 2>/dev/null | grep -A1 -E '^ +snapshot' | grep -q 'Take a snapshot of VOL'"
complete_words() {
    bash -c 'source /usr/share/bash-completion/completions/zumastor
        read -r -a COMP_WORDS <<< "$1"; [ "${1: -1}" = " " ] && COMP_WORDS+=("")
        COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); COMP_LINE=$1; COMP_POINT=${#1}
        _zumastor zumastor "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}"
        printf "%s\n" "${COMPREPLY[@]}"' _ "$1"
}
expect_eq "bash completion: zumastor def<TAB> completes define" "define" "$(complete_words "zumastor def")"
offered=$(complete_words "zumastor define " | grep -xE "volume|master|schedule" | sort | tr "\n" " " | sed "s/ $//")
expect_eq "bash completion: zumastor define <TAB> offers volume, master, schedule" "master schedule volume" "$offered"
expect_ok "logrotate accepts the package's file" logrotate -d /etc/logrotate.d/zumastor

DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq zumastor > "$WORK/purge.log" 2>&1
expect_ok "apt-get purge zumastor" sh -c "! dpkg -s zumastor >/dev/null 2>&1"
INSTALLED=0
left=$(for f in /usr/sbin/zumastor /usr/sbin/ddsnap /lib/systemd/system/zumastor.service /etc/init.d/zumastor /etc/zumastor \
    /etc/logrotate.d/zumastor /usr/share/man/man8/zumastor.8.gz /usr/share/man/man8/ddsnap.8.gz /usr/share/bash-completion/completions/zumastor \
    /usr/share/bash-completion/completions/ddsnap /usr/share/zsh/vendor-completions/_zumastor /usr/share/doc/zumastor \
    /var/lib/zumastor /var/log/zumastor /var/run/zumastor /etc/rc*.d/*zumastor; do [ -e "$f" ] && echo "$f"; done)
expect_eq "nothing is left behind" "" "$left"

# scripts/install.sh, into a prefix of this test's own (no service files).
out=$(cd "$HERE" && bash scripts/install.sh --prefix "$WORK/prefix" --no-service 2>&1)
expect_ok "scripts/install.sh --prefix DIR --no-service" test -x "$WORK/prefix/sbin/zumastor" -a -x "$WORK/prefix/sbin/ddsnap"
expect_ok "... installs zumastor(8), which man -l renders" sh -c "man -l '$WORK/prefix/share/man/man8/zumastor.8.gz' 2>/dev/null | grep -q '^NAME'"
expect_ok "... and ddsnap(8)" sh -c "man -l '$WORK/prefix/share/man/man8/ddsnap.8.gz' 2>/dev/null | grep -q '^NAME'"
expect_ok "... and the bash and zsh completions" test -s "$WORK/prefix/share/bash-completion/completions/zumastor" -a -s "$WORK/prefix/share/zsh/site-functions/_ddsnap"

finish
