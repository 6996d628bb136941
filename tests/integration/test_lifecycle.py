#!/usr/bin/env python3
"""Life cycle (SPEC section 7): SIGTERM/SIGINT finish in-flight work and
exit 0, pending deliveries survive a restart, /readyz, the log format with
and without JOURNAL_STREAM, and sd_notify (READY, RELOADING, STOPPING,
WATCHDOG) against a socket of the test's own."""

import re
import signal
import time
import unittest

import harness
from harness import SLOW, free_port, wait_until
from opshelp import (INBOUND_TOKEN, SECRET_ENV, NotifySocket, config_yaml,
                     delivery_ids, event, get_delivery, has_libsystemd,
                     port_accepts, run_url, scrape, sighup_and_wait,
                     trigger_yaml, wait_delivery)
from standin import Standin

LOGFMT_START = re.compile(
    r"^ts=\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z level=(debug|info|"
    r"warn|error) msg=")
PRIORITY = {"debug": "7", "info": "6", "warn": "4", "error": "3"}


def daemon_lines(d):
    """The log lines the daemon wrote (without the harness's markers)."""
    return [l for l in d.log().split("\n")
            if l and not l.startswith("--- harness:")]


class LifecycleTest(harness.DaemonTest):

    def cfg(self, st_or_port, **kw):
        return config_yaml(trigger_yaml("to-dbt", run_url(st_or_port)), **kw)

    def start(self, cfg, env=None, **kw):
        e = dict(SECRET_ENV)
        e.update(env or {})
        return self.start_daemon(cfg, env=e, token=INBOUND_TOKEN, **kw)

    # ---- signals ----

    def check_stop_signal(self, sig):
        st = self.start_standin()
        d = self.start(self.cfg(st))
        (did,) = delivery_ids(d.accept(event()))
        wait_delivery(d, did, "delivered")
        t0 = time.monotonic()
        d.proc.send_signal(sig)
        rc = d.wait_exit(10)
        self.assertEqual(rc, 0, "exit status after %s; log:\n%s"
                         % (sig.name, d.log_tail()))
        self.assertLess(time.monotonic() - t0, 5 * SLOW,
                        "an idle daemon stops at once")
        self.assertFalse(port_accepts(d.port), "the listener is closed")

    def test_sigterm_exits_0(self):
        self.check_stop_signal(signal.SIGTERM)

    def test_sigint_exits_0(self):
        self.check_stop_signal(signal.SIGINT)

    def test_slow_in_flight_attempt_completes_before_exit(self):
        st = self.start_standin()
        d = self.start(self.cfg(st))
        st.slow(2.0)
        (did,) = delivery_ids(d.accept(event()))
        st.wait_for(lambda reqs: len(reqs) == 1, 10, "the attempt to start")
        t_signal = time.monotonic()
        d.proc.send_signal(signal.SIGTERM)

        # the listener closes at once: new events are refused (connection
        # refused, or 503 with Retry-After while it closes), never another
        # 5xx. The probe matches no trigger, so nothing new gets queued.
        def refused():
            try:
                r = d.post_event(event(status="FAILED"))
            except OSError:
                return time.monotonic()
            if r.status == 503:
                self.assertIsNotNone(r.header("Retry-After"), r)
                return time.monotonic()
            self.assertEqual(r.status, 200, r)  # came before the signal
            return None
        t_refused = wait_until(refused, 5,
                               "new events to be refused while stopping")
        rc = d.wait_exit(15)
        t_exit = time.monotonic()
        self.assertEqual(rc, 0, "exit status; log:\n%s" % d.log_tail())
        (rec,) = st.requests()[:1]
        self.assertEqual(rec.status, 200, "the slow attempt was answered")
        self.assertIsNotNone(rec.t_answer)
        self.assertGreaterEqual(t_exit, rec.t_answer,
                                "triggerd exited before its attempt ended")
        self.assertLess(t_refused, rec.t_answer,
                        "the listener closes first, not after the "
                        "attempts in flight")
        self.assertLess(t_exit - t_signal, 10 * SLOW + 2,
                        "stopping takes 10 s at most")
        n = st.count()

        # recorded delivered: after a restart it is not sent again
        d.start()
        o = get_delivery(d, did)
        self.assertEqual((o["state"], o["attempts"], o["last_status"]),
                         ("delivered", 1, 200), o)
        self.assertEqual(len(o["history"]), 1, o)
        self.assertSentNothingMore(st, n, window=0.5,
                                   why="after restart: it was delivered")

    def test_pending_deliveries_survive_restart(self):
        port = free_port()  # the stand-in comes up only after the restart
        d = self.start(self.cfg(port, initial_backoff="100ms",
                                max_backoff="300ms", max_attempts=1000))
        ids = []
        for _ in range(3):
            ids += delivery_ids(d.accept(event()))
        for did in ids:
            wait_delivery(d, did, lambda o: o["attempts"] >= 1)
        self.assertEqual(d.terminate(), 0, d.log_tail())
        st = Standin(port=port).start()
        self.addCleanup(st.stop)
        self.assertEqual(st.count(), 0)
        d.start()
        for did in ids:
            o = wait_delivery(d, did, "delivered", timeout=20)
            self.assertGreaterEqual(len(o["history"]), 2, o)
            self.assertEqual(o["history"][-1]["status"], 200)
        keys = sorted(r.header("Idempotency-Key")
                      for r in st.posts_to_run_requests())
        self.assertEqual(keys, sorted(ids), "each sent once, after restart")
        self.assertEqual(scrape(d).value("triggerd_deliveries_pending"), 0)

    def test_readyz(self):
        st = self.start_standin()
        d = self.start(self.cfg(st))
        r = d.request("GET", "/readyz")
        self.assertEqual(r.status, 200, r)
        self.assertTrue((r.header("Content-Type") or "")
                        .startswith("application/json"), r.headers)
        r = d.request("GET", "/healthz")
        self.assertEqual((r.status, r.json), (200, {"status": "ok"}))

    # ---- logs ----

    def exercise(self, d, st):
        """Makes the daemon log at several levels: an event, a delivery,
        a failed reload (error), a good reload, a stop."""
        (did,) = delivery_ids(d.accept(event()))
        wait_delivery(d, did, "delivered")
        good = d.config_text
        d.write_config(good + "nonsense_key: 1\n")
        sighup_and_wait(self, d, "failure")
        d.write_config(good)
        sighup_and_wait(self, d, "success")
        self.assertEqual(d.terminate(), 0)

    def test_logfmt_without_journal(self):
        st = self.start_standin()
        d = self.start(self.cfg(st))
        self.exercise(d, st)
        lines = daemon_lines(d)
        self.assertGreater(len(lines), 3)
        for line in lines:
            self.assertRegex(line, LOGFMT_START)
            rec = harness.parse_logfmt(line)
            self.assertNotIn("_raw", rec, "not logfmt: %r" % line)
        levels = {harness.parse_logfmt(l)["level"] for l in lines}
        self.assertIn("error", levels)
        self.assertIn("info", levels)
        for secret in SECRET_ENV.values():
            self.assertNotIn(secret, d.log())

    def test_journal_stream_priority_prefix(self):
        st = self.start_standin()
        d = self.start(self.cfg(st), env={"JOURNAL_STREAM": "8:123456"})
        self.exercise(d, st)
        self.check_journal_lines(d)

    def test_config_warnings_at_start_are_log_records(self):
        # A config --check warns about (a trigger without a STATUS rule, a
        # plain-string secret): the warnings the daemon logs when it
        # starts are log records too, in logfmt, and under journald they
        # carry their priority like every other line.
        st = self.start_standin()
        cfg = config_yaml(trigger_yaml("to-dbt", run_url(st), rules=[]))
        cfg = cfg.replace("other_secret: {env: OPS_OTHER_SECRET}",
                          "other_secret: plain-text-secret")
        for journal in (False, True):
            with self.subTest(JOURNAL_STREAM=journal):
                env = {"JOURNAL_STREAM": "8:123456"} if journal else {}
                d = self.start(cfg, env=env)
                self.assertEqual(d.terminate(), 0)
                self.assertIn("other_secret", d.log(),
                              "the config warnings are logged")
                self.assertNotIn("plain-text-secret", d.log())
                if journal:
                    self.check_journal_lines(d)
                else:
                    for line in daemon_lines(d):
                        self.assertRegex(line, LOGFMT_START)

    def check_journal_lines(self, d):
        lines = daemon_lines(d)
        self.assertGreater(len(lines), 1)
        for line in lines:
            m = re.match(r"^<([0-7])>(.*)$", line)
            self.assertTrue(m, "no <N> priority prefix: %r" % line)
            self.assertRegex(m.group(2), LOGFMT_START)
            level = harness.parse_logfmt(m.group(2)).get("level")
            self.assertEqual(m.group(1), PRIORITY[level],
                             "priority of a level=%s line: %r"
                             % (level, line))

    # ---- sd_notify ----

    def notify_daemon(self, st, env=None, on_message=None):
        if not has_libsystemd():
            self.skipTest("TRIGGERD_BIN is built without libsystemd "
                          "(ldd shows no libsystemd): sd_notify is a no-op")
        e = dict(SECRET_ENV)
        e.update(env or {})
        d = self.new_daemon(self.cfg(st), env=e, token=INBOUND_TOKEN)
        ns = NotifySocket(d.tmp, on_message=on_message)
        self.addCleanup(ns.close)
        d.env["NOTIFY_SOCKET"] = ns.path
        return d, ns

    def test_sd_notify_ready_reloading_stopping(self):
        st = self.start_standin()
        holder = {}
        d, ns = self.notify_daemon(
            st, on_message=lambda f: port_accepts(holder["port"])
            if f.get("READY") == "1" else None)
        holder["port"] = d.port
        d.start(wait=False)
        msgs = ns.wait_for(lambda ms: any(m[1].get("READY") == "1"
                                          for m in ms), 10, "READY=1")
        first_ready = next(m for m in msgs if m[1].get("READY") == "1")
        self.assertIs(first_ready[3], True,
                      "READY=1 came before the port accepted connections")
        d.wait_healthy()
        self.assertEqual([m[1] for m in msgs if "RELOADING" in m[1] or
                          "STOPPING" in m[1]], [])

        n = len(ns.messages())
        sighup_and_wait(self, d, "success")
        after = ns.wait_for(
            lambda ms: any(m[1].get("READY") == "1" for m in ms[n:]), 10,
            "READY=1 after the reload")[n:]
        states = [("RELOADING" if m[1].get("RELOADING") == "1" else
                   "READY" if m[1].get("READY") == "1" else None)
                  for m in after]
        states = [s for s in states if s]
        self.assertEqual(states[:2], ["RELOADING", "READY"],
                         "around SIGHUP: %r" % [m[2] for m in after])
        rel = next(m for m in after if m[1].get("RELOADING") == "1")
        self.assertRegex(rel[1].get("MONOTONIC_USEC", ""), r"^[0-9]+$",
                         "RELOADING=1 carries MONOTONIC_USEC")

        n = len(ns.messages())
        self.assertEqual(d.terminate(), 0)
        self.assertIn("1", [m[1].get("STOPPING") for m in ns.messages()[n:]],
                      "STOPPING=1 on SIGTERM: %r"
                      % [m[2] for m in ns.messages()[n:]])

    def test_sd_notify_watchdog(self):
        st = self.start_standin()
        d, ns = self.notify_daemon(st, env={"WATCHDOG_USEC": "200000"})
        d.start()
        ns.wait_for(lambda ms: any(m[1].get("READY") == "1" for m in ms),
                    10, "READY=1")
        msgs = ns.wait_for(
            lambda ms: sum(m[1].get("WATCHDOG") == "1" for m in ms) >= 6,
            10, "six WATCHDOG=1 pings")
        pings = [m[0] for m in msgs if m[1].get("WATCHDOG") == "1"]
        gaps = sorted(b - a for a, b in zip(pings, pings[1:]))
        median = gaps[len(gaps) // 2]
        # systemd wants a ping within WATCHDOG_USEC (0.2 s); sd_watchdog
        # practice is every half of it. Generous bounds: a loaded machine.
        self.assertTrue(0.03 <= median < 0.2,
                        "WATCHDOG=1 every %.3f s (median); gaps %r"
                        % (median, gaps))
        self.assertLess(gaps[-1], 0.5 * SLOW, "longest gap %r" % gaps)
        # pings go on while the daemon works and across a reload
        n = len(pings)
        (did,) = delivery_ids(d.accept(event()))
        wait_delivery(d, did, "delivered")
        sighup_and_wait(self, d, "success")
        ns.wait_for(lambda ms: sum(m[1].get("WATCHDOG") == "1"
                                   for m in ms) >= n + 3, 10,
                    "WATCHDOG=1 pings after a reload")

    def test_no_notify_socket_no_messages_needed(self):
        # without NOTIFY_SOCKET the daemon runs as usual (sd_notify is a
        # no-op), and an unusable NOTIFY_SOCKET is not fatal either
        st = self.start_standin()
        d = self.start(self.cfg(st),
                       env={"NOTIFY_SOCKET": "/nonexistent/notify.sock"})
        d.accept(event())
        st.wait_for_requests(1)
        self.assertEqual(d.terminate(), 0)


if __name__ == "__main__":
    unittest.main()
