#!/usr/bin/env python3
"""Erathos's dbt Cloud quickstart, pasted into triggers: as JSON, end to end:
the exact request dbt Cloud (the stand-in) receives for a finished job, and
nothing for a failed one."""

import json
import unittest

import harness
from harness import (DBT_TOKEN, DEFAULT_ENV, INBOUND_TOKEN, JOB, DaemonTest,
                     read_data, wait_until)

TRIGGER = "trigger-dbt-job-run-on-cloud"  # derived from the description
# The quickstart's cause, with the delivery's marker (SPEC section 8).
CAUSE = ('{"cause":"finished job on Erathos platform triggered by '
         'Erathos Schedule [triggerd %s]"}')

HEAD = """\
server:
  listen: "@LISTEN@"
  auth:
    tokens: ["${{secrets.inbound_token}}"]
store:
  path: "@STORE@"
dispatch:
  retry:
    initial_backoff: 100ms
variables:
  dbt_account_id: "70403103912345"
secrets:
  inbound_token: {env: TRIGGERD_INBOUND_TOKEN}
  dbt_personal_token: {env: DBT_PERSONAL_TOKEN}
triggers:
"""


def replace_once(text, old, new):
    assert text.count(old) == 1, "%r occurs %d times" % (old, text.count(old))
    return text.replace(old, new)


def quickstart_config(base_url):
    """The published seed with its placeholders filled in (the trailing
    comma of its jobs list stays: YAML flow sequences allow it), pasted as
    a list item."""
    seed = read_data("seed-dbt-cloud-webhook.json").decode()
    seed = replace_once(seed, "https://cloud.getdbt.com", base_url)
    seed = replace_once(seed, "<DBT_JOB_ID/run/", "42/run/")
    seed = replace_once(seed, '"<ERATHOS_JOB_ID>"', '"%s"' % JOB)
    seed = replace_once(seed, '"rules": [\n  ]', '"rules": [\n    {'
                        '"variable_name": "STATUS", "operation": "EQUAL", '
                        '"value": "FINISHED"}\n  ]')
    lines = seed.rstrip("\n").split("\n")
    pasted = "  - " + lines[0] + "\n" + "".join(
        "    " + line + "\n" for line in lines[1:])
    return HEAD + pasted


class QuickstartTest(DaemonTest):
    def setUp(self):
        self.st = self.start_standin(token=DBT_TOKEN)
        self.d = self.start_daemon(quickstart_config(self.st.base_url),
                                   env=DEFAULT_ENV, token=INBOUND_TOKEN)

    def test_finished_event_triggers_exact_dbt_request(self):
        body = read_data("erathos-event-finished.json")
        r = self.d.post_event(body)
        self.assertEqual(r.status, 202, r)
        self.assertTrue(r.header("Content-Type").startswith(
            "application/json"), r.headers)
        self.assertEqual(sorted(r.json), ["deliveries", "event", "status"])
        self.assertEqual(r.json["status"], "accepted")
        (dl,) = r.json["deliveries"]
        self.assertEqual(sorted(dl), ["id", "trigger"])
        self.assertEqual(dl["trigger"], TRIGGER)

        (req,) = self.st.wait_for_requests(1, timeout=10)
        self.assertEqual(req.method, "POST")
        self.assertEqual(req.path,
                         "/api/v2/accounts/70403103912345/jobs/42/run/")
        self.assertEqual(req.query, "")
        cause = (CAUSE % dl["id"]).encode()
        self.assertEqual(req.body, cause)
        got = sorted((k.lower(), v) for k, v in req.headers)
        self.assertEqual(got, sorted([
            ("host", "127.0.0.1:%d" % self.st.port),
            ("content-type", "application/json"),
            ("accept", "application/json"),
            ("authorization", "Bearer " + DBT_TOKEN),
            ("user-agent", "triggerd/" + harness.version()),
            ("idempotency-key", dl["id"]),
            ("content-length", str(len(cause))),
        ]))
        self.assertEqual(req.status, 200)  # the stand-in took it as dbt would

        # The 200 is recorded: the log says so with the ids, and a restart
        # does not send it again.
        def delivered():
            return [rec for rec in self.d.log_records()
                    if rec.get("msg") == "delivered"
                    and rec.get("delivery") == dl["id"]]
        (rec,) = wait_until(delivered, 10, lambda: "a msg=delivered record "
                            "in the log:\n" + self.d.log_tail())
        self.assertEqual(rec.get("trigger"), TRIGGER)
        self.assertEqual(rec.get("status"), "200")
        self.assertEqual(rec.get("attempt"), "1")
        # A clean stop commits every outcome; nothing is sent again.
        self.assertEqual(self.d.terminate(), 0)
        self.d.start()
        second = json.loads(read_data("erathos-event-finished.json"))
        second["EXECUTION_ID"] = "9a7c3e21-4b5d-4f60-8e19-0c2d3b4a5f68"
        reqs = harness.barrier(self, self.d, self.st, second)
        self.assertEqual(len(reqs), 2, reqs)

    def test_failed_event_is_unmatched_and_sends_nothing(self):
        r = self.d.post_event(read_data("erathos-event-failed.json"))
        self.assertEqual(r.status, 200, r)
        self.assertEqual(sorted(r.json), ["deliveries", "event", "status"])
        self.assertEqual(r.json["status"], "unmatched")
        self.assertEqual(r.json["deliveries"], [])
        self.assertIsInstance(r.json["event"], str)
        # A matching event posted after it arrives alone.
        ev = json.loads(read_data("erathos-event-finished.json"))
        reqs = harness.barrier(self, self.d, self.st, ev)
        self.assertEqual(len(reqs), 1, reqs)

    def test_same_execution_twice_is_a_duplicate(self):
        body = read_data("erathos-event-finished.json")
        first = self.d.post_event(body)
        self.assertEqual(first.status, 202, first)
        again = self.d.post_event(body)
        self.assertEqual(again.status, 200, again)
        self.assertEqual(again.json, {"status": "duplicate",
                                      "event": first.json["event"]})


if __name__ == "__main__":
    unittest.main()
