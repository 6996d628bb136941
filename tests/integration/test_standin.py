#!/usr/bin/env python3
"""The dbt Cloud stand-in itself: what it accepts and refuses (as
dbt-cloud-openapi-v2.yaml says), its scripted failures, its records.
No triggerd involved, so these run before the daemon exists."""

import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
import unittest
import urllib.parse

import harness
from harness import http_request, stays, wait_until
from standin import Answer, Standin, validate_trigger_run

TOKEN = "dbt-tok-123"
PATH = "/api/v2/accounts/70403103912345/jobs/42/run/"
AUTH = [("Authorization", "Bearer " + TOKEN),
        ("Content-Type", "application/json")]


class StandinTest(unittest.TestCase):
    maxDiff = None

    def setUp(self):
        self.s = Standin(token=TOKEN).start()
        self.addCleanup(self.s.stop)

    def post(self, body, headers=None, path=PATH, method="POST"):
        return http_request(self.s.port, method, path, body,
                            AUTH if headers is None else headers)

    # ---- dbt's answers ----

    def test_valid_request_gets_a_run(self):
        r = self.post({"cause": "because", "steps_override": ["dbt run"],
                       "threads_override": 4,
                       "generate_docs_override": False,
                       "git_branch": "main"})
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("Content-Type"), "application/json")
        self.assertEqual(r.header("Content-Length"), str(len(r.body)))
        self.assertEqual(r.json["status"], {
            "code": 200, "is_success": True, "user_message": "Success!",
            "developer_message": ""})
        d = r.json["data"]
        self.assertIsInstance(d["id"], int)
        self.assertEqual(d["job_definition_id"], 42)
        self.assertEqual(d["account_id"], 70403103912345)
        self.assertEqual(d["status"], 1)
        self.assertEqual(d["cause"], "because")
        self.assertEqual(d["trigger"]["cause"], "because")
        self.assertEqual(d["trigger"]["steps_override"], ["dbt run"])
        self.assertIn("created_at", d)  # required by RunResponse
        self.assertIn("updated_at", d)
        r2 = self.post({"cause": "again"})
        self.assertEqual(r2.json["data"]["id"], d["id"] + 1)

    def test_records_requests_exactly(self):
        body = b'{"cause":"x"}'
        hdrs = AUTH + [("X-B", "2"), ("x-a", "1"), ("X-B", "3")]
        self.post(body, hdrs, path=PATH + "?a=1&b=%20")
        (rec,) = self.s.wait_for_requests(1, timeout=5)
        self.assertEqual(rec.method, "POST")
        self.assertEqual(rec.path, PATH)
        self.assertEqual(rec.query, "a=1&b=%20")
        self.assertEqual(rec.body, body)
        names = [k for k, _ in rec.headers]
        self.assertEqual(names, ["Host", "Authorization", "Content-Type",
                                 "X-B", "x-a", "X-B", "Content-Length"])
        self.assertEqual(rec.header_values("x-b"), ["2", "3"])
        self.assertEqual(rec.header("X-A"), "1")
        with self.assertRaises(AssertionError):
            rec.header("X-B")
        self.assertEqual(rec.status, 200)
        self.assertLessEqual(rec.t, rec.t_answer)

    def test_missing_or_wrong_token_is_401_with_envelope(self):
        expected = (b'{"status":{"code":401,"is_success":false,'
                    b'"user_message":"Invalid token.","developer_message":""},'
                    b'"data":null}')
        for hdrs in ([("Content-Type", "application/json")],
                     [("Authorization", "Bearer nope"),
                      ("Content-Type", "application/json")],
                     [("Authorization", "Token " + TOKEN),
                      ("Content-Type", "application/json")],
                     [("Authorization", "Bearer " + TOKEN + "x"),
                      ("Content-Type", "application/json")],
                     AUTH + [("Authorization", "Bearer " + TOKEN)]):
            r = self.post({"cause": "x"}, hdrs)
            self.assertEqual((r.status, r.body), (401, expected), hdrs)

    def test_body_validation(self):
        cases = [
            ({}, "cause: This field is required."),
            ({"cause": ""}, "cause: This field may not be blank."),
            ({"cause": 5}, "cause: Not a valid string."),
            ({"cause": None}, "cause: This field may not be null."),
            ({"cause": "x", "steps_override": "dbt run"}, "steps_override"),
            ({"cause": "x", "steps_override": [""]}, "steps_override"),
            ({"cause": "x", "steps_override": [1]}, "steps_override"),
            ({"cause": "x", "threads_override": "4"},
             "threads_override: Not a valid integer."),
            ({"cause": "x", "threads_override": True}, "threads_override"),
            ({"cause": "x", "generate_docs_override": "true"},
             "generate_docs_override: Not a valid boolean."),
            ({"cause": "x", "git_sha": ""}, "git_sha"),
            ([{"cause": "x"}], "Expected a dictionary"),
        ]
        for body, msg in cases:
            r = self.post(body)
            self.assertEqual(r.status, 400, body)
            self.assertEqual(r.json["status"]["code"], 400)
            self.assertIs(r.json["status"]["is_success"], False)
            self.assertIn(msg, r.json["status"]["user_message"], body)
        r = self.post(b'{"cause": "x",}')
        self.assertEqual(r.status, 400)
        self.assertIn("JSON parse error", r.json["status"]["user_message"])
        # Unknown properties are ignored, as dbt does.
        self.assertEqual(self.post({"cause": "x", "other": 1}).status, 200)
        self.assertEqual(validate_trigger_run({"cause": "x"}), {})

    def test_media_types_paths_methods(self):
        form = [("Authorization", "Bearer " + TOKEN),
                ("Content-Type", "application/x-www-form-urlencoded")]
        self.assertEqual(self.post(b"cause=from+a+form", form).status, 200)
        self.assertEqual(self.post(b"cause=", form).status, 400)
        plain = [("Authorization", "Bearer " + TOKEN),
                 ("Content-Type", "text/plain")]
        self.assertEqual(self.post(b'{"cause":"x"}', plain).status, 415)
        self.assertEqual(self.post(b'{"cause":"x"}', AUTH[:1]).status, 415)
        charset = [("Authorization", "Bearer " + TOKEN),
                   ("Content-Type", "application/json; charset=utf-8")]
        self.assertEqual(self.post(b'{"cause":"x"}', charset).status, 200)
        for path in ("/api/v2/accounts/1/jobs/x/run/",
                     "/api/v2/accounts/1/jobs/2/run", "/"):
            self.assertEqual(self.post({"cause": "x"}, path=path).status, 404)
        r = self.post(None, method="GET")
        self.assertEqual(r.status, 405)
        self.assertIn("POST", r.header("Allow"))

    # ---- scripted failures ----

    def test_scripted_statuses_in_order_then_normal(self):
        self.s.fail(500, count=2)
        self.s.fail(429, retry_after=1)
        self.s.fail(429)
        self.s.script(Answer(status=503, body=b"down"))
        got = []
        for _ in range(6):
            r = self.post({"cause": "x"})
            got.append((r.status, r.header("Retry-After")))
        self.assertEqual(got, [(500, None), (500, None), (429, "1"),
                               (429, None), (503, None), (200, None)])
        self.assertEqual(self.s.plan_left(), 0)
        self.assertEqual([q.status for q in self.s.requests()],
                         [500, 500, 429, 429, 503, 200])

    def test_keep_alive(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.s.port, timeout=5)
        try:
            for i in range(3):
                conn.request("POST", PATH, b'{"cause":"k"}', dict(AUTH))
                r = conn.getresponse()
                body = r.read()
                self.assertEqual(r.status, 200)
                self.assertEqual(len(body), int(r.getheader("Content-Length")))
                self.assertFalse(r.will_close)
            self.s.fail(500)
            conn.request("POST", PATH, b'{"cause":"k"}', dict(AUTH))
            r = conn.getresponse()
            r.read()
            self.assertEqual(r.status, 500)
        finally:
            conn.close()
        clients = {q.client for q in self.s.requests()}
        self.assertEqual(len(clients), 1, clients)

    def test_slow_answer(self):
        self.s.slow(0.5)
        t0 = time.monotonic()
        r = self.post({"cause": "x"})
        took = time.monotonic() - t0
        self.assertEqual(r.status, 200)
        self.assertGreaterEqual(took, 0.5)
        (rec,) = self.s.requests()
        self.assertGreaterEqual(rec.t_answer - rec.t, 0.5)

    def test_default_delay_and_in_flight_count(self):
        self.s.delay = 0.4
        threads = [threading.Thread(target=self.post, args=({"cause": "c"},))
                   for _ in range(3)]
        for t in threads:
            t.start()
        self.s.wait_for(lambda reqs: len(reqs) == 3, 5, "3 requests")
        self.assertEqual(self.s.in_flight(), 3)
        for t in threads:
            t.join(5)
        self.assertEqual(self.s.in_flight(), 0)
        self.assertEqual(self.s.max_in_flight, 3)
        self.assertEqual(self.s.max_in_flight_by_path[PATH], 3)

    def test_close_without_answer(self):
        self.s.drop()
        with self.assertRaises(http.client.RemoteDisconnected):
            self.post({"cause": "x"})
        (rec,) = self.s.requests()
        self.assertEqual((rec.status, rec.action), (None, "close"))
        self.assertEqual(self.post({"cause": "x"}).status, 200)

    def test_reset(self):
        self.s.drop(reset=True)
        with self.assertRaises(ConnectionResetError):
            self.post({"cause": "x"})
        self.assertEqual(self.s.requests()[0].action, "reset")
        self.assertEqual(self.post({"cause": "x"}).status, 200)

    def test_random_failures_are_seeded(self):
        def run(seed):
            s = Standin(token=TOKEN).start()
            try:
                s.set_random_failures(0.5, seed, [Answer(status=503)])
                return [http_request(s.port, "POST", PATH, {"cause": "r"},
                                     AUTH).status for _ in range(24)]
            finally:
                s.stop()
        a, b = run(7), run(7)
        self.assertEqual(a, b)
        self.assertEqual(set(a), {200, 503})
        self.s.set_random_failures(1.0, 1, [Answer(status=502)])
        self.assertEqual(self.post({"cause": "x"}).status, 502)
        self.s.set_random_failures(0, 1)
        self.assertEqual(self.post({"cause": "x"}).status, 200)

    def test_wait_for_requests_is_bounded(self):
        t0 = time.monotonic()
        with self.assertRaises(AssertionError):
            self.s.wait_for_requests(1, timeout=0.3)
        self.assertLess(time.monotonic() - t0, 2)

    def test_stop_cuts_slow_answers_short(self):
        s = Standin(token=TOKEN).start()
        s.slow(30)
        def client():
            try:
                http_request(s.port, "POST", PATH, {"cause": "x"}, AUTH)
            except OSError:
                pass  # the answer may or may not come once stopped
        t = threading.Thread(target=client, daemon=True)
        t.start()
        s.wait_for_requests(1, 5)
        t0 = time.monotonic()
        s.stop()
        self.assertLess(time.monotonic() - t0, 5)


ACCOUNT = 70403103912345
RUNS = "/api/v2/accounts/%d/runs/" % ACCOUNT


def run_path(job=42, account=ACCOUNT):
    return "/api/v2/accounts/%d/jobs/%d/run/" % (account, job)


def q(**params):
    return "?" + urllib.parse.urlencode(params)


class RunsTest(unittest.TestCase):
    """Runs kept, their lifecycle, List/Retrieve/Cancel, fault injection."""
    maxDiff = None

    def setUp(self):
        self.s = Standin(token=TOKEN).start()
        self.addCleanup(self.s.stop)

    def trigger(self, cause="c", job=42, account=ACCOUNT, timeout=10.0):
        return http_request(self.s.port, "POST", run_path(job, account),
                            {"cause": cause}, AUTH, timeout=timeout)

    def get(self, path, headers=None):
        return http_request(self.s.port, "GET", path, None,
                            AUTH[:1] if headers is None else headers)

    def get_run(self, run_id, query="", account=ACCOUNT):
        return self.get("/api/v2/accounts/%d/runs/%d/%s"
                        % (account, run_id, query))

    def list_runs(self, **params):
        return self.get(RUNS + (q(**params) if params else ""))

    def wait_status(self, run_id, status, timeout=5.0):
        wait_until(lambda: self.s.run_status(run_id) == status, timeout,
                   lambda: "run %d status %s, now %r"
                   % (run_id, status, self.s.run(run_id)))

    # ---- runs kept, the trigger answer ----

    def test_trigger_creates_a_run_with_a_run_response(self):
        r = self.trigger("Erathos job finished [triggerd d-1]")
        self.assertEqual(r.status, 200)  # what the OpenAPI documents
        self.assertEqual(r.json["status"], {
            "code": 200, "is_success": True, "user_message": "Success!",
            "developer_message": ""})
        d = r.json["data"]
        self.assertEqual((d["status"], d["status_humanized"]), (1, "Queued"))
        self.assertEqual(d["job_definition_id"], 42)
        self.assertEqual(d["account_id"], ACCOUNT)
        self.assertEqual(d["trigger"]["cause"],
                         "Erathos job finished [triggerd d-1]")
        self.assertEqual(d["href"], "https://ab123.us1.dbt.com/deploy/%d/"
                         "projects/270542/runs/%d/" % (ACCOUNT, d["id"]))
        self.assertIsNone(d["finished_at"])
        (run,) = self.s.runs()
        for k in ("id", "account_id", "job_definition_id", "cause",
                  "created_at", "href", "trigger"):
            self.assertEqual(run[k], d[k], k)
        self.assertFalse(run["forgotten"])
        self.assertEqual(self.s.run(d["id"])["id"], d["id"])
        self.assertIsNone(self.s.run(d["id"] + 1))
        self.assertEqual(self.trigger().json["data"]["id"], d["id"] + 1)
        self.assertEqual([x["id"] for x in self.s.runs()],
                         [d["id"], d["id"] + 1])
        self.assertEqual(self.s.posts_to_run(), 2)
        (first, _) = self.s.posts_to_run_requests()
        self.assertEqual((first.kind, first.run_id), ("trigger", d["id"]))
        # runs() gives copies
        self.s.runs()[0]["trigger"]["cause"] = "changed"
        self.assertEqual(self.s.run(d["id"])["trigger"]["cause"],
                         "Erathos job finished [triggerd d-1]")

    def test_cause_over_255_code_points_is_400(self):
        ok = "é" * 255   # 510 bytes of UTF-8, 255 characters: accepted
        self.assertEqual(self.trigger(ok).status, 200)
        self.assertEqual(self.trigger("\U0001F600" * 255).status, 200)
        r = self.trigger("x" * 256)
        self.assertEqual(r.status, 400)
        self.assertIs(r.json["status"]["is_success"], False)
        self.assertIn("cause: Ensure this field has no more than 255 "
                      "characters.", r.json["status"]["user_message"])
        self.assertEqual(r.json["data"], {"cause": [
            "Ensure this field has no more than 255 characters."]})
        self.assertEqual(self.trigger("é" * 256).status, 400)
        self.assertEqual(len(self.s.runs()), 2)
        self.assertEqual(self.s.posts_to_run(), 4)  # created or not

    def test_unscripted_lifecycle_queued_running_success(self):
        self.s.run_queued_s, self.s.run_running_s = 0.3, 0.3
        rid = self.trigger().json["data"]["id"]
        seen = []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            d = self.get_run(rid).json["data"]
            if not seen or seen[-1] != d["status"]:
                seen.append(d["status"])
            if d["status"] == 10:
                break
            time.sleep(0.02)  # the poll interval of a bounded wait
        self.assertEqual(seen, [1, 3, 10])
        self.assertEqual(d["status_humanized"], "Success")
        self.assertTrue(d["is_complete"] and d["is_success"])
        self.assertIsNotNone(d["started_at"])
        self.assertIsNotNone(d["finished_at"])
        self.assertLessEqual(d["created_at"], d["started_at"])
        self.assertLessEqual(d["started_at"], d["finished_at"])
        self.assertRegex(d["duration"], r"^00:00:0[0-9]$")

    def test_scripted_runs_fifo_then_defaults(self):
        self.s.run_queued_s, self.s.run_running_s = 0.0, 0.0
        self.s.script_runs(final=20, queued_s=0, running_s=0)
        self.s.script_runs(final=None, queued_s=0, count=2)
        ids = [self.trigger().json["data"]["id"] for _ in range(4)]
        self.wait_status(ids[0], 20)
        self.wait_status(ids[3], 10)
        d = self.get_run(ids[0]).json["data"]
        self.assertEqual((d["status_humanized"], d["status_message"]),
                         ("Error", "Job failed"))
        self.assertTrue(d["is_error"])
        for rid in ids[1:3]:
            self.wait_status(rid, 3)
            self.assertIsNone(self.s.run(rid)["finished_at"])
        self.s.set_run_status(ids[1], 20, "Database Error in model x")
        d = self.get_run(ids[1]).json["data"]
        self.assertEqual((d["status"], d["status_message"]),
                         (20, "Database Error in model x"))
        self.assertIsNotNone(d["finished_at"])
        self.s.set_run_status(ids[2], 1)  # by hand: stays as set
        self.assertEqual(self.get_run(ids[2]).json["data"]["status"], 1)

    def test_set_run_status_stops_the_automatic_steps(self):
        self.s.run_queued_s = 0.1
        rid = self.trigger().json["data"]["id"]
        self.s.set_run_status(rid, 2)
        self.assertTrue(stays(lambda: self.s.run_status(rid) == 2, 0.3))
        with self.assertRaises(KeyError):
            self.s.set_run_status(rid + 99, 10)

    # ---- Retrieve Run ----

    def test_retrieve_run(self):
        rid = self.trigger("why").json["data"]["id"]
        r = self.get_run(rid)
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json["status"]["user_message"], "Success!")
        self.assertEqual(r.json["data"]["id"], rid)
        self.assertIsNone(r.json["data"]["trigger"])
        r = self.get_run(rid, "?" + urllib.parse.urlencode(
            {"include_related": '["trigger"]'}))
        self.assertEqual(r.json["data"]["trigger"]["cause"], "why")
        for bad in (self.get_run(rid + 1), self.get_run(rid, account=1)):
            self.assertEqual(bad.status, 404)
            self.assertIs(bad.json["status"]["is_success"], False)
        self.assertEqual(self.get("/api/v2/accounts/%d/runs/%d/"
                                  % (ACCOUNT, rid),
                                  [("Authorization", "Bearer no")]).status,
                         401)
        self.s.forget_run(rid)
        self.assertEqual(self.get_run(rid).status, 404)
        self.assertTrue(self.s.run(rid)["forgotten"])
        self.assertEqual(self.list_runs().json["data"], [])
        self.assertEqual(self.s.get_calls(), 6)
        self.assertEqual(self.s.get_calls(rid), 5)
        self.assertEqual([x.run_id for x in self.s.get_requests()][:1],
                         [rid])
        r = http_request(self.s.port, "POST", "/api/v2/accounts/%d/runs/%d/"
                         % (ACCOUNT, rid), {}, AUTH)
        self.assertEqual(r.status, 405)
        self.assertIn("GET", r.header("Allow"))

    # ---- List Runs ----

    def test_list_filters_order_paging_include_related(self):
        self.s.run_queued_s, self.s.run_running_s = 0.0, 0.0
        self.s.script_runs(final=None, count=2)   # a: running
        a = [self.trigger("a%d" % i, job=7).json["data"]["id"]
             for i in range(2)]
        b = [self.trigger("b%d" % i, job=8).json["data"]["id"]
             for i in range(3)]                     # b: success
        other = self.trigger("o", account=5).json["data"]["id"]
        for rid in b:
            self.wait_status(rid, 10)
        r = self.list_runs()
        self.assertEqual(r.status, 200)
        self.assertEqual([x["id"] for x in r.json["data"]], a + b)
        self.assertNotIn(other, [x["id"] for x in r.json["data"]])
        self.assertEqual(r.json["extra"]["order_by"], "id")
        self.assertEqual(r.json["extra"]["pagination"],
                         {"count": 5, "total_count": 5})
        self.assertTrue(all(x["trigger"] is None for x in r.json["data"]))
        # As triggerd's look-up asks it.
        r = self.list_runs(job_definition_id=8, order_by="-id", limit=100,
                           include_related='["trigger"]')
        self.assertEqual([x["id"] for x in r.json["data"]], b[::-1])
        self.assertEqual([x["trigger"]["cause"] for x in r.json["data"]],
                         ["b2", "b1", "b0"])
        self.assertEqual(r.json["extra"]["filters"]["job_definition_id"], 8)
        self.assertEqual(r.json["extra"]["filters"]["include_related"],
                         ["trigger"])
        self.assertEqual(r.json["extra"]["order_by"], "-id")
        # paging
        r = self.list_runs(job_definition_id=8, order_by="-id", limit=2,
                           offset=1)
        self.assertEqual([x["id"] for x in r.json["data"]], b[1::-1])
        self.assertEqual(r.json["extra"]["pagination"],
                         {"count": 2, "total_count": 3})
        r = self.list_runs(job_definition_id=8, limit=2, offset=2)
        self.assertEqual([x["id"] for x in r.json["data"]], b[2:])
        # status__in, as dbt takes it and in other spellings
        for spelling in ("[1,2,3]", "1,2,3", "[1, 2, 3]"):
            r = self.list_runs(status__in=spelling)
            self.assertEqual([x["id"] for x in r.json["data"]], a, spelling)
            self.assertEqual(r.json["extra"]["filters"]["status__in"],
                             [1, 2, 3])
        r = self.get(RUNS + "?status__in=10&status__in=30&order_by=-id")
        self.assertEqual([x["id"] for x in r.json["data"]], b[::-1])
        r = self.list_runs(job_definition_id=7, status__in="[10]")
        self.assertEqual((r.json["data"], r.json["extra"]["pagination"]),
                         ([], {"count": 0, "total_count": 0}))
        r = self.list_runs(status=10, limit=1)
        self.assertEqual(r.json["extra"]["pagination"],
                         {"count": 1, "total_count": 3})
        r = self.list_runs(id__gt=b[0])
        self.assertEqual([x["id"] for x in r.json["data"]], b[1:])
        by_finish = [x["id"] for x in
                     self.list_runs(order_by="-finished_at").json["data"]]
        self.assertEqual(by_finish[:2], a[::-1])  # NULLs first, as Postgres
        self.assertEqual(sorted(by_finish[2:]), b)
        self.assertEqual(self.list_runs(job_definition_id=99).json["data"],
                         [])
        self.assertEqual(len(self.get("/api/v2/accounts/5/runs/")
                             .json["data"]), 1)
        for bad in ({"limit": 101}, {"limit": 0}, {"offset": -1},
                    {"order_by": "cause"}, {"job_definition_id": "x"},
                    {"status__in": "[queued]"}):
            r = self.list_runs(**bad)
            self.assertEqual(r.status, 400, bad)
            self.assertIs(r.json["status"]["is_success"], False)
        self.assertEqual(self.get(RUNS, [("Authorization", "Bearer x")])
                         .status, 401)
        self.assertEqual(self.s.list_calls(), 21)
        self.assertEqual(len(self.s.list_requests()), 21)

    # ---- Cancel ----

    def test_cancel(self):
        self.s.script_runs(final=None)
        rid = self.trigger().json["data"]["id"]
        path = "/api/v2/accounts/%d/runs/%d/cancel/" % (ACCOUNT, rid)
        r = http_request(self.s.port, "POST", path, None, AUTH[:1])
        self.assertEqual(r.status, 200)
        d = r.json["data"]
        self.assertEqual((d["id"], d["status"], d["status_humanized"]),
                         (rid, 30, "Cancelled"))
        self.assertTrue(d["is_cancelled"])
        self.assertIsNotNone(d["finished_at"])
        self.assertEqual(self.s.run_status(rid), 30)
        self.assertTrue(stays(lambda: self.s.run_status(rid) == 30, 0.1))
        self.assertEqual(self.s.cancels, [rid])
        # A finished run stays as it ended.
        self.s.script_runs(final=10, queued_s=0, running_s=0)
        done = self.trigger().json["data"]["id"]
        self.wait_status(done, 10)
        r = http_request(self.s.port, "POST", "/api/v2/accounts/%d/runs/%d/"
                         "cancel/" % (ACCOUNT, done), None, AUTH[:1])
        self.assertEqual((r.status, r.json["data"]["status"]), (200, 10))
        r = http_request(self.s.port, "POST", "/api/v2/accounts/%d/runs/%d/"
                         "cancel/" % (ACCOUNT, done + 5), None, AUTH[:1])
        self.assertEqual(r.status, 404)
        self.assertEqual(self.s.cancels, [rid, done])
        self.assertEqual(self.s.cancel_calls(), 3)
        self.assertEqual(self.get(path).status, 405)

    # ---- fault injection ----

    def test_create_then_drop_502_504_500(self):
        self.s.create_then("drop")
        self.s.create_then(502)
        self.s.create_then("504")
        self.s.create_then("500")
        self.s.create_then("reset")
        with self.assertRaises(http.client.RemoteDisconnected):
            self.trigger()
        got = [self.trigger() for _ in range(3)]
        self.assertEqual([r.status for r in got], [502, 504, 500])
        for r in got:
            self.assertIs(r.json["status"]["is_success"], False)
        with self.assertRaises(ConnectionResetError):
            self.trigger()
        self.assertEqual(self.s.create_then_left(), 0)
        self.assertEqual(self.trigger().status, 200)
        self.assertEqual(len(self.s.runs()), 6)  # every one was created
        self.assertEqual([q.action for q in self.s.requests()],
                         ["close", None, None, None, "reset", None])
        with self.assertRaises(ValueError):
            self.s.create_then("explode")

    def test_create_then_not_used_by_refused_posts(self):
        self.s.create_then(502)
        self.assertEqual(http_request(self.s.port, "POST", run_path(),
                                      {"cause": "x"},
                                      [("Authorization", "Bearer no"),
                                       ("Content-Type", "application/json")]
                                      ).status, 401)
        self.assertEqual(self.trigger("x" * 300).status, 400)
        self.s.fail(503)  # a scripted answer: no run, entry kept
        self.assertEqual(self.trigger().status, 503)
        self.assertEqual(self.s.runs(), [])
        self.assertEqual(self.trigger().status, 502)
        self.assertEqual(len(self.s.runs()), 1)

    def test_create_then_hang(self):
        self.s.create_then("hang:1.5")
        t0 = time.monotonic()
        with self.assertRaises(socket.timeout):
            self.trigger(timeout=0.3)
        self.assertLess(time.monotonic() - t0, 1.4)
        self.assertEqual(len(self.s.runs()), 1)  # created before the hang
        wait_until(lambda: self.s.in_flight() == 0, 5, "the hang to end")
        self.assertEqual(self.s.requests()[0].status, 200)

    def test_create_then_hold_until_released(self):
        self.s.create_then("hold", count=2)
        out = []
        threads = [threading.Thread(target=lambda: out.append(
            self.trigger())) for _ in range(2)]
        for t in threads:
            t.start()
        wait_until(lambda: self.s.holding() == 2, 5, "2 held POSTs")
        self.assertEqual(len(self.s.runs()), 2)
        self.assertEqual(out, [])
        self.assertEqual(self.s.release(), 2)
        for t in threads:
            t.join(5)
        self.assertEqual(sorted(r.json["data"]["id"] for r in out),
                         [x["id"] for x in self.s.runs()])
        self.assertEqual(self.s.holding(), 0)

    def test_create_then_hold_ends_when_the_client_goes(self):
        self.s.create_then("hold")
        c = socket.create_connection(("127.0.0.1", self.s.port), 5)
        body = b'{"cause":"k9"}'
        c.sendall(("POST %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s"
                   "\r\nContent-Type: application/json\r\nContent-Length: "
                   "%d\r\n\r\n" % (run_path(), TOKEN, len(body))).encode()
                  + body)
        wait_until(lambda: self.s.holding() == 1, 5, "the POST held")
        c.close()  # as a kill -9 of the client would
        wait_until(lambda: self.s.holding() == 0, 5, "the hold to end")
        wait_until(lambda: self.s.in_flight() == 0, 5, "the handler")
        (rec,) = self.s.requests()
        self.assertEqual((rec.status, rec.action), (None, "gone"))
        self.assertEqual(len(self.s.runs()), 1)
        self.assertEqual(self.s.release(), 0)

    def test_fail_list(self):
        self.trigger()
        self.s.fail_list(2)
        self.s.fail_list(1, status=429, retry_after=3)
        got = [self.list_runs() for _ in range(4)]
        self.assertEqual([(r.status, r.header("Retry-After")) for r in got],
                         [(500, None), (500, None), (429, "3"), (200, None)])
        self.assertIs(got[0].json["status"]["is_success"], False)
        self.s.fail_list(-1, status=503)
        self.assertEqual([self.list_runs().status for _ in range(3)],
                         [503] * 3)
        self.assertEqual(self.get_run(self.s.runs()[0]["id"]).status, 200)
        self.assertEqual(self.trigger().status, 200)  # only the list
        self.s.fail_list(0)
        self.assertEqual(self.list_runs().status, 200)
        self.assertEqual(self.s.list_calls(), 8)

    def test_fail_get(self):
        a = self.trigger().json["data"]["id"]
        b = self.trigger().json["data"]["id"]
        self.s.fail_get(1, 401)
        self.s.fail_get(1, 403)
        self.s.fail_get(1, 429, retry_after=7)
        self.s.fail_get(1, 500)
        got = [self.get_run(a) for _ in range(5)]
        self.assertEqual([(r.status, r.header("Retry-After")) for r in got],
                         [(401, None), (403, None), (429, "7"), (500, None),
                          (200, None)])
        self.s.fail_get(-1, 500, run_id=b)
        self.assertEqual(self.get_run(a).status, 200)
        self.assertEqual(self.get_run(b).status, 500)
        self.assertEqual(self.get_run(b).status, 500)
        self.s.fail_get(0)
        self.assertEqual(self.get_run(b).status, 200)
        self.assertEqual(self.list_runs().status, 200)

    def test_fail_cancel(self):
        self.s.script_runs(final=None, queued_s=0)
        rid = self.trigger().json["data"]["id"]
        self.wait_status(rid, 3)
        self.s.fail_cancel(1, 502)
        path = "/api/v2/accounts/%d/runs/%d/cancel/" % (ACCOUNT, rid)
        self.assertEqual(http_request(self.s.port, "POST", path, None,
                                      AUTH[:1]).status, 502)
        self.assertEqual(self.s.cancels, [])
        self.assertEqual(self.s.run_status(rid), 3)

    def test_plan_and_delay_leave_the_runs_api_alone(self):
        rid = self.trigger().json["data"]["id"]
        self.s.fail(503)
        self.s.set_random_failures(1.0, 1, [Answer(status=502)])
        self.assertEqual(self.list_runs().status, 200)
        self.assertEqual(self.get_run(rid).status, 200)
        self.assertEqual(self.s.plan_left(), 1)
        self.assertEqual(self.trigger().status, 503)
        self.assertEqual(self.trigger().status, 502)

    def test_many_runs_polled_concurrently(self):
        """1,000 runs, then every one polled on 8 keep-alive connections:
        each answer well under the 1 s a poll interval allows."""
        self.s.run_queued_s, self.s.run_running_s = 0.0, 0.0
        conn = http.client.HTTPConnection("127.0.0.1", self.s.port, timeout=10)
        ids = []
        for i in range(1000):
            conn.request("POST", run_path(job=1 + i % 10),
                         b'{"cause":"m"}', dict(AUTH))
            r = conn.getresponse()
            ids.append(json.loads(r.read())["data"]["id"])
        conn.close()
        worst = []
        def poll(part):
            c = http.client.HTTPConnection("127.0.0.1", self.s.port,
                                           timeout=10)
            w = 0.0
            for rid in part:
                t0 = time.monotonic()
                c.request("GET", "/api/v2/accounts/%d/runs/%d/"
                          % (ACCOUNT, rid), headers=dict(AUTH[:1]))
                r = c.getresponse()
                assert json.loads(r.read())["data"]["status"] == 10
                w = max(w, time.monotonic() - t0)
            c.close()
            worst.append(w)
        t0 = time.monotonic()
        threads = [threading.Thread(target=poll, args=(ids[k::8],))
                   for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        took = time.monotonic() - t0
        self.assertEqual(len(worst), 8)
        self.assertLess(took, 5 * harness.SLOW, "1000 polls took %.2fs" % took)
        self.assertLess(max(worst), 1.0 * harness.SLOW)
        self.assertEqual(self.s.get_calls(), 1000)
        r = self.list_runs(job_definition_id=3, order_by="-id", limit=100,
                           include_related='["trigger"]')
        self.assertEqual(r.json["extra"]["pagination"],
                         {"count": 100, "total_count": 100})


class StandaloneTest(unittest.TestCase):
    def test_standalone_prints_requests(self):
        port = harness.free_port()
        p = subprocess.Popen(
            [sys.executable, os.path.join(harness.HERE, "standin.py"),
             "--port", str(port), "--token", "T0K", "--queued-s", "0",
             "--running-s", "0", "--final", "20", "--first-run-id", "70001"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            def up():
                try:
                    socket.create_connection(("127.0.0.1", port), 1).close()
                    return True
                except OSError:
                    return False
            wait_until(up, 10, "the standalone stand-in to listen")
            r = http_request(port, "POST", "/api/v2/accounts/1/jobs/2/run/",
                             {"cause": "demo"},
                             [("Authorization", "Bearer T0K"),
                              ("Content-Type", "application/json")])
            self.assertEqual(r.status, 200)
            self.assertEqual(r.json["data"]["job_definition_id"], 2)
            self.assertEqual(r.json["data"]["id"], 70001)
            auth = [("Authorization", "Bearer T0K")]
            def ended():
                r = http_request(port, "GET",
                                 "/api/v2/accounts/1/runs/70001/", None, auth)
                return r.json["data"]["status"] == 20 and r
            r = wait_until(ended, 10, "the run to end with 20")
            self.assertEqual(r.json["data"]["status_message"], "Job failed")
            r = http_request(port, "GET", "/api/v2/accounts/1/runs/"
                             "?job_definition_id=2&order_by=-id", None, auth)
            self.assertEqual([x["id"] for x in r.json["data"]], [70001])
            r = http_request(port, "POST",
                             "/api/v2/accounts/1/runs/70001/cancel/", None,
                             auth)
            self.assertEqual(r.status, 200)
        finally:
            p.terminate()
            out = p.communicate(timeout=10)[0].decode()
        self.assertIn("POST /api/v2/accounts/1/jobs/2/run/", out)
        self.assertIn('{"cause":"demo"}', out)
        self.assertIn("-> 200 run=70001", out)
        self.assertIn("GET /api/v2/accounts/1/runs/?job_definition_id=2", out)
        self.assertIn("POST /api/v2/accounts/1/runs/70001/cancel/", out)


if __name__ == "__main__":
    unittest.main()
