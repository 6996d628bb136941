#!/usr/bin/env python3
"""A 202 is a promise (SPEC sections 2, 6, 7): kill -9 the daemon at several
moments, restart it on the same store, and every accepted delivery still
reaches dbt Cloud (the stand-in); duplicates only for deliveries that were
in flight at a kill. And SIGTERM: in-flight attempts finish, exit 0, the
rest resumes at the next start."""

import collections
import os
import random
import sys
import threading
import time
import unittest

from harness import (DBT_TOKEN, DEFAULT_ENV, INBOUND_TOKEN, DaemonTest, SLOW,
                     dbt_trigger, event, keys_of, make_config, wait_delivered,
                     wait_until)
from standin import Answer

# TRIGGERD_LONG=1 adds the long run: LONG_KILLS kill -9 at random moments.
LONG = os.environ.get("TRIGGERD_LONG") == "1"
LONG_KILLS = int(os.environ.get("TRIGGERD_CRASH_KILLS", "25"))

# A request answered this long before a kill may not have had its outcome
# committed yet: it counts as in flight (generous: a commit takes ms).
COMMIT_MARGIN = 1.0


class CrashTest(DaemonTest):
    def setUp(self):
        self.st = self.start_standin(token=DBT_TOKEN)
        cfg = make_config(
            [dbt_trigger("t1", self.st, 1), dbt_trigger("t2", self.st, 2)],
            dispatch={"workers": 3, "max_in_flight_per_trigger": 2,
                      "timeout": "10s"},
            retry={"max_attempts": 50, "initial_backoff": "100ms",
                   "max_backoff": "500ms"})
        self.d = self.start_daemon(cfg, env=DEFAULT_ENV, token=INBOUND_TOKEN)
        self.accepted = {}      # delivery id -> event id
        self.kill_windows = []  # (before the kill, after it + margin)
        self.kills = 0
        self.lock = threading.Lock()

    def post(self, n):
        for _ in range(n):
            r = self.d.post_event(event())
            self.assertEqual(r.status, 202, r)
            self.note(r)

    def note(self, r):
        with self.lock:
            for dl in r.json["deliveries"]:
                self.accepted[dl["id"]] = r.json["event"]

    def kill(self):
        t0 = time.monotonic()
        self.d.kill()
        self.kills += 1
        # reaped: it sends nothing more, but what it wrote just before may
        # still wait, unread, in the stand-in's sockets
        self.kill_windows.append((t0, time.monotonic() + 0.5))

    def possibly_in_flight(self):
        """Delivery ids sent before a kill whose answer came late enough
        that its outcome may not have been committed."""
        keys = set()
        for q in self.st.requests():
            for t0, t1 in self.kill_windows:
                if q.t <= t1 and (q.t_answer is None or
                                  q.t_answer > t0 - COMMIT_MARGIN * SLOW):
                    keys.add(q.header("Idempotency-Key"))
        return keys

    def test_kill_9_at_several_moments(self):
        # 1: right after a burst of 202s, while deliveries start going out.
        self.post(15)
        self.kill()
        self.d.start()

        # 2: while dbt Cloud is slow, so attempts are in flight.
        self.st.delay = 3.0
        self.post(8)
        wait_until(lambda: self.st.in_flight() >= 2, 10,
                   "two attempts in flight")
        self.kill()
        self.st.delay = 0.0
        self.d.start()

        # 3: in the middle of concurrent posting (answers cut off by the
        # kill are not counted: their events may or may not be stored).
        stop = threading.Event()

        def poster():
            while not stop.is_set():
                try:
                    r = self.d.post_event(event())
                except OSError:
                    return
                if r.status == 202:
                    self.note(r)
        threads = [threading.Thread(target=poster) for _ in range(3)]
        before = len(self.accepted)
        for t in threads:
            t.start()
        try:
            wait_until(lambda: len(self.accepted) >= before + 20, 20,
                       "20 more deliveries accepted")
            self.kill()
        finally:
            stop.set()
            for t in threads:
                t.join(10 * SLOW)
        self.d.start()

        # 4: once more while slow, with retries pending (503 then slow).
        self.st.fail(503, count=4)
        self.st.delay = 3.0
        self.post(4)
        wait_until(lambda: self.st.in_flight() >= 1, 10,
                   "an attempt in flight")
        self.kill()
        self.st.delay = 0.0
        self.st.clear_plan()
        self.d.start()

        want = set(self.accepted)
        reqs = wait_delivered(self.st, want, timeout=40)
        # A duplicate is a delivery that succeeded more than once; a 503
        # before the success is a retry, not a duplicate.
        counts = collections.Counter(
            keys_of([q for q in reqs if q.status and 200 <= q.status < 300]))
        dups = {k: c for k, c in counts.items() if c > 1}
        in_flight = self.possibly_in_flight()
        unexplained = {k: c for k, c in dups.items() if k not in in_flight}
        sys.stderr.write(
            "\ncrash test: %d kills, %d deliveries accepted, %d requests "
            "received, %d deliveries received more than once (%d possibly "
            "in flight at a kill)\n" % (self.kills, len(want), len(reqs),
                                        len(dups), len(in_flight)))
        self.assertEqual(unexplained, {},
                         "sent twice though not in flight at any kill")
        self.assertGreaterEqual(self.kills, 4)

    @unittest.skipUnless(LONG, "long run: set TRIGGERD_LONG=1")
    def test_kill_9_at_random_moments_under_load(self):
        rng = random.Random(int(os.environ.get("TRIGGERD_CRASH_SEED", "4")))
        # A slow or failing dbt Cloud now and then, so kills find attempts
        # in flight and retries pending.
        self.st.set_random_failures(0.3, rng.randrange(1 << 30), [
            Answer(delay=0.5), Answer(delay=0.2), Answer(status=503)])
        stop = threading.Event()

        def poster():
            while not stop.is_set():
                try:
                    r = self.d.post_event(event())
                except OSError:
                    stop.wait(0.02)  # killed: poll until it is back
                    continue
                if r.status == 202:
                    self.note(r)
        threads = [threading.Thread(target=poster) for _ in range(4)]
        for t in threads:
            t.start()
        try:
            for _ in range(LONG_KILLS):
                # A random moment: after a random number of 202s, or once
                # a random number of attempts are in flight.
                if rng.random() < 0.5:
                    n = len(self.accepted) + rng.randint(1, 40)
                    wait_until(lambda: len(self.accepted) >= n, 30,
                               "%d deliveries accepted" % n)
                else:
                    k = rng.randint(1, 2)
                    wait_until(lambda: self.st.in_flight() >= k, 30,
                               "%d attempts in flight" % k, interval=0.005)
                self.kill()
                self.d.start()
        finally:
            stop.set()
            for t in threads:
                t.join(10 * SLOW)
        self.st.set_random_failures(0, 0)
        want = set(self.accepted)
        reqs = wait_delivered(self.st, want, timeout=120)
        # A duplicate is a second run triggered: a second 2xx for a key
        # (503s before the 2xx are retries, not duplicates).
        counts = collections.Counter(keys_of(
            [q for q in reqs if q.status and 200 <= q.status < 300]))
        dups = {k: c for k, c in counts.items() if c > 1}
        in_flight = self.possibly_in_flight()
        unexplained = {k: c for k, c in dups.items() if k not in in_flight}
        sys.stderr.write(
            "\ncrash test (long): %d kills, %d deliveries accepted, %d "
            "requests received, %d deliveries answered 2xx more than once "
            "(%d extra 2xx; %d deliveries possibly in flight at a kill)\n"
            % (self.kills, len(want), len(reqs), len(dups),
               sum(dups.values()) - len(dups), len(in_flight)))
        self.assertEqual(unexplained, {},
                         "sent twice though not in flight at any kill")
        self.assertGreaterEqual(self.kills, 20)

    def test_sigterm_finishes_attempts_in_flight_and_exits_0(self):
        self.st.delay = 1.0
        self.post(3)  # 6 deliveries, at most 2 per trigger in flight
        wait_until(lambda: self.st.in_flight() >= 1, 10,
                   "an attempt in flight")
        t0 = time.monotonic()
        rc = self.d.terminate(timeout=20)
        took = time.monotonic() - t0
        self.assertEqual(rc, 0, self.d.log_tail())
        self.assertLess(took, 10 + 3)
        sent = self.st.requests()
        # Attempts in flight were allowed to finish (the stand-in answered
        # them after 1 s, the daemon waited for that) ...
        self.assertTrue(all(q.t_answer is not None for q in sent), sent)
        self.assertGreaterEqual(took, 0.5)
        # ... and no new one started after SIGTERM.
        self.assertTrue(all(q.t <= t0 + 0.2 for q in sent), sent)
        # The rest resumes at the next start; the finished ones are not
        # sent again.
        self.st.delay = 0.0
        self.d.start()
        reqs = wait_delivered(self.st, set(self.accepted), timeout=15)
        counts = collections.Counter(keys_of(reqs))
        self.assertEqual(set(counts.values()), {1}, counts)
        self.assertEqual(len(reqs), 6)

    def test_sigterm_when_idle_exits_0_quickly(self):
        t0 = time.monotonic()
        self.assertEqual(self.d.terminate(), 0, self.d.log_tail())
        self.assertLess(time.monotonic() - t0, 3 * SLOW)


if __name__ == "__main__":
    unittest.main()
