#!/usr/bin/env bash
# Makes a self-signed localhost certificate for development.
#
#   certs/make-dev-cert.sh [--rsa] [--force] [OUTDIR]      (default OUTDIR: certs/dev)
#
# Writes OUTDIR/cert.pem and OUTDIR/key.pem (PEM, key mode 0600): ECDSA P-256 by
# default, RSA 2048 with --rsa. Subject CN=localhost, SANs DNS:localhost,
# IP:127.0.0.1, IP:::1; keyUsage digitalSignature (+ keyEncipherment for RSA),
# extendedKeyUsage serverAuth; valid 825 days (the most Apple platforms accept).
# Existing files are kept (a browser may already trust them) unless --force.
#
# Then: ringcast serve --listen 127.0.0.1:9443 --tls-cert certs/dev/cert.pem --tls-key certs/dev/key.pem
set -euo pipefail

rsa=0 force=0 outdir=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --rsa) rsa=1 ;;
        --force) force=1 ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        -*) echo "make-dev-cert: unknown option $1" >&2; exit 2 ;;
        *) outdir="$1" ;;
    esac
    shift
done
outdir="${outdir:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/dev}"
command -v openssl >/dev/null || { echo "make-dev-cert: openssl not found (apt-get install -y openssl)" >&2; exit 1; }

cert="$outdir/cert.pem" key="$outdir/key.pem"
if [[ "$force" -eq 0 && -s "$cert" && -s "$key" ]] && openssl x509 -checkend 86400 -noout -in "$cert" >/dev/null 2>&1; then
    echo "make-dev-cert: $cert already exists and is valid (use --force to replace it)"
    exit 0
fi

mkdir -p "$outdir"
if [[ "$rsa" -eq 1 ]]; then
    newkey=(-newkey rsa:2048)
    ku="digitalSignature,keyEncipherment"
else
    newkey=(-newkey ec -pkeyopt ec_paramgen_curve:P-256)
    ku="digitalSignature"
fi

tmpkey="$(mktemp "$outdir/.key.XXXXXX")"
tmpcert="$(mktemp "$outdir/.cert.XXXXXX")"
trap 'rm -f "$tmpkey" "$tmpcert"' EXIT
umask 077
openssl req -x509 -out "$tmpcert" -keyout "$tmpkey" "${newkey[@]}" -nodes -sha256 -days 825 \
    -subj '/CN=localhost' -extensions EXT -config <(printf '%s\n' \
        '[dn]' 'CN=localhost' \
        '[req]' 'distinguished_name = dn' \
        '[EXT]' 'subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1' \
        "keyUsage=critical,$ku" 'extendedKeyUsage=serverAuth' \
        'basicConstraints=critical,CA:FALSE') 2>/dev/null
chmod 0600 "$tmpkey"
chmod 0644 "$tmpcert"
mv -f "$tmpkey" "$key"
mv -f "$tmpcert" "$cert"
trap - EXIT

echo "make-dev-cert: wrote $cert and $key ($([[ $rsa -eq 1 ]] && echo 'RSA 2048' || echo 'ECDSA P-256'), 825 days)"
echo "  SHA-256 fingerprint: $(openssl x509 -in "$cert" -noout -fingerprint -sha256 | cut -d= -f2)"
