#!/usr/bin/env bash
# The test suite, as README and .ci/run invoke it: `bash tests/run.sh [cargo test args...]`.
#
# The test targets tests/nginx/, tests/prometheus/ and tests/redis/ run the real Nginx (and
# openssl), Prometheus, promtool and Alertmanager, and redis-server; tests/browser/ drives the
# console page in the real Chromium through Node.js and playwright-core (installed with npm into
# target/node); tests/relay/, the rest of the suite, needs only Node.js (`node --check` on the
# console's scripts).
# Under plain `cargo test` a test whose program is missing says on stderr that it is skipped, and
# passes. This script leaves nothing skipped unsaid:
#
# - as root (CI, containers) it installs what is missing from Debian's packages, saying so
#   first, and then every such test must run (RELAY_TESTS_REQUIRE names all the programs);
# - as any other user it runs `cargo test` with what is there (RELAY_TESTS_REQUIRE names what
#   is), then lists the tests it could not run and the one command that installs their programs,
#   and exits 1.
#
# Either way it runs `cargo test --workspace --locked` with the extra arguments.
#
# For tests/relay/deploy/run_sh.rs, which checks this script: RELAY_TOOLS_PATH replaces the
# directories searched for the programs (default: PATH, /usr/sbin, /sbin), and
# RELAY_RUN_SH_DRY_RUN=1 prints the apt-get and cargo commands instead of running them.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Debian installs nginx in /usr/sbin, which is not on every user's PATH.
export PATH="$PATH:/usr/sbin:/sbin"
tools_path="${RELAY_TOOLS_PATH:-$PATH}"
# The tests look in the same places (tests/common/tools.rs).
export RELAY_TOOLS_PATH="$tools_path"
dry_run="${RELAY_RUN_SH_DRY_RUN:-}"

# Every program a test runs; tests/relay/deploy/run_sh.rs checks that the tests ask for no other.
tools=(nginx openssl promtool prometheus prometheus-alertmanager amtool redis-server chromium node)

package_of() {
    case "$1" in
    nginx) echo nginx ;;
    openssl) echo openssl ;;
    promtool | prometheus) echo prometheus ;;
    prometheus-alertmanager | amtool) echo prometheus-alertmanager ;;
    redis-server) echo redis-server ;;
    chromium) echo chromium ;;
    node) echo nodejs ;;
    esac
}

tests_of() {
    case "$1" in
    nginx | openssl) echo tests/nginx/ ;;
    redis-server) echo tests/redis/ ;;
    chromium) echo tests/browser/ ;;
    node) echo tests/relay/ ;;
    *) echo tests/prometheus/ ;;
    esac
}

# Whether $1 is an executable file in one of the directories of $tools_path.
found() {
    local dir
    local IFS=:
    for dir in $tools_path; do
        if [ -n "$dir" ] && [ -f "$dir/$1" ] && [ -x "$dir/$1" ]; then
            return 0
        fi
    done
    return 1
}

run() {
    if [ -n "$dry_run" ]; then
        echo "dry run: $*"
    else
        "$@"
    fi
}

present=()
missing=()
packages=()
for tool in "${tools[@]}"; do
    if found "$tool"; then
        present+=("$tool")
    else
        missing+=("$tool")
        package="$(package_of "$tool")"
        case " ${packages[*]} " in
        *" $package "*) ;;
        *) packages+=("$package") ;;
        esac
    fi
done

if [ "${#missing[@]}" -gt 0 ] && [ "$(id -u)" -eq 0 ]; then
    echo "== installing ${packages[*]} with apt-get (missing: ${missing[*]})"
    export DEBIAN_FRONTEND=noninteractive
    run apt-get update
    # The packages' postinst may start services where an init system runs; the tests start
    # their own instances on free loopback ports and never use those.
    run apt-get install -y --no-install-recommends "${packages[@]}"
    if [ -z "$dry_run" ]; then
        for tool in "${missing[@]}"; do
            if ! found "$tool"; then
                echo "tests/run.sh: apt-get installed ${packages[*]}, but $tool is still not in $tools_path" >&2
                exit 1
            fi
        done
    fi
    present=("${tools[@]}")
    missing=()
elif [ "${#missing[@]}" -gt 0 ]; then
    echo "== missing ${missing[*]}: the tests that run them will be skipped (listed at the end)"
fi

# The official OpenAI Python SDK, for tests/relay/policy/sdk.rs: from PyPI into target/ (no root
# needed), pinned; its test is skipped, with a line saying so, when it cannot be installed.
sdk_dir="$PWD/target/python-sdk"
if [ -z "$dry_run" ] && [ ! -d "$sdk_dir/openai" ] && command -v python3 >/dev/null 2>&1; then
    echo "== installing the OpenAI Python SDK into target/python-sdk (pip, from PyPI)"
    python3 -m pip install --quiet --disable-pip-version-check --target "$sdk_dir" \
        "openai[realtime]==3.63.0" ||
        echo "tests/run.sh: could not install the OpenAI Python SDK; its test will be skipped" >&2
fi
if [ -d "$sdk_dir/openai" ]; then
    export RELAY_PYTHON_SDK="$sdk_dir"
fi

# playwright-core, for tests/browser/ (it drives the system Chromium; it downloads no browser):
# from npm into target/node, pinned; those tests are skipped, with a line saying so, without it.
node_dir="$PWD/target/node"
if [ -z "$dry_run" ] && [ ! -d "$node_dir/node_modules/playwright-core" ] && command -v npm >/dev/null 2>&1; then
    echo "== installing playwright-core into target/node (npm)"
    npm install --prefix "$node_dir" --no-audit --no-fund --silent playwright-core@1.65.2 ||
        echo "tests/run.sh: could not install playwright-core; the browser tests will be skipped" >&2
fi
if [ -d "$node_dir/node_modules/playwright-core" ]; then
    export RELAY_PLAYWRIGHT="$node_dir"
fi

require="$(
    IFS=,
    echo "${present[*]}"
)"
echo "== RELAY_TESTS_REQUIRE=$require cargo test --workspace --locked${*:+ $*}"
status=0
run env "RELAY_TESTS_REQUIRE=$require" cargo test --workspace --locked "$@" || status=$?

if [ "${#missing[@]}" -gt 0 ]; then
    {
        echo
        echo "tests/run.sh: these tests could not run, their programs are not installed:"
        for file in tests/nginx/ tests/prometheus/ tests/redis/ tests/browser/ tests/relay/; do
            needs=()
            for tool in "${missing[@]}"; do
                if [ "$(tests_of "$tool")" = "$file" ]; then
                    needs+=("$tool")
                fi
            done
            if [ "${#needs[@]}" -gt 0 ]; then
                echo "  $file (needs ${needs[*]})"
            fi
        done
        echo "Install them with (or run this script as root, which does):"
        echo "  sudo apt-get update && sudo apt-get install -y ${packages[*]}"
    } >&2
    exit 1
fi
exit "$status"
