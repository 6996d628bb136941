#!/usr/bin/env python3
"""SPEC section 8 against the real binary and the dbt Cloud stand-in: no
duplicate runs after an ambiguous attempt or a crash, the run kept with
the delivery, following, if_running: reuse."""

import json
import unittest

from harness import (DaemonTest, DBT_TOKEN, DEFAULT_ENV, INBOUND_TOKEN,
                     SLOW, dbt_trigger, event, make_config, wait_until)

ADMIN = "adm-dbt-test-token"


def config(st, dbt=None, retry=None, dispatch=None, **extra):
    t = dbt_trigger("dbt-job", st, 42, **extra)
    t["dbt"] = dbt or {}
    return make_config([t], server={"admin_tokens": [ADMIN]},
                       retry=retry, dispatch=dispatch)


class DbtTest(DaemonTest):
    def start_standin(self, **kw):
        kw.setdefault("token", DBT_TOKEN)
        return super().start_standin(**kw)

    def start_daemon(self, cfg, **kw):
        kw.setdefault("env", DEFAULT_ENV)
        kw.setdefault("token", INBOUND_TOKEN)
        return super().start_daemon(cfg, **kw)

    def delivery(self, d, did):
        r = d.request("GET", "/v1/deliveries/" + did, None,
                      [("Authorization", "Bearer " + ADMIN)])
        self.assertEqual(r.status, 200, r)
        return r.json

    def wait_state(self, d, did, pred, what, timeout=15.0):
        box = {}

        def ok():
            box["j"] = self.delivery(d, did)
            return pred(box["j"])
        wait_until(ok, timeout * SLOW, what)
        return box["j"]

    def fire(self, d):
        r = d.accept(event())
        return r["deliveries"][0]["id"]

    def assert_one_run_found(self, st, d, did):
        j = self.wait_state(d, did, lambda j: j["state"] == "delivered",
                            "delivered")
        runs = st.runs()
        self.assertEqual(len(runs), 1, runs)
        self.assertEqual(st.posts_to_run(), 1)
        self.assertEqual(j["run"]["id"], runs[0]["id"])
        self.assertIn("[triggerd %s]" % did, runs[0]["trigger"]["cause"])
        last = j["history"][-1]
        self.assertEqual(last["status"], 200)
        self.assertIn("was found", last["error"])
        return j

    def test_ambiguous_after_create(self):
        for action in ("drop", "502", "504"):
            with self.subTest(action=action):
                st = self.start_standin()
                st.create_then(action)
                d = self.start_daemon(config(st))
                did = self.fire(d)
                self.assert_one_run_found(st, d, did)
                d.terminate()

    def test_timeout_after_create(self):
        st = self.start_standin()
        st.create_then("hang:3")
        d = self.start_daemon(config(st, dispatch={"timeout": "1s"}))
        did = self.fire(d)
        self.assert_one_run_found(st, d, did)

    def test_kill_while_held_then_restart(self):
        st = self.start_standin()
        st.create_then("hold")
        d = self.start_daemon(config(st))
        did = self.fire(d)
        wait_until(lambda: st.holding() == 1, 10 * SLOW, "held")
        d.kill()
        st.release()
        d.start()
        self.assert_one_run_found(st, d, did)

    def test_lookup_failing(self):
        st = self.start_standin()
        st.create_then("502")
        st.fail_list(2, status=500)
        d = self.start_daemon(config(st))
        did = self.fire(d)
        j = self.assert_one_run_found(st, d, did)
        errs = [h["error"] or "" for h in j["history"]]
        self.assertEqual(sum("nothing was posted" in e for e in errs), 2,
                         j["history"])
        self.assertEqual(j["attempts"], 4)

    def test_clean_run_kept_and_marked(self):
        st = self.start_standin()
        d = self.start_daemon(config(st))
        did = self.fire(d)
        j = self.wait_state(d, did, lambda j: j["state"] == "delivered",
                            "delivered")
        run = st.runs()[0]
        self.assertEqual(j["run"]["id"], run["id"])
        self.assertEqual(j["run"]["status"], "queued")
        self.assertEqual(set(j["run"]), {"id", "href", "status",
                                         "finished_at", "status_message"})
        self.assertTrue(run["cause"].endswith(" [triggerd %s]" % did))
        self.assertEqual(st.list_calls(), 0)

    def follow(self, st, dbt, want, final=None, **script):
        if final is not None or script:
            st.script_runs(final=final, **script)
        opts = {"follow": True, "poll_interval": "1s"}
        opts.update(dbt)
        d = self.start_daemon(config(st, dbt=opts))
        did = self.fire(d)
        j = self.wait_state(d, did, lambda j: j["run"] and
                            j["run"]["status"] == want, want)
        return d, did, j

    def test_follow_success_error_cancelled(self):
        for final, want in ((10, "success"), (20, "error"),
                            (30, "cancelled")):
            with self.subTest(want=want):
                st = self.start_standin()
                d, did, j = self.follow(st, {}, want, final=final)
                self.assertEqual(st.posts_to_run(), 1)
                self.assertTrue(any(
                    r.get("msg") == "dbt run finished" and
                    r.get("status") == want for r in d.log_records()))
                d.terminate()

    def test_run_timeout(self):
        for cancel in (False, True):
            with self.subTest(cancel=cancel):
                st = self.start_standin()
                st.script_runs(final=None)
                d, did, j = self.follow(
                    st, {"run_timeout": "2s", "cancel_on_timeout": cancel},
                    "timeout")
                self.assertEqual(len(st.cancel_requests()),
                                 1 if cancel else 0)
                d.terminate()

    def test_lost_and_unknown(self):
        st = self.start_standin()
        st.script_runs(final=None)
        d = self.start_daemon(config(st, dbt={"follow": True,
                                              "poll_interval": "1s"}))
        did = self.fire(d)
        wait_until(lambda: st.get_calls() >= 1, 10 * SLOW, "a poll")
        st.forget_run(st.runs()[0]["id"])
        self.wait_state(d, did, lambda j: j["run"]["status"] == "lost",
                        "lost")
        st.script_runs(final=None)
        st.fail_get(-1, status=401)
        did = self.fire(d)
        j = self.wait_state(d, did, lambda j: j["run"] and
                            j["run"]["status"] == "unknown", "unknown")
        self.assertIn("stopped following", j["last_error"])

    def test_restart_while_following(self):
        st = self.start_standin()
        st.script_runs(final=None)
        d = self.start_daemon(config(st, dbt={"follow": True,
                                              "poll_interval": "1s"}))
        did = self.fire(d)
        wait_until(lambda: st.get_calls() >= 1, 10 * SLOW, "a poll")
        d.terminate()
        st.set_run_status(st.runs()[0]["id"], 10)
        d.start()
        self.wait_state(d, did, lambda j: j["run"]["status"] == "success",
                        "success after restart")
        self.assertEqual(st.posts_to_run(), 1)

    def test_if_running_reuse(self):
        st = self.start_standin()
        st.script_runs(final=None)
        d = self.start_daemon(config(st, dbt={"if_running": "reuse"}))
        first = self.fire(d)
        self.wait_state(d, first, lambda j: j["state"] == "delivered", "1")
        second = self.fire(d)
        j = self.wait_state(d, second, lambda j: j["state"] == "delivered",
                            "2")
        self.assertEqual(st.posts_to_run(), 1)
        self.assertEqual(j["run"]["id"], st.runs()[0]["id"])
        self.assertIn("reused", j["history"][-1]["error"])
        m = d.request("GET", "/metrics").body.decode()
        self.assertIn('triggerd_dbt_duplicates_avoided_total{trigger='
                      '"dbt-job",how="reused"} 1', m)


if __name__ == "__main__":
    unittest.main()
