#!/usr/bin/env python3
"""Chaos upstream (issue 4): dbt Cloud (the stand-in) fails about 30% of
requests at random, seeded: 500, 502, 503, 429 with and without
Retry-After, closed and reset connections, and stalls past
dispatch.timeout. Every accepted delivery must still end `delivered`
(metrics and admin API agree), reach the stand-in with a 2xx exactly once,
and the daemon's attempt history must match what the stand-in did, attempt
for attempt (a stall is recorded as a timeout, not as the late answer).

Short by default (60 events, 1 s timeout, 2 s stalls); TRIGGERD_LONG=1
runs 500 events with a 3 s timeout and 5 s stalls. The attempt count and
the total time are printed on stderr (for the closing note)."""

import collections
import os
import sys
import time
import unittest

from harness import (DBT_TOKEN, DEFAULT_ENV, INBOUND_TOKEN, DaemonTest,
                     dbt_trigger, event, job_uuid, make_config, wait_until)
from opshelp import Metrics
from standin import Answer

LONG = os.environ.get("TRIGGERD_LONG") == "1"
SEED = int(os.environ.get("TRIGGERD_CHAOS_SEED", "20261128"))
FAIL_P = 0.30
N = 500 if LONG else 60
TIMEOUT_S = 3 if LONG else 1
STALL_S = 5 if LONG else 2
TRIGGERS = 3
ADMIN_TOKEN = "chaos-admin-2b7d91e4"


def chaos_answers():
    """The failures drawn at random: every retryable kind the issue names.
    A stall ends in a 504, which the daemon must never see (its timeout
    passed long before)."""
    return [Answer(status=500), Answer(status=502), Answer(status=503),
            Answer(status=429), Answer(status=429, retry_after=1),
            Answer(action="close"), Answer(action="reset"),
            Answer(status=504, delay=STALL_S)]


def is_2xx(q):
    return q.status is not None and 200 <= q.status < 300


def is_stall(q):
    return q.answer is not None and q.answer.delay > 0


def kind(q):
    """What the stand-in did to q, for the report."""
    if is_stall(q):
        return "stall"
    if q.status == 429 and q.answer is not None and q.answer.retry_after:
        return "429+Retry-After"
    return str(q.status or q.action)


class ChaosTest(DaemonTest):
    def setUp(self):
        self.st = self.start_standin(token=DBT_TOKEN)
        triggers = [dbt_trigger("chaos%d" % i, self.st, i,
                                jobs=[job_uuid(i)])
                    for i in range(1, TRIGGERS + 1)]
        cfg = make_config(
            triggers,
            server={"admin_tokens": ["${{secrets.admin_token}}"]},
            dispatch={"workers": 4, "timeout": "%ds" % TIMEOUT_S,
                      "connect_timeout": "1s",
                      "max_in_flight_per_trigger": 2},
            retry={"max_attempts": 30, "initial_backoff": "100ms",
                   "max_backoff": "500ms", "rate_limited_backoff": "1s",
                   "max_age": "1h"},
            secrets={"admin_token": {"env": "CHAOS_ADMIN_TOKEN"}})
        env = dict(DEFAULT_ENV, CHAOS_ADMIN_TOKEN=ADMIN_TOKEN)
        self.d = self.start_daemon(cfg, env=env, token=INBOUND_TOKEN,
                                   log_level="info")

    def admin(self, path):
        r = self.d.request("GET", path, headers=[
            ("Authorization", "Bearer " + ADMIN_TOKEN)])
        self.assertEqual(r.status, 200, "GET %s: %r" % (path, r))
        return r.json

    def metrics(self):
        r = self.d.request("GET", "/metrics")
        self.assertEqual(r.status, 200, r)
        return Metrics(r.body.decode("utf-8"))

    def test_every_delivery_ends_delivered_exactly_once(self):
        # One failure of each kind first (so a change in the number of
        # requests cannot leave a kind out of the seeded draw), then ~30%.
        self.st.script(*chaos_answers())
        self.st.set_random_failures(FAIL_P, SEED, chaos_answers())
        t0 = time.monotonic()
        accepted = set()
        for i in range(N):
            r = self.d.accept(event(job=job_uuid(1 + i % TRIGGERS)))
            self.assertEqual(len(r["deliveries"]), 1, r)
            accepted.add(r["deliveries"][0]["id"])
        t_posted = time.monotonic() - t0

        def done():
            m = self.metrics()
            return (m.value("triggerd_deliveries_pending") == 0 and
                    m.sum("triggerd_deliveries_total",
                          outcome="delivered") == N) and m

        def progress():
            m = self.metrics()
            return ("all %d deliveries delivered; pending=%s delivered=%s "
                    "failed=%s, %d requests at the stand-in" % (
                        N, m.value("triggerd_deliveries_pending"),
                        m.sum("triggerd_deliveries_total",
                              outcome="delivered"),
                        m.sum("triggerd_deliveries_total", outcome="failed"),
                        self.st.count()))
        m = wait_until(done, 600 if LONG else 60, progress, interval=0.1)
        elapsed = time.monotonic() - t0
        reqs = self.st.requests()
        by_key = collections.defaultdict(list)
        for q in reqs:
            by_key[q.header("Idempotency-Key")].append(q)
        kinds = collections.Counter(kind(q) for q in reqs if not is_2xx(q))
        failed = len(reqs) - N
        sys.stderr.write(
            "\nchaos (%s, seed %d, p=%.2f, timeout %ds, stalls %ds): %d "
            "deliveries, %d requests at the stand-in (%.2f per delivery), "
            "%d attempts counted by the daemon, %d failed requests %s; "
            "posted in %.1fs, all delivered after %.1fs\n"
            % ("long" if LONG else "short", SEED, FAIL_P, TIMEOUT_S,
               STALL_S, N, len(reqs), len(reqs) / N,
               m.sum("triggerd_delivery_attempts_total"), failed,
               dict(sorted(kinds.items())), t_posted, elapsed))

        # The promise: every key the daemon handed out got exactly one
        # 2xx, and that 2xx was its last request; a retry is the same
        # request.
        self.assertEqual(set(by_key), accepted,
                         "Idempotency-Keys at the stand-in vs 202'd ids")
        twice = {k: [kind(q) for q in qs] for k, qs in by_key.items()
                 if sum(1 for q in qs if is_2xx(q)) != 1}
        self.assertEqual(twice, {}, "deliveries without exactly one 2xx")
        late = {k: [kind(q) for q in qs]
                for k, qs in by_key.items() if not is_2xx(qs[-1])}
        self.assertEqual(late, {}, "requests after the 2xx")
        for qs in by_key.values():
            self.assertTrue(all(q.body == qs[0].body and q.path == qs[0].path
                                for q in qs), "a retry changed the request")
        self.assertEqual(m.sum("triggerd_deliveries_total", outcome="failed"),
                         0)
        listing = self.admin("/v1/deliveries?limit=10000")["deliveries"]
        self.assertEqual({o["id"] for o in listing}, accepted)
        self.assertEqual({o["state"] for o in listing}, {"delivered"})
        # Every kind of failure really happened.
        for k in ("500", "502", "503", "429", "429+Retry-After", "close",
                  "reset", "stall"):
            self.assertIn(k, kinds, "no %s among %r" % (k, kinds))
        self.assertGreater(failed, N * FAIL_P * 0.5,
                           "the stand-in failed too few requests to test")

        # Accounting: each request the stand-in saw is one attempt of the
        # daemon (SPEC 6: a reset or a closed connection is retryable, so
        # it is an attempt, counted, kept in the history, and followed by
        # a backoff), and the history says what happened, attempt for
        # attempt: the status where one was answered, none for a drop or
        # a stall, and a stall cut at the timeout (not waited out).
        problems = []
        if m.sum("triggerd_delivery_attempts_total") != len(reqs):
            problems.append("triggerd_delivery_attempts_total = %d, the "
                            "stand-in received %d requests"
                            % (m.sum("triggerd_delivery_attempts_total"),
                               len(reqs)))
        if sum(o["attempts"] for o in listing) != len(reqs):
            problems.append("the admin API counts %d attempts, the "
                            "stand-in received %d requests"
                            % (sum(o["attempts"] for o in listing),
                               len(reqs)))
        for key, qs in sorted(by_key.items()):
            # Backoff floors between attempts (100ms -20%; 1 s after a
            # 429, with or without Retry-After: 1).
            for a, b in zip(qs, qs[1:]):
                end = a.t + TIMEOUT_S if is_stall(a) else a.t_answer
                floor = 0.95 if a.status == 429 else 0.08 * 0.9
                if b.t - end < floor:
                    problems.append("%s: %s after %s came %.3fs later "
                                    "(backoff floor %.2fs)" % (
                                        key, kind(b), kind(a), b.t - end,
                                        floor))
            hist = self.admin("/v1/deliveries/" + key)["history"]
            seen = "stand-in %s, history %s" % (
                [kind(q) for q in qs],
                [(h["status"], h["error"], h["ms"]) for h in hist])
            if len(hist) != len(qs):
                problems.append("%s: %s" % (key, seen))
                continue
            for q, h in zip(qs, hist):
                if is_stall(q):
                    ok = (h["status"] is None and h["error"] and
                          TIMEOUT_S * 1000 * 0.9 <= h["ms"]
                          < STALL_S * 1000 * 0.9)
                elif q.action is not None:
                    ok = h["status"] is None and h["error"]
                else:
                    ok = h["status"] == q.status
                if not ok:
                    problems.append("%s: %s" % (key, seen))
                    break
        self.assertFalse(problems, "attempt accounting:\n" +
                         "\n".join(problems))


class DropOnReusedConnectionTest(DaemonTest):
    """The chaos test's accounting failure made deterministic: one worker
    (so one keep-alive connection), a first delivery that leaves the
    connection open, then a reset on that reused connection."""

    def test_a_reset_on_a_reused_connection_is_one_attempt(self):
        st = self.start_standin(token=DBT_TOKEN)
        cfg = make_config(
            [dbt_trigger("one", st, 1, jobs=[job_uuid(1)])],
            server={"admin_tokens": ["${{secrets.admin_token}}"]},
            dispatch={"workers": 1, "timeout": "2s"},
            retry={"initial_backoff": "300ms", "max_backoff": "300ms"},
            secrets={"admin_token": {"env": "CHAOS_ADMIN_TOKEN"}})
        env = dict(DEFAULT_ENV, CHAOS_ADMIN_TOKEN=ADMIN_TOKEN)
        d = self.start_daemon(cfg, env=env, token=INBOUND_TOKEN)
        first = d.accept(event(job=job_uuid(1)))["deliveries"][0]["id"]
        st.wait_for_requests(1)
        st.script(Answer(action="reset"))
        key = d.accept(event(job=job_uuid(1)))["deliveries"][0]["id"]
        reqs = st.wait_for_requests(3)
        self.assertEqual([q.header("Idempotency-Key") for q in reqs],
                         [first, key, key])
        self.assertEqual(reqs[0].client, reqs[1].client,
                         "the second delivery did not reuse the connection")
        self.assertEqual(reqs[1].action, "reset")
        self.assertEqual(reqs[2].status, 200)
        def history():
            r = d.request("GET", "/v1/deliveries/" + key, headers=[
                ("Authorization", "Bearer " + ADMIN_TOKEN)])
            hist = r.json["history"] if r.status == 200 else []
            return hist if any(h["status"] == 200 for h in hist) else None
        hist = wait_until(history, 10, "the 200 in the history")
        gap = reqs[2].t - reqs[1].t_answer
        self.assertEqual(
            ([(h["status"], bool(h["error"])) for h in hist],
             gap >= 0.3 * 0.8 * 0.9),
            ([(None, True), (200, False)], True),
            "SPEC 6: a reset is a retryable attempt: recorded, then a "
            "backoff of 300ms +-20%%; got history %r and the resend %.3fs "
            "after the reset" % (hist, gap))


if __name__ == "__main__":
    unittest.main()
