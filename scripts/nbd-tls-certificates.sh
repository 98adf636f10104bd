#!/usr/bin/env bash
# Certificates for NBD over TLS (`ddsnap server --nbd-listen ADDR --nbd-tls DIR`), in the
# layout nbdkit, qemu-nbd and libnbd use, made with openssl (P-256 keys, keys mode 600):
#   nbd-tls-certificates.sh DIR authority           DIR/authority: ca-key.pem, ca-cert.pem
#   nbd-tls-certificates.sh DIR server NAME|IP...   DIR/server: the --nbd-tls directory
#                                                   (ca-cert.pem, server-cert.pem, server-key.pem),
#                                                   valid for these names and addresses
#   nbd-tls-certificates.sh DIR client NAME         DIR/client-NAME: a client's directory
#                                                   (ca-cert.pem, client-cert.pem, client-key.pem),
#                                                   for nbds://HOST/VOL?tls-certificates=DIR/client-NAME
# Keep DIR/authority/ca-key.pem off the servers: whoever holds it can make clients.
# DAYS (default 3650) sets how long certificates are valid.
set -euo pipefail
usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
[ $# -ge 2 ] || usage
dir=$1 what=$2; shift 2
days=${DAYS:-3650}
command -v openssl >/dev/null || { echo "nbd-tls-certificates: openssl is not installed (apt-get install openssl)" >&2; exit 1; }
umask 077
authority="$dir/authority"

# leaf OUTDIR PREFIX SUBJECT EXTENSIONS: a key and a certificate the authority signs.
leaf() {
    local out=$1 prefix=$2 subject=$3 extensions=$4
    [ -f "$authority/ca-key.pem" ] || { echo "nbd-tls-certificates: no authority in $authority (run: $0 $dir authority)" >&2; exit 1; }
    mkdir -p "$out"
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$subject" \
        -keyout "$out/$prefix-key.pem" -out "$out/$prefix.csr" 2>/dev/null
    printf '%s\n' "$extensions" > "$out/$prefix.ext"
    openssl x509 -req -in "$out/$prefix.csr" -CA "$authority/ca-cert.pem" -CAkey "$authority/ca-key.pem" \
        -set_serial "0x$(openssl rand -hex 16)" -days "$days" -sha256 -extfile "$out/$prefix.ext" \
        -out "$out/$prefix-cert.pem" 2>/dev/null
    rm -f "$out/$prefix.csr" "$out/$prefix.ext"
    cp "$authority/ca-cert.pem" "$out/ca-cert.pem"
    chmod 600 "$out/$prefix-key.pem"
    chmod 644 "$out/$prefix-cert.pem" "$out/ca-cert.pem"
}

case $what in
authority)
    [ -e "$authority/ca-key.pem" ] && { echo "nbd-tls-certificates: $authority already holds an authority" >&2; exit 1; }
    mkdir -p "$authority"
    openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days "$days" -sha256 \
        -subj "/CN=zumastor NBD authority $(hostname)" -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -keyout "$authority/ca-key.pem" -out "$authority/ca-cert.pem" 2>/dev/null
    chmod 644 "$authority/ca-cert.pem"
    echo "$authority" ;;
server)
    [ $# -ge 1 ] || usage
    names=""
    for n in "$@"; do
        if [[ $n =~ ^[0-9.]+$ || $n == *:* ]]; then names+="IP:$n,"; else names+="DNS:$n,"; fi
    done
    leaf "$dir/server" server "$1" "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=${names%,}"
    echo "$dir/server" ;;
client)
    [ $# -eq 1 ] && [[ $1 =~ ^[A-Za-z0-9._-]+$ ]] || usage
    leaf "$dir/client-$1" client "$1" "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth"
    echo "$dir/client-$1" ;;
*) usage ;;
esac
