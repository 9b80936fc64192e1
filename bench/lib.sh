# Shared helpers for the scripts in bench/. Source it; it defines functions only.
# Everything here talks to 127.0.0.1 and every wait is bounded.

die() {
    echo "bench: $*" >&2
    exit 1
}

# wait_for_line FILE REGEX SECONDS: waits until FILE has a line matching REGEX.
wait_for_line() {
    local file=$1 regex=$2 secs=$3 i
    for ((i = 0; i < secs * 10; i++)); do
        if [ -f "$file" ] && grep -qE "$regex" "$file"; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}

# http_status PORT PATH: the HTTP status of GET http://127.0.0.1:PORT/PATH (000 if no answer).
http_status() {
    local port=$1 path=$2
    if command -v curl >/dev/null 2>&1; then
        curl -s -o /dev/null -m 5 -w '%{http_code}' "http://127.0.0.1:$port$path" || true
    else
        # bash's /dev/tcp: no curl needed.
        local line
        line=$(timeout 5 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port \
            && printf 'GET $path HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3 && head -n1 <&3" \
            2>/dev/null || true)
        line=${line#HTTP/1.? }
        echo "${line:0:3}" | grep -E '^[0-9]{3}$' || echo 000
    fi
}

# wait_health PORT SECONDS: waits until the relay's /health answers 200.
wait_health() {
    local port=$1 secs=$2 i
    for ((i = 0; i < secs * 10; i++)); do
        [ "$(http_status "$port" /health)" = 200 ] && return 0
        sleep 0.1
    done
    return 1
}

# start_fake BENCH_BIN OUTFILE [ARGS..]: starts `relay-bench fake` in the background, sets
# FAKE_PID and FAKE_URL.
start_fake() {
    local bench=$1 out=$2
    shift 2
    "$bench" fake "$@" >"$out" 2>"$out.err" &
    FAKE_PID=$!
    wait_for_line "$out" '^listening ws://' 20 || die "the fake upstream did not start: $(cat "$out.err")"
    FAKE_URL=$(awk '/^listening/ {print $2; exit}' "$out")
}

# start_relay RELAY_BIN LOG UPSTREAM_URL [VAR=VALUE..]: starts the relay on a free port, sets
# RELAY_PID and RELAY_PORT.
start_relay() {
    local relay=$1 log=$2 upstream=$3
    shift 3
    RELAY_PORT=$("$BENCH" free-port)
    # Its own usage state file beside the log: a relay running from the repository (a `--demo`,
    # say) holds the default one's lock.
    env OPENAI_API_URL="$upstream" OPENAI_API_KEY=bench HOST=127.0.0.1 PORT="$RELAY_PORT" \
        USAGE_STATE_FILE="$log.usage.json" \
        RUST_LOG="${RELAY_LOG_LEVEL:-warn}" "$@" "$relay" >"$log" 2>&1 &
    RELAY_PID=$!
    wait_health "$RELAY_PORT" 20 || die "the relay did not answer /health: $(tail -5 "$log")"
}

# stop_on_exit: on exit (and on Ctrl-C), stops the relay and the fake upstream this script started
# ($RELAY_PID, $FAKE_PID as they are then) and removes $WORK.
stop_on_exit() {
    trap _stop_and_clean EXIT
    trap 'exit 130' INT TERM
}
_stop_and_clean() {
    local pid
    for pid in ${RELAY_PID:-} ${FAKE_PID:-}; do
        kill "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    [ -z "${WORK:-}" ] || rm -rf "$WORK"
}
