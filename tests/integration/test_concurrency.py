#!/usr/bin/env python3
"""200 events posted at once from many threads: 200 distinct 202s, and each
delivery reaches dbt Cloud exactly once (the Idempotency-Keys received are
the delivery ids answered), also after a restart."""

import collections
import concurrent.futures
import sys
import time
import unittest

from harness import (DBT_TOKEN, DEFAULT_ENV, INBOUND_TOKEN, DaemonTest,
                     barrier, dbt_trigger, event, keys_of, make_config,
                     wait_delivered)

N = 200


class ConcurrencyTest(DaemonTest):
    def test_200_concurrent_events_each_delivered_once(self):
        st = self.start_standin(token=DBT_TOKEN)
        cfg = make_config([dbt_trigger("t1", st, 1,
                                       cause="${{erathos.execution_id}}")],
                          dispatch={"workers": 4,
                                    "max_in_flight_per_trigger": 4})
        d = self.start_daemon(cfg, env=DEFAULT_ENV, token=INBOUND_TOKEN)
        events = [event() for _ in range(N)]
        t0 = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
            answers = list(pool.map(d.post_event, events))
        took = time.monotonic() - t0
        statuses = collections.Counter(r.status for r in answers)
        self.assertEqual(statuses, {202: N}, [r for r in answers
                                              if r.status != 202][:5])
        event_ids = {r.json["event"] for r in answers}
        delivery_ids = [dl["id"] for r in answers
                        for dl in r.json["deliveries"]]
        self.assertEqual(len(event_ids), N)
        self.assertEqual(len(set(delivery_ids)), N)
        self.assertEqual(len(delivery_ids), N)

        reqs = wait_delivered(st, delivery_ids, timeout=60)
        took_all = time.monotonic() - t0
        counts = collections.Counter(keys_of(reqs))
        self.assertEqual(set(counts), set(delivery_ids))
        self.assertEqual(set(counts.values()), {1}, "sent more than once: %r"
                         % {k: c for k, c in counts.items() if c > 1})
        # Each event's own body went with its own delivery.
        by_key = {q.header("Idempotency-Key"): q for q in reqs}
        for r, ev in zip(answers, events):
            (dl,) = r.json["deliveries"]
            q = by_key[dl["id"]]
            self.assertEqual(q.body, b'{"cause":"%s"}'
                             % ev["execution_id"].encode())
            self.assertEqual(q.status, 200)
        sys.stderr.write("\nconcurrency: %d events accepted in %.2fs, all "
                         "delivered after %.2fs\n" % (N, took, took_all))
        # Delivered means recorded: nothing is sent again after a restart.
        # (SIGTERM, so the last outcomes are committed: after a kill -9
        # the last few may be sent again, which at-least-once allows.)
        self.assertEqual(d.terminate(), 0)
        d.start()
        reqs = barrier(self, d, st)
        self.assertEqual(len(reqs), N + 1)


if __name__ == "__main__":
    unittest.main()
