#!/usr/bin/env bash
# The admin token for docker-compose.yml's monitoring profile: one random token written twice,
# to secrets/admin-token, the file Prometheus sends (config/prometheus.yml's credentials_file,
# mounted by compose), and to ADMIN_TOKEN in .env, which the relay checks.
#
#   bash config/admin-token.sh          # this repository's secrets/ and .env (cp .env.example .env first)
#   bash config/admin-token.sh DIR      # DIR/secrets/admin-token and DIR/.env
#
# An existing secrets/admin-token is kept and copied into .env again (so running it twice changes
# nothing); delete the file to make a new token, then restart the relay and Prometheus.
# tests/relay/deploy/ runs this script.
set -euo pipefail

dir="${1:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
env_file="$dir/.env"
token_file="$dir/secrets/admin-token"

if [ ! -f "$env_file" ]; then
    echo "admin-token.sh: no $env_file; make it first: cp .env.example .env" >&2
    exit 1
fi
if [ -d "$token_file" ]; then
    echo "admin-token.sh: $token_file is a directory (Docker makes one where a mounted file is missing); remove it with: rmdir $token_file" >&2
    exit 1
fi

if [ ! -s "$token_file" ]; then
    # secrets/ is private to its owner; the file itself must stay readable by Prometheus's user
    # in its container (nobody), which sees only the mounted file, not the directory.
    (umask 077 && mkdir -p "$dir/secrets")
    head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$token_file"
    echo >>"$token_file"
    chmod 644 "$token_file"
    echo "wrote a new token to $token_file"
fi
token="$(tr -d '[:space:]' <"$token_file")"
case "$token" in
'' | *[!A-Za-z0-9._~+/=-]*)
    echo "admin-token.sh: $token_file must hold one token (letters, digits, ._~+/=-)" >&2
    exit 1
    ;;
esac

# ADMIN_TOKEN= in .env becomes this token: the first such line is replaced, any other dropped,
# and one is appended when there is none.
tmp="$(mktemp)"
trap 'rm -f "$tmp"' EXIT
awk -v line="ADMIN_TOKEN=$token" '
    /^[[:space:]]*ADMIN_TOKEN[[:space:]]*=/ { if (!done) print line; done = 1; next }
    { print }
    END { if (!done) print line }
' "$env_file" >"$tmp"
# Written through the existing file, so its owner and mode stay as they were.
cat "$tmp" >"$env_file"
echo "set ADMIN_TOKEN in $env_file to the token in $token_file"
