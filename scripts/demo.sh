#!/usr/bin/env bash
# Builds triggerd and runs the bundled example end to end: a local dbt
# Cloud stand-in on 127.0.0.1:8765, triggerd on conf/triggerd.yaml
# (127.0.0.1:8080), and one Erathos "job finished" event posted to it.
# Prints what dbt Cloud (the stand-in) received, then stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD

scripts/deps.sh
cmake -S . -B build >/dev/null
cmake --build build -j"$(nproc)" --target triggerd

work=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

export DBT_PERSONAL_TOKEN=dbt-standin-token
export TRIGGERD_INBOUND_TOKEN=demo-inbound-token

python3 tests/integration/standin.py --port 8765 --token "$DBT_PERSONAL_TOKEN" \
	>"$work/standin.log" 2>&1 &
pids+=($!)
(cd "$work" && exec "$top/build/triggerd" -c "$top/conf/triggerd.yaml") \
	2>"$work/triggerd.log" &
pids+=($!)

python3 - "$top/conf/example-event.json" <<'PY'
import socket, sys, time, urllib.request

def listening(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False

deadline = time.time() + 10
while not (listening(8080) and listening(8765)):
    if time.time() > deadline:
        sys.exit("triggerd or the stand-in did not start; see the logs")
    time.sleep(0.1)

body = open(sys.argv[1], "rb").read()
req = urllib.request.Request(
    "http://127.0.0.1:8080/v1/events", data=body, method="POST",
    headers={"Content-Type": "application/json",
             "Authorization": "Bearer demo-inbound-token"})
with urllib.request.urlopen(req, timeout=10) as r:
    print(f"POST /v1/events -> {r.status} {r.read().decode()}")
PY

# Wait (10 s at most) for the delivery to reach the stand-in.
for _ in $(seq 100); do
	grep -q -- "->" "$work/standin.log" && break
	sleep 0.1
done
echo "--- triggerd log"
cat "$work/triggerd.log"
echo "--- dbt Cloud stand-in log"
cat "$work/standin.log"
grep -q -- "-> 200" "$work/standin.log"
