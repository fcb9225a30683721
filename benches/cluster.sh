#!/usr/bin/env bash
# mibot nodes on the local PostgreSQL (and Redis), `mibot bench --url` against all of them, then
# how long a pack uploaded on node 1 takes to be served by node 2.
#   NODES=2 (default) REDIS=1 (default): two nodes sharing PostgreSQL and Redis.
#   NODES=1 REDIS=0: one node on PostgreSQL alone.  NODES=1: one node with Redis.
# Needs `cargo build --release` and the model in target/mibot-model.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=target/release/mibot
SCHEMA=${SCHEMA:-bench_two}
psql -h 127.0.0.1 -U postgres test -qc "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" 2>/dev/null
export MIBOT_STORAGE__URL=postgres://postgres@127.0.0.1:5432/test MIBOT_STORAGE__SCHEMA=$SCHEMA
export MIBOT_ENCODER__MODEL_DIR=$PWD/target/mibot-model
export MIBOT_LIMITS__MESSAGES_PER_CONNECTION__PER_SECOND=0.0 MIBOT_LIMITS__MESSAGES_PER_ADDRESS__PER_SECOND=0.0 MIBOT_LIMITS__MESSAGES_PER_STORE__PER_SECOND=0.0 MIBOT_LIMITS__REQUESTS_PER_ADDRESS__PER_SECOND=0.0
export MIBOT_SERVER__MAX_CONNECTIONS=1000000 MIBOT_SERVER__MAX_CONNECTIONS_PER_ADDRESS=1000000
NODES=${NODES:-2}
pids=()
for i in $(seq 1 $NODES); do
  port=$((18080+i))
  if [ "${REDIS:-1}" = 1 ]; then
    MIBOT_CLUSTER__REDIS_URL=redis://127.0.0.1:6379 MIBOT_CLUSTER__PREFIX=$SCHEMA MIBOT_CLUSTER__NODE_ID=n$i RUST_LOG=warn \
      $BIN serve --listen 127.0.0.1:$port --data-dir /tmp/$SCHEMA-n$i > /tmp/$SCHEMA-n$i.log 2>&1 &
  else
    RUST_LOG=warn $BIN serve --listen 127.0.0.1:$port --data-dir /tmp/$SCHEMA-n$i > /tmp/$SCHEMA-n$i.log 2>&1 &
  fi
  pids+=($!)
  # Start them one after the other: the first creates the schema and imports the demo pack.
  for _ in $(seq 120); do curl -sf http://127.0.0.1:$port/readyz >/dev/null 2>&1 && break; sleep 0.5; done
done
urls=$(for i in $(seq 1 $NODES); do printf "ws://127.0.0.1:%d/ws/chat?store=demo," $((18080+i)); done); urls=${urls%,}
$BIN bench --url "$urls" --connections ${CONNECTIONS:-20} --seconds ${SECONDS_:-10} ${EXTRA:-} > /tmp/$SCHEMA-bench.json
cat /tmp/$SCHEMA-bench.json | python3 -c 'import json,sys; d=json.load(sys.stdin)["mibot"]; print({k:d[k] for k in d if k in ("messages_per_second","p50_us","p99_us","errors","replies")})'
if [ "$NODES" -ge 2 ] && [ "${REDIS:-1}" = 1 ]; then
  KEY=$($BIN store key rotate demo 2>/dev/null | grep -o 'mk_[A-Za-z0-9_]*' | head -1)
  python3 - "$KEY" <<'PY'
import json, sys, time, urllib.request
key = sys.argv[1]
def call(port, path, data=None, method="GET"):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1/stores/demo{path}", data=data, method=method,
                                 headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(req))
times = []
for n in range(10):
    pack = json.dumps({"faq": [{"id": f"gift-{n}", "question": f"礼品包装{n}可以吗？", "answer": "可以。"}]}).encode()
    started = time.monotonic()
    v = call(18081, "/packs?format=json", pack, "POST")["version"]["version"]
    up = time.monotonic()
    while True:
        if call(18082, "/packs")["active_version"] == v:
            break
        time.sleep(0.002)
    times.append((time.monotonic() - up) * 1000)
times.sort()
print(f"pack on node 1 served by node 2 after the upload returned: median {times[len(times)//2]:.0f} ms, max {times[-1]:.0f} ms over {len(times)} uploads")
PY
fi
kill "${pids[@]}"; wait 2>/dev/null || true
