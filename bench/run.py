#!/usr/bin/env python3
"""triggerd benchmark: one run, side by side, a table of ratios.

Measures on this machine, in one run (see the project README for the
targets). Every throughput figure is taken BENCH_ROUNDS times (default 3),
the systems alternating within each round (triggerd, its peers, triggerd
again in the next round, ...), and quoted as the median with the min-max
band; ratios are of medians, so both sides of a ratio saw the same
machine. Each system runs alone: triggerd is stopped before a peer starts.
  1. POST /v1/events at 64 concurrent clients (wrk): triggerd durable
     accepts, unmatched and duplicate events; adnanh/webhook (Debian's
     `webhook`) with a hook that matches and runs /bin/true, and one whose
     rule does not match; a bare libmicrohttpd+jansson server (ceiling).
  2. Dispatch: deliveries per second from triggerd's store to a local sink,
     against a raw libcurl loop sending the same requests (ceiling).
  3. Event-to-request latency: 202 received -> sink received, p50/p99.
  4. Resident memory: idle, under load, after EVENTS_TOTAL events.
  5. Config load time and per-event match cost, 10,000 triggers.

Usage: bench/run.py BUILD_DIR   (bench/run.sh builds and calls this)
Environment: BENCH_SECONDS (wrk duration, default 10), BENCH_ROUNDS
(default 3), EVENTS_TOTAL (events for the memory-growth check, default
1000000).
"""
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

BUILD = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "build-rel")
SECONDS = int(os.environ.get("BENCH_SECONDS", "10"))
ROUNDS = max(1, int(os.environ.get("BENCH_ROUNDS", "3")))
EVENTS_TOTAL = int(os.environ.get("EVENTS_TOTAL", "1000000"))
JOB = "0b9d5c55-6c2e-4d0a-9b6f-3f8e2a1c7d10"
JOB_FAN = "1c8e6d66-7d3f-4e1b-8c7a-4a9f3b2d8e21"
JOB_FAN2 = "2d9f7e77-8e4a-4f2c-9d8b-5b0a4c3e9f32"
JOB_CO = "3e0a8f88-9f5b-4a3d-8e9c-6c1b5d4f0a43"
MODE_JOB = {"fanin": JOB_FAN, "coalesce": JOB_CO}
WORK = tempfile.mkdtemp(prefix="triggerd-bench-")
procs = []


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"bench: nothing listens on {port}")


def start(argv, **kw):
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL,
                         stderr=open(os.path.join(WORK, os.path.basename(argv[0]) + ".log"), "ab"),
                         **kw)
    procs.append(p)
    return p


def stop(p):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def rss_kib(pid, field="VmRSS"):
    """Resident memory in KiB: VmRSS (all), or RssAnon (the process's own
    memory, without the pages of shared libraries)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer bench-token-5d0c9a7e31f4"
local mode = "%s"
local n = 0
local seed = math.random(1, 1000000000)
request = function()
  n = n + 1
  local exec = (mode == "duplicate") and "dup" or (seed .. "-" .. n)
  local status = (mode == "unmatched") and "FAILED" or "FINISHED"
  -- fan-in events alternate between the trigger's two jobs (each pair
  -- completes a round); every other mode sends the one job given
  local job = (mode == "fanin" and n %% 2 == 0) and "%s" or "%s"
  local body = '{"job_id":"' .. job .. '","connection_id":"5f1e7a2b-93c4-4e1d-8a6f-2b7c9d0e1f23","schema_name":"raw_shop","table_name":"orders","execution_id":"' .. exec .. '","status":"' .. status .. '","rows":"12345","triggered_by":"Erathos Schedule","finished_at_date":"2026-11-27","finished_at_time":"06:42"}'
  return wrk.format(nil, nil, nil, body)
end
"""


def lua_script(mode):
    script = os.path.join(WORK, f"{mode}.lua")
    with open(script, "w") as f:
        f.write(LUA % (mode, JOB_FAN2, MODE_JOB.get(mode, JOB)))
    return script


def wrk(url, mode, seconds=SECONDS, conns=64, during=None):
    script = lua_script(mode)
    t = None
    if during:
        t = threading.Thread(target=during)
        t.start()
    out = subprocess.run(["wrk", f"-t{min(2, conns)}", f"-c{conns}", f"-d{seconds}s",
                          "--latency", "-s", script, url],
                         capture_output=True, text=True, check=True).stdout
    if t:
        t.join()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    lat = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", out, re.M))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "p50": lat.get("50"), "p99": lat.get("99"),
            "errors": int(non2xx.group(1)) if non2xx else 0}


def triggerd_config(port, sink_port, workers=4, inflight=1):
    path = os.path.join(WORK, f"triggerd-{port}.yaml")
    with open(path, "w") as f:
        f.write(f"""
server:
  listen: "127.0.0.1:{port}"
  auth: {{tokens: ["${{{{secrets.inbound}}}}"]}}
store: {{path: "{WORK}/store-{port}.db"}}
dispatch: {{workers: {workers}, max_in_flight_per_trigger: {inflight}}}
secrets:
  inbound: {{env: BENCH_INBOUND}}
  dbt: {{env: BENCH_DBT}}
triggers:
  - name: dbt-bench
    method: POST
    url: "http://127.0.0.1:{sink_port}/api/v2/accounts/1/jobs/42/run/"
    header: {{Accept: application/json, Authorization: "Bearer ${{{{secrets.dbt}}}}"}}
    body: {{cause: "finished job on Erathos platform triggered by ${{{{erathos.triggered_by}}}}"}}
    rules: [{{variable_name: STATUS, operation: EQUAL, value: FINISHED}}]
    # the sink is not dbt Cloud: no marker, so a restart needs no runs
    # look-up (the raw libcurl loop it is compared with sends none either)
    dbt: {{mark: false}}
    jobs: ["{JOB}"]
  # SPEC section 9: a fan-in over two jobs, and a 1s coalescing window
  - name: fan-in-bench
    method: POST
    url: "http://127.0.0.1:{sink_port}/api/v2/accounts/1/jobs/43/run/"
    body: {{cause: "${{{{batch.count}}}} jobs: ${{{{batch.job_id}}}}"}}
    dbt: {{mark: false}}
    jobs: ["{JOB_FAN}", "{JOB_FAN2}"]
    wait_for: all
  - name: coalesce-bench
    method: POST
    url: "http://127.0.0.1:{sink_port}/api/v2/accounts/1/jobs/44/run/"
    body: {{cause: "${{{{batch.count}}}} tables"}}
    dbt: {{mark: false}}
    jobs: ["{JOB_CO}"]
    coalesce: 1s
""")
    return path


def start_triggerd(port, sink_port, **kw):
    env = dict(os.environ, BENCH_INBOUND="bench-token-5d0c9a7e31f4", BENCH_DBT="dbt-token")
    p = start([os.path.join(BUILD, "triggerd"), "-c",
               triggerd_config(port, sink_port, **kw), "--log-level", "error"],
              env=env)
    wait_port(port)
    return p


def webhook_hooks(match, wait=False):
    """A hook that runs /bin/true when status and job_id match. By default
    webhook answers at once and runs the command in the background; with
    wait (include-command-output-in-response) it answers after the command
    has run, which is closer to triggerd's promise."""
    path = os.path.join(WORK, f"hooks-{match}-{wait}.json")
    value = "FINISHED" if match else "NEVER"
    hooks = [{"id": "erathos", "execute-command": "/bin/true",
              "include-command-output-in-response": wait,
              "trigger-rule": {"and": [
                  {"match": {"type": "value", "value": value,
                             "parameter": {"source": "payload", "name": "status"}}},
                  {"match": {"type": "value", "value": JOB,
                             "parameter": {"source": "payload", "name": "job_id"}}}]}}]
    with open(path, "w") as f:
        json.dump(hooks, f)
    return path


def accept_triggerd(rows, mem):
    """triggerd's three kinds of answer, one store, dispatching meanwhile
    into a local sink (as in production)."""
    sink_port = free_port()
    sink = start([os.path.join(BUILD, "bench_sink"), str(sink_port),
                  os.path.join(WORK, "sink-accepts.txt")])
    wait_port(sink_port)
    port = free_port()
    td = start_triggerd(port, sink_port)
    if "idle" not in mem:
        time.sleep(1)  # let it settle before reading idle memory
        mem["idle"] = (rss_kib(td.pid), rss_kib(td.pid, "RssAnon"))
    mem.setdefault("load", mem["idle"])

    def sample():
        end = time.time() + SECONDS - 1
        while time.time() < end:
            now = (rss_kib(td.pid), rss_kib(td.pid, "RssAnon"))
            mem["load"] = max(mem["load"], now)
            time.sleep(0.2)

    url = f"http://127.0.0.1:{port}/v1/events"
    rows.setdefault("triggerd accepted", []).append(
        wrk(url, "accepted", during=sample))
    rows.setdefault("triggerd unmatched", []).append(wrk(url, "unmatched"))
    rows.setdefault("triggerd fan-in event", []).append(wrk(url, "fanin"))
    rows.setdefault("triggerd coalesced event", []).append(wrk(url, "coalesce"))
    wrk(url, "duplicate", seconds=1, conns=1)  # seed the key
    rows.setdefault("triggerd duplicate", []).append(wrk(url, "duplicate"))
    stop(td)
    stop(sink)


def accept_ceiling(rows, mem):
    cport = free_port()
    ceiling = start([os.path.join(BUILD, "bench_ceiling"), str(cport)])
    wait_port(cport)
    rows.setdefault("ceiling (MHD+jansson)", []).append(
        wrk(f"http://127.0.0.1:{cport}/v1/events", "accepted"))
    stop(ceiling)


def accept_webhook(rows, mem):
    for name, match, wait in (("webhook matched (/bin/true)", True, False),
                              ("webhook matched, waits for it", True, True),
                              ("webhook unmatched", False, False)):
        wport = free_port()
        wh = start(["webhook", "-hooks", webhook_hooks(match, wait), "-ip", "127.0.0.1",
                    "-port", str(wport)])
        wait_port(wport)
        rows.setdefault(name, []).append(
            wrk(f"http://127.0.0.1:{wport}/hooks/erathos", "accepted"))
        stop(wh)


def bench_accepts(rows, mem):
    """ROUNDS rounds; each round runs every system once, alone, starting
    one system later than the round before."""
    systems = [accept_triggerd, accept_ceiling, accept_webhook]
    for r in range(ROUNDS):
        for k in range(len(systems)):
            systems[(r + k) % len(systems)](rows, mem)


def post(port, body, token="bench-token-5d0c9a7e31f4"):
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/events", data=body.encode(), method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.status, json.loads(r.read())


def wait_drained(port, timeout=300):
    """Polls /metrics until no delivery is pending."""
    url = f"http://127.0.0.1:{port}/metrics"
    deadline = time.time() + timeout
    while time.time() < deadline:
        m = urllib.request.urlopen(url).read().decode()
        if re.search(r"^triggerd_deliveries_pending 0$", m, re.M):
            return
        time.sleep(0.02)
    raise SystemExit("bench: deliveries did not drain")


def read_sink(path):
    got = {}
    with open(path) as f:
        for line in f:
            key, ns = line.split()
            got.setdefault(key, int(ns))
    return got


def bench_latency(results):
    # Latency: one event at a time, 202 time vs sink receive time.
    sink_port = free_port()
    sink_file = os.path.join(WORK, "sink-latency.txt")
    sink = start([os.path.join(BUILD, "bench_sink"), str(sink_port), sink_file])
    wait_port(sink_port)
    port = free_port()
    td = start_triggerd(port, sink_port)
    sent = {}
    for i in range(2000):
        body = json.dumps({"job_id": JOB, "status": "FINISHED", "execution_id": f"lat-{i}",
                           "table_name": "orders", "triggered_by": "bench"})
        status, ans = post(port, body)
        sent[ans["deliveries"][0]["id"]] = time.time_ns()
    wait_drained(port)
    stop(td)
    stop(sink)
    got = read_sink(sink_file)
    lat = sorted((got[k] - t) / 1e6 for k, t in sent.items() if k in got)
    results["latency_ms"] = (statistics.median(lat), lat[int(len(lat) * 0.99) - 1], len(lat))



def drain_triggerd():
    """Deliveries/s: events accepted while the sink is down (they wait),
    then the sink comes up and a fresh start of triggerd drains the store."""
    sink_port = free_port()
    port = free_port()
    td = start_triggerd(port, sink_port, workers=4, inflight=4)
    subprocess.run(["wrk", "-t2", "-c64", "-d3s", "-s", lua_script("accepted"),
                    f"http://127.0.0.1:{port}/v1/events"], capture_output=True, check=True)
    stop(td)
    count = int(subprocess.run(["python3", "-c", f"""
import sqlite3; c = sqlite3.connect('{WORK}/store-{port}.db')
c.execute("UPDATE deliveries SET next_at = 0 WHERE state = 'pending'")
c.commit(); print(c.execute("SELECT COUNT(*) FROM deliveries WHERE state = 'pending'").fetchone()[0])
"""], capture_output=True, text=True, check=True).stdout.strip() or 0)
    sink_file = os.path.join(WORK, "sink-dispatch.txt")
    sink = start([os.path.join(BUILD, "bench_sink"), str(sink_port), sink_file])
    wait_port(sink_port)
    t0 = time.time()
    td = start_triggerd(port, sink_port, workers=4, inflight=4)
    wait_drained(port)
    secs = time.time() - t0
    stop(td)
    stop(sink)
    return count / secs, count


def drain_raw(count):
    """The same number of requests from a raw libcurl loop, 4 threads,
    keep-alive, to the same sink (the ceiling for dispatch)."""
    sink_port = free_port()
    sink = start([os.path.join(BUILD, "bench_sink"), str(sink_port), os.path.join(WORK, "sink-raw.txt")])
    wait_port(sink_port)
    raw = subprocess.run([os.path.join(BUILD, "bench_curlloop"),
                          f"http://127.0.0.1:{sink_port}/api/v2/accounts/1/jobs/42/run/",
                          str(count), "4"], capture_output=True, text=True, check=True)
    stop(sink)
    return float(raw.stdout.strip())


def bench_dispatch(results):
    ours, raw = [], []
    for r in range(ROUNDS):
        if r % 2 == 0:
            rate, count = drain_triggerd()
            ours.append(rate)
            raw.append(drain_raw(count))
        else:
            raw.append(drain_raw(count))
            rate, count = drain_triggerd()
            ours.append(rate)
    results["dispatch"] = (ours, raw, count)


def bench_memory_growth(results):
    sink_port = free_port()
    sink = start([os.path.join(BUILD, "bench_sink"), str(sink_port), os.path.join(WORK, "sink-mem.txt")])
    wait_port(sink_port)
    port = free_port()
    td = start_triggerd(port, sink_port, workers=4, inflight=4)
    script = lua_script("accepted")
    before = rss_kib(td.pid)
    done = 0
    samples = []
    while done < EVENTS_TOTAL:
        out = subprocess.run(["wrk", "-t2", "-c64", "-d5s", "-s", script,
                              f"http://127.0.0.1:{port}/v1/events"],
                             capture_output=True, text=True, check=True).stdout
        done += int(re.search(r"(\d+) requests in", out).group(1))
        samples.append((done, rss_kib(td.pid)))
    results["memory_growth"] = (before, samples)
    stop(td)
    stop(sink)


def ms(v):
    """wrk's "812.00us" / "1.23ms" / "1.02s" in milliseconds."""
    m = re.match(r"([\d.]+)(us|ms|s)$", v or "")
    if not m:
        return float("nan")
    return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]


def band(values):
    """median, and the min-max spread as a percentage of it"""
    med = statistics.median(values)
    return med, 100.0 * (max(values) - min(values)) / med if med else 0.0


def main():
    rows = {}
    results = {}
    mem = {}
    try:
        bench_accepts(rows, mem)
        bench_dispatch(results)
        bench_latency(results)
        cb = subprocess.run([os.path.join(BUILD, "bench_config"), "10000", "200000"],
                            capture_output=True, text=True)
        results["config"] = cb.stdout + cb.stderr
        if EVENTS_TOTAL > 0:
            bench_memory_growth(results)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        shutil.rmtree(WORK, ignore_errors=True)

    med = {name: band([r["rps"] for r in runs])[0] for name, runs in rows.items()}
    ceiling = med["ceiling (MHD+jansson)"]
    webhook = med["webhook matched (/bin/true)"]
    webhook_wait = med["webhook matched, waits for it"]
    print(f"\n== POST /v1/events, 64 connections, {SECONDS}s each (wrk), "
          f"{ROUNDS} alternating rounds: medians (spread = (max-min)/median)")
    print(f"{'server':32} {'req/s':>9} {'spread':>7} {'p50 ms':>7} {'p99 ms':>7} {'max p99':>8} "
          f"{'non-2xx':>8} {'x ceil':>7} {'x wh':>6} {'x wh-wait':>9}")
    for name, runs in rows.items():
        rps, spread = band([r["rps"] for r in runs])
        p50 = statistics.median(ms(r["p50"]) for r in runs)
        p99s = [ms(r["p99"]) for r in runs]
        print(f"{name:32} {rps:>9.0f} {spread:>6.0f}% {p50:>7.2f} {statistics.median(p99s):>7.2f} "
              f"{max(p99s):>8.2f} {sum(r['errors'] for r in runs):>8} {rps / ceiling:>7.2f} "
              f"{rps / webhook:>6.2f} {rps / webhook_wait:>9.2f}")
    accepted = med["triggerd accepted"]
    print(f"fan-in event / ordinary accepted event: {med['triggerd fan-in event'] / accepted:.2f}   "
          f"coalesced event / ordinary: {med['triggerd coalesced event'] / accepted:.2f} "
          "(req/s ratios, same run; SPEC section 9 target: within 20%)")
    ours, raw, count = results["dispatch"]
    d, dspread = band(ours)
    c, cspread = band(raw)
    print(f"\n== dispatch, {count} deliveries, 4 workers, 4 in flight, {ROUNDS} alternating rounds")
    print(f"triggerd {d:.0f}/s (spread {dspread:.0f}%)   raw libcurl loop {c:.0f}/s "
          f"(spread {cspread:.0f}%)   ratio {d / c:.2f}")
    p50, p99, n = results["latency_ms"]
    print(f"\n== event-to-request latency ({n} events, one at a time)")
    print(f"p50 {p50:.2f} ms   p99 {p99:.2f} ms")
    idle, load = mem["idle"], mem["load"]
    print(f"\n== resident memory (VmRSS; in brackets RssAnon, i.e. without shared-library pages)")
    print(f"idle {idle[0] / 1024:.1f} MiB ({idle[1] / 1024:.1f})   "
          f"under load (peak) {load[0] / 1024:.1f} MiB ({load[1] / 1024:.1f})")
    if "memory_growth" in results:
        before, samples = results["memory_growth"]
        print("after N accepted events: " + ", ".join(
            f"{n // 1000}k {k / 1024:.1f} MiB" for n, k in samples[:: max(1, len(samples) // 8)] + samples[-1:]))
    print(f"\n== 10,000 triggers\n{results['config'].strip()}")


if __name__ == "__main__":
    main()
