#!/usr/bin/env python3
"""Hardening (issue 13): request framing (RFC 9112), numbers jansson
cannot hold, long dedup keys, a store file deleted under the daemon, FIFO
secrets. The slow-client load is in test_slow_clients.py."""

import json
import os
import signal
import socket
import time
import unittest

from harness import (DBT_TOKEN, DEFAULT_ENV, INBOUND_TOKEN, JOB, SLOW,
                     DaemonTest, dbt_trigger, event, make_config,
                     wait_delivered, wait_until)
from test_hostile import read_answers


class FramingTest(DaemonTest):
    def setUp(self):
        self.st = self.start_standin(token=DBT_TOKEN)
        self.d = self.start_daemon(
            make_config([dbt_trigger("t1", self.st, 1)]), env=DEFAULT_ENV,
            token=INBOUND_TOKEN, log_level="info")

    def raw(self, data, want=2, timeout=3.0):
        s = socket.create_connection(("127.0.0.1", self.d.port),
                                     timeout=5 * SLOW)
        try:
            try:
                s.sendall(data)
            except (BrokenPipeError, ConnectionResetError):
                pass
            return read_answers(s, want, timeout * SLOW)
        finally:
            s.close()

    def head(self, host=b"Host: x\r\n", version=b"HTTP/1.1"):
        return (b"POST /v1/events " + version + b"\r\n" + host +
                b"Authorization: Bearer " + INBOUND_TOKEN.encode() +
                b"\r\nContent-Type: application/json\r\n")

    def assertClosedWith(self, a, status, what):
        self.assertEqual(a.statuses(), [status], "%s: %r" % (what, a))
        self.assertIn(a.end, ("eof", "reset"), "%s: %r" % (what, a))
        hdrs, body = a.answers[0][1], a.answers[0][2]
        self.assertEqual(hdrs.get("content-type"), "application/json", what)
        self.assertIsInstance(json.loads(body.decode())["error"], str, what)

    def test_smuggling_framings_are_400_and_closed(self):
        ev = json.dumps(event()).encode()
        hidden = (self.head() + b"Content-Length: %d\r\n\r\n" % len(ev) + ev)
        chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(ev), ev)
        # Content-Length counts the chunked body plus a hidden request.
        a = self.raw(self.head() + b"Content-Length: %d\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n"
                     % (len(chunked) + len(hidden)) + chunked + hidden)
        self.assertClosedWith(a, 400, "Content-Length + Transfer-Encoding")
        # obs-fold: the Content-Length value on a continuation line.
        a = self.raw(self.head() + b"Content-Length:\r\n %d\r\n\r\n"
                     % len(hidden) + hidden)
        self.assertClosedWith(a, 400, "obs-folded Content-Length")
        # Nothing hidden was accepted.
        self.assertEqual(self.st.requests(), [])

    def test_host_header_is_required_once(self):
        ev = json.dumps(event()).encode()
        cl = b"Content-Length: %d\r\n\r\n" % len(ev)
        a = self.raw(self.head(host=b"") + cl + ev)
        self.assertClosedWith(a, 400, "HTTP/1.1 without Host")
        a = self.raw(self.head(host=b"Host: a\r\nHost: b\r\n") + cl + ev)
        self.assertClosedWith(a, 400, "two Host headers")
        a = self.raw(self.head(host=b"", version=b"HTTP/1.0") + cl + ev,
                     want=1)
        self.assertEqual(a.statuses(), [202], "HTTP/1.0 without Host: %r" % a)

    def test_unknown_transfer_encoding_is_501_at_once(self):
        t = time.monotonic()
        a = self.raw(self.head() + b"Transfer-Encoding: gzip\r\n\r\n"
                     b"\x1f\x8b", timeout=10)
        took = time.monotonic() - t
        self.assertClosedWith(a, 501, "Transfer-Encoding: gzip")
        self.assertLess(took, 2.0 * SLOW, "501 took %.2fs" % took)


class InputTest(DaemonTest):
    def test_numbers_jansson_cannot_hold(self):
        st = self.start_standin(token=DBT_TOKEN)
        big_rule = {"variable_name": "rows", "operation": "GREATER_THAN",
                    "value": "0"}
        t1 = dbt_trigger("t1", st, 1, cause="rows ${{erathos.rows}} "
                         "x ${{erathos.x}} n ${{erathos.n}}")
        t2 = dbt_trigger("t2", st, 2, rules=[big_rule])
        d = self.start_daemon(make_config([t1, t2]), env=DEFAULT_ENV,
                              token=INBOUND_TOKEN, log_level="info")
        ev = event()
        body = json.dumps(ev)[:-1] + (
            ', "rows": 18446744073709551616, "x": 1e400,'
            ' "n": [1, -99999999999999999999, {"d": 2E+999}]}')
        r = d.post_event(body.encode())
        self.assertEqual(r.status, 202, r)
        # the integer rule on 2^64 is false: only t1 matched
        self.assertEqual([x["trigger"] for x in r.json["deliveries"]], ["t1"])
        reqs = wait_delivered(st, [x["id"] for x in r.json["deliveries"]])
        cause = reqs[-1].json()["cause"]
        self.assertTrue(cause.startswith(
            "rows 18446744073709551616 x 1e400 n "
            "[1,-99999999999999999999,{\"d\":2E+999}]"), cause)

    def test_long_dedup_key_still_deduplicates(self):
        st = self.start_standin(token=DBT_TOKEN)
        d = self.start_daemon(make_config([dbt_trigger("t1", st, 1)]),
                              env=DEFAULT_ENV, token=INBOUND_TOKEN,
                              log_level="info")
        ev = event(table_name="t" * 5000)
        r1 = d.post_event(ev)
        self.assertEqual(r1.status, 202, r1)
        r2 = d.post_event(ev)
        self.assertEqual(r2.status, 200, r2)
        self.assertEqual(r2.json, {"status": "duplicate",
                                   "event": r1.json["event"]})


class StoreGoneTest(DaemonTest):
    def test_deleted_store_is_noticed(self):
        st = self.start_standin(token=DBT_TOKEN)
        d = self.start_daemon(make_config([dbt_trigger("t1", st, 1)]),
                              env=DEFAULT_ENV, token=INBOUND_TOKEN,
                              log_level="info")
        d.accept(event())
        self.assertEqual(d.request("GET", "/readyz").status, 200)
        for suffix in ("", "-wal", "-shm"):
            try:
                os.unlink(d.store + suffix)
            except FileNotFoundError:
                pass
        r = d.post_event(event())
        self.assertEqual(r.status, 503, r)
        self.assertTrue(r.header("Retry-After"), r)
        self.assertEqual(d.request("GET", "/readyz").status, 503)
        recs = [x for x in d.log_records() if x.get("msg") == "store file gone"]
        self.assertEqual(len(recs), 1, d.log_tail())
        self.assertEqual(recs[0].get("level"), "error")
        self.assertEqual(d.post_event(event()).status, 503)


class FifoSecretTest(DaemonTest):
    def config(self, d, path):
        return make_config([dbt_trigger("t1", None, 1)], secrets={
            "dbt_personal_token": {"file": path}})

    def test_check_with_fifo_secret_fails_promptly(self):
        d = self.new_daemon("triggers: []\n", env=DEFAULT_ENV)
        fifo = os.path.join(d.tmp, "token.fifo")
        os.mkfifo(fifo)
        link = os.path.join(d.tmp, "token.link")
        d.write_file("token.txt", "s3cret\n")
        os.symlink(os.path.join(d.tmp, "token.txt"), link)
        d.write_config(self.config(d, link))  # a symlink to a file: fine
        self.assertEqual(d.check().returncode, 0, d.check().stderr)
        d.write_config(self.config(d, fifo))
        t = time.monotonic()
        p = d.check(timeout=10)
        self.assertLess(time.monotonic() - t, 5 * SLOW)
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn('secret "dbt_personal_token"', p.stderr)
        self.assertIn("not a regular file", p.stderr)

    def test_reload_with_fifo_secret_keeps_old_config(self):
        d = self.new_daemon("triggers: []\n", env=DEFAULT_ENV,
                            token=INBOUND_TOKEN)
        good = d.write_file("token.txt", "s3cret\n")
        d.write_config(self.config(d, good))
        d.start()
        fifo = os.path.join(d.tmp, "token.fifo")
        os.mkfifo(fifo)
        d.write_config(self.config(d, fifo))
        d.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "not a regular file" in d.log(), 10 * SLOW,
                   "the reload error in the log")
        self.assertIn('secret \\"dbt_personal_token\\"', d.log())
        self.assertEqual(d.request("GET", "/readyz").status, 200)
        self.assertIn(d.post_event(event()).status, (200, 202))
        t = time.monotonic()
        d.stopped_by_us = True
        d.proc.send_signal(signal.SIGTERM)
        self.assertEqual(d.proc.wait(10), 0)
        self.assertLess(time.monotonic() - t, 10)


if __name__ == "__main__":
    unittest.main()
