#!/usr/bin/env python3
"""GET /metrics (SPEC section 7): every family with HELP and TYPE, exact
counts after a known mix of traffic posted concurrently, per-trigger
delivery outcomes and attempt classes, the histogram's invariants, and
label escaping."""

import json
import math
import random
import unittest
from concurrent.futures import ThreadPoolExecutor

import harness
from harness import free_port, wait_until
from opshelp import (INBOUND_TOKEN, JOB_B, SECRET_ENV, Metrics,
                     config_yaml, event, parse_labels, run_url, scrape,
                     trigger_yaml)

FAMILIES = {
    "triggerd_events_total": "counter",
    "triggerd_deliveries_total": "counter",
    "triggerd_delivery_attempts_total": "counter",
    "triggerd_deliveries_pending": "gauge",
    "triggerd_delivery_duration_seconds": "histogram",
    "triggerd_config_reloads_total": "counter",
    "triggerd_build_info": "gauge",
}


def chunked(payload):
    return b"%x\r\n%s\r\n0\r\n\r\n" % (len(payload), payload)


class MetricsParserTest(unittest.TestCase):
    """The test's own parser, so a pass below means something."""

    def test_parser(self):
        m = Metrics('# HELP a_total A.\n# TYPE a_total counter\n'
                    'a_total{x="q\\"u\\\\o\\nte",y="2"} 3\n'
                    '# TYPE h histogram\nh_bucket{le="+Inf"} 1\nh_count 1\n')
        self.assertEqual(m.value("a_total", x='q"u\\o\nte', y="2"), 3)
        self.assertEqual(m.value("h_bucket", le="+Inf"), 1)
        self.assertEqual(m.family("h_count"), "h")
        for bad in ('a_total 1\n',  # no TYPE
                    '# TYPE a counter\na{x="\\t"} 1\n',
                    '# TYPE a counter\na{x="1"} 1\na{x="1"} 2\n',
                    '# TYPE a counter\na{x="1} 1\n',
                    '# TYPE a counter\na 1 2 3\n'):
            with self.assertRaises(ValueError, msg=bad):
                Metrics(bad)
        self.assertEqual(parse_labels('{a="",b="x,y"}'),
                         {"a": "", "b": "x,y"})


class MetricsTest(harness.DaemonTest):

    def test_families_help_type_and_build_info(self):
        st = self.start_standin()
        d = self.start_daemon(config_yaml(trigger_yaml("m-ok", run_url(st))),
                              env=SECRET_ENV, token=INBOUND_TOKEN)
        r = d.request("GET", "/metrics")
        self.assertEqual(r.status, 200, r)
        ctype = r.header("Content-Type") or ""
        self.assertTrue(ctype.startswith("text/plain"), ctype)
        self.assertIn("version=0.0.4", ctype)
        text = r.body.decode("utf-8")
        self.assertTrue(text.endswith("\n"), "the exposition ends in \\n")
        m = Metrics(text)
        for fam, kind in FAMILIES.items():
            self.assertEqual(m.type.get(fam), kind, "TYPE of %s" % fam)
            self.assertTrue(m.help.get(fam, "").strip(), "HELP of %s" % fam)
        self.assertEqual(m.series("triggerd_build_info"),
                         [({"version": harness.version()}, 1.0)])
        for result in ("accepted", "duplicate", "unmatched", "rejected"):
            self.assertEqual(m.value("triggerd_events_total", result=result),
                             0, result)
        for result in ("success", "failure"):
            self.assertEqual(
                m.value("triggerd_config_reloads_total", result=result), 0)
        self.assertEqual(m.value("triggerd_deliveries_pending"), 0)
        self.assertEqual(
            m.value("triggerd_delivery_duration_seconds_count"), 0)
        self.assertEqual(m.value("triggerd_delivery_duration_seconds_bucket",
                                 le="+Inf"), 0)
        # no secret in the exposition
        for v in SECRET_ENV.values():
            self.assertNotIn(v, text)
        # /metrics needs no token and answers only GET
        r = d.request("POST", "/metrics", b"")
        self.assertEqual(r.status, 405, r)
        self.assertIn("GET", r.header("Allow") or "")

    def test_exact_counts_after_concurrent_mix(self):
        ok = self.start_standin()
        flaky = self.start_standin()
        down = free_port()  # nothing listens there
        triggers = (
            trigger_yaml("m-ok", run_url(ok))
            + trigger_yaml("m-flaky", run_url(flaky), rules=[
                ("STATUS", "EQUAL", "FINISHED"),
                ("TABLE_NAME", "EQUAL", "flaky")])
            + trigger_yaml("m-down", run_url(down), rules=[
                ("STATUS", "EQUAL", "FINISHED"),
                ("TABLE_NAME", "EQUAL", "down")])
            + trigger_yaml("m-other", run_url(ok), jobs=(JOB_B,)))
        # max_attempts 3: m-down fails after exactly 3 refused connects;
        # m-flaky gets only 2 retryable answers in all, so none of its
        # deliveries can run out of attempts: its counts are exact
        # whatever delivery meets which scripted answer.
        d = self.start_daemon(
            config_yaml(triggers, max_attempts=3, initial_backoff="50ms",
                        max_backoff="100ms", max_body="1KiB"),
            env=SECRET_ENV, token=INBOUND_TOKEN)
        flaky.fail(503, count=2)
        flaky.fail(401, count=3)

        accepted = [event(table="flaky" if i < 10 else
                          "down" if i < 12 else "t%d" % i)
                    for i in range(100)]
        dups = [dict(e) for e in accepted[::5]] + \
            [dict(e) for e in accepted[1::5]]          # 40 second copies
        unmatched = [event(status="FAILED") for _ in range(25)] + \
            [event(job="00000000-0000-4000-8000-000000000000")
             for _ in range(5)]
        work = [("event", e) for e in accepted + dups + unmatched]
        work += [("badjson", b'{"JOB_ID": ')] * 3
        work += [("badjson", b'["not", "an", "object"]')] * 2
        work += [("nojob", {"STATUS": "FINISHED"})] * 3
        work += [("notoken", None)] * 2 + [("wrongtoken", None)] * 2
        work += [("big", None)] * 4
        work += [("text", None)] * 4
        self.assertEqual(len(work), 100 + 40 + 30 + 20)
        random.Random(7).shuffle(work)

        def send(item):
            kind, body = item
            if kind == "event":
                return d.post_event(body)
            if kind in ("badjson", "nojob"):
                return d.post_event(body)
            if kind == "notoken":
                return d.post_event(None, token=None)
            if kind == "wrongtoken":
                return d.post_event(None, token="nope")
            if kind == "big":
                payload = json.dumps(event(PAD="x" * 2048)).encode()
                return d.post_event(chunked(payload), headers=[
                    ("Transfer-Encoding", "chunked")])
            return d.post_event(None, content_type="text/plain")

        with ThreadPoolExecutor(16) as ex:
            answers = list(ex.map(send, work))
        by_kind = {}
        for (kind, body), r in zip(work, answers):
            by_kind.setdefault(kind, []).append(r.status)
            self.assertLess(r.status, 500, "%s: %r" % (kind, r))
        self.assertEqual(set(by_kind["badjson"]), {400}, by_kind)
        self.assertEqual(set(by_kind["nojob"]), {400}, by_kind)
        self.assertEqual(set(by_kind["notoken"]), {401}, by_kind)
        self.assertEqual(set(by_kind["wrongtoken"]), {401}, by_kind)
        self.assertEqual(set(by_kind["big"]), {413}, by_kind)
        self.assertEqual(set(by_kind["text"]), {415}, by_kind)
        # exactly one 202 per dedup key; its copy is 200 duplicate with
        # the same event id
        firsts = {}
        for (kind, body), r in zip(work, answers):
            if kind != "event" or r.status == 400:
                continue
            self.assertIn(r.status, (200, 202), r)
            firsts.setdefault(body["EXECUTION_ID"], []).append(r.json)
        statuses = [sorted(x["status"] for x in v) for v in firsts.values()]
        self.assertEqual(statuses.count(["accepted"]), 60)
        self.assertEqual(statuses.count(["accepted", "duplicate"]), 40)
        self.assertEqual(statuses.count(["unmatched"]), 30)
        for v in firsts.values():
            self.assertEqual(len({x["event"] for x in v}), 1, v)

        expect_deliveries = {
            ("m-ok", "delivered"): 100, ("m-flaky", "delivered"): 7,
            ("m-flaky", "failed"): 3, ("m-down", "failed"): 2}

        def finished():
            m = scrape(d)
            done = sum(m.sum("triggerd_deliveries_total", outcome=o)
                       for o in ("delivered", "failed", "cancelled"))
            return m if done >= 112 and \
                m.value("triggerd_deliveries_pending") == 0 else None
        m = wait_until(finished, 30, "all 112 deliveries to finish")

        events = {lb["result"]: v
                  for lb, v in m.series("triggerd_events_total")}
        self.assertEqual(
            {k: events.get(k) for k in ("accepted", "duplicate",
                                        "unmatched", "rejected")},
            {"accepted": 100, "duplicate": 40, "unmatched": 30,
             "rejected": 20})
        got = {(lb["trigger"], lb["outcome"]): v
               for lb, v in m.series("triggerd_deliveries_total") if v}
        self.assertEqual(got, expect_deliveries)
        got = {(lb["trigger"], lb["class"]): v
               for lb, v in m.series("triggerd_delivery_attempts_total")
               if v}
        self.assertEqual(got, {("m-ok", "2xx"): 100, ("m-flaky", "2xx"): 7,
                               ("m-flaky", "4xx"): 3, ("m-flaky", "5xx"): 2,
                               ("m-down", "error"): 6})
        for lb, _ in m.series("triggerd_delivery_attempts_total"):
            self.assertIn(lb["class"], ("2xx", "3xx", "4xx", "5xx", "error"))
            self.assertEqual(set(lb), {"trigger", "class"})
        for lb, _ in m.series("triggerd_deliveries_total"):
            self.assertIn(lb["outcome"], ("delivered", "failed", "cancelled"))
            self.assertEqual(set(lb), {"trigger", "outcome"})
        self.assertEqual(ok.count(), 100)
        self.assertEqual(flaky.count(), 12)
        self.assertEqual(m.value("triggerd_deliveries_pending"), 0)
        self.assertHistogram(m, 118)

    def assertHistogram(self, m, count):
        name = "triggerd_delivery_duration_seconds"
        buckets = [(lb["le"], v) for lb, v in m.series(name + "_bucket")]
        self.assertTrue(buckets, "no buckets")
        for lb, _ in m.series(name + "_bucket"):
            self.assertEqual(set(lb), {"le"})
        les = [float(le) if le != "+Inf" else math.inf for le, _ in buckets]
        self.assertEqual(les, sorted(les), "le in ascending order")
        self.assertEqual(len(set(les)), len(les))
        self.assertEqual(buckets[-1][0], "+Inf")
        vals = [v for _, v in buckets]
        self.assertEqual(vals, sorted(vals), "buckets are cumulative")
        self.assertEqual(vals[-1], m.value(name + "_count"))
        self.assertEqual(m.value(name + "_count"), count)
        total = m.value(name + "_sum")
        self.assertIsNotNone(total)
        self.assertGreater(total, 0)
        self.assertLess(total, count * 10.0)

    def test_label_values_escaped(self):
        # Trigger names are the only free-form label values. Whether a
        # given name may hold '"', '\' or a newline is up to the config
        # loader; if it refuses them, nothing reachable needs escaping.
        name = 'we"ird\\name'
        st = self.start_standin()
        cfg = config_yaml(
            trigger_yaml('"%s"' % name.replace("\\", "\\\\")
                         .replace('"', '\\"'), run_url(st)))
        d = self.new_daemon(cfg, env=SECRET_ENV, token=INBOUND_TOKEN)
        p = d.check()
        if p.returncode != 0:
            self.skipTest("trigger names with '\"' or '\\' are refused by "
                          "the config (%s), so no reachable label value "
                          "needs escaping" % p.stderr.strip()[:200])
        d.start()
        d.accept(event())
        wait_until(lambda: scrape(d).value(
            "triggerd_deliveries_total", trigger=name,
            outcome="delivered") == 1, 10, "the escaped series")
        text = scrape(d).text
        self.assertIn('trigger="we\\"ird\\\\name"', text)


if __name__ == "__main__":
    unittest.main()
