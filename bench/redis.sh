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
# usage: bench/redis.sh [--policy | --all] [--rounds N] [--no-build] [--out DIR]
# Needs redis-server (Debian's package) without --policy. Everything listens on and talks to
# 127.0.0.1 only; every phase is bounded in time; every process started here is stopped on exit.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. bench/lib.sh

ROUNDS=3 BUILD=1 OUT= FEATURE=redis
while [ $# -gt 0 ]; do
    case "$1" in
    --policy) FEATURE=policy ;;
    --all) FEATURE=all ;;
    --rounds) ROUNDS=$2; shift ;;
    --no-build) BUILD=0 ;;
    --out) OUT=$2; shift ;;
    -h | --help) sed -n '2,13p' "$0"; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
    esac
    shift
done
[ "$FEATURE" = policy ] || command -v redis-server >/dev/null 2>&1 ||
    die "redis-server not found: apt-get install -y redis-server"
command -v python3 >/dev/null 2>&1 || die "python3 is needed for the medians"
HARD=$(ulimit -Hn)
[ "$HARD" = unlimited ] && HARD=1048576
ulimit -n "$HARD"

if [ "$BUILD" = 1 ]; then
    cargo build --release --locked -p openai-realtime-relay -p relay-bench
fi
RELAY=$PWD/target/release/openai-realtime-relay
BENCH=$PWD/target/release/relay-bench
[ -x "$RELAY" ] && [ -x "$BENCH" ] || die "release binaries missing (drop --no-build)"

WORK=$(mktemp -d /tmp/relay-redis-bench.XXXXXX)
RESULTS=${OUT:-$WORK/results}
mkdir -p "$RESULTS"
FAKE_PID= RELAY_PID= REDIS_PID=
cleanup() {
    for pid in $RELAY_PID $FAKE_PID $REDIS_PID; do
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
        run "r$r-$who-warmup" load --sessions 20 --rate 10 --bytes 6400 --duration 1
        run "r$r-$who-idle" idle --sessions 1000 --hold 3
        run "r$r-$who-paced" load --sessions 50 --rate 20 --bytes 6400 --duration 8
        run "r$r-$who-flat300" load --sessions 50 --window 16 --bytes 300 --duration 5
        kill -TERM "$RELAY_PID" 2>/dev/null || true
        wait "$RELAY_PID" 2>/dev/null || true
        RELAY_PID=
    done
done

python3 - "$RESULTS" "$ROUNDS" "$FEATURE" <<'PY' | tee "$RESULTS/summary.txt"
import json, statistics, sys
d, rounds, feature = sys.argv[1], int(sys.argv[2]), sys.argv[3]
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
print(f"medians of {rounds} rounds (per-round values), relay without and with {feature}")
print(f"| figure | without | with | with / without |\n|---|---:|---:|---:|")
for label, phase, path in rows:
    vals = {w: [get(f"r{r}-{w}-{phase}", *path) for r in range(1, rounds + 1)] for w in ("plain", "with")}
    med = {w: statistics.median([v for v in vals[w] if v is not None]) if any(v is not None for v in vals[w]) else None for w in vals}
    ratio = (med["with"] / med["plain"]) if med["plain"] and med["with"] is not None else None
    fmt = lambda v: "—" if v is None else f"{v:.3g}"
    print(f"| {label} | {fmt(med['plain'])} ({', '.join(fmt(v) for v in vals['plain'])}) | {fmt(med['with'])} ({', '.join(fmt(v) for v in vals['with'])}) | {fmt(ratio)}× |")
PY
