#!/usr/bin/env bash
# Two (or more) relay builds side by side on one relay-bench phase: each round starts each
# binary in turn, fresh, against the same fake upstream, and prints its figures on one line.
# For a change's effect on one figure (BENCHMARKS.md, issue 15); compare.sh measures them all.
#
# usage: bench/ab.sh [--rounds N] [--fake "ARGS"] -- "relay-bench ARGS" RELAY_BIN RELAY_BIN..
#   e.g. bench/ab.sh --rounds 4 -- "load --sessions 20 --rate 50 --bytes 1024 --duration 15" \
#            /tmp/before/openai-realtime-relay target/release/openai-realtime-relay
#   --fake "ARGS"  the fake upstream's arguments (default "--mode echo"; "--mode stream
#                  --stream-bytes 6400" with a `slow` phase)
# Everything listens on and talks to 127.0.0.1 only; every phase is bounded in time; every
# process started here is stopped on exit.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. bench/lib.sh

ROUNDS=3 FAKE_ARGS="--mode echo"
while [ $# -gt 0 ]; do
    case "$1" in
    --rounds) ROUNDS=$2; shift ;;
    --fake) FAKE_ARGS=$2; shift ;;
    --) shift; break ;;
    -h | --help) sed -n '2,12p' "$0"; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
    esac
    shift
done
[ $# -ge 2 ] || die "a relay-bench phase and at least one relay binary are needed (see --help)"
PHASE=$1
shift
BENCH=$PWD/target/release/relay-bench
[ -x "$BENCH" ] || die "build relay-bench first: cargo build --release -p relay-bench"
HARD=$(ulimit -Hn)
[ "$HARD" = unlimited ] && HARD=1048576
ulimit -n "$HARD"

WORK=$(mktemp -d /tmp/relay-ab.XXXXXX)
FAKE_PID= RELAY_PID=
stop_on_exit

# shellcheck disable=SC2086 # FAKE_ARGS is a list of arguments
start_fake "$BENCH" "$WORK/fake.out" $FAKE_ARGS
for ((r = 1; r <= ROUNDS; r++)); do
    for relay in "$@"; do
        start_relay "$relay" "$WORK/relay.log" "$FAKE_URL" MAX_CONNECTIONS=20000
        # shellcheck disable=SC2086 # PHASE is a list of arguments
        out=$(timeout 300 "$BENCH" $PHASE \
            --url "ws://127.0.0.1:$RELAY_PORT/v1/realtime?model=gpt-realtime" \
            --pids "$RELAY_PID" 2>&1) || out="FAILED: $out"
        echo "round $r $relay: $(echo "$out" |
            grep -E 'FAILED|round trip|throughput|proxy cpu|proxy rss|rss samples' |
            sed 's/(echoed payload, one direction)//' | tr -s ' \n' ' ')"
        kill -TERM "$RELAY_PID" 2>/dev/null || true
        wait "$RELAY_PID" 2>/dev/null || true
        RELAY_PID=
        rm -f "$WORK"/relay.log.usage.json*
    done
done
