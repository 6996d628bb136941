#!/usr/bin/env python3
"""Several triggerd instances on one PostgreSQL database (SPEC section 11).

Real binaries, a real PostgreSQL server (pgcluster.py: a throw-away
cluster on a loopback port, removed afterwards), a round-robin sender that
behaves like a load balancer (a request refused by a dead instance goes to
the next one), the stand-in as the remote API. Checks:
  - two instances accepting the same dedup key at the same moment: exactly
    one 202, the other answered duplicate; one delivery; the admin API of
    any instance lists every delivery of the cluster;
  - kill -9 of one instance under load (once; 10 times with
    TRIGGERD_LONG=1): every 202 delivered, duplicates only for deliveries
    in flight at a kill, the dead instance's deliveries resumed by the
    others within dispatch.timeout + 10 s;
  - a rolling restart of all three under load: no failed request, no
    duplicate, everything delivered;
  - the PostgreSQL server stopped under load and started again: 503 with
    Retry-After and /readyz 503 while it is down, nothing accepted lost,
    the instances reconnect by themselves.
Skipped when the PostgreSQL server binaries are not installed.
"""

import json
import os
import threading
import time
import unittest

from harness import (DEFAULT_ENV, DaemonTest, INBOUND_TOKEN, SLOW,
                     SQLITE_STORE, DBT_TOKEN, dbt_trigger, event, http_request, keys_of,
                     make_config, wait_until)
import pgcluster

LONG = bool(os.environ.get("TRIGGERD_LONG"))
ADMIN = "adm-5b1f0c3e-token"
TIMEOUT_S = 2  # dispatch.timeout: the lease is 7 s


JOBS = ["00000000-0000-4000-8000-0000000000%02d" % i for i in range(3)]


class Sender:
    """Posts events round robin to the instances from several threads, the
    way a load balancer would: a connection error moves the event to the
    next instance. Every answer is recorded; 202s with their deliveries."""

    def __init__(self, daemons, threads=6, backlog=None, st=None):
        self.daemons = daemons
        self.lock = threading.Lock()
        self.accepted = []  # (monotonic time of the 202, [delivery ids])
        self.failed = []    # (status or exception, instance index)
        self.refused = 0
        self.dups = []
        self.r503 = []  # (instance, Retry-After) of every 503 answered
        self.next = 0
        self.stop_flag = threading.Event()
        self.backlog = backlog
        self.st = st
        self.threads = [threading.Thread(target=self.loop, daemon=True)
                        for _ in range(threads)]

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def stop(self):
        self.stop_flag.set()
        for t in self.threads:
            t.join(30)

    def delivered_ids(self):
        return {i for _, ids in self.accepted for i in ids}

    def post(self, ev):
        """Like a load balancer: a refused connection or a 503 (nothing
        was stored) goes to the next instance. The last answer, or None."""
        last = None
        for _ in range(len(self.daemons) * 10):
            with self.lock:
                i = self.next % len(self.daemons)
                self.next += 1
            d = self.daemons[i]
            try:
                r = http_request(d.port, "POST", "/v1/events", ev,
                                 [("Authorization", "Bearer " + INBOUND_TOKEN),
                                  ("Content-Type", "application/json")],
                                 timeout=10)
            except OSError:
                with self.lock:
                    self.refused += 1
                if self.stop_flag.wait(0.01):
                    return last
                continue
            last = i, r
            if r.status != 503:
                return last
            with self.lock:
                self.r503.append((i, r.header("Retry-After")))
            if self.stop_flag.wait(0.01):
                return last
        return last

    def loop(self):
        n = 0
        while not self.stop_flag.is_set() and n < 100000:
            n += 1
            if self.backlog and self.st is not None:
                # keep the backlog bounded: wait (bounded) for deliveries
                wait_until(lambda: len(self.accepted) - self.st.count()
                           < self.backlog or self.stop_flag.is_set(),
                           60 * SLOW, "the backlog to shrink")
            ev = event(job=JOBS[n % len(JOBS)])
            got = self.post(ev)
            if got is None:
                continue
            i, r = got
            with self.lock:
                if r.status == 202:
                    self.accepted.append(
                        (time.monotonic(),
                         [d["id"] for d in r.json["deliveries"]]))
                elif r.status == 200 and r.json.get("duplicate", True):
                    # accepted by an instance that died before answering
                    self.dups.append(ev["execution_id"])
                else:
                    self.failed.append((r.status, i, r.header("Retry-After")))


class MultiTest(DaemonTest):
    def setUp(self):
        self.cluster = pgcluster.shared()
        self.db = self.cluster.createdb()
        self.url = self.cluster.url(self.db)
        self.st = self.start_standin(token=DBT_TOKEN)
        self.st.delay = 0.02

    def config(self, dispatch=None):
        cfg = make_config([dbt_trigger("job%d" % i, self.st, 100 + i,
                                       jobs=[JOBS[i]]) for i in range(3)],
                          server={"admin_tokens": [ADMIN]},
                          dispatch=dict({"workers": 4, "timeout": "%ds" % TIMEOUT_S,
                                         "max_in_flight_per_trigger": 4},
                                        **(dispatch or {})),
                          retry={"max_attempts": 100, "max_backoff": "500ms"})
        return cfg.replace(SQLITE_STORE, json.dumps({"url": self.url}))

    def instances(self, n=3):
        cfg = self.config()
        ds = [self.new_daemon(cfg, env=DEFAULT_ENV, token=INBOUND_TOKEN)
              for _ in range(n)]
        # start at once: the migration must be safe under a race
        for d in ds:
            d.start(wait=False)
        for d in ds:
            d.wait_healthy(30 * SLOW)
        return ds

    def assert_all_delivered(self, sender, timeout):
        want = sender.delivered_ids()
        wait_until(lambda: want <= set(keys_of(self.st.requests())),
                   timeout * SLOW,
                   "every accepted delivery (%d) to arrive" % len(want))

    def duplicates(self):
        seen, dup, first = set(), set(), {}
        for r in self.st.posts_to_run_requests():
            k = r.header("Idempotency-Key")
            if k in seen:
                dup.add(k)
            else:
                seen.add(k)
                first[k] = r
        return dup, first

    # ---- dedup and the admin API across instances ----

    def test_same_key_at_two_instances_at_once(self):
        a, b, c = self.instances(3)
        answers = []
        lock = threading.Lock()
        for n in range(20):
            ev = event(job=JOBS[0])
            gate = threading.Barrier(2)

            def post(d, ev=ev, gate=gate):
                gate.wait(10)
                r = d.post_event(ev)
                with lock:
                    answers.append((ev["execution_id"], r.status, r.json))
            ts = [threading.Thread(target=post, args=(d,)) for d in (a, b)]
            for t in ts:
                t.start()
            for t in ts:
                t.join(30)
        by_event = {}
        for ex, status, body in answers:
            by_event.setdefault(ex, []).append((status, body))
        ids = set()
        for ex, got in by_event.items():
            self.assertEqual(sorted(s for s, _ in got), [200, 202], got)
            acc = [b for s, b in got if s == 202][0]
            dup = [b for s, b in got if s == 200][0]
            self.assertEqual(dup["event"], acc["event"])
            ids |= {d["id"] for d in acc["deliveries"]}
        wait_until(lambda: ids <= set(keys_of(self.st.requests())),
                   20 * SLOW, "every delivery")
        self.assertEqual(len(self.st.posts_to_run_requests()), len(ids))
        # any instance answers for the cluster
        wait_until(lambda: self.pending(c) == 0, 20 * SLOW, "pending 0")
        r = http_request(c.port, "GET", "/v1/deliveries?limit=1000",
                         headers={"Authorization": "Bearer " + ADMIN})
        listed = {d["id"] for d in r.json["deliveries"]}
        self.assertEqual(listed, ids)
        one = sorted(ids)[0]
        r = http_request(a.port, "GET", "/v1/deliveries/" + one,
                         headers={"Authorization": "Bearer " + ADMIN})
        self.assertEqual(r.json["state"], "delivered")
        self.assertEqual(len(r.json["history"]), 1)

    def pending(self, d):
        text = http_request(d.port, "GET", "/metrics").body.decode()
        for ln in text.splitlines():
            if ln.startswith("triggerd_deliveries_pending"):
                return float(ln.split()[-1])
        return -1

    # ---- kill -9 under load ----

    def test_kill_one_instance_under_load(self):
        ds = self.instances(3)
        sender = Sender(ds, threads=6, backlog=200, st=self.st).start()
        kills = []
        try:
            for k in range(10 if LONG else 1):
                n0 = len(sender.accepted)
                wait_until(lambda: len(sender.accepted) >= n0 + 150,
                           60 * SLOW, "load before kill %d" % k)
                victim = ds[k % 3]
                t_kill = time.monotonic()
                victim.kill()
                # reaped: it sends nothing more, but what it wrote just
                # before may still wait in the stand-in's socket buffers
                kills.append((t_kill, time.monotonic() + 0.5))
                # the others hold the load meanwhile
                n1 = len(sender.accepted)
                wait_until(lambda: len(sender.accepted) >= n1 + 100,
                           60 * SLOW, "load after kill %d" % k)
                # what was accepted before the kill is delivered within
                # dispatch.timeout + 10 s (the lease is timeout + 5 s)
                before = {i for t, ids in sender.accepted if t < t_kill
                          for i in ids}
                wait_until(lambda: before <= set(keys_of(self.st.requests())),
                           (TIMEOUT_S + 10) * SLOW,
                           "deliveries accepted before kill %d" % k)
                victim.start()
        finally:
            sender.stop()
        self.assertEqual(sender.failed, [])
        self.assert_all_delivered(sender, TIMEOUT_S + 20)
        dup, first = self.duplicates()
        # a duplicate is a delivery that was on the wire (or its outcome
        # not yet committed) when an instance died
        for key in dup:
            f = first[key]
            # or its first attempt timed out (a loaded machine): a retry
            timed_out = f.t_answer is None or f.t_answer - f.t >= TIMEOUT_S - 0.2
            self.assertTrue(
                timed_out or any(t0 - TIMEOUT_S - 3 <= f.t <= t1
                                 for t0, t1 in kills),
                "delivery %s sent twice but not in flight at a kill" % key)
        sys_note("kill test: %d accepted, %d kills, %d duplicates, "
                 "%d refused connections" % (len(sender.accepted), len(kills),
                                             len(dup), sender.refused))

    # ---- rolling restart ----

    def test_rolling_restart_without_failed_requests(self):
        ds = self.instances(3)
        sender = Sender(ds, threads=6, backlog=200, st=self.st).start()
        try:
            for d in ds:
                n0 = len(sender.accepted)
                wait_until(lambda: len(sender.accepted) >= n0 + 100,
                           60 * SLOW, "load")
                self.assertEqual(d.terminate(), 0)
                d.start()
            n0 = len(sender.accepted)
            wait_until(lambda: len(sender.accepted) >= n0 + 100, 60 * SLOW,
                       "load after the restarts")
        finally:
            sender.stop()
        self.assertEqual(sender.failed, [])
        self.assert_all_delivered(sender, TIMEOUT_S + 20)
        dup, _ = self.duplicates()
        self.assertEqual(dup, set())


def sys_note(msg):
    import sys
    sys.stderr.write(msg + "\n")


class OutageTest(MultiTest):
    """The database server stopped under load, then started again. A
    cluster of its own: stopping the shared one would hurt other tests."""

    def setUp(self):
        self.cluster = pgcluster.Cluster().init().start()
        self.addCleanup(self.cluster.destroy)
        self.db = self.cluster.createdb()
        self.url = self.cluster.url(self.db)
        self.st = self.start_standin(token=DBT_TOKEN)
        self.st.delay = 0.02

    test_same_key_at_two_instances_at_once = None
    test_kill_one_instance_under_load = None
    test_rolling_restart_without_failed_requests = None

    def test_database_stopped_and_started_under_load(self):
        ds = self.instances(2)
        sender = Sender(ds, threads=4, backlog=200, st=self.st).start()
        try:
            wait_until(lambda: len(sender.accepted) >= 100, 60 * SLOW, "load")
            self.cluster.stop()
            n_down = len(sender.accepted)
            wait_until(lambda: len(sender.r503) >= 20, 30 * SLOW,
                       "503s while the database is down")
            for d in ds:
                self.assertEqual(
                    http_request(d.port, "GET", "/readyz").status, 503)
            self.cluster.start()
            wait_until(lambda: len(sender.accepted) >= n_down + 100,
                       60 * SLOW, "202s again without a restart")
            for d in ds:
                wait_until(lambda d=d: http_request(d.port, "GET", "/readyz")
                           .status == 200, 30 * SLOW, "/readyz 200")
        finally:
            sender.stop()
        self.assertTrue(all(s == 503 and ra for s, _, ra in sender.failed),
                        sender.failed[:5])
        self.assertTrue(all(ra for _, ra in sender.r503))
        self.assert_all_delivered(sender, TIMEOUT_S + 20)
        for d in ds:
            self.assertTrue(d.running())


if __name__ == "__main__":
    if not pgcluster.available():
        print("skipped: no PostgreSQL server binaries")
        raise SystemExit(0)
    unittest.main()
