#!/usr/bin/env bash
# Admission latency while /stats is polled (issue 10): the relay (release) holds S idle sessions
# in front of the fake upstream (its own process); `relay-bench admission` then times M new
# sessions (connect -> 101, connect -> session.created, each closed right after), first quiet,
# then while P pollers fetch /stats?sessions=true and /metrics in a loop. R rounds, a fresh relay
# each; prints the medians. See BENCHMARKS.md.
#
# usage: bench/admission.sh [--sessions S] [--measure M] [--pollers P] [--concurrency C]
#                           [--stats-query Q] [--poll-interval-ms I] [--rounds R] [--no-build]
#                           [--out DIR]
#   --sessions S     idle sessions held (default 5000; the relay holds 2 fds each, the bench 1)
#   --measure M      admissions timed per phase (default 300)
#   --pollers P      concurrent /stats pollers in the polled phase (default 4)
#   --concurrency C  admissions in progress at once (default 1: one after another)
#   --stats-query Q  the polled /stats query (default sessions=true; '' for plain /stats)
#   --poll-interval-ms I  each poller fetches /stats and /metrics every I ms (default 0: back to
#                    back, as fast as the relay answers)
#   --rounds R       rounds (default 3)
#   --redis          start redis-server on a free port and give the relay REDIS_URL (shared
#                    admission: one Redis round trip per session)
#   --no-build       use target/release as it is
#   --out DIR        keep the JSON results there (default: a temp dir, printed)
# Everything listens on and talks to 127.0.0.1 only; every run is bounded in time; every process
# started here is stopped on exit.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. bench/lib.sh

SESSIONS=5000 MEASURE=300 POLLERS=4 CONCURRENCY=1 STATS_QUERY=sessions=true POLL_INTERVAL=0 REDIS=0 ROUNDS=3 BUILD=1 OUT=
while [ $# -gt 0 ]; do
    case "$1" in
    --sessions) SESSIONS=$2; shift ;;
    --measure) MEASURE=$2; shift ;;
    --pollers) POLLERS=$2; shift ;;
    --concurrency) CONCURRENCY=$2; shift ;;
    --stats-query) STATS_QUERY=$2; shift ;;
    --poll-interval-ms) POLL_INTERVAL=$2; shift ;;
    --rounds) ROUNDS=$2; shift ;;
    --redis) REDIS=1 ;;
    --no-build) BUILD=0 ;;
    --out) OUT=$2; shift ;;
    -h | --help) sed -n '2,23p' "$0"; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
    esac
    shift
done
command -v python3 >/dev/null 2>&1 || die "python3 is needed for the medians"

# The relay holds two sockets per session (client and upstream) plus a few; raise the soft fd
# limit to the hard one, which every process started here inherits.
HARD=$(ulimit -Hn)
[ "$HARD" = unlimited ] && HARD=1048576
ulimit -n "$HARD" || die "cannot raise the fd limit to $HARD"
NEED=$((2 * (SESSIONS + CONCURRENCY) + 200))
[ "$NEED" -le "$HARD" ] || die "$SESSIONS sessions need about $NEED fds in the relay; the limit is $HARD"

if [ "$BUILD" = 1 ]; then
    cargo build --release --locked -p openai-realtime-relay -p relay-bench
fi
RELAY=$PWD/target/release/openai-realtime-relay
BENCH=$PWD/target/release/relay-bench
[ -x "$RELAY" ] && [ -x "$BENCH" ] || die "release binaries missing (drop --no-build)"

WORK=$(mktemp -d /tmp/relay-admission.XXXXXX)
RESULTS=${OUT:-$WORK/results}
mkdir -p "$RESULTS"
RESULTS=$(cd "$RESULTS" && pwd)
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

{
    echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "nproc: $(nproc)"
    echo "kernel: $(uname -sr)"
    echo "relay commit: ${RELAY_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null || echo ' (+ uncommitted changes under src/)')}"
    echo "fd limit: $(ulimit -n)"
    echo "sessions: $SESSIONS, measure: $MEASURE, pollers: $POLLERS, concurrency: $CONCURRENCY, stats query: '$STATS_QUERY', poll interval: ${POLL_INTERVAL} ms, rounds: $ROUNDS"
} | tee "$RESULTS/machine.txt"

# The fake upstream is a process of its own: the relay's 2 fds per session and the fake's 1 each
# stay under the limit separately.
start_fake "$BENCH" "$WORK/fake.out" --mode echo
echo "fake upstream (echo): $FAKE_URL pid $FAKE_PID"
RELAY_ENV=()
if [ "$REDIS" = 1 ]; then
    command -v redis-server >/dev/null 2>&1 || die "--redis needs redis-server (apt-get install redis-server)"
    REDIS_PORT=$("$BENCH" free-port)
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
        --dir "$WORK" >"$WORK/redis.log" 2>&1 &
    REDIS_PID=$!
    wait_for_line "$WORK/redis.log" 'Ready to accept connections' 20 || die "redis-server did not start"
    RELAY_ENV=(REDIS_URL="redis://127.0.0.1:$REDIS_PORT")
    echo "redis: 127.0.0.1:$REDIS_PORT pid $REDIS_PID (REDIS_URL for every relay)"
fi

for ((r = 1; r <= ROUNDS; r++)); do
    start_relay "$RELAY" "$WORK/relay-$r.log" "$FAKE_URL" MAX_CONNECTIONS=$((SESSIONS + CONCURRENCY + 100)) "${RELAY_ENV[@]}"
    echo "== round $r: relay pid $RELAY_PID on port $RELAY_PORT; $(uptime | sed 's/.*load/load/')"
    echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)" >"$RESULTS/r$r-load.txt"
    if ! timeout 1200 "$BENCH" admission --url "ws://127.0.0.1:$RELAY_PORT/v1/realtime?model=gpt-realtime" \
        --sessions "$SESSIONS" --measure "$MEASURE" --pollers "$POLLERS" \
        --concurrency "$CONCURRENCY" --stats-query "$STATS_QUERY" --poll-interval-ms "$POLL_INTERVAL" --pids "$RELAY_PID" \
        --json >"$RESULTS/r$r.json" 2>"$RESULTS/r$r.txt"; then
        echo "  round $r FAILED:"
        sed 's/^/    /' "$RESULTS/r$r.txt"
    else
        grep -v '^relay-bench:' "$RESULTS/r$r.txt" | sed 's/^/  /'
    fi
    echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$RESULTS/r$r-load.txt"
    sed 's/^/  /' "$RESULTS/r$r-load.txt"
    kill -TERM "$RELAY_PID" 2>/dev/null || true
    wait "$RELAY_PID" 2>/dev/null || true
    RELAY_PID=
done

python3 - "$RESULTS" "$ROUNDS" <<'EOF' | tee "$RESULTS/summary.txt"
import json, statistics, sys
from pathlib import Path

results, rounds = Path(sys.argv[1]), int(sys.argv[2])
runs = []
for r in range(1, rounds + 1):
    try:
        runs.append(json.loads((results / f"r{r}.json").read_text().strip().splitlines()[-1]))
    except (OSError, ValueError, IndexError):
        print(f"round {r}: no result")
if not runs:
    sys.exit(1)

def med(path):
    values = []
    for run in runs:
        v = run
        for key in path.split("."):
            v = v.get(key) if isinstance(v, dict) else None
        if isinstance(v, (int, float)):
            values.append(v)
    if not values:
        return "-", ""
    spread = " (" + ", ".join(f"{v:g}" for v in values) + ")" if len(values) > 1 else ""
    return f"{statistics.median(values):g}", spread

print(f"\nmedians of {len(runs)} round(s); per-round values in brackets")
print(f"held sessions ok: {med('sessions_ok')[0]}, still open at the end: {med('held_open_at_end')[0]}, "
      f"admission failures: {med('admission_failures')[0]}")
for what in ("created_ms", "upgrade_ms"):
    label = "connect -> session.created" if what == "created_ms" else "connect -> 101"
    print(f"\n{label} (ms)")
    for p in ("p50", "p90", "p99", "max"):
        q, qs = med(f"quiet.{what}.{p}")
        o, os_ = med(f"polled.{what}.{p}")
        ratio = "ratio_created" if what == "created_ms" else "ratio_upgrade"
        x, xs = med(f"{ratio}.{p}")
        print(f"  {p:<4} quiet {q}{qs}  polled {o}{os_}  polled/quiet {x}x{xs}")
print()
for name in ("stats", "metrics"):
    ok, oks = med(f"{name}.ok")
    print(f"/{name}: {ok} answers{oks}, failed {med(name + '.failed')[0]}, "
          f"ms p50 {med(name + '.ms.p50')[0]} p99 {med(name + '.ms.p99')[0]}{med(name + '.ms.p99')[1]} "
          f"max {med(name + '.ms.max')[0]}")
print(f"relay cores busy: quiet {med('quiet.relay_cores_busy')[0]}, polled {med('polled.relay_cores_busy')[0]}"
      f"{med('polled.relay_cores_busy')[1]}")
print(f"polling seconds: {med('polling_s')[0]}{med('polling_s')[1]}; sessions listed per /stats: "
      f"min {med('sessions_listed.min')[0]} max {med('sessions_listed.max')[0]}")
EOF
