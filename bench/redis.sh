#!/usr/bin/env bash
# The relay with and without a feature, side by side in one run: the steady-state figures (CPU
# per paced message, round trip, flat-out messages/s, memory per idle session) must not move
# with it on. By default the feature is REDIS_URL (issue 11: Redis sees admissions, session ends,
# lease refreshes and usage, never a frame); --policy instead gives the second relay a session
# policy that locks fields (issue 12: every client event is checked against it). The two
# alternate within every round; each gets a fresh process per round. --all turns on the features
# of issues 10 to 13 together (issue 15): Redis, that session policy, client tokens (the bench
# clients present one) and dollar budgets (every response.done priced and checked).
#
# --calls N (issue 15's WebRTC calls idle beside the sessions; --all defaults to 20, else 0) also
# holds N WebRTC calls through the second relay in every round: `relay-bench calls` (built with
# --features webrtc, and so is the fake, which then answers calls with a real webrtc-rs peer)
# opens them after the relay is up and before the phases, each up to session.created on its data
# channel (with the token under --all), holds them idle through the phases and then hangs them up
# through the relay. The first relay's rounds hold as many calls made straight to the fake
# (bypassing it): the calls' peers in the fake (the process that echoes the sessions) and their
# client cost the machine and the fake the same on both sides, so what differs is only whether the
# relay carries them (with 20 calls, the fake's own echo round trip is about 0.14 ms slower, with
# or without a relay in front). What the figures then include: the relay's
# CPU per paced message counts whatever the idle calls cost it meanwhile (their sidebands'
# heartbeats); the idle KiB per session is the relay's growth while the 1000 idle sessions are
# held, divided by them, so the calls, opened before, sit in its baseline and not in that figure:
# their own cost is printed apart (relay KiB per call, and how many were still live at the end).
#
# usage: bench/redis.sh [--policy | --all] [--calls N] [--rounds N] [--no-build] [--out DIR]
# Needs redis-server (Debian's package) without --policy. Everything listens on and talks to
# 127.0.0.1 only; every phase is bounded in time; every process started here is stopped on exit.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. bench/lib.sh

ROUNDS=3 BUILD=1 OUT= FEATURE=redis CALLS=
while [ $# -gt 0 ]; do
    case "$1" in
    --policy) FEATURE=policy ;;
    --all) FEATURE=all ;;
    --calls) CALLS=$2; shift ;;
    --rounds) ROUNDS=$2; shift ;;
    --no-build) BUILD=0 ;;
    --out) OUT=$2; shift ;;
    -h | --help) sed -n '2,26p' "$0"; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
    esac
    shift
done
if [ -z "$CALLS" ]; then
    CALLS=0
    [ "$FEATURE" = all ] && CALLS=20
fi
[[ "$CALLS" =~ ^[0-9]+$ ]] || die "--calls needs a number, not $CALLS"
[ "$FEATURE" = policy ] || command -v redis-server >/dev/null 2>&1 ||
    die "redis-server not found: apt-get install -y redis-server"
command -v python3 >/dev/null 2>&1 || die "python3 is needed for the medians"
HARD=$(ulimit -Hn)
[ "$HARD" = unlimited ] && HARD=1048576
ulimit -n "$HARD"

if [ "$BUILD" = 1 ]; then
    if [ "$CALLS" -gt 0 ]; then
        # Two builds: in one, the relay would link fake-upstream with the bench's WebRTC too.
        cargo build --release --locked -p openai-realtime-relay
        cargo build --release --locked -p relay-bench --features webrtc
    else
        cargo build --release --locked -p openai-realtime-relay -p relay-bench
    fi
fi
RELAY=$PWD/target/release/openai-realtime-relay
BENCH=$PWD/target/release/relay-bench
[ -x "$RELAY" ] && [ -x "$BENCH" ] || die "release binaries missing (drop --no-build)"

WORK=$(mktemp -d /tmp/relay-redis-bench.XXXXXX)
RESULTS=${OUT:-$WORK/results}
mkdir -p "$RESULTS"
FAKE_PID= RELAY_PID= REDIS_PID= CALLS_PID=
cleanup() {
    for pid in $CALLS_PID $RELAY_PID $FAKE_PID $REDIS_PID; do
        kill "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    [ -n "$OUT" ] || echo "results kept in $RESULTS"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC'), nproc $(nproc), commit ${RELAY_COMMIT:-$(git rev-parse --short HEAD)}, load $(cut -d' ' -f1-3 /proc/loadavg)" |
    tee "$RESULTS/machine.txt"
start_fake "$BENCH" "$WORK/fake.out" --mode echo
FAKE_HTTP=http://${FAKE_URL#ws://}
FAKE_HTTP=${FAKE_HTTP%%/v1/*}
REDIS_WITH=() POLICY_WITH=()
if [ "$FEATURE" != policy ]; then
    REDIS_PORT=$("$BENCH" free-port)
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$WORK" \
        >"$WORK/redis.log" 2>&1 &
    REDIS_PID=$!
    wait_for_line "$WORK/redis.log" 'Ready to accept connections' 20 || die "redis-server did not start"
    REDIS_WITH=(REDIS_URL="redis://127.0.0.1:$REDIS_PORT")
fi
if [ "$FEATURE" != redis ]; then
    # Locks, no pinned session (nor a ceiling, which pins one): the echo upstream must only echo
    # the client's own events.
    cat >"$WORK/policy.toml" <<'TOML'
[policies.default]
locked = ["instructions", "tools", "tool_choice", "audio.output.voice", "model"]
on_violation = "strip"
TOML
    POLICY_WITH=(SESSION_POLICY_FILE="$WORK/policy.toml")
fi
case "$FEATURE" in
redis) WITH=("${REDIS_WITH[@]}") ;;
policy) WITH=("${POLICY_WITH[@]}") ;;
all)
    TOKEN=bench-token-$RANDOM$RANDOM
    WITH=("${REDIS_WITH[@]}" "${POLICY_WITH[@]}" RELAY_TOKENS="bench:$TOKEN"
        DAILY_USD_BUDGET=100000 CLIENT_DAILY_USD_BUDGET=100000)
    ;;
esac
echo "the second relay runs with: ${WITH[*]}" | tee -a "$RESULTS/machine.txt"
[ "$CALLS" -gt 0 ] && echo "and holds $CALLS WebRTC calls idle through its phases" | tee -a "$RESULTS/machine.txt"

# start_calls NAME URL: `relay-bench calls` against URL (the current relay, or the fake) in the
# background (CALLS_PID), its JSON to $RESULTS/NAME.json; returns once every call is established.
# The hold is longer than any phase sequence (each phase is cut at 300 s): stop_calls ends it.
start_calls() {
    local name=$1 url=$2 i
    # The fake wants a bearer key, any; a relay the token its clients present ($RELAY_BENCH_TOKEN),
    # if any.
    local key=()
    [ "$url" = "$FAKE_HTTP" ] && key=(RELAY_BENCH_TOKEN=fake-key)
    env "${key[@]}" timeout 2400 "$BENCH" calls --url "$url" --calls "$CALLS" --hold 1800 \
        --pids "$RELAY_PID" --json >"$RESULTS/$name.json" 2>"$RESULTS/$name.txt" &
    CALLS_PID=$!
    # Each call is bounded by relay-bench (30 s); this only stops waiting for one that died.
    for ((i = 0; i < (30 * CALLS + 20) * 10; i++)); do
        grep -qsE '^established [0-9]+ calls' "$RESULTS/$name.txt" && break
        kill -0 "$CALLS_PID" 2>/dev/null ||
            die "relay-bench calls failed: $(tail -5 "$RESULTS/$name.txt")"
        sleep 0.1
    done
    grep -E '^established' "$RESULTS/$name.txt" | sed 's/^/  /' ||
        die "relay-bench calls established no calls in time: $(tail -5 "$RESULTS/$name.txt")"
}

# stop_calls NAME: ends the hold (SIGTERM) and waits while the calls are hung up.
stop_calls() {
    local name=$1
    kill -TERM "$CALLS_PID" 2>/dev/null || true
    wait "$CALLS_PID" 2>/dev/null || echo "  $name FAILED: $(tail -3 "$RESULTS/$name.txt")"
    CALLS_PID=
}

# run NAME ARGS..: relay-bench ARGS against the current relay, JSON to $RESULTS/NAME.json.
run() {
    local name=$1
    shift
    timeout 300 "$BENCH" "$@" --url "ws://127.0.0.1:$RELAY_PORT/v1/realtime?model=gpt-realtime" \
        --pids "$RELAY_PID" --json >"$RESULTS/$name.json" 2>"$RESULTS/$name.txt" ||
        { echo "  $name FAILED"; sed 's/^/    /' "$RESULTS/$name.txt"; }
}

for ((r = 1; r <= ROUNDS; r++)); do
    order=(plain with)
    [ $((r % 2)) = 0 ] && order=(with plain)
    for who in "${order[@]}"; do
        extra=()
        [ "$who" = with ] && extra=("${WITH[@]}")
        if [ "$who" = with ] && [ -n "${TOKEN:-}" ]; then
            export RELAY_BENCH_TOKEN=$TOKEN
        else
            unset RELAY_BENCH_TOKEN
        fi
        start_relay "$RELAY" "$WORK/relay-$r-$who.log" "$FAKE_URL" MAX_CONNECTIONS=20000 "${extra[@]}"
        echo "== round $r: $who (relay pid $RELAY_PID; load $(cut -d' ' -f1-3 /proc/loadavg))"
        if [ "$CALLS" -gt 0 ]; then
            calls_url=$FAKE_HTTP
            [ "$who" = with ] && calls_url=http://127.0.0.1:$RELAY_PORT
            start_calls "r$r-$who-calls" "$calls_url"
        fi
        run "r$r-$who-warmup" load --sessions 20 --rate 10 --bytes 6400 --duration 1
        run "r$r-$who-idle" idle --sessions 1000 --hold 3
        run "r$r-$who-paced" load --sessions 50 --rate 20 --bytes 6400 --duration 8
        run "r$r-$who-flat300" load --sessions 50 --window 16 --bytes 300 --duration 5
        [ "$CALLS" -gt 0 ] && stop_calls "r$r-$who-calls"
        kill -TERM "$RELAY_PID" 2>/dev/null || true
        wait "$RELAY_PID" 2>/dev/null || true
        RELAY_PID=
    done
done

python3 - "$RESULTS" "$ROUNDS" "$FEATURE" "$CALLS" <<'PY' | tee "$RESULTS/summary.txt"
import json, statistics, sys
d, rounds, feature, calls = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
def get(name, *path):
    try:
        v = json.load(open(f"{d}/{name}.json"))
        for p in path:
            v = v[p]
        return v
    except Exception:
        return None
rows = [
    ("CPU s per 100k paced messages", "paced", ("proxy", "cpu_s_per_100k")),
    ("paced round trip p50 ms", "paced", ("rtt_ms", "p50")),
    ("paced round trip p99 ms", "paced", ("rtt_ms", "p99")),
    ("flat-out 300 B msg/s", "flat300", ("messages_per_sec",)),
    ("idle KiB per session", "idle", ("proxy", "rss_per_session_kb")),
]
with_what = feature + (f" and {calls} idle WebRTC calls" if calls else "")
print(f"medians of {rounds} rounds (per-round values), relay without and with {with_what}")
print(f"| figure | without | with | with / without |\n|---|---:|---:|---:|")
for label, phase, path in rows:
    vals = {w: [get(f"r{r}-{w}-{phase}", *path) for r in range(1, rounds + 1)] for w in ("plain", "with")}
    med = {w: statistics.median([v for v in vals[w] if v is not None]) if any(v is not None for v in vals[w]) else None for w in vals}
    ratio = (med["with"] / med["plain"]) if med["plain"] and med["with"] is not None else None
    fmt = lambda v: "—" if v is None else f"{v:.3g}"
    print(f"| {label} | {fmt(med['plain'])} ({', '.join(fmt(v) for v in vals['plain'])}) | {fmt(med['with'])} ({', '.join(fmt(v) for v in vals['with'])}) | {fmt(ratio)}× |")
if calls:
    per_round = [get(f"r{r}-with-calls") or {} for r in range(1, rounds + 1)]
    fmt = lambda v: "—" if v is None else f"{v:.3g}"
    print(f"WebRTC calls beside the sessions, per round: established / still live at the end "
          f"(hung up through the relay) / relay KiB per call: " + "; ".join(
              f"{c.get('established', '—')} / {c.get('hung_up', '—')} / "
              f"{fmt((c.get('proxy') or {}).get('rss_per_call_kb'))}" for c in per_round))
    direct = [get(f"r{r}-plain-calls") or {} for r in range(1, rounds + 1)]
    print("The same number straight to the fake beside the plain relay, per round: established / "
          "still live at the end: " + "; ".join(
              f"{c.get('established', '—')} / {c.get('hung_up', '—')}" for c in direct))
PY
