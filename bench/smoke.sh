#!/usr/bin/env bash
# End-to-end smoke run of the load generator through the relay, for CI: starts the fake upstream
# (echo) and the relay in front of it, sends 2 sessions x 5 messages, and checks that both
# sessions opened and every message came back; then a tiny `relay-bench admission` (20 held
# sessions, 10 admissions quiet and 10 while /stats is polled) and checks that every session
# opened, every admission succeeded and /stats answered. Asserts no times.
#
# usage: bench/smoke.sh [DIR | RELAY_BIN]   (default target/debug; DIR holds both binaries)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. bench/lib.sh

target=${1:-target/debug}
if [ -d "$target" ]; then
    RELAY=$target/openai-realtime-relay
else
    RELAY=$target
fi
BENCH=$(dirname "$RELAY")/relay-bench
if [ ! -x "$RELAY" ] || [ ! -x "$BENCH" ]; then
    profile=()
    case "$RELAY" in *release*) profile=(--release) ;; esac
    echo "smoke: building the binaries"
    cargo build --locked "${profile[@]}" -p openai-realtime-relay -p relay-bench
fi

WORK=$(mktemp -d)
FAKE_PID= RELAY_PID=
stop_on_exit

start_fake "$BENCH" "$WORK/fake.out" --mode echo
start_relay "$RELAY" "$WORK/relay.log" "$FAKE_URL" MAX_CONNECTIONS=40

url="ws://127.0.0.1:$RELAY_PORT/v1/realtime?model=gpt-realtime"
if ! timeout 60 "$BENCH" load --url "$url" --sessions 2 --bytes 300 --window 1 \
    --duration 30 --messages 5 --json >"$WORK/load.json" 2>"$WORK/load.err"; then
    cat "$WORK/load.err" >&2
    die "relay-bench load failed"
fi
cat "$WORK/load.err"
json=$(cat "$WORK/load.json")
echo "$json"
# serde_json prints compact JSON with sorted keys: a plain match is enough.
for want in '"sessions_ok":2' '"sessions_failed":0' '"messages":10' '"lost":0'; do
    case "$json" in
    *"$want"*) ;;
    *) die "expected $want in the load report" ;;
    esac
done
echo "smoke: ok (2 sessions x 5 messages through the relay)"

if ! timeout 120 "$BENCH" admission --url "$url" --sessions 20 --measure 10 --warmup 2 \
    --pollers 2 --json >"$WORK/admission.json" 2>"$WORK/admission.err"; then
    cat "$WORK/admission.err" >&2
    die "relay-bench admission failed"
fi
cat "$WORK/admission.err"
json=$(cat "$WORK/admission.json")
echo "$json"
for want in '"sessions_ok":20' '"held_open_at_end":20' '"admitted":20' '"admission_failures":0'; do
    case "$json" in
    *"$want"*) ;;
    *) die "expected $want in the admission report" ;;
    esac
done
echo "$json" | grep -Eq '"stats_answers":[1-9]' || die "expected /stats answers in the admission report"
echo "smoke: ok (20 held sessions, 2 x 10 admissions, /stats polled)"
