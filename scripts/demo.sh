#!/usr/bin/env bash
# Builds triggerd and runs the bundled example end to end: a local dbt
# Cloud stand-in on 127.0.0.1:8765 (runs queued 1 s, running 2 s, then
# success), triggerd on a copy of conf/triggerd.yaml (127.0.0.1:8080) with
# the admin API on and the trigger's run followed (dbt: {follow: true,
# poll_interval: 1s}), and one Erathos "job finished" event posted to it.
# Shows the whole story: event in -> one dbt run started -> followed to
# success -> the admin API's delivery with its "run" object. Then stops both.
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
export TRIGGERD_ADMIN_TOKEN=demo-admin-token-0123456789

# The demo's config: conf/triggerd.yaml with the admin API on and the dbt
# run followed.
python3 - "$top/conf/triggerd.yaml" "$work/triggerd.yaml" <<'PY'
import sys
text = open(sys.argv[1]).read()
for a, b in (('  # admin_tokens: ["${{secrets.admin_token}}"]',
              '  admin_tokens: ["${{secrets.admin_token}}"]'),
             ("  # admin_token: {env: TRIGGERD_ADMIN_TOKEN}",
              "  admin_token: {env: TRIGGERD_ADMIN_TOKEN}")):
    assert a in text, a
    text = text.replace(a, b)
text = text.rstrip("\n") + "\n    dbt: {follow: true, poll_interval: 1s}\n"
open(sys.argv[2], "w").write(text)
PY
"$top/build/triggerd" -c "$work/triggerd.yaml" --check

python3 tests/integration/standin.py --port 8765 --token "$DBT_PERSONAL_TOKEN" \
	--queued-s 1 --running-s 2 --final 10 >"$work/standin.log" 2>&1 &
pids+=($!)
(cd "$work" && exec "$top/build/triggerd" -c "$work/triggerd.yaml") \
	2>"$work/triggerd.log" &
pids+=($!)

python3 - "$top/conf/example-event.json" <<'PY'
import json, os, socket, sys, time, urllib.request

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
    answer = json.loads(r.read())
    print(f"1. event in: POST /v1/events -> {r.status} {json.dumps(answer)}")
did = answer["deliveries"][0]["id"]


def delivery():
    req = urllib.request.Request(
        "http://127.0.0.1:8080/v1/deliveries/" + did,
        headers={"Authorization": "Bearer " +
                 os.environ["TRIGGERD_ADMIN_TOKEN"]})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


# Follow the delivery through the admin API (30 s at most).
seen = None
deadline = time.time() + 30
while True:
    j = delivery()
    run = j.get("run")
    now = (j["state"], run and run["status"])
    if now != seen:
        seen = now
        if run:
            print(f"2. delivery {did}: {j['state']}, dbt run {run['id']} "
                  f"{run['status']}")
        else:
            print(f"2. delivery {did}: {j['state']}, no run yet")
    if run and run["status"] in ("success", "error", "cancelled",
                                 "timeout", "lost", "unknown"):
        break
    if time.time() > deadline:
        sys.exit("the run was not followed to its end in 30 s")
    time.sleep(0.2)
print(f"3. GET /v1/deliveries/{did} ->")
print(json.dumps(j, indent=2))
if run["status"] != "success":
    sys.exit(f"the run ended {run['status']}, not success")
PY

echo "--- triggerd log"
cat "$work/triggerd.log"
echo "--- dbt Cloud stand-in log"
cat "$work/standin.log"
# Exactly one run was started.
test "$(grep -c -- "POST /api/v2/accounts/.*/jobs/.*/run/" "$work/standin.log")" = 1
