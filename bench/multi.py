#!/usr/bin/env python3
"""triggerd on PostgreSQL (SPEC section 11) against the SQLite store: one
run, figures and ratios.

  1. Durable accepts/s, 64 concurrent clients (wrk, split evenly across
     the instances): SQLite, PostgreSQL with 1 instance, with 3 instances.
  2. Dispatch: deliveries/s draining a backlog to a local sink (4 workers,
     4 in flight each): SQLite, PostgreSQL with 1 and with 3 instances.
The PostgreSQL server runs on this machine (a throw-away cluster from
tests/integration/pgcluster.py, fsync on, synchronous_commit on): the
figures include its CPU, on the same cores as triggerd and wrk.

Usage: bench/multi.py BUILD_DIR   (bench/run.sh builds; needs wrk)
Environment: BENCH_SECONDS (wrk duration, default 10), BENCH_BACKLOG
(deliveries drained, default 20000).
"""
import os
import re
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "tests", "integration"))
import run as base  # noqa: E402  (bench/run.py: wrk, sink, helpers)
import pgcluster  # noqa: E402

BUILD = base.BUILD
SECONDS = base.SECONDS
BACKLOG = int(os.environ.get("BENCH_BACKLOG", "20000"))


def config(port, sink_port, store):
    path = base.triggerd_config(port, sink_port, workers=4, inflight=4)
    with open(path) as f:
        text = f.read()
    text = re.sub(r"store: \{path: [^}]*\}", "store: " + store, text)
    # pure dispatch: no look-up of the run before the first attempt
    # after a restart (the sink is not a runs API)
    text = text.replace("    jobs: [", "    dbt: {mark: false}\n    jobs: [")
    with open(path, "w") as f:
        f.write(text)
    return path


def start(port, sink_port, store):
    env = dict(os.environ, BENCH_INBOUND="bench-token-5d0c9a7e31f4", BENCH_DBT="dbt-token")
    p = base.start([os.path.join(BUILD, "triggerd"), "-c",
                    config(port, sink_port, store), "--log-level", "error"],
                   env=env)
    base.wait_port(port)
    return p


def wrk_many(ports, conns=64, seconds=SECONDS):
    """wrk against every port at once, conns split evenly; summed req/s."""
    script = base.lua_script("accepted")
    per = conns // len(ports)
    ps = [subprocess.Popen(["wrk", "-t1", f"-c{per}", f"-d{seconds}s", "-s",
                            script, f"http://127.0.0.1:{p}/v1/events"],
                           stdout=subprocess.PIPE, text=True) for p in ports]
    total, errors = 0.0, 0
    for p in ps:
        out = p.communicate()[0]
        total += float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
        m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        errors += int(m.group(1)) if m else 0
    return total, errors


def pending(port):
    m = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
    return int(float(re.search(r"^triggerd_deliveries_pending (\S+)$", m, re.M).group(1)))


def drain(ports, timeout=600):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pending(ports[0]) == 0:
            return
        time.sleep(0.02)
    raise SystemExit("bench: deliveries did not drain")


def fill(port, n):
    """n deliveries in the store while the sink is down, then due now."""
    got = 0
    while got < n:
        total, _ = wrk_many([port], conns=64, seconds=1)
        got = pending(port)
    return got


def accepts(store_for, n):
    sink_port = base.free_port()
    ports = [base.free_port() for _ in range(n)]
    store = store_for()
    ps = [start(p, sink_port, store) for p in ports]
    rps, errors = wrk_many(ports)
    for p in ps:
        base.stop(p)
    return rps, errors


def dispatch(store_for, n, make_due):
    """Accepts a backlog with the sink down, stops, makes it due now, then
    starts n instances and the sink and times the drain."""
    sink_port = base.free_port()
    store = store_for()
    port = base.free_port()
    p = start(port, sink_port, store)
    count = fill(port, BACKLOG)
    base.stop(p)
    make_due(store)
    sink = base.start([os.path.join(BUILD, "bench_sink"), str(sink_port),
                       os.path.join(base.WORK, f"sink-{sink_port}.txt")])
    base.wait_port(sink_port)
    ports = [base.free_port() for _ in range(n)]
    t0 = time.time()
    ps = [start(q, sink_port, store) for q in ports]
    drain(ports)
    secs = time.time() - t0
    for q in ps:
        base.stop(q)
    base.stop(sink)
    return count / secs, count


def main():
    cluster = pgcluster.Cluster(fsync=True).init().start()
    seq = [0]

    def pg_store():
        seq[0] += 1
        return '{url: "%s"}' % cluster.url(cluster.createdb("b%d" % seq[0]))

    def sqlite_store():
        seq[0] += 1
        return '{path: "%s/bench-%d.db"}' % (base.WORK, seq[0])

    def pg_due(store):
        db = re.search(r"/(b\d+)\"", store).group(1)
        cluster.psql("UPDATE triggerd.deliveries SET next_at = 0"
                     " WHERE state = 'pending'", db=db)

    def sqlite_due(store):
        import sqlite3
        c = sqlite3.connect(re.search(r'path: "([^"]+)"', store).group(1))
        c.execute("UPDATE deliveries SET next_at = 0 WHERE state = 'pending'")
        c.commit()
        c.close()

    res = {}
    try:
        res["acc sqlite"] = accepts(sqlite_store, 1)
        res["acc pg1"] = accepts(pg_store, 1)
        res["acc pg3"] = accepts(pg_store, 3)
        res["disp sqlite"] = dispatch(sqlite_store, 1, sqlite_due)
        res["disp pg1"] = dispatch(pg_store, 1, pg_due)
        res["disp pg3"] = dispatch(pg_store, 3, pg_due)
    finally:
        for p in base.procs:
            if p.poll() is None:
                p.kill()
        cluster.destroy()
        if not os.environ.get("BENCH_KEEP"):
            base.shutil.rmtree(base.WORK, ignore_errors=True)

    s = res["acc sqlite"][0]
    print(f"\n== durable accepts, POST /v1/events, 64 connections, {SECONDS}s (wrk)")
    print(f"{'store':28} {'req/s':>10} {'non-2xx':>8} {'x sqlite':>9}")
    for name, key in (("SQLite, 1 instance", "acc sqlite"),
                      ("PostgreSQL, 1 instance", "acc pg1"),
                      ("PostgreSQL, 3 instances", "acc pg3")):
        r, e = res[key]
        print(f"{name:28} {r:>10.0f} {e:>8} {r / s:>9.2f}")
    s = res["disp sqlite"][0]
    print(f"\n== dispatch to a local sink, 4 workers per instance")
    print(f"{'store':28} {'deliveries/s':>13} {'backlog':>8} {'x sqlite':>9}")
    for name, key in (("SQLite, 1 instance", "disp sqlite"),
                      ("PostgreSQL, 1 instance", "disp pg1"),
                      ("PostgreSQL, 3 instances", "disp pg3")):
        r, n = res[key]
        print(f"{name:28} {r:>13.0f} {n:>8} {r / s:>9.2f}")
    print(f"\n(PostgreSQL {os.path.basename(os.path.dirname(cluster.bin))} on this "
          f"machine, fsync on, synchronous_commit on; {os.cpu_count()} CPUs shared "
          f"by the server, triggerd and wrk)")


if __name__ == "__main__":
    main()
