#!/usr/bin/env python3
"""The admin API (SPEC section 7): /v1/triggers, /v1/deliveries (list,
one, retry), its authentication and its 404/405 answers, against the real
binary and the dbt Cloud stand-in."""

import datetime
import json
import unittest
from concurrent.futures import ThreadPoolExecutor

import harness
from harness import free_port, wait_until
from opshelp import (ACCOUNT, ADMIN_TOKEN, DBT_TOKEN, DELIVERY_KEYS,
                     HISTORY_KEYS, INBOUND_TOKEN, JOB_A, JOB_B, RFC3339_UTC,
                     SECRET_ENV, SECRET_VALUES, STATES, admin, admin_json,
                     config_yaml, delivery_ids, event, get_delivery, run_url,
                     trigger_yaml, wait_delivery)

ADMIN_PATHS = [("GET", "/v1/triggers"), ("GET", "/v1/deliveries"),
               ("GET", "/v1/deliveries/de_unknown"),
               ("POST", "/v1/deliveries/de_unknown/retry")]


def parse_time(s):
    return datetime.datetime.strptime(
        s.split(".")[0].rstrip("Z"), "%Y-%m-%dT%H:%M:%S").replace(
            tzinfo=datetime.timezone.utc)


class AdminTest(harness.DaemonTest):

    def start(self, triggers, **kw):
        cfg = config_yaml(triggers, **kw)
        return self.start_daemon(cfg, env=SECRET_ENV, token=INBOUND_TOKEN)

    def assertDeliveryShape(self, o, with_history=False):
        # one delivery also carries the event it was made from (README:
        # an addition for the web console)
        keys = DELIVERY_KEYS | ({"history", "event_body"} if with_history
                                else set())
        self.assertEqual(set(o), keys, "delivery object keys: %r" % o)
        for k in ("id", "event", "trigger", "state", "created_at"):
            self.assertIsInstance(o[k], str, "%s in %r" % (k, o))
        self.assertIn(o["state"], STATES)
        self.assertIsInstance(o["attempts"], int)
        self.assertNotIsInstance(o["attempts"], bool)
        self.assertGreaterEqual(o["attempts"], 0)
        if o["last_status"] is not None:
            self.assertIsInstance(o["last_status"], int)
            self.assertNotIsInstance(o["last_status"], bool)
        if o["last_error"] is not None:
            self.assertIsInstance(o["last_error"], str)
            self.assertTrue(o["last_error"].strip(), o)
        self.assertRegex(o["created_at"], RFC3339_UTC)
        now = datetime.datetime.now(datetime.timezone.utc)
        age = (now - parse_time(o["created_at"])).total_seconds()
        self.assertTrue(-5 < age < 300,
                        "created_at %s is not about now (%s)"
                        % (o["created_at"], now.isoformat()))
        if o["next_attempt_at"] is not None:
            self.assertRegex(o["next_attempt_at"], RFC3339_UTC)
        if with_history:
            self.assertIsInstance(o["history"], list)
            for h in o["history"]:
                self.assertEqual(set(h), HISTORY_KEYS, "history entry %r" % h)
                self.assertRegex(h["at"], RFC3339_UTC)
                self.assertTrue(h["status"] is None or
                                isinstance(h["status"], int), h)
                self.assertTrue(h["error"] is None or
                                isinstance(h["error"], str), h)
                self.assertIsInstance(h["ms"], int)
                self.assertGreaterEqual(h["ms"], 0)

    # ---- /v1/triggers ----

    def test_triggers_listed_with_secrets_masked(self):
        st = self.start_standin()
        triggers = (
            trigger_yaml("dbt-daily", run_url(st))
            + trigger_yaml(
                "airflow-hourly",
                "http://127.0.0.1:9/api?key=${{secrets.other_secret}}",
                jobs=(JOB_B,), active=False,
                header_extra={"X-Api-Key": "${{secrets.other_secret}}"},
                body="token ${{secrets.other_secret}} for "
                     "${{erathos.job_id}}"))
        d = self.start(triggers)
        r = admin(d, "GET", "/v1/triggers")
        self.assertEqual(r.status, 200, r)
        self.assertTrue((r.header("Content-Type") or "").startswith(
            "application/json"), r.headers)
        text = r.body.decode("utf-8")
        for secret in SECRET_VALUES:
            self.assertNotIn(secret, text, "a secret's value is shown")
        ts = r.json["triggers"]
        self.assertEqual([t["name"] for t in ts],
                         ["dbt-daily", "airflow-hourly"])
        daily, hourly = ts
        self.assertEqual(daily["method"], "POST")
        self.assertIs(daily["is_active"], True)
        self.assertIs(hourly["is_active"], False)
        self.assertEqual(daily["jobs"], [JOB_A])
        self.assertEqual(daily["header"]["Authorization"],
                         "Bearer <secret:dbt_token>")
        self.assertEqual(hourly["header"]["X-Api-Key"],
                         "<secret:other_secret>")
        self.assertIn("<secret:other_secret>", hourly["url"])
        self.assertIn("<secret:other_secret>", json.dumps(hourly["body"]))
        self.assertEqual(daily["rules"][0]["operation"], "EQUAL")
        # the masking works on the template, not on rendered values
        self.assertNotIn(ACCOUNT, json.dumps(daily["header"]))

    # ---- /v1/deliveries ----

    def test_deliveries_list_order_filters_and_shape(self):
        st = self.start_standin()
        down = free_port()  # nothing listens: attempts fail, retried later
        d = self.start(trigger_yaml("to-dbt", run_url(st))
                       + trigger_yaml("to-down", run_url(down),
                                      jobs=(JOB_B,)),
                       initial_backoff="1h", max_backoff="2h")
        made = []  # (delivery id, trigger, event id) in acceptance order
        for i in range(6):
            job = JOB_A if i % 3 else JOB_B
            a = d.accept(event(job=job))
            (dl,) = a["deliveries"]
            made.append((dl["id"], dl["trigger"], a["event"]))
        self.assertEqual([m[1] for m in made],
                         ["to-down", "to-dbt", "to-dbt"] * 2)
        for did, trig, _ in made:
            wait_delivery(d, did, "delivered" if trig == "to-dbt" else
                          (lambda o: o["attempts"] >= 1),
                          what="delivery %s to be attempted" % did)

        listed = admin_json(self, d, "/v1/deliveries")["deliveries"]
        self.assertEqual([o["id"] for o in listed],
                         [m[0] for m in reversed(made)],
                         "GET /v1/deliveries is not newest first")
        for o in listed:
            self.assertDeliveryShape(o)
        by_id = {o["id"]: o for o in listed}
        for did, trig, ev in made:
            self.assertEqual(by_id[did]["trigger"], trig)
            self.assertEqual(by_id[did]["event"], ev)

        ok = by_id[made[1][0]]
        self.assertEqual(ok["state"], "delivered")
        self.assertEqual(ok["attempts"], 1)
        self.assertEqual(ok["last_status"], 200)
        self.assertIsNone(ok["last_error"])
        self.assertIsNone(ok["next_attempt_at"],
                          "a delivered delivery has no next attempt")
        down_o = by_id[made[0][0]]
        self.assertEqual(down_o["state"], "pending")
        self.assertEqual(down_o["attempts"], 1)
        self.assertIsNone(down_o["last_status"],
                          "no HTTP status came from a closed port")
        self.assertIsInstance(down_o["last_error"], str)
        self.assertIn("127.0.0.1", down_o["last_error"])
        self.assertIsNotNone(down_o["next_attempt_at"],
                             "a pending delivery has its next attempt time")
        wait_s = (parse_time(down_o["next_attempt_at"])
                  - parse_time(down_o["created_at"])).total_seconds()
        self.assertGreater(wait_s, 30 * 60,
                           "next_attempt_at should be ~1h after the first "
                           "try (initial_backoff 1h ±20%%): %r" % down_o)

        def ids(query):
            got = admin_json(self, d, "/v1/deliveries" + query)["deliveries"]
            return [o["id"] for o in got]
        newest = [m[0] for m in reversed(made)]
        self.assertEqual(ids("?state=delivered"),
                         [m[0] for m in reversed(made) if m[1] == "to-dbt"])
        self.assertEqual(ids("?state=pending"),
                         [m[0] for m in reversed(made) if m[1] == "to-down"])
        self.assertEqual(ids("?state=failed"), [])
        self.assertEqual(ids("?state=cancelled"), [])
        self.assertEqual(ids("?trigger=to-down"),
                         [m[0] for m in reversed(made) if m[1] == "to-down"])
        self.assertEqual(ids("?trigger=no-such-trigger"), [])
        self.assertEqual(ids("?state=delivered&trigger=to-down"), [])
        self.assertEqual(ids("?state=pending&trigger=to-down&limit=1"),
                         [made[3][0]])
        self.assertEqual(ids("?limit=2"), newest[:2])
        self.assertEqual(ids("?limit=1"), newest[:1])
        self.assertEqual(ids("?limit=1000"), newest)

        for q in ("?state=bogus", "?state=delivered,failed", "?limit=0",
                  "?limit=-1", "?limit=abc", "?limit=2x", "?limit=1.5"):
            r = admin(d, "GET", "/v1/deliveries" + q)
            self.assertEqual(r.status, 400, "GET /v1/deliveries%s: %r"
                             % (q, r))
            self.assertIsInstance(r.json, dict, r)
            self.assertIsInstance(r.json.get("error"), str, r)

    def test_default_limit_is_100(self):
        down = free_port()
        d = self.start(trigger_yaml("to-down", run_url(down)),
                       initial_backoff="1h", max_backoff="2h")
        with ThreadPoolExecutor(8) as ex:
            answers = list(ex.map(lambda i: d.post_event(event()),
                                  range(105)))
        self.assertEqual([r.status for r in answers], [202] * 105)
        listed = admin_json(self, d, "/v1/deliveries")["deliveries"]
        self.assertEqual(len(listed), 100)
        every = admin_json(self, d, "/v1/deliveries?limit=500")["deliveries"]
        self.assertEqual(len(every), 105)
        self.assertEqual([o["id"] for o in listed],
                         [o["id"] for o in every[:100]])

    def test_one_delivery_with_history(self):
        st = self.start_standin()
        d = self.start(trigger_yaml("to-dbt", run_url(st)))
        a = d.accept(event())
        (did,) = delivery_ids(a)
        o = wait_delivery(d, did, "delivered")
        self.assertDeliveryShape(o, with_history=True)
        self.assertEqual(o["id"], did)
        self.assertEqual(o["event"], a["event"])
        self.assertEqual(o["trigger"], "to-dbt")
        self.assertEqual(o["attempts"], 1)
        self.assertEqual(o["last_status"], 200)
        self.assertEqual(len(o["history"]), 1, o)
        h = o["history"][0]
        self.assertEqual(h["status"], 200)
        self.assertIsNone(h["error"])
        (rec,) = st.requests()
        self.assertEqual(rec.header("Idempotency-Key"), did)

    def test_failed_delivery_then_admin_retry(self):
        st = self.start_standin()
        d = self.start(trigger_yaml("to-dbt", run_url(st)))
        st.fail(401)  # dbt's envelope, user_message "Invalid token."
        a = d.accept(event())
        (did,) = delivery_ids(a)
        o = wait_delivery(d, did, "failed")
        self.assertDeliveryShape(o, with_history=True)
        self.assertEqual(st.count(), 1, "a 401 is permanent: no retry")
        self.assertEqual(o["attempts"], 1)
        self.assertEqual(o["last_status"], 401)
        self.assertIsNone(o["next_attempt_at"])
        err = o["last_error"]
        self.assertIsInstance(err, str)
        # e.g. "HTTP 401 from 127.0.0.1: Invalid token."
        self.assertIn("401", err, "last_error names the status")
        self.assertIn("127.0.0.1", err, "last_error names the host")
        self.assertIn("Invalid token.", err,
                      "last_error quotes dbt's status.user_message")
        self.assertNotIn(str(st.port), err.replace("401", ""),
                         "the host, not the whole URL")
        self.assertNotIn(DBT_TOKEN, err)
        self.assertEqual(len(o["history"]), 1)
        self.assertEqual(o["history"][0]["status"], 401)
        self.assertIsInstance(o["history"][0]["error"], str)
        self.assertIn("Invalid token.", o["history"][0]["error"])

        r = admin(d, "POST", "/v1/deliveries/%s/retry" % did)
        self.assertEqual(r.status, 202, r)
        self.assertIsInstance(r.json, dict, r)
        o2 = wait_delivery(d, did, "delivered")
        self.assertDeliveryShape(o2, with_history=True)
        self.assertEqual(st.count(), 2)
        self.assertEqual(o2["last_status"], 200)
        self.assertIsNone(o2["last_error"])
        self.assertEqual(o2["attempts"], 1,
                         "an admin retry gives a fresh attempt count")
        self.assertEqual([h["status"] for h in o2["history"]], [401, 200],
                         "history keeps the attempts before the retry")
        self.assertEqual(o2["created_at"], o["created_at"])
        self.assertEqual(st.requests()[1].header("Idempotency-Key"), did)

        r = admin(d, "POST", "/v1/deliveries/%s/retry" % did)
        self.assertEqual(r.status, 409, "retry of a delivered one: %r" % r)
        self.assertIsInstance(r.json.get("error"), str, r)
        self.assertEqual(get_delivery(d, did)["state"], "delivered")

    def test_retry_of_pending_is_409_and_unknown_is_404(self):
        down = free_port()
        d = self.start(trigger_yaml("to-down", run_url(down)),
                       initial_backoff="1h", max_backoff="2h")
        (did,) = delivery_ids(d.accept(event()))
        wait_delivery(d, did, lambda o: o["attempts"] == 1)
        r = admin(d, "POST", "/v1/deliveries/%s/retry" % did)
        self.assertEqual(r.status, 409, r)
        self.assertEqual(get_delivery(d, did)["state"], "pending")
        for method, path in (("GET", "/v1/deliveries/de_nope"),
                             ("POST", "/v1/deliveries/de_nope/retry"),
                             ("GET", "/v1/deliveries/" + did + "x")):
            r = admin(d, method, path)
            self.assertEqual(r.status, 404, "%s %s: %r" % (method, path, r))
            self.assertIsInstance(r.json.get("error"), str, r)

    # ---- authentication, 404 and 405 ----

    def test_admin_token_required(self):
        st = self.start_standin()
        d = self.start(trigger_yaml("to-dbt", run_url(st)))
        for method, path in ADMIN_PATHS:
            for token in (None, "wrong", INBOUND_TOKEN, ADMIN_TOKEN + "x",
                          ADMIN_TOKEN[:-1], ""):
                r = admin(d, method, path, token=token)
                what = "%s %s with token %r: %r" % (method, path, token, r)
                self.assertEqual(r.status, 401, what)
                self.assertEqual(r.header("WWW-Authenticate"), "Bearer",
                                 what)
                self.assertIsInstance(r.json, dict, what)
                self.assertIsInstance(r.json.get("error"), str, what)
                self.assertNotIn(ADMIN_TOKEN, r.body.decode())
            r = d.request(method, path, headers=[
                ("Authorization", "Basic " + ADMIN_TOKEN)])
            self.assertEqual(r.status, 401, "Basic auth: %r" % r)
        # the inbound token does not open the admin API, and the admin
        # token does not open /v1/events
        r = d.post_event(event(), token=ADMIN_TOKEN)
        self.assertEqual(r.status, 401, r)
        r = admin(d, "GET", "/v1/triggers")
        self.assertEqual(r.status, 200, r)

    def test_no_admin_tokens_means_404(self):
        st = self.start_standin()
        d = self.start(trigger_yaml("to-dbt", run_url(st)), admin=False)
        (did,) = delivery_ids(d.accept(event()))
        wait_until(lambda: st.count() >= 1, 10, "the delivery to be sent")
        paths = ADMIN_PATHS + [("GET", "/v1/deliveries/" + did),
                               ("POST", "/v1/deliveries/%s/retry" % did),
                               ("DELETE", "/v1/triggers"),
                               ("POST", "/v1/deliveries")]
        for method, path in paths:
            for token in (ADMIN_TOKEN, INBOUND_TOKEN, None):
                r = admin(d, method, path, token=token)
                self.assertEqual(r.status, 404, "%s %s (token %r): %r"
                                 % (method, path, token, r))
                self.assertIsInstance(r.json, dict, r)
        self.assertEqual(d.request("GET", "/healthz").status, 200)

    def test_wrong_method_is_405_with_allow(self):
        st = self.start_standin()
        d = self.start(trigger_yaml("to-dbt", run_url(st)))
        (did,) = delivery_ids(d.accept(event()))
        cases = [("POST", "/v1/triggers", "GET"),
                 ("DELETE", "/v1/triggers", "GET"),
                 ("PUT", "/v1/deliveries", "GET"),
                 ("POST", "/v1/deliveries", "GET"),
                 ("DELETE", "/v1/deliveries/" + did, "GET"),
                 ("POST", "/v1/deliveries/" + did, "GET"),
                 ("GET", "/v1/deliveries/%s/retry" % did, "POST"),
                 ("PUT", "/v1/deliveries/%s/retry" % did, "POST")]
        for method, path, allowed in cases:
            r = admin(d, method, path)
            what = "%s %s: %r" % (method, path, r)
            self.assertEqual(r.status, 405, what)
            allow = {m.strip() for m in (r.header("Allow") or "").split(",")}
            self.assertIn(allowed, allow, what)
            self.assertNotIn(method, allow, what)
            self.assertIsInstance(r.json, dict, what)
        # the delivery is untouched by all that
        self.assertIn(get_delivery(d, did)["state"], ("pending", "delivered"))

if __name__ == "__main__":
    unittest.main()
