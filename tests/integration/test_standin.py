#!/usr/bin/env python3
"""The dbt Cloud stand-in itself: what it accepts and refuses (as
dbt-cloud-openapi-v2.yaml says), its scripted failures, its records.
No triggerd involved, so these run before the daemon exists."""

import http.client
import os
import socket
import subprocess
import sys
import threading
import time
import unittest

import harness
from harness import http_request, wait_until
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


class StandaloneTest(unittest.TestCase):
    def test_standalone_prints_requests(self):
        port = harness.free_port()
        p = subprocess.Popen(
            [sys.executable, os.path.join(harness.HERE, "standin.py"),
             "--port", str(port), "--token", "T0K"],
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
        finally:
            p.terminate()
            out = p.communicate(timeout=10)[0].decode()
        self.assertIn("POST /api/v2/accounts/1/jobs/2/run/", out)
        self.assertIn('{"cause":"demo"}', out)
        self.assertIn("-> 200", out)


if __name__ == "__main__":
    unittest.main()
