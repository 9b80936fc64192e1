#!/usr/bin/env bash
# The test suite, as README and .ci/run invoke it: `bash tests/run.sh [cargo test args...]`.
#
# tests/nginx.rs and tests/prometheus.rs run the real Nginx, Prometheus and promtool. When one of
# them is missing and we are root (CI, containers), this installs Debian's packages first; as any
# other user it says what to install. Then it runs `cargo test --locked` with any extra arguments.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Debian installs nginx in /usr/sbin, which is not on every user's PATH.
export PATH="$PATH:/usr/sbin:/sbin"

missing=()
for tool in nginx promtool prometheus; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done

if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" -eq 0 ]; then
        echo "== installing nginx and prometheus (missing: ${missing[*]})"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update
        # The package's postinst may start services where an init system runs; the tests start
        # their own instances on free loopback ports and never use those.
        apt-get install -y --no-install-recommends nginx prometheus
    else
        echo "tests/run.sh: missing ${missing[*]}; run as root to install them, or:" >&2
        echo "  sudo apt-get update && sudo apt-get install -y nginx prometheus" >&2
        exit 1
    fi
fi

echo "== cargo test --locked $*"
exec cargo test --locked "$@"
