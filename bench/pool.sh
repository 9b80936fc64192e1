#!/usr/bin/env bash
# bench/pool.sh: session setup (connect -> session.created) with the fake's handshake delayed by 300 ms:
# direct dial, relay without pool, relay with a warm pool. Loopback only, bounded.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build --release --locked --quiet -p openai-realtime-relay -p relay-bench
B=target/release
$B/relay-bench fake --handshake-delay-ms 300 > /tmp/pb-fake.out 2>&1 &
FAKE=$!
trap 'kill $FAKE ${RELAY:-} 2>/dev/null || true' EXIT
for i in $(seq 100); do grep -q listening /tmp/pb-fake.out && break; sleep 0.05; done
URL=$(awk '/listening/{print $2}' /tmp/pb-fake.out)
run() { $B/relay-bench load --url "$1" --sessions 8 --bytes 300 --rate 1 --messages 1 --duration 5 --json 2>/dev/null | tail -1 | python3 -c 'import json,sys; d=json.load(sys.stdin); print("setup p50 %.1f ms p99 %.1f ms ok=%d" % (d["setup_ms"]["p50"], d["setup_ms"]["p99"], d["sessions_ok"]))'; }
echo -n "direct:        "; run "$URL?model=gpt-realtime-mini"
for pool in 0 16; do
  PORT=$($B/relay-bench free-port)
  OPENAI_API_KEY=bench OPENAI_API_URL=$URL HOST=127.0.0.1 PORT=$PORT RUST_LOG=warn UPSTREAM_POOL_SIZE=$pool USAGE_STATE_FILE=/tmp/pb-usage.json $B/openai-realtime-relay > /tmp/pb-relay.out 2>&1 &
  RELAY=$!
  for i in $(seq 100); do (echo > /dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.05; done
  if [ $pool -gt 0 ]; then
    for i in $(seq 100); do
      warm=$(curl -s http://127.0.0.1:$PORT/metrics | awk '/^relay_upstream_pool_warm/{s+=$2} END{print s+0}')
      [ "$warm" -ge "$pool" ] && break; sleep 0.1
    done
    echo "pool warm: $warm"
  fi
  echo -n "relay pool=$pool: "; run "ws://127.0.0.1:$PORT/realtime"
  kill $RELAY; wait $RELAY 2>/dev/null || true; RELAY=
done
