#!/usr/bin/env bash
# Side-by-side benchmark, in one run: the fake upstream directly, through Nginx (Debian's, a
# minimal WebSocket proxy config generated here), and through the relay (release build).
# Contenders alternate within every round; each gets a fresh process per round. See BENCHMARKS.md.
#
# usage: bench/compare.sh [--quick] [--rounds N] [--scale] [--slow] [--soak] [--no-build]
#                         [--out DIR]
#   --quick     one round, short phases, 200 idle sessions (a few minutes less)
#   --rounds N  rounds of all contenders (default 3)
#   --scale     also: the relay holding as many idle sessions as the fd limit allows (10,000 if
#               the hard limit is at least ~20,100), each exchanging one message, /health polled
#   --slow      also: slow consumers (clients that stop reading while the upstream streams);
#               SLOW_SESSIONS=N sets how many (default 200)
#   --soak      also: the relay's memory over repeated session churn and message load
#   --out DIR   keep the JSON results and summary there (default: a temp dir, printed)
# Everything listens on and talks to 127.0.0.1 only; every phase is bounded in time; every
# process started here is stopped on exit.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. bench/lib.sh

QUICK=0 ROUNDS=3 SCALE=0 SLOW=0 SOAK=0 BUILD=1 OUT=
while [ $# -gt 0 ]; do
    case "$1" in
    --quick) QUICK=1 ROUNDS=1 ;;
    --rounds) ROUNDS=$2; shift ;;
    --scale) SCALE=1 ;;
    --slow) SLOW=1 ;;
    --soak) SOAK=1 ;;
    --no-build) BUILD=0 ;;
    --out) OUT=$2; shift ;;
    -h | --help) sed -n '2,17p' "$0"; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
    esac
    shift
done

command -v nginx >/dev/null 2>&1 ||
    die "nginx not found; install Debian's: apt-get update && apt-get install -y nginx"
command -v python3 >/dev/null 2>&1 || die "python3 is needed for the summary"

# Each proxied session holds two sockets in the proxy; raise the soft fd limit to the hard one.
HARD=$(ulimit -Hn)
[ "$HARD" = unlimited ] && HARD=1048576
ulimit -n "$HARD" || die "cannot raise the fd limit to $HARD"

if [ "$BUILD" = 1 ]; then
    cargo build --release --locked -p openai-realtime-relay -p relay-bench
fi
RELAY=$PWD/target/release/openai-realtime-relay
BENCH=$PWD/target/release/relay-bench
[ -x "$RELAY" ] && [ -x "$BENCH" ] || die "release binaries missing (drop --no-build)"

WORK=$(mktemp -d /tmp/relay-compare.XXXXXX)
RESULTS=${OUT:-$WORK/results}
mkdir -p "$RESULTS"
RESULTS=$(cd "$RESULTS" && pwd)
FAKE_PID= RELAY_PID= NGINX_PID= FAKE2_PID= HEALTH_PID= MONITOR_PID=
cleanup() {
    for pid in $MONITOR_PID $HEALTH_PID $RELAY_PID $NGINX_PID $FAKE2_PID $FAKE_PID; do
        kill "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    [ -n "$OUT" ] || echo "results kept in $RESULTS"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ "$QUICK" = 1 ]; then
    PACED_SECS=3 FLAT_SECS=3 IDLE_SESSIONS=200 IDLE_HOLD=3
else
    PACED_SECS=15 FLAT_SECS=8 IDLE_SESSIONS=1000 IDLE_HOLD=4
fi
# Stalled clients (--slow): 200, since Nginx's memory per stalled client swings between 16 and
# 37 KiB from run to run with 20 (issue 15's first figures, and run 10, used 20).
SLOW_SESSIONS=${SLOW_SESSIONS:-200}
MODEL=gpt-realtime
NPROC=$(nproc)

{
    echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "nproc: $NPROC"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
    echo "kernel: $(uname -sr)"
    echo "nginx: $(nginx -v 2>&1 | sed 's/^nginx version: //')"
    # RELAY_COMMIT names the source when it is not a git checkout (e.g. a `git archive` copy).
    echo "relay commit: ${RELAY_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null || echo ' (+ uncommitted changes under src/)')}"
    echo "fd limit: $(ulimit -n)"
    echo "rounds: $ROUNDS, quick: $QUICK"
} | tee "$RESULTS/machine.txt"

# Other work on the machine skews wall-clock numbers (CPU seconds much less): keep a record.
(
    while true; do
        echo "$(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg) top: $(ps -eo pcpu,comm --sort=-pcpu | sed -n '2,5p' | tr -s ' ' | tr '\n' ';')"
        sleep 5
    done
) >"$RESULTS/machine-load.log" 2>&1 &
MONITOR_PID=$!

start_fake "$BENCH" "$WORK/fake.out" --mode echo
FAKE_PORT=${FAKE_URL#ws://127.0.0.1:}
FAKE_PORT=${FAKE_PORT%%/*}
echo "fake upstream (echo): $FAKE_URL pid $FAKE_PID"

# ---------------------------------------------------------------------------------------------
# Contenders: start_<name> sets URL and PIDS (the processes whose CPU and memory are the proxy's).

start_direct() {
    URL="ws://127.0.0.1:$FAKE_PORT/v1/realtime?model=$MODEL"
    PIDS=
}
stop_direct() { :; }

# Stock Debian Nginx with the minimal WebSocket proxy config. worker_processes auto (= nproc):
# the relay's actix server also runs one worker thread per CPU, so both may use every core.
start_nginx() {
    local dir=$WORK/nginx upstream_port=${1:-$FAKE_PORT} port
    rm -rf "$dir"
    mkdir -p "$dir/logs" "$dir/tmp"
    port=$("$BENCH" free-port)
    cat >"$dir/nginx.conf" <<EOF
worker_processes auto;
worker_rlimit_nofile $HARD;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
events {
    worker_connections 8192;
}
http {
    access_log off;
    client_body_temp_path $dir/tmp/client;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    server {
        listen 127.0.0.1:$port;
        location / {
            proxy_pass http://127.0.0.1:$upstream_port;
            proxy_http_version 1.1;
            proxy_set_header Upgrade \$http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_set_header Host \$host;
            proxy_buffering off;
            proxy_read_timeout 3600s;
            proxy_send_timeout 3600s;
        }
    }
}
EOF
    nginx -p "$dir" -e "$dir/logs/error.log" -c "$dir/nginx.conf" -g 'daemon off;' \
        >"$dir/logs/stdout.log" 2>&1 &
    NGINX_PID=$!
    local i
    for ((i = 0; i < 100; i++)); do
        [ "$(http_status "$port" /)" != 000 ] && break
        sleep 0.1
    done
    [ "$(http_status "$port" /)" != 000 ] || die "nginx did not start: $(cat "$dir/logs/error.log")"
    URL="ws://127.0.0.1:$port/v1/realtime?model=$MODEL"
    PIDS=$NGINX_PID
}
stop_nginx() {
    [ -n "$NGINX_PID" ] || return 0
    kill -QUIT "$NGINX_PID" 2>/dev/null || true
    wait "$NGINX_PID" 2>/dev/null || true
    NGINX_PID=
}

start_relay_contender() {
    start_relay "$RELAY" "$WORK/relay.log" "${1:-$FAKE_URL}" MAX_CONNECTIONS=20000
    URL="ws://127.0.0.1:$RELAY_PORT/v1/realtime?model=$MODEL"
    PIDS=$RELAY_PID
}
stop_relay_contender() {
    [ -n "$RELAY_PID" ] || return 0
    kill -TERM "$RELAY_PID" 2>/dev/null || true
    wait "$RELAY_PID" 2>/dev/null || true
    RELAY_PID=
}

# bench NAME ARGS..: runs relay-bench with ARGS, JSON to $RESULTS/NAME.json, table to the log.
bench() {
    local name=$1
    shift
    local pid_args=()
    [ -n "$PIDS" ] && pid_args=(--pids "$PIDS")
    echo "  $name: relay-bench $* ${pid_args[*]}"
    if ! timeout 600 "$BENCH" "$@" --url "$URL" "${pid_args[@]}" --json \
        >"$RESULTS/$name.json" 2>"$RESULTS/$name.txt"; then
        echo "  $name FAILED:"
        sed 's/^/    /' "$RESULTS/$name.txt"
        return 0
    fi
    sed -n 's/^\(round trip\|throughput\|proxy\|sessions \|probe\|first\)/    &/p' \
        "$RESULTS/$name.txt"
}

measure() {
    local who=$1 round=$2 tag="r$2-$1"
    echo "== round $round: $who"
    case "$who" in
    direct) start_direct ;;
    nginx) start_nginx ;;
    relay) start_relay_contender ;;
    esac
    # Warm the proxy (first-use allocations, thread pools) before reading its baseline memory.
    bench "$tag-warmup" load --sessions 20 --rate 10 --bytes 6400 --duration 1 >/dev/null
    bench "$tag-idle" idle --sessions "$IDLE_SESSIONS" --hold "$IDLE_HOLD"
    bench "$tag-paced" load --sessions 50 --rate 20 --bytes 6400 --duration "$PACED_SECS"
    # Issue 15's harsher paced setting: more, smaller messages per session (per-message costs).
    bench "$tag-paced1k" load --sessions 20 --rate 50 --bytes 1024 --duration "$PACED_SECS"
    bench "$tag-flat300" load --sessions 50 --window 16 --bytes 300 --duration "$FLAT_SECS"
    bench "$tag-flat64k" load --sessions 50 --window 4 --bytes 65536 --duration "$FLAT_SECS"
    case "$who" in
    nginx) stop_nginx ;;
    relay) stop_relay_contender ;;
    esac
}

CONTENDERS=(direct nginx relay)
for ((r = 1; r <= ROUNDS; r++)); do
    # Rotate the order every round so no contender always runs first (or last).
    for ((k = 0; k < 3; k++)); do
        measure "${CONTENDERS[$(((k + r - 1) % 3))]}" "$r"
    done
done

# ---------------------------------------------------------------------------------------------
# Optional checks on the relay alone.

if [ "$SOAK" = 1 ]; then
    echo "== soak: relay memory over session churn and message load"
    start_relay_contender
    for ((i = 1; i <= 6; i++)); do
        bench "soak-$i-churn" idle --sessions 1000 --hold 1
        bench "soak-$i-paced" load --sessions 50 --rate 20 --bytes 6400 --duration 5
    done
    stop_relay_contender
fi

if [ "$SCALE" = 1 ]; then
    command -v curl >/dev/null 2>&1 || die "--scale polls /health with curl: apt-get install -y curl"
    # The relay needs two sockets per session plus a few; the hard fd limit caps the count.
    SCALE_SESSIONS=$(((HARD - 200) / 2))
    [ "$SCALE_SESSIONS" -gt 10000 ] && SCALE_SESSIONS=10000
    echo "== scale: $SCALE_SESSIONS idle sessions through the relay, one message each, /health polled"
    start_relay_contender
    (
        while true; do
            echo "$(date +%s.%N) $(curl -s -o /dev/null -m 5 -w '%{http_code} %{time_total}' \
                "http://127.0.0.1:$RELAY_PORT/health" || echo "000 5")"
            sleep 0.5
        done
    ) >"$RESULTS/scale-health.log" 2>&1 &
    HEALTH_PID=$!
    bench scale idle --sessions "$SCALE_SESSIONS" --hold 20 --probe --threads 2 \
        --connect-concurrency 256
    kill "$HEALTH_PID" 2>/dev/null || true
    wait "$HEALTH_PID" 2>/dev/null || true
    HEALTH_PID=
    awk '{n++; if ($2 == 200) ok++; if ($3 > max) max = $3}
        END {printf "  /health: %d of %d polls answered 200, slowest %.3f s\n", ok, n, max}' \
        "$RESULTS/scale-health.log" | tee "$RESULTS/scale-health.txt"
    stop_relay_contender
fi

if [ "$SLOW" = 1 ]; then
    echo "== slow consumers: clients that stop reading while the upstream streams 6.4 KB deltas flat out"
    "$BENCH" fake --mode stream --stream-bytes 6400 >"$WORK/fake2.out" 2>&1 &
    FAKE2_PID=$!
    wait_for_line "$WORK/fake2.out" '^listening ws://' 20 || die "stream fake did not start"
    STREAM_URL=$(awk '/^listening/ {print $2; exit}' "$WORK/fake2.out")
    STREAM_PORT=${STREAM_URL#ws://127.0.0.1:}
    STREAM_PORT=${STREAM_PORT%%/*}
    start_relay_contender "$STREAM_URL"
    bench slow-relay slow --sessions "$SLOW_SESSIONS" --hold 20
    curl -s "http://127.0.0.1:$RELAY_PORT/metrics" | grep -E '^relay_' >"$RESULTS/slow-relay-metrics.txt" || true
    stop_relay_contender
    start_nginx "$STREAM_PORT"
    bench slow-nginx slow --sessions "$SLOW_SESSIONS" --hold 20
    stop_nginx
    kill "$FAKE2_PID" 2>/dev/null || true
    wait "$FAKE2_PID" 2>/dev/null || true
    FAKE2_PID=
fi

python3 bench/summarize.py "$RESULTS" | tee "$RESULTS/summary.md"
