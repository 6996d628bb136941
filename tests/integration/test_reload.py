#!/usr/bin/env python3
"""SIGHUP (SPEC section 7): a valid new config replaces the old one, an
invalid one is logged with FILE:LINE:COL and the old one keeps working,
deliveries of a removed or deactivated trigger are cancelled, and events
keep being accepted while reloads happen."""

import signal
import threading
import unittest

import harness
from harness import free_port, wait_until
from opshelp import (ADMIN_TOKEN, INBOUND_TOKEN, JOB_A, JOB_B, SECRET_ENV,
                     admin, admin_json, config_yaml, delivery_ids, event,
                     get_delivery, reloads, run_url, scrape, sighup_and_wait,
                     trigger_yaml, wait_delivery)


class ReloadTest(harness.DaemonTest):

    def start(self, cfg):
        return self.start_daemon(cfg, env=SECRET_ENV, token=INBOUND_TOKEN)

    def test_valid_reload_changes_behaviour(self):
        st = self.start_standin()
        d = self.start(config_yaml(trigger_yaml("to-dbt", run_url(st, 1))))
        d.accept(event())
        st.wait_for_requests(1)
        r = d.post_event(event(job=JOB_B))
        self.assertEqual((r.status, r.json["status"]), (200, "unmatched"), r)

        d.write_config(config_yaml(
            trigger_yaml("to-dbt", run_url(st, 2))
            + trigger_yaml("new-one", run_url(st, 3), jobs=(JOB_B,))))
        sighup_and_wait(self, d, "success")
        self.assertEqual(reloads(d), (1, 0))

        a = d.accept(event())
        self.assertEqual([x["trigger"] for x in a["deliveries"]], ["to-dbt"])
        b = d.accept(event(job=JOB_B))
        self.assertEqual([x["trigger"] for x in b["deliveries"]], ["new-one"])
        reqs = st.wait_for_requests(3)
        self.assertEqual(
            sorted(rq.path for rq in reqs[1:]),
            ["/api/v2/accounts/70403103912345/jobs/2/run/",
             "/api/v2/accounts/70403103912345/jobs/3/run/"])
        names = [t["name"] for t in
                 admin_json(self, d, "/v1/triggers")["triggers"]]
        self.assertEqual(names, ["to-dbt", "new-one"])
        for did in delivery_ids(a) + delivery_ids(b):
            wait_delivery(d, did, "delivered")
        self.assertTrue(d.running())

    def test_reload_rotates_secrets(self):
        st = self.start_standin()
        d = self.start(config_yaml(trigger_yaml("to-dbt", run_url(st))))
        # Secrets are read again at every reload (SPEC section 3): the
        # admin token moves to a file with a new value, and after SIGHUP
        # only the new value opens the admin API.
        path = d.write_file("admin_token", "rotated-admin-token\n")
        d.write_config(config_yaml(trigger_yaml("to-dbt", run_url(st)))
                       .replace("admin_token: {env: OPS_ADMIN_TOKEN}",
                                "admin_token: {file: %s}" % path))
        sighup_and_wait(self, d, "success")
        r = admin(d, "GET", "/v1/triggers", token=ADMIN_TOKEN)
        self.assertEqual(r.status, 401, r)
        r = admin(d, "GET", "/v1/triggers", token="rotated-admin-token")
        self.assertEqual(r.status, 200, r)
        self.assertNotIn("rotated-admin-token", d.log())

    def test_invalid_reload_keeps_old_config(self):
        st = self.start_standin()
        good = config_yaml(trigger_yaml("to-dbt", run_url(st, 1)))
        d = self.start(good)
        bad = good.replace("  workers: 2\n",
                           "  workers: 2\n  bogus_key: 1\n")
        bad = bad.replace("max_attempts: 5", "max_attempts: lots")
        bad = bad.replace("/jobs/1/run/", "/jobs/9/run/")
        self.assertNotEqual(bad, good)
        lines = bad.split("\n")
        bogus_line = next(i for i, l in enumerate(lines, 1)
                          if l.startswith("  bogus_key:"))
        lots_line = next(i for i, l in enumerate(lines, 1)
                         if "max_attempts: lots" in l)
        d.write_config(bad)
        sighup_and_wait(self, d, "failure")
        self.assertEqual(reloads(d), (0, 1))
        log = d.log()
        loc = "%s:%d:3:" % (d.cfg_path, bogus_line)
        self.assertIn(loc, log, "unknown key reported at FILE:LINE:COL; "
                      "log:\n%s" % d.log_tail())
        lots_at = ("%s:%d:5:" % (d.cfg_path, lots_line),
                   "%s:%d:19:" % (d.cfg_path, lots_line))
        self.assertTrue(any(x in log for x in lots_at),
                        "wrong type reported at %s or %s; log:\n%s"
                        % (lots_at + (d.log_tail(),)))
        errs = [rec for rec in d.log_records()
                if rec.get("level") == "error"]
        self.assertTrue(errs, "the failed reload is logged at level=error")

        # the old config still runs: old URL, daemon alive, ready
        (did,) = delivery_ids(d.accept(event()))
        wait_delivery(d, did, "delivered")
        self.assertEqual([r.path for r in st.requests()],
                         ["/api/v2/accounts/70403103912345/jobs/1/run/"])
        self.assertEqual(d.request("GET", "/readyz").status, 200)

        # and a fixed config is taken at the next SIGHUP
        d.write_config(good.replace("/jobs/1/run/", "/jobs/2/run/"))
        sighup_and_wait(self, d, "success")
        self.assertEqual(reloads(d), (1, 1))
        (did,) = delivery_ids(d.accept(event()))
        wait_delivery(d, did, "delivered")
        self.assertEqual(st.requests()[-1].path,
                         "/api/v2/accounts/70403103912345/jobs/2/run/")

    def test_removed_or_deactivated_trigger_cancels_pending(self):
        st = self.start_standin()
        down = free_port()  # never answers: deliveries stay pending
        keep = trigger_yaml("keep", run_url(st))
        gone = trigger_yaml("gone", run_url(down), jobs=(JOB_B,))
        sleepy = trigger_yaml("sleepy", run_url(st, 7), jobs=(JOB_B,),
                              rules=[("STATUS", "EQUAL", "FINISHED"),
                                     ("TABLE_NAME", "EQUAL", "sleepy")])
        sleepy_off = sleepy.replace("is_active: true", "is_active: false")
        cfg = config_yaml(keep + gone + sleepy, initial_backoff="1h",
                          max_backoff="2h")
        d = self.start(cfg)
        st.fail(503, count=2)  # sleepy's first attempts: retry in an hour
        gone_ids, sleepy_ids, keep_ids = [], [], []
        for i in range(2):
            a = d.accept(event(job=JOB_B, table="sleepy"))
            for x in a["deliveries"]:
                (sleepy_ids if x["trigger"] == "sleepy"
                 else gone_ids).append(x["id"])
        gone_ids += delivery_ids(d.accept(event(job=JOB_B)))
        self.assertEqual((len(gone_ids), len(sleepy_ids)), (3, 2))
        for did in gone_ids + sleepy_ids:
            wait_delivery(d, did, lambda o: o["attempts"] == 1 and
                          o["state"] == "pending")
        keep_ids = delivery_ids(d.accept(event()))
        wait_delivery(d, keep_ids[0], "delivered")
        self.assertEqual(scrape(d).value("triggerd_deliveries_pending"), 5)

        d.write_config(config_yaml(keep + sleepy_off, initial_backoff="1h",
                                   max_backoff="2h"))
        sighup_and_wait(self, d, "success")
        for did in gone_ids + sleepy_ids:
            o = wait_delivery(d, did, "cancelled")
            self.assertIsNone(o["next_attempt_at"], o)
            self.assertEqual(o["attempts"], 1, o)
        self.assertEqual(get_delivery(d, keep_ids[0])["state"], "delivered")
        listed = admin_json(self, d, "/v1/deliveries?state=cancelled")
        self.assertEqual(sorted(o["id"] for o in listed["deliveries"]),
                         sorted(gone_ids + sleepy_ids))
        m = scrape(d)
        self.assertEqual(m.value("triggerd_deliveries_pending"), 0)
        self.assertEqual(m.value("triggerd_deliveries_total", trigger="gone",
                                 outcome="cancelled"), 3,
                         "cancelled deliveries are counted in "
                         "triggerd_deliveries_total{outcome=\"cancelled\"}")
        self.assertEqual(m.value("triggerd_deliveries_total",
                                 trigger="sleepy", outcome="cancelled"), 2)
        # the deactivated trigger matches nothing now
        r = d.post_event(event(job=JOB_B, table="sleepy"))
        self.assertEqual((r.status, r.json.get("status")),
                         (200, "unmatched"), r)

        # reactivated, a cancelled delivery can be retried by an admin
        d.write_config(config_yaml(keep + sleepy, initial_backoff="1h",
                                   max_backoff="2h"))
        sighup_and_wait(self, d, "success")
        n = st.count()
        r = admin(d, "POST", "/v1/deliveries/%s/retry" % sleepy_ids[0])
        self.assertEqual(r.status, 202, r)
        o = wait_delivery(d, sleepy_ids[0], "delivered")
        self.assertEqual([h["status"] for h in o["history"]], [503, 200])
        self.assertEqual(st.count(), n + 1)
        self.assertEqual(get_delivery(d, sleepy_ids[1])["state"],
                         "cancelled", "only the retried one moves")

    def test_events_accepted_during_repeated_reloads(self):
        st = self.start_standin()
        v1 = config_yaml(trigger_yaml("to-dbt", run_url(st, 1)))
        v2 = config_yaml(trigger_yaml("to-dbt", run_url(st, 2))
                         + trigger_yaml("extra", run_url(st, 3),
                                        jobs=(JOB_B,)))
        d = self.start(v1)
        stop = threading.Event()
        answers, errors = [], []

        def poster():
            i = 0
            while not stop.is_set() and i < 2000:
                i += 1
                try:
                    r = d.post_event(event(job=JOB_A if i % 2 else JOB_B))
                    answers.append(r.status)
                except OSError as e:
                    errors.append(repr(e))
        threads = [threading.Thread(target=poster) for _ in range(3)]
        for t in threads:
            t.start()
        try:
            wait_until(lambda: len(answers) >= 20, 10, "first answers")
            for i in range(6):
                d.write_config(v2 if i % 2 == 0 else v1)
                before = len(answers)
                sighup_and_wait(self, d, "success")
                wait_until(lambda: len(answers) >= before + 5, 10,
                           "answers after reload %d" % (i + 1))
        finally:
            stop.set()
            for t in threads:
                t.join(30)
        self.assertEqual(errors, [], "connection errors during reloads")
        self.assertTrue(set(answers) <= {200, 202},
                        "answers during reloads: %r" % sorted(set(answers)))
        self.assertIn(202, answers)
        self.assertEqual(reloads(d), (6, 0))
        wait_until(lambda: scrape(d).value("triggerd_deliveries_pending")
                   == 0, 30, "every accepted delivery to be sent")
        self.assertTrue(d.running())

    def test_sighup_while_idle_is_not_a_crash(self):
        # several signals in a row, without waiting between them
        st = self.start_standin()
        d = self.start(config_yaml(trigger_yaml("to-dbt", run_url(st))))
        for _ in range(5):
            d.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: sum(reloads(d)) >= 1, 10, "a reload")
        # signals may coalesce: at least one reload, at most five
        ok, bad = reloads(d)
        self.assertEqual(bad, 0)
        self.assertTrue(1 <= ok <= 5, ok)
        d.accept(event(job=JOB_A))
        st.wait_for_requests(1)
        self.assertTrue(d.running())


if __name__ == "__main__":
    unittest.main()
