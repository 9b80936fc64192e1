#!/usr/bin/env bash
# User-space instructions the relay spends per paced round trip, counted by valgrind's callgrind:
# unlike CPU time on a shared, noisy machine, the count barely moves from run to run, so it shows
# what a change to the hot path bought even when it is a few percent (BENCHMARKS.md, issue 15).
# Each binary runs under callgrind with one worker, twice: 20 sessions x 50 and x 550 paced
# 1 KiB round trips; the difference over the 10,000 extra round trips is the cost of one, without
# start-up and session setup. The kernel's share (the syscalls) is not counted.
#
# usage: [BYTES=1024] bench/instructions.sh RELAY_BIN [RELAY_BIN..]   (BYTES: the message size)
# Needs valgrind (Debian's package). Everything listens on and talks to 127.0.0.1 only; every
# phase is bounded in time; every process started here is stopped on exit.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. bench/lib.sh

case "${1:-}" in -h | --help | "") sed -n '2,11p' "$0"; exit 0 ;; esac
command -v valgrind >/dev/null 2>&1 || die "valgrind not found: apt-get install -y valgrind"
BENCH=$PWD/target/release/relay-bench
[ -x "$BENCH" ] || die "build relay-bench first: cargo build --release -p relay-bench"

WORK=$(mktemp -d /tmp/relay-instructions.XXXXXX)
FAKE_PID= RELAY_PID=
stop_on_exit

start_fake "$BENCH" "$WORK/fake.out" --mode echo

# instructions RELAY_BIN MESSAGES: the relay's total instruction count for one run.
instructions() {
    local relay=$1 messages=$2 port
    port=$("$BENCH" free-port)
    env OPENAI_API_URL="$FAKE_URL" OPENAI_API_KEY=bench HOST=127.0.0.1 PORT="$port" WORKERS=1 \
        USAGE_STATE_FILE="$WORK/usage.json" RUST_LOG=warn \
        valgrind --tool=callgrind --callgrind-out-file="$WORK/callgrind.out" "$relay" \
        >"$WORK/relay.log" 2>&1 &
    RELAY_PID=$!
    wait_health "$port" 60 || die "the relay did not answer /health under valgrind"
    timeout 300 "$BENCH" load --sessions 20 --rate 20 --bytes "${BYTES:-1024}" --duration 600 \
        --messages "$messages" --url "ws://127.0.0.1:$port/v1/realtime?model=gpt-realtime" \
        >"$WORK/load.txt" 2>&1 || die "the load failed: $(tail -3 "$WORK/load.txt")"
    kill -INT "$RELAY_PID"
    wait "$RELAY_PID" 2>/dev/null || true
    RELAY_PID=
    rm -f "$WORK"/usage.json*
    awk '/^totals:/ {print $2}' "$WORK/callgrind.out"
}

for relay in "$@"; do
    few=$(instructions "$relay" 50)
    many=$(instructions "$relay" 550)
    echo "$relay: $(((many - few) / 10000)) instructions per round trip ($few and $many in all)"
done
