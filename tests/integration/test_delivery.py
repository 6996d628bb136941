#!/usr/bin/env python3
"""Delivery (SPEC sections 5 and 6): retries and their timing, permanent
failures, attempt and age limits, connection errors, timeouts, in-flight
limits per trigger, and how event data is encoded into the request."""

import email.utils
import json
import time
import unittest

import harness
from harness import (ACCOUNT, DBT_TOKEN, DEFAULT_ENV, INBOUND_TOKEN,
                     DaemonTest, barrier, dbt_trigger, event, keys_of,
                     make_config, wait_delivered, wait_until)
from standin import Answer, Standin

RUN1 = "/api/v2/accounts/%s/jobs/1/run/" % ACCOUNT
RUN2 = "/api/v2/accounts/%s/jobs/2/run/" % ACCOUNT


class DeliveryTest(DaemonTest):
    def setUp(self):
        self.st = self.start_standin(token=DBT_TOKEN)

    def daemon(self, triggers=None, dispatch=None, retry=None):
        if triggers is None:
            triggers = [dbt_trigger("t1", self.st, 1)]
        cfg = make_config(triggers, dispatch=dispatch, retry=retry)
        self.d = self.start_daemon(cfg, env=DEFAULT_ENV, token=INBOUND_TOKEN)
        return self.d

    def one(self, ev=None):
        """Posts an event matching one trigger; returns its delivery id."""
        (dl,) = self.d.accept(ev or event())["deliveries"]
        return dl["id"]

    def assertSameRequest(self, reqs, key):
        for q in reqs:
            self.assertEqual(q.header("Idempotency-Key"), key)
            self.assertEqual((q.method, q.path, q.body),
                             (reqs[0].method, reqs[0].path, reqs[0].body))

    # ---- retries ----

    def test_retry_then_success(self):
        self.daemon(retry={"initial_backoff": "100ms"})
        self.st.fail(500)
        key = self.one()
        reqs = self.st.wait_for_requests(2, timeout=10)
        self.assertEqual([q.status for q in reqs], [500, 200])
        self.assertSameRequest(reqs, key)
        gap = reqs[1].t - reqs[0].t_answer
        self.assertGreaterEqual(gap, 0.08 * 0.9, "backoff 100ms -20%")
        self.assertLess(gap, 5)
        self.assertSentNothingMore(self.st, 2, 0.5, "after a 200")

    def test_every_retryable_answer_is_retried(self):
        self.daemon(retry={"initial_backoff": "50ms", "max_backoff": "100ms",
                           "max_attempts": 20})
        self.st.script(*[Answer(status=s)
                         for s in (408, 425, 500, 502, 503, 504)])
        self.st.script(Answer(action="close"), Answer(action="reset"))
        key = self.one()
        reqs = self.st.wait_for_requests(9, timeout=15)
        self.assertEqual([q.status or q.action for q in reqs],
                         [408, 425, 500, 502, 503, 504, "close", "reset", 200])
        self.assertSameRequest(reqs, key)

    def test_retry_after_is_a_floor_past_max_backoff(self):
        self.daemon(retry={"initial_backoff": "100ms", "max_backoff": "200ms"})
        self.st.fail(429, retry_after=1)
        # An HTTP-date 2 s ahead of the answer (whole seconds: >= 1 s).
        self.st.fail(503, retry_after=lambda: email.utils.formatdate(
            time.time() + 2, usegmt=True))
        key = self.one()
        reqs = self.st.wait_for_requests(3, timeout=15)
        self.assertEqual([q.status for q in reqs], [429, 503, 200])
        self.assertSameRequest(reqs, key)
        gap = reqs[1].t - reqs[0].t_answer
        self.assertGreaterEqual(gap, 0.95, "Retry-After: 1")
        self.assertLess(gap, 5)
        gap = reqs[2].t - reqs[1].t_answer
        self.assertGreaterEqual(gap, 0.9, "Retry-After: an HTTP-date")
        self.assertLess(gap, 6)

    def test_429_without_retry_after_waits_rate_limited_backoff(self):
        self.daemon(retry={"initial_backoff": "100ms", "max_backoff": "200ms",
                           "rate_limited_backoff": "1s"})
        self.st.fail(429)
        key = self.one()
        reqs = self.st.wait_for_requests(2, timeout=10)
        self.assertEqual([q.status for q in reqs], [429, 200])
        self.assertSameRequest(reqs, key)
        gap = reqs[1].t - reqs[0].t_answer
        self.assertGreaterEqual(gap, 0.95)
        self.assertLess(gap, 5)

    # ---- giving up ----

    def test_permanent_answers_and_2xx_get_one_attempt(self):
        self.daemon(retry={"initial_backoff": "50ms", "max_backoff": "50ms"})
        statuses = [400, 401, 403, 404, 422, 501, 505, 301, 201, 204]
        for s in statuses:
            hdrs = [("Location", self.st.run_url(ACCOUNT, 99))] \
                if s == 301 else []
            self.st.script(Answer(status=s, headers=hdrs,
                                  body=b"" if s == 204 else None))
        keys = [self.one() for _ in statuses]
        reqs = self.st.wait_for_requests(len(statuses), timeout=10)
        self.assertEqual(sorted(keys_of(reqs)), sorted(keys))
        self.assertEqual([q.status for q in reqs], statuses)
        self.assertSentNothingMore(self.st, len(statuses), 0.6,
                                   "(retries after permanent answers, or a "
                                   "redirect followed)")
        reqs = barrier(self, self.d, self.st)
        self.assertEqual(len(reqs), len(statuses) + 1)

    def test_max_attempts(self):
        self.daemon(retry={"max_attempts": 3, "initial_backoff": "50ms",
                           "max_backoff": "100ms"})
        self.st.fail(500, count=10)
        key = self.one()
        reqs = self.st.wait_for_requests(3, timeout=10)
        self.assertSameRequest(reqs, key)
        self.assertSentNothingMore(self.st, 3, 1.0, "after max_attempts 3")
        self.st.clear_plan()
        self.assertEqual(len(barrier(self, self.d, self.st)), 4)

    def test_max_age(self):
        self.daemon(retry={"max_attempts": 100, "initial_backoff": "200ms",
                           "max_backoff": "200ms", "max_age": "1s"})
        self.st.set_random_failures(1.0, 1, [Answer(status=503)])
        key = self.one()
        t0 = time.monotonic()
        self.st.wait_for_requests(2, timeout=10)
        # Attempts stop once the delivery is older than max_age (1s).
        wait_until(lambda: time.monotonic() - t0 > 1.3, 5, "max_age")
        n = self.st.count()
        self.assertSentNothingMore(self.st, n, 0.8, "past max_age 1s")
        self.assertLessEqual(n, 8)
        self.assertEqual(set(keys_of(self.st.requests())), {key})

    # ---- no answer ----

    def test_refused_connection_is_retried(self):
        port = harness.free_port()
        late = Standin(port=port, token=DBT_TOKEN)
        self.daemon(triggers=[self.trigger_on_port(port)],
                    retry={"initial_backoff": "200ms", "max_backoff": "300ms",
                           "max_attempts": 50})
        key = self.one()

        def refused_logged():
            return [line for line in self.d.log().splitlines()
                    if key in line and "refused" in line.lower()]
        wait_until(refused_logged, 10, lambda: "a log line saying delivery "
                   "%s was refused:\n%s" % (key, self.d.log_tail()))
        late.start()
        self.addCleanup(late.stop)
        reqs = late.wait_for_requests(1, timeout=10)
        self.assertEqual(keys_of(reqs), [key])
        self.assertEqual(reqs[0].status, 200)

    def trigger_on_port(self, port):
        t = dbt_trigger("t1", self.st, 1)
        t["url"] = t["url"].replace(self.st.base_url,
                                    "http://127.0.0.1:%d" % port)
        return t

    def test_slow_answer_past_timeout_is_retried(self):
        self.daemon(dispatch={"timeout": "1s"},
                    retry={"initial_backoff": "100ms"})
        self.st.slow(4)
        key = self.one()
        reqs = self.st.wait_for_requests(2, timeout=10)
        self.assertSameRequest(reqs, key)
        self.assertIsNone(reqs[0].t_answer)  # still "thinking"
        gap = reqs[1].t - reqs[0].t
        self.assertGreaterEqual(gap, 0.9, "dispatch.timeout 1s")
        self.assertLess(gap, 3.5)
        wait_until(lambda: reqs[1].status == 200, 5, "the retry answered")

    # ---- concurrency ----

    def test_max_in_flight_per_trigger_1(self):
        self.daemon(triggers=[dbt_trigger("t1", self.st, 1),
                              dbt_trigger("t2", self.st, 2)],
                    dispatch={"workers": 4, "max_in_flight_per_trigger": 1})
        self.st.delay = 0.25
        ids = [dl["id"] for _ in range(4)
               for dl in self.d.accept(event())["deliveries"]]
        reqs = wait_delivered(self.st, ids, timeout=15)
        self.assertEqual(len(reqs), 8)
        self.assertEqual(self.st.max_in_flight_by_path[RUN1], 1)
        self.assertEqual(self.st.max_in_flight_by_path[RUN2], 1)
        # Two triggers may run side by side (4 workers): this is what the
        # measurement would show if one trigger broke its limit.
        self.assertEqual(self.st.max_in_flight, 2)
        for path in (RUN1, RUN2):
            mine = sorted((q for q in reqs if q.path == path),
                          key=lambda q: q.t)
            for a, b in zip(mine, mine[1:]):
                self.assertLessEqual(a.t_answer, b.t)

    def test_max_in_flight_per_trigger_2(self):
        self.daemon(dispatch={"workers": 4, "max_in_flight_per_trigger": 2})
        self.st.delay = 0.3
        ids = [self.one() for _ in range(5)]
        wait_delivered(self.st, ids, timeout=15)
        self.assertEqual(self.st.max_in_flight_by_path[RUN1], 2)

    # ---- rendering ----

    def test_header_value_with_cr_lf_nul_is_never_sent(self):
        t = dbt_trigger("t1", self.st, 1)
        t["header"]["X-Table"] = "${{erathos.table_name}}"
        self.daemon(triggers=[t])
        for bad in ("orders\r\nX-Evil: 1", "orders\nX-Evil: 1",
                    "orders\rX-Evil: 1", "orders\u0000X-Evil: 1"):
            r = self.d.post_event(event(table_name=bad))
            self.assertEqual(r.status, 202, r)
        reqs = barrier(self, self.d, self.st, event(table_name="orders"))
        self.assertEqual(len(reqs), 1, reqs)
        self.assertEqual(reqs[0].header("X-Table"), "orders")
        self.assertEqual(reqs[0].header_values("X-Evil"), [])

    def test_event_values_are_encoded_for_url_and_json(self):
        t = dbt_trigger("t1", self.st, 1)
        t["url"] += ("?table=${{erathos.table_name}}"
                     "&by=${{ erathos.triggered_by }}")
        t["body"] = {"cause": "by ${{erathos.triggered_by}}",
                     "steps_override": ["dbt run -s ${{erathos.table_name}}"],
                     "threads_override": 4, "generate_docs_override": False,
                     "git_branch": "$${{literal}}"}
        self.daemon(triggers=[t])
        table = "a b&c=d/\u00e9?#%"
        by = 'x", "steps_override": ["rm -rf /"], "y": "'
        key = self.one(event(table_name=table, triggered_by=by))
        (q,) = wait_delivered(self.st, [key])
        self.assertEqual(q.path, RUN1)
        self.assertEqual(q.query, "table=a%20b%26c%3Dd%2F%C3%A9%3F%23%25"
                         "&by=x%22%2C%20%22steps_override%22%3A%20%5B%22rm%20"
                         "-rf%20%2F%22%5D%2C%20%22y%22%3A%20%22")
        want = json.dumps({"cause": "by " + by,
                           "steps_override": ["dbt run -s " + table],
                           "threads_override": 4,
                           "generate_docs_override": False,
                           "git_branch": "${{literal}}"},
                          separators=(",", ":"), ensure_ascii=False)
        self.assertEqual(q.body, want.encode())
        self.assertEqual(q.status, 200)  # valid for dbt

    def test_content_type_added_only_for_json_bodies(self):
        base = dbt_trigger("json", self.st, 1)
        del base["header"]["Content-Type"]
        text = dbt_trigger("text", self.st, 2)
        del text["header"]["Content-Type"]
        text["body"] = 'cause=${{erathos.table_name}}&x="raw"'
        self.daemon(triggers=[base, text])
        r = self.d.accept(event(table_name="a&b"))
        reqs = wait_delivered(self.st, [x["id"] for x in r["deliveries"]])
        by_path = {q.path: q for q in reqs}
        self.assertEqual(by_path[RUN1].header("Content-Type"),
                         "application/json")
        self.assertEqual(by_path[RUN1].body, b'{"cause":"json: a&b"}')
        self.assertEqual(by_path[RUN2].header_values("Content-Type"), [])
        self.assertEqual(by_path[RUN2].body, b'cause=a&b&x="raw"')


if __name__ == "__main__":
    unittest.main()
