#!/usr/bin/env python3
"""POST /v1/events as SPEC section 2 states it: every status code, its body,
deduplication, and that nothing is stored for a 4xx."""

import http.client
import json
import socket
import unittest

import harness
from harness import (DBT_TOKEN, DEFAULT_ENV, INBOUND_TOKEN, JOB, DaemonTest,
                     SLOW, barrier, dbt_trigger, event, keys_of, make_config,
                     wait_delivered)

SECOND_TOKEN = "inb-second-5d0e77-token"
OTHER_JOB = "11111111-2222-4333-8444-555555555555"


class EventsApiTest(DaemonTest):
    def setUp(self):
        self.st = self.start_standin(token=DBT_TOKEN)
        triggers = [
            dbt_trigger("t1", self.st, 1),
            dbt_trigger("t2", self.st, 2,
                        cause="t2 by ${{erathos.triggered_by}}"),
        ]
        cfg = make_config(
            triggers,
            server={"max_body": "1KiB",
                    "auth": {"tokens": ["${{secrets.inbound_token}}",
                                        "${{secrets.second_token}}"]}},
            secrets={"second_token": {"file": "@TMP@/second_token"}})
        self.d = self.new_daemon(cfg, env=DEFAULT_ENV, token=INBOUND_TOKEN)
        self.d.write_file("second_token", SECOND_TOKEN + "\n")
        self.d.start()

    def assertJsonError(self, r, status):
        self.assertEqual(r.status, status, r)
        self.assertTrue((r.header("Content-Type") or "").startswith(
            "application/json"), r.headers)
        self.assertIsInstance(r.json, dict, r)
        self.assertEqual(list(r.json), ["error"], r)
        self.assertIsInstance(r.json["error"], str)
        self.assertNotEqual(r.json["error"], "")

    # ---- 202 / 200 ----

    def test_accepted_body_and_deliveries(self):
        r = self.d.post_event(event())
        self.assertEqual(r.status, 202, r)
        self.assertTrue(
            r.header("Content-Type").startswith("application/json"))
        self.assertEqual(sorted(r.json), ["deliveries", "event", "status"])
        self.assertEqual(r.json["status"], "accepted")
        self.assertIsInstance(r.json["event"], str)
        self.assertNotEqual(r.json["event"], "")
        dls = r.json["deliveries"]
        self.assertEqual(sorted(d["trigger"] for d in dls), ["t1", "t2"])
        for dl in dls:
            self.assertEqual(sorted(dl), ["id", "trigger"])
            self.assertIsInstance(dl["id"], str)
        ids = [dl["id"] for dl in dls]
        self.assertEqual(len(set(ids + [r.json["event"]])), 3)
        reqs = wait_delivered(self.st, ids)
        by_key = {q.header("Idempotency-Key"): q for q in reqs}
        for dl in dls:
            n = dl["trigger"][1]
            self.assertEqual(
                by_key[dl["id"]].path,
                "/api/v2/accounts/70403103912345/jobs/%s/run/" % n)

    def test_duplicate(self):
        ev = event()
        first = self.d.post_event(ev)
        self.assertEqual(first.status, 202, first)
        again = self.d.post_event(ev)
        self.assertEqual(again.status, 200, again)
        self.assertEqual(again.json, {"status": "duplicate",
                                      "event": first.json["event"]})
        # The key is execution_id:job_id:table_name; other fields and the
        # keys' case do not matter.
        variant = {k.upper(): v for k, v in ev.items()}
        variant["ROWS"] = "7"
        again = self.d.post_event(variant)
        self.assertEqual(again.json, {"status": "duplicate",
                                      "event": first.json["event"]})
        other_table = dict(ev, table_name="customers")
        third = self.d.post_event(other_table)
        self.assertEqual(third.status, 202, third)
        # Without execution_id the key is incomplete: never deduplicated.
        no_exec = dict(ev, execution_id=None)
        del no_exec["execution_id"]
        a, b = self.d.post_event(no_exec), self.d.post_event(no_exec)
        self.assertEqual((a.status, b.status), (202, 202), (a, b))
        self.assertNotEqual(a.json["event"], b.json["event"])
        ids = [dl["id"] for r in (first, third, a, b)
               for dl in r.json["deliveries"]]
        self.assertEqual(len(ids), 8)
        reqs = barrier(self, self.d, self.st)
        self.assertEqual(len(reqs), 8 + 2, keys_of(reqs))
        self.assertEqual(set(keys_of(reqs)) & set(ids), set(ids))

    def test_unmatched(self):
        for ev in (event(job=OTHER_JOB), event(status="FAILED")):
            r = self.d.post_event(ev)
            self.assertEqual(r.status, 200, r)
            self.assertEqual(sorted(r.json), ["deliveries", "event", "status"])
            self.assertEqual(r.json["status"], "unmatched")
            self.assertEqual(r.json["deliveries"], [])
            self.assertIsInstance(r.json["event"], str)
            # Only accepted events are remembered for dedup.
            again = self.d.post_event(ev)
            self.assertEqual(again.json["status"], "unmatched", again)
        reqs = barrier(self, self.d, self.st)
        self.assertEqual(len(reqs), 2, reqs)

    # ---- 4xx ----

    def test_400(self):
        bodies = [b'{"job_id": ', b"", b"[1,2]",
                  json.dumps([event()]).encode(), b"null", b'"a string"',
                  b"42", b'{"status":"FINISHED"}', b'{"job_id":""}',
                  b'{"job_id":"%s","JOB_ID":"%s"}' % (JOB.encode(),
                                                       JOB.encode())]
        for body in bodies:
            with self.subTest(body=body):
                self.assertJsonError(self.d.post_event(body), 400)

    def test_401(self):
        cases = [None, "wrong", INBOUND_TOKEN[:-1], INBOUND_TOKEN + "x", ""]
        for tok in cases:
            with self.subTest(token=tok):
                r = self.d.post_event(event(), token=tok)
                self.assertJsonError(r, 401)
                self.assertTrue((r.header("WWW-Authenticate") or "")
                                .startswith("Bearer"), r.headers)
        r = self.d.post_event(event(), token=None, headers=[
            ("Authorization", "Basic " + INBOUND_TOKEN)])
        self.assertJsonError(r, 401)
        self.assertEqual(self.d.post_event(event()).status, 202)
        r = self.d.post_event(event(), token=SECOND_TOKEN)
        self.assertEqual(r.status, 202, r)

    def test_404_and_405(self):
        for method, path in (("POST", "/v1/event"), ("POST", "/v1/events/x"),
                             ("GET", "/nope"), ("POST", "/")):
            with self.subTest(path=path):
                r = self.d.request(method, path, event(), [
                    ("Authorization", "Bearer " + INBOUND_TOKEN),
                    ("Content-Type", "application/json")])
                self.assertJsonError(r, 404)
        for method in ("GET", "PUT", "DELETE"):
            with self.subTest(method=method):
                r = self.d.request(method, "/v1/events", None, [
                    ("Authorization", "Bearer " + INBOUND_TOKEN)])
                self.assertJsonError(r, 405)
                allow = [m.strip() for m in
                         (r.header("Allow") or "").split(",")]
                self.assertEqual(allow, ["POST"], r.headers)
        r = self.d.request("POST", "/healthz", b"{}")
        self.assertJsonError(r, 405)
        self.assertIn("GET", [m.strip() for m in r.header("Allow").split(",")])

    def test_413(self):
        def padded(size):
            ev = event(pad="")
            n = size - len(json.dumps(ev, separators=(",", ":")))
            ev["pad"] = "x" * n
            body = json.dumps(ev, separators=(",", ":")).encode()
            self.assertEqual(len(body), size)
            return body
        self.assertEqual(self.d.post_event(padded(1024)).status, 202)
        self.assertJsonError(self.d.post_event(padded(1025)), 413)
        self.assertJsonError(self.d.post_event(padded(64 * 1024)), 413)

    def test_413_huge_content_length_answered_without_the_body(self):
        conn = socket.create_connection(("127.0.0.1", self.d.port),
                                        timeout=10 * SLOW)
        try:
            conn.sendall(b"POST /v1/events HTTP/1.1\r\nHost: x\r\n"
                         b"Authorization: Bearer " + INBOUND_TOKEN.encode() +
                         b"\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 10000000000\r\n\r\n{")
            resp = http.client.HTTPResponse(conn)
            resp.begin()
            body = resp.read(4096)
            self.assertJsonError(
                harness.Response(resp.status, resp.getheaders(), body), 413)
        finally:
            conn.close()

    def test_413_chunked(self):
        body = json.dumps(event(pad="y" * 3000)).encode()
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 500]),
                                            body[i:i + 500])
                          for i in range(0, len(body), 500)) + b"0\r\n\r\n"
        r = self.d.request("POST", "/v1/events", chunks, [
            ("Authorization", "Bearer " + INBOUND_TOKEN),
            ("Content-Type", "application/json"),
            ("Transfer-Encoding", "chunked")])
        self.assertJsonError(r, 413)

    def test_415(self):
        for ctype in ("text/plain", "application/x-www-form-urlencoded",
                      "application/jsonx"):
            with self.subTest(ctype=ctype):
                self.assertJsonError(
                    self.d.post_event(event(), content_type=ctype), 415)
        for ctype in ("application/json; charset=utf-8", None,
                      "Application/JSON"):
            with self.subTest(ctype=ctype):
                r = self.d.post_event(event(), content_type=ctype)
                self.assertEqual(r.status, 202, r)

    # ---- what an event may hold ----

    def test_nul_inside_a_string_is_accepted_and_encoded(self):
        body = (b'{"job_id":"%s","status":"FINISHED","execution_id":"e-nul",'
                b'"table_name":"a\\u0000b","triggered_by":"x\\u0000y"}'
                % JOB.encode())
        r = self.d.post_event(body)
        self.assertEqual(r.status, 202, r)
        reqs = wait_delivered(self.st, [x["id"] for x in r.json["deliveries"]])
        bodies = sorted(q.body for q in reqs)
        self.assertEqual(bodies, [b'{"cause":"t1: a\\u0000b"}',
                                  b'{"cause":"t2 by x\\u0000y"}'])

    def test_keys_are_case_insensitive(self):
        ev = {"Job_Id": JOB.upper(), "STATUS": "FINISHED",
              "Execution_ID": "e-case", "TABLE_NAME": "Mixed"}
        r = self.d.post_event(ev)
        self.assertEqual(r.status, 202, r)
        self.assertEqual(sorted(x["trigger"] for x in r.json["deliveries"]),
                         ["t1", "t2"])
        reqs = wait_delivered(self.st, [x["id"] for x in r.json["deliveries"]])
        self.assertIn(b'{"cause":"t1: Mixed"}', [q.body for q in reqs])
        again = self.d.post_event({k.lower(): v for k, v in ev.items()})
        self.assertEqual(again.json, {"status": "duplicate",
                                      "event": r.json["event"]})

    def test_health_and_ready(self):
        r = self.d.request("GET", "/healthz")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json, {"status": "ok"})
        self.assertTrue(
            r.header("Content-Type").startswith("application/json"))
        self.assertEqual(self.d.request("GET", "/readyz").status, 200)

    # ---- nothing stored for a 4xx ----

    def test_nothing_is_stored_for_4xx(self):
        evs = [event() for _ in range(6)]
        auth = [("Authorization", "Bearer " + INBOUND_TOKEN)]
        big = dict(evs[2], pad="z" * 2000)
        self.assertJsonError(self.d.post_event(evs[0], token=None), 401)
        self.assertJsonError(self.d.post_event(evs[1], token="bad"), 401)
        self.assertJsonError(self.d.post_event(big), 413)
        self.assertJsonError(self.d.post_event(evs[3],
                                               content_type="text/plain"), 415)
        self.assertJsonError(self.d.request("POST", "/v1/event", evs[4],
                                            auth), 404)
        self.assertJsonError(self.d.request("PUT", "/v1/events", evs[5],
                                            auth), 405)
        # A kill -9 and a restart: anything stored would now be sent.
        self.d.restart()
        reqs = barrier(self, self.d, self.st)
        self.assertEqual(len(reqs), 2, reqs)
        # The dedup keys were not remembered either.
        for ev in evs:
            r = self.d.post_event(ev)
            self.assertEqual(r.status, 202, r)


if __name__ == "__main__":
    unittest.main()
