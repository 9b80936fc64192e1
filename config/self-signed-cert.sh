#!/usr/bin/env bash
# A self-signed certificate and key for a first try of the nginx profile of docker-compose.yml
# (or of config/nginx.conf anywhere), where they are expected:
#
#   bash config/self-signed-cert.sh                  # certs/fullchain.pem, certs/privkey.pem
#   bash config/self-signed-cert.sh DIR HOSTNAME     # another directory, a name besides localhost
#
# Browsers and SDKs do not trust it: connect with certificate checks off (e.g. `wscat --no-check`)
# or trust DIR/fullchain.pem explicitly. For real clients, put a CA-issued chain and its key at
# the same two paths (e.g. Let's Encrypt's fullchain.pem and privkey.pem). Existing files are
# never overwritten. tests/nginx/ runs this script and serves wss:// with what it writes.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="${1:-$repo/certs}"
host="${2:-localhost}"
cert="$dir/fullchain.pem"
key="$dir/privkey.pem"

for f in "$cert" "$key"; do
    if [ -d "$f" ]; then
        echo "self-signed-cert.sh: $f is a directory (Docker makes one where a mounted file is missing); remove it with: rmdir $f" >&2
        exit 1
    elif [ -e "$f" ]; then
        echo "self-signed-cert.sh: $f already exists; remove it (and its partner) to make a new pair" >&2
        exit 1
    fi
done
command -v openssl >/dev/null || {
    echo "self-signed-cert.sh: needs openssl (apt-get install openssl)" >&2
    exit 1
}

san="DNS:$host"
[ "$host" = localhost ] || san="$san,DNS:localhost"
san="$san,IP:127.0.0.1"

mkdir -p "$dir"
# A config of our own instead of the system's: the system's default extensions make the
# certificate a CA, which TLS clients refuse as a server certificate.
conf="$(mktemp)"
trap 'rm -f "$conf"' EXIT
cat >"$conf" <<EOF
[req]
distinguished_name = dn
x509_extensions = server
prompt = no
[dn]
CN = $host
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = $san
EOF
# The key is readable by its owner only; Nginx's master process reads it as root.
if ! out="$(umask 077 && openssl req -x509 -newkey rsa:2048 -nodes -days 90 -config "$conf" \
    -keyout "$key" -out "$cert" 2>&1)"; then
    echo "self-signed-cert.sh: openssl failed:" >&2
    echo "$out" >&2
    rm -f "$cert" "$key"
    exit 1
fi
chmod 644 "$cert"
echo "wrote $cert and $key (self-signed for $host, valid 90 days)"
