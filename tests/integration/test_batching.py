#!/usr/bin/env python3
"""Fan-in and coalescing (SPEC section 9), driven through the real binary:
the answers (`waiting`, `coalesced`), the delivery's `events`, the `batch`
template namespace, fan-in progress in GET /v1/triggers, reload keeping
and dropping progress, dedup before batching, kill -9 losing nothing,
concurrent rounds and a 1,000-event burst, and the config errors."""

import concurrent.futures
import re
import signal
import threading
import time
import unittest

import harness
from harness import SLOW, wait_until
from opshelp import (INBOUND_TOKEN, JOB_A, JOB_B, JOB_C, SECRET_ENV,
                     admin_json, config_yaml, event, get_delivery,
                     sighup_and_wait, trigger_yaml, run_url, wait_delivery)

JOB_D = "d4c3b2a1-0f9e-4d8c-9b7a-6e5f4d3c2b1a"
JOB_E = "e5d4c3b2-1a0f-4e9d-8c7b-7f6e5d4c3b2a"
CAUSE = "n=${{batch.count}} jobs=${{batch.job_id}} rounds=${{batch.round}}"


def fan_in(name, st, jobs, within=None, job=42):
    t = trigger_yaml(name, run_url(st, job), jobs=jobs, body=CAUSE)
    t += "    wait_for: all\n"
    if within:
        t += "    within: %s\n" % within
    return t


def coalescing(name, st, window, jobs=(JOB_A,), job=43):
    return trigger_yaml(name, run_url(st, job), jobs=jobs, body=CAUSE) + \
        "    coalesce: %s\n" % window


def cause_of(req):
    """The rendered cause without dbt's marker."""
    return re.sub(r" \[triggerd dl_[0-9a-f]+\]$", "", req.json()["cause"])


class BatchingTest(harness.DaemonTest):

    def start(self, triggers, extra=""):
        return self.start_daemon(config_yaml(triggers, extra=extra),
                                 env=SECRET_ENV, token=INBOUND_TOKEN)

    def waiting_of(self, d, name):
        for t in admin_json(self, d, "/v1/triggers")["triggers"]:
            if t["name"] == name:
                return t.get("waiting")
        raise AssertionError("no trigger %s" % name)

    # ---- fan-in ----

    def test_fan_in_fires_once_all_jobs_have_finished(self):
        st = self.start_standin()
        d = self.start(fan_in("marts", st, (JOB_A, JOB_B, JOB_C)))
        self.assertEqual(self.waiting_of(d, "marts"),
                         {"done": [], "missing": [JOB_A, JOB_B, JOB_C]})
        a1 = d.accept(event(JOB_A, round="1"))
        self.assertEqual(a1["deliveries"], [])
        self.assertEqual(a1["waiting"],
                         [{"trigger": "marts", "done": 1, "of": 3}])
        b = d.accept(event(JOB_B, round="1"))
        self.assertEqual(b["waiting"][0]["done"], 2)
        a2 = d.accept(event(JOB_A, round="2"))  # counts once: latest kept
        self.assertEqual(a2["waiting"][0]["done"], 2)
        self.assertEqual(self.waiting_of(d, "marts"),
                         {"done": [JOB_A, JOB_B], "missing": [JOB_C]})
        self.assertEqual(st.requests(), [])
        c = d.accept(event(JOB_C, round="2"))
        self.assertNotIn("waiting", c)
        self.assertEqual([x["trigger"] for x in c["deliveries"]], ["marts"])
        did = c["deliveries"][0]["id"]
        reqs = st.wait_for_requests(1)
        self.assertEqual(cause_of(reqs[0]), "n=3 jobs=%s, %s, %s rounds=1, 2"
                         % (JOB_B, JOB_A, JOB_C))
        o = wait_delivery(d, did, "delivered")
        self.assertEqual(o["events"], [b["event"], a2["event"], c["event"]])
        self.assertEqual(o["event"], c["event"])
        self.assertEqual(self.waiting_of(d, "marts"),
                         {"done": [], "missing": [JOB_A, JOB_B, JOB_C]})
        self.assertSentNothingMore(st, 1, 0.3, "one round, one run")

    def test_within_lets_old_events_expire(self):
        st = self.start_standin()
        within = 1.0 * SLOW
        d = self.start(fan_in("fresh", st, (JOB_A, JOB_B),
                              within="%dms" % int(within * 1000)))
        t0 = time.monotonic()
        d.accept(event(JOB_A))
        # let `within` pass (a measured wait: the point is elapsed time)
        time.sleep(max(0.0, within + 0.2 - (time.monotonic() - t0)))
        r = d.accept(event(JOB_B))
        self.assertEqual(r["deliveries"], [])
        self.assertEqual(r["waiting"], [{"trigger": "fresh", "done": 1,
                                         "of": 2}])
        self.assertEqual(self.waiting_of(d, "fresh"),
                         {"done": [JOB_B], "missing": [JOB_A]})
        r = d.accept(event(JOB_A))
        self.assertEqual(len(r["deliveries"]), 1)
        st.wait_for_requests(1)

    def test_duplicate_never_counts(self):
        st = self.start_standin()
        d = self.start(fan_in("marts", st, (JOB_A, JOB_B)) +
                       coalescing("burst", st, "%dms" % int(800 * SLOW),
                                  jobs=(JOB_C,)))
        ev = event(JOB_A)
        d.accept(ev)
        r = d.post_event(ev)
        self.assertEqual((r.status, r.json["status"]), (200, "duplicate"), r)
        self.assertEqual(self.waiting_of(d, "marts")["done"], [JOB_A])
        c = event(JOB_C)
        first = d.accept(c)
        r = d.post_event(c)
        self.assertEqual(r.json["status"], "duplicate", r)
        d.accept(event(JOB_C))
        reqs = st.wait_for_requests(1)
        self.assertTrue(cause_of(reqs[0]).startswith("n=2 "), cause_of(reqs[0]))
        o = wait_delivery(d, first["deliveries"][0]["id"], "delivered")
        self.assertEqual(len(o["events"]), 2)

    # ---- coalescing ----

    def test_coalescing_makes_one_delivery_per_window(self):
        st = self.start_standin()
        window = 1.0 * SLOW
        d = self.start(coalescing("burst", st, "%dms" % int(window * 1000)))
        answers = [d.accept(event(JOB_A, round=str(i))) for i in range(5)]
        ids = {a["deliveries"][0]["id"] for a in answers}
        self.assertEqual(len(ids), 1, answers)
        self.assertNotIn("coalesced", answers[0]["deliveries"][0])
        for a in answers[1:]:
            self.assertIs(a["deliveries"][0]["coalesced"], True, a)
        reqs = st.wait_for_requests(1, timeout=10 * SLOW)
        self.assertEqual(cause_of(reqs[0]),
                         "n=5 jobs=%s rounds=0, 1, 2, 3, 4" % JOB_A)
        did = ids.pop()
        o = wait_delivery(d, did, "delivered")
        self.assertEqual(o["events"], [a["event"] for a in answers])
        # the batch was sent: the next event opens a new one
        nxt = d.accept(event(JOB_A))
        self.assertNotEqual(nxt["deliveries"][0]["id"], did)
        self.assertNotIn("coalesced", nxt["deliveries"][0])
        reqs = st.wait_for_requests(2, timeout=10 * SLOW)
        self.assertTrue(cause_of(reqs[1]).startswith("n=1 "))

    def test_burst_of_a_thousand_is_one_request(self):
        st = self.start_standin()
        d = self.start(coalescing("burst", st, "%dms" % int(8000 * SLOW)))
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(lambda i: d.accept(event(JOB_A)),
                                    range(1000)))
        ids = {a["deliveries"][0]["id"] for a in answers}
        self.assertEqual(len(ids), 1)
        self.assertEqual(sum(1 for a in answers
                             if a["deliveries"][0].get("coalesced")), 999)
        reqs = st.wait_for_requests(1, timeout=30 * SLOW)
        self.assertTrue(cause_of(reqs[0]).startswith("n=1000 "),
                        cause_of(reqs[0])[:80])
        o = wait_delivery(d, ids.pop(), "delivered")
        self.assertEqual(len(o["events"]), 1000)
        self.assertSentNothingMore(st, 1, 0.3, "one burst, one run")

    # ---- concurrency ----

    def test_twenty_rounds_from_64_clients(self):
        """64 client threads carry the events; each round's five events
        go out at once from different clients, interleaved with each
        other, and the next round starts when they are answered."""
        st = self.start_standin()
        jobs = (JOB_A, JOB_B, JOB_C, JOB_D, JOB_E)
        d = self.start(fan_in("five", st, jobs))
        made = []
        with concurrent.futures.ThreadPoolExecutor(64) as pool:
            for r in range(20):
                futs = [pool.submit(d.accept, event(j, round=str(r)))
                        for j in jobs]
                for f in futs:
                    made += f.result()["deliveries"]
        self.assertEqual(len(made), 20, made)
        reqs = st.wait_for_requests(20, timeout=20 * SLOW)
        rounds = sorted(int(re.search(r"rounds=(\d+)$", cause_of(q)).group(1))
                        for q in reqs)
        self.assertEqual(rounds, list(range(20)))
        for x in made:
            o = get_delivery(d, x["id"])
            self.assertEqual(len(o["events"]), 5, o)
        for q in reqs:
            self.assertTrue(cause_of(q).startswith("n=5 jobs="), cause_of(q))
            self.assertEqual(sorted(cause_of(q).split(" rounds=")[0]
                                    .split("jobs=")[1].split(", ")),
                             sorted(jobs))
        self.assertSentNothingMore(st, 20, 0.3, "20 rounds, 20 runs")

    # ---- crash and reload ----

    def test_kill_9_loses_no_progress_and_no_batch(self):
        st = self.start_standin()
        d = self.start(fan_in("marts", st, (JOB_A, JOB_B, JOB_C)) +
                       coalescing("burst", st, "%dms" % int(3000 * SLOW),
                                  jobs=(JOB_D,)))
        d.accept(event(JOB_A))
        d.accept(event(JOB_B))
        first = d.accept(event(JOB_D))
        d.accept(event(JOB_D))
        d.proc.send_signal(signal.SIGKILL)
        d.stopped_by_us = True
        d.proc.wait()
        d.restart()
        self.assertEqual(self.waiting_of(d, "marts"),
                         {"done": [JOB_A, JOB_B], "missing": [JOB_C]})
        j = d.accept(event(JOB_D))
        self.assertEqual(j["deliveries"][0]["id"],
                         first["deliveries"][0]["id"])
        c = d.accept(event(JOB_C))
        self.assertEqual(len(c["deliveries"]), 1)
        # (a restart may look the job's runs up first: posts only)
        posts = st.wait_for(lambda rs: len([q for q in rs
                                            if q.method == "POST"]) >= 2,
                            20 * SLOW, "two runs")
        causes = sorted(cause_of(q)[:4] for q in posts if q.method == "POST")
        self.assertEqual(causes, ["n=3 ", "n=3 "])

    def test_reload_keeps_listed_jobs_and_drops_removed_triggers(self):
        st = self.start_standin()
        d = self.start(fan_in("marts", st, (JOB_A, JOB_B, JOB_C)) +
                       fan_in("other", st, (JOB_A, JOB_D), job=44))
        d.accept(event(JOB_A))
        d.accept(event(JOB_C))
        self.assertEqual(self.waiting_of(d, "other")["done"], [JOB_A])
        d.write_config(config_yaml(fan_in("marts", st, (JOB_A, JOB_B, JOB_D))))
        sighup_and_wait(self, d)
        self.assertEqual(self.waiting_of(d, "marts"),
                         {"done": [JOB_A], "missing": [JOB_B, JOB_D]})
        d.write_config(config_yaml(fan_in("marts", st, (JOB_A, JOB_B, JOB_D)) +
                                   fan_in("other", st, (JOB_A, JOB_D), job=44)))
        sighup_and_wait(self, d)
        self.assertEqual(self.waiting_of(d, "other"),
                         {"done": [], "missing": [JOB_A, JOB_D]})

    # ---- the command line ----

    def test_check_and_dry_run(self):
        st = self.start_standin()
        d = self.new_daemon(config_yaml(
            fan_in("marts", st, (JOB_A, JOB_B), within="6h") +
            coalescing("burst", st, "5m")), env=SECRET_ENV)
        p = d.check()
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("marts: POST", p.stdout)
        self.assertIn("fan-in: wait_for all within 6h", p.stdout)
        self.assertIn("coalesce 5m", p.stdout)
        p = d.dry_run(event(JOB_A))
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertRegex(p.stdout, r"trigger marts: matches: counts toward "
                         r"a fan-in over its 2 jobs \(for 6h\)")
        self.assertRegex(p.stdout, r"trigger burst: matches: joins the "
                         r"trigger's open batch.*coalescing: sent 5m after")
        self.assertIn("n=1 jobs=%s" % JOB_A, p.stdout)

    def test_config_errors(self):
        st = self.start_standin()
        bad = [
            (fan_in("x", st, (JOB_A,)) + "    coalesce: 1m\n",
             "wait_for: all and coalesce exclude each other"),
            (fan_in("x", st, ("*",)), 'wait_for: all needs the job IDs'),
            (trigger_yaml("x", run_url(st)) + "    within: 1h\n",
             "within only applies with wait_for: all"),
            (trigger_yaml("x", run_url(st)) + "    wait_for: some\n",
             'wait_for must be "any" or "all"'),
            (coalescing("x", st, "10ms"), "between 100ms and 366d"),
        ]
        for triggers, msg in bad:
            d = self.new_daemon(config_yaml(triggers), env=SECRET_ENV)
            p = d.check()
            self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
            self.assertIn(msg, p.stderr)


if __name__ == "__main__":
    unittest.main()
