#!/usr/bin/env python3
"""Slow clients (issue 13): slow-drip and idle connections, spread over
loopback source addresses (one address holds at most 256), must not
delay a normal client: 200 events each answered 202, p99 under 100 ms,
with the daemon's threads bounded. A request still unfinished after the
deadline (20 s) is cut. Short by default (300 + 300 connections);
TRIGGERD_LONG=1 runs 5,000 dripping + 5,000 idle. Figures on stderr."""

import os
import socket
import sys
import threading
import time
import unittest

from harness import (DBT_TOKEN, DEFAULT_ENV, INBOUND_TOKEN, SLOW, DaemonTest,
                     dbt_trigger, event, make_config, wait_until)
from test_hostile import raise_nofile, rss_kib, under_tsan

LONG = os.environ.get("TRIGGERD_LONG") == "1"
EACH = 5000 if LONG else 300
NOFILE = raise_nofile(2 * EACH + 200)
P99_MAX = 0.100 * SLOW
DEADLINE_S = 20


def threads_of(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    return -1


def source(i):
    """The i-th loopback source address, 200 connections to each."""
    n = i // 200
    return "127.1.%d.%d" % (n // 250, n % 250 + 1)


class SlowClientsTest(DaemonTest):
    def setUp(self):
        self.st = self.start_standin(token=DBT_TOKEN)
        self.d = self.start_daemon(
            make_config([dbt_trigger("t1", self.st, 1)]), env=DEFAULT_ENV,
            token=INBOUND_TOKEN, log_level="info")

    def open_many(self, n, first):
        socks = []
        for i in range(first, first + n):
            s = socket.socket()
            s.bind((source(i), 0))
            s.settimeout(5 * SLOW)
            s.connect(("127.0.0.1", self.d.port))
            socks.append(s)
        return socks

    def test_slow_and_idle_connections_do_not_delay_others(self):
        if under_tsan():
            self.skipTest("measures TSan, not the server")
        if NOFILE < 2 * EACH + 100:
            self.skipTest("RLIMIT_NOFILE %d too low" % NOFILE)
        t0 = time.monotonic()
        drips = self.open_many(EACH, 0)
        idle = self.open_many(EACH, EACH)
        self.addCleanup(lambda: [s.close() for s in drips + idle])
        for s in drips:
            s.sendall(b"POST /v1/events HTTP/1.1\r\nHost: x\r\n")
            s.setblocking(False)
        t_open = time.monotonic() - t0
        stop = threading.Event()

        def dripper():
            pattern = b"X-Drip: " + b"a" * 100000
            pos = 0
            while not stop.wait(1.0):
                b = pattern[pos:pos + 1]
                pos += 1
                for s in drips:
                    try:
                        s.send(b)
                    except OSError:
                        pass
        th = threading.Thread(target=dripper, daemon=True)
        th.start()
        self.addCleanup(lambda: (stop.set(), th.join(5)))
        lat, bad = [], []
        for _ in range(200):
            t = time.monotonic()
            r = self.d.post_event(event())
            lat.append(time.monotonic() - t)
            if r.status != 202:
                bad.append(r)
        threads = threads_of(self.d.proc.pid)
        rss = rss_kib(self.d.proc.pid)
        lat.sort()
        p50, p99 = lat[len(lat) // 2], lat[int(len(lat) * 0.99) - 1]
        sys.stderr.write(
            "\nslow clients: %d dripping + %d idle opened in %.1fs; 200 "
            "events: p50 %.1f ms, p99 %.1f ms, max %.1f ms; daemon "
            "threads %d, RSS %.1f MiB\n" % (
                EACH, EACH, t_open, p50 * 1000, p99 * 1000, lat[-1] * 1000,
                threads, rss / 1024))
        self.assertEqual(bad, [])
        self.assertLess(p99, P99_MAX)
        self.assertLess(threads, 40, "threads are not per connection")

    def test_a_request_past_the_deadline_is_cut(self):
        s = self.open_many(1, 0)[0]
        self.addCleanup(s.close)
        s.sendall(b"POST /v1/events HTTP/1.1\r\nHost: x\r\n")
        t0 = time.monotonic()
        s.settimeout(1.0)
        closed = [False]

        def cut():
            try:
                s.send(b"a")  # one byte a second: never idle
                return s.recv(1) == b""
            except socket.timeout:
                return False
            except OSError:
                return True
        wait_until(cut, (DEADLINE_S + 10) * SLOW, "the request cut",
                   interval=0.0)
        took = time.monotonic() - t0
        sys.stderr.write("\ndeadline: dripping request cut after %.1fs\n"
                         % took)
        self.assertGreater(took, DEADLINE_S - 2)
        self.assertEqual(self.d.post_event(event()).status, 202)


if __name__ == "__main__":
    unittest.main()
