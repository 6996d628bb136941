#!/usr/bin/env python3
"""Rules (SPEC section 4): every operation on every variable type, through
the running daemon (one trigger per case, one event per probe, the 202/200
answer and the stand-in say which triggers fired) and through --dry-run
(which names the failing rule)."""

import json
import os
import re
import unittest

from harness import (DBT_TOKEN, DEFAULT_ENV, INBOUND_TOKEN, DaemonTest,
                     dbt_trigger, event, job_uuid, keys_of, make_config)

CONN = "5f1e7a2b-93c4-4e1d-8a6f-2b7c9d0e1f23"
CONN_B = "5f1e7a2b-93c4-4e1d-8a6f-2b7c9d0e1f24"
CONN_C = "5f1e7a2b-93c4-4e1d-8a6f-2b7c9d0e1f25"


def R(var, op, value):
    return {"variable_name": var, "operation": op, "value": value}


# (type, rules, [(event fields, fires?)]). Probes that fire must fire, the
# others must not; every case gets its own trigger and job.
CASES = [
    # string (documented string fields, and an undocumented field)
    ("string", [R("CONNECTION_NAME", "EQUAL", "Postgres production")],
     [({"connection_name": "Postgres production"}, True),
      ({"connection_name": "postgres production"}, False),
      ({"connection_name": "Postgres production "}, False),
      ({}, False)]),
    ("string", [R("TRIGGERED_BY", "NOT_EQUAL", "Erathos Schedule")],
     [({"triggered_by": "ana@example.com"}, True),
      ({"triggered_by": "Erathos Schedule"}, False),
      ({"triggered_by": None}, False)]),
    ("string", [R("TABLE_NAME", "IN", ["orders", "customers"])],
     [({"table_name": "customers"}, True),
      ({"table_name": "orders"}, True),
      ({"table_name": "Orders"}, False)]),
    ("string", [R("TABLE_NAME", "NOT_IN", ["orders", "items"])],
     [({"table_name": "customers"}, True),
      ({"table_name": "items"}, False),
      ({"table_name": None}, False)]),
    ("string", [R("table_name", "IN", "orders")],  # a one-element list
     [({"table_name": "orders"}, True),
      ({"table_name": "order"}, False)]),
    ("string", [R("REGION", "EQUAL", "eu-west")],  # not a documented field
     [({"region": "eu-west"}, True),
      ({"REGION": "eu-west-1"}, False)]),
    # uuid: case-insensitive
    ("uuid", [R("CONNECTION_ID", "EQUAL", CONN.upper())],
     [({"connection_id": CONN}, True),
      ({"connection_id": CONN_B}, False)]),
    ("uuid", [R("CONNECTION_ID", "NOT_EQUAL", CONN)],
     [({"connection_id": CONN_B}, True),
      ({"connection_id": CONN.upper()}, False)]),
    ("uuid", [R("CONNECTION_ID", "IN", [CONN, CONN_B])],
     [({"connection_id": CONN_B.upper()}, True),
      ({"connection_id": CONN_C}, False)]),
    ("uuid", [R("CONNECTION_ID", "NOT_IN", [CONN])],
     [({"connection_id": CONN_C}, True),
      ({"connection_id": CONN.upper()}, False)]),
    # integer: numerically; JSON numbers mean the same as strings
    ("integer", [R("ROWS", "EQUAL", "0")],
     [({"rows": "0"}, True), ({"rows": 0}, True), ({"rows": "1"}, False),
      ({"rows": "abc"}, False), ({}, False)]),
    ("integer", [R("ROWS", "NOT_EQUAL", "0")],
     [({"rows": "12345"}, True), ({"rows": 0}, False),
      ({"rows": "abc"}, False)]),
    ("integer", [R("COLUMNS", "IN", ["1", "2"])],
     [({"columns": "2"}, True), ({"columns": 1}, True),
      ({"columns": "3"}, False)]),
    ("integer", [R("COLUMNS", "NOT_IN", ["1", "2"])],
     [({"columns": "18"}, True), ({"columns": "1"}, False)]),
    ("integer", [R("ROWS", "LESS_THAN", "10")],
     [({"rows": "9"}, True), ({"rows": "-1"}, True), ({"rows": "10"}, False),
      ({"rows": "100"}, False), ({"rows": "x"}, False)]),
    ("integer", [R("TOTAL_DURATION", "GREATER_THAN", "9")],
     [({"total_duration": "10"}, True), ({"total_duration": 94}, True),
      ({"total_duration": "9"}, False), ({"total_duration": "8"}, False)]),
    ("integer", [R("ROWS", "GREATER_THAN", 100)],  # a YAML number as value
     [({"rows": "101"}, True), ({"rows": "100"}, False)]),
    ("integer", [R("FINISHED_AT_WEEKDAY", "IN", ["0", "6"])],
     [({"finished_at_weekday": 6}, True), ({"finished_at_weekday": "0"}, True),
      ({"finished_at_weekday": "5"}, False)]),
    # boolean: true/false/1/0, case-insensitive
    ("boolean", [R("IS_ORCHESTRATION", "EQUAL", "true")],
     [({"is_orchestration": "True"}, True), ({"is_orchestration": "1"}, True),
      ({"is_orchestration": True}, True),
      ({"is_orchestration": "false"}, False),
      ({"is_orchestration": "yes"}, False)]),
    ("boolean", [R("IS_ORCHESTRATION", "NOT_EQUAL", "true")],
     [({"is_orchestration": "False"}, True),
      ({"is_orchestration": False}, True), ({"is_orchestration": "0"}, True),
      ({"is_orchestration": "TRUE"}, False)]),
    ("boolean", [R("FORCE_HISTORY", "EQUAL", False)],  # a YAML boolean
     [({"force_history": "FALSE"}, True), ({"force_history": "true"}, False)]),
    ("boolean", [R("NESTED_TABLE", "NOT_EQUAL", "0")],
     [({"nested_table": "true"}, True), ({"nested_table": "false"}, False)]),
    # date: chronologically
    ("date", [R("FINISHED_AT_DATE", "LESS_THAN", "2026-11-28")],
     [({"finished_at_date": "2026-11-27"}, True),
      ({"finished_at_date": "2025-12-31"}, True),
      ({"finished_at_date": "2026-11-28"}, False),
      ({"finished_at_date": "2026-12-01"}, False),
      ({"finished_at_date": "yesterday"}, False)]),
    ("date", [R("FINISHED_AT_DATE", "GREATER_THAN", "2026-11-28")],
     [({"finished_at_date": "2026-11-29"}, True),
      ({"finished_at_date": "2027-01-01"}, True),
      ({"finished_at_date": "2026-11-28"}, False),
      ({"finished_at_date": "2026-02-30"}, False)]),
    ("date", [R("FINISHED_AT_DATE", "EQUAL", "2026-11-27")],
     [({"finished_at_date": "2026-11-27"}, True),
      ({"finished_at_date": "2026-11-26"}, False)]),
    ("date", [R("FINISHED_AT_DATE", "NOT_EQUAL", "2026-11-27")],
     [({"finished_at_date": "2026-11-26"}, True),
      ({"finished_at_date": "2026-11-27"}, False)]),
    # time: chronologically, HH:MM or HH:MM:SS
    ("time", [R("FINISHED_AT_TIME", "LESS_THAN", "12:00")],
     [({"finished_at_time": "06:42"}, True),
      ({"finished_at_time": "11:59:59"}, True),
      ({"finished_at_time": "12:00"}, False),
      ({"finished_at_time": "12:00:01"}, False),
      ({"finished_at_time": "noon"}, False)]),
    ("time", [R("FINISHED_AT_TIME", "GREATER_THAN", "06:42")],
     [({"finished_at_time": "06:42:01"}, True),
      ({"finished_at_time": "23:59"}, True),
      ({"finished_at_time": "06:42"}, False),
      ({"finished_at_time": "06:41:59"}, False)]),
    ("time", [R("FINISHED_AT_TIME", "EQUAL", "06:42")],
     [({"finished_at_time": "06:42"}, True),
      ({"finished_at_time": "06:42:00"}, True),
      ({"finished_at_time": "06:43"}, False)]),
    ("time", [R("FINISHED_AT_TIME", "NOT_EQUAL", "06:42")],
     [({"finished_at_time": "07:00"}, True),
      ({"finished_at_time": "06:42"}, False)]),
    # AND of rules, and Erathos's other spelling of variable_name
    ("and", [R("STATUS", "EQUAL", "FINISHED"), R("ROWS", "GREATER_THAN", "0")],
     [({"status": "FINISHED", "rows": "5"}, True),
      ({"status": "FAILED", "rows": "5"}, False),
      ({"status": "FINISHED", "rows": "0"}, False)]),
    ("alias", [{"erathos_variable": "STATUS", "operation": "EQUAL",
                "value": "FAILED"}],
     [({"status": "FAILED"}, True), ({"status": "FINISHED"}, False)]),
]

BASE = 100  # job numbers of the cases: BASE + index


def probe_event(i, fields):
    """The event of one probe: job i's, with fields set (None: absent)."""
    ev = event(job=job_uuid(BASE + i), status=None, triggered_by=None,
               table_name=None)
    ev.update(fields)
    return {k: v for k, v in ev.items() if v is not None}


def case_trigger(i, st, jobs=None):
    rules = CASES[i][1]
    return dbt_trigger("r%02d" % i, st, BASE + i,
                       jobs=jobs or [job_uuid(BASE + i)], rules=rules)


class RulesDaemonTest(DaemonTest):
    def test_every_operation_on_every_type(self):
        st = self.start_standin(token=DBT_TOKEN)
        cfg = make_config([case_trigger(i, st) for i in range(len(CASES))])
        d = self.start_daemon(cfg, env=DEFAULT_ENV, token=INBOUND_TOKEN)
        wrong = []
        expected_paths = []
        for i, (typ, rules, probes) in enumerate(CASES):
            for fields, fires in probes:
                r = d.post_event(probe_event(i, fields))
                got = [x["trigger"] for x in (r.json or {}).get(
                    "deliveries", [])]
                want = ["r%02d" % i] if fires else []
                want_status = 202 if fires else 200
                if (r.status, got) != (want_status, want):
                    wrong.append("%s %s %s: got %d %s" % (
                        typ, json.dumps(rules), json.dumps(fields), r.status,
                        r.body.decode(errors="replace")))
                if fires:
                    expected_paths.append(
                        "/api/v2/accounts/70403103912345/jobs/%d/run/"
                        % (BASE + i))
        self.assertEqual(wrong, [], "\n" + "\n".join(wrong))
        reqs = st.wait_for_requests(len(expected_paths), timeout=20)
        self.assertEqual(sorted(q.path for q in reqs), sorted(expected_paths))
        self.assertEqual(len(set(keys_of(reqs))), len(expected_paths))

    def test_inactive_wildcard_and_job_case(self):
        st = self.start_standin(token=DBT_TOKEN)
        j1, j2 = job_uuid(1), job_uuid(2)
        cfg = make_config([
            dbt_trigger("any", st, 1, jobs=["*"]),
            dbt_trigger("upper", st, 2, jobs=[j1.upper()]),
            dbt_trigger("off", st, 3, jobs=[j1, j2], is_active=False),
            dbt_trigger("two", st, 4, jobs=[j2, j1]),
        ])
        d = self.start_daemon(cfg, env=DEFAULT_ENV, token=INBOUND_TOKEN)

        def fired(ev):
            r = d.post_event(ev)
            return sorted(x["trigger"] for x in r.json["deliveries"])
        self.assertEqual(fired(event(job=j1)), ["any", "two", "upper"])
        self.assertEqual(fired(event(job=j2.upper())), ["any", "two"])
        self.assertEqual(fired(event(job=job_uuid(9))), ["any"])
        self.assertEqual(fired(event(job=j1, status="FAILED")), [])


class RulesDryRunTest(DaemonTest):
    """--dry-run, one trigger per run: a probe that fires prints the
    rendered request; one that does not prints why, naming the rule."""

    def test_dry_run_names_the_failing_rule(self):
        d = self.new_daemon("placeholder: 1\n", env=DEFAULT_ENV)
        wrong = []
        runs = 0
        for i, (typ, rules, probes) in enumerate(CASES):
            d.write_config(make_config([case_trigger(i, None, jobs=["*"])]))
            for n, (fields, fires) in enumerate(probes):
                ev = probe_event(i, fields)
                if n % 2:
                    p = d.dry_run(ev)  # on stdin
                else:
                    path = os.path.join(d.tmp, "event.json")
                    with open(path, "w") as f:
                        json.dump(ev, f)
                    p = d.dry_run(path)
                runs += 1
                problem = self.judge(i, rules, fields, fires, p)
                if problem:
                    wrong.append("%s %s %s: %s\n  stdout: %r\n  stderr: %r" % (
                        typ, json.dumps(rules), json.dumps(fields), problem,
                        p.stdout, p.stderr))
        self.assertEqual(wrong, [], "\n" + "\n".join(wrong))
        self.assertGreater(runs, 90)

    def judge(self, i, rules, fields, fires, p):
        url = "/api/v2/accounts/70403103912345/jobs/%d/run/" % (BASE + i)
        if p.returncode != 0:
            return "exit %d" % p.returncode
        if "r%02d" % i not in p.stdout:
            return "the trigger is not named"
        if fires:
            return None if url in p.stdout else "no rendered request"
        if url in p.stdout:
            return "a request is shown for a trigger that does not match"
        # The failing rule: the first one that does not hold.
        failing = [r for r in rules
                   if not self.holds_in_case(r, fields, rules)]
        rule = failing[0] if failing else rules[0]
        var = rule.get("variable_name") or rule.get("erathos_variable")
        if not re.search(r"\b%s\b" % var, p.stdout, re.I):
            return "the failing rule's variable %s is not named" % var
        if rule["operation"] not in p.stdout:
            return "the failing rule's operation is not named"
        return None

    @staticmethod
    def holds_in_case(rule, fields, rules):
        # For the AND case: which of its rules fails for this probe.
        if len(rules) == 1:
            return False
        var = rule["variable_name"].lower()
        v = fields.get(var)
        if var == "status":
            return v == rule["value"]
        return v is not None and int(v) > int(rule["value"])

    def test_dry_run_names_a_job_mismatch(self):
        d = self.new_daemon(make_config([case_trigger(0, None)]),
                            env=DEFAULT_ENV)
        p = d.dry_run(probe_event(1, {"connection_name": "x"}))
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("r00", p.stdout)
        self.assertIn(job_uuid(BASE + 1), p.stdout)
        self.assertNotIn("/run/", p.stdout)


BAD_RULES = [
    ("TABLE_NAME", "LESS_THAN", "x"),            # not for strings
    ("CONNECTION_ID", "GREATER_THAN", "5f1e7a2b-93c4-4e1d-8a6f-2b7c9d0e1f23"),
    ("IS_ORCHESTRATION", "IN", ["true"]),        # not for booleans
    ("FINISHED_AT_DATE", "IN", ["2026-11-28"]),  # date: ordering/equality
    ("ROWS", "SIMILAR_TO", "1"),                 # unknown operation
    ("ROWS", "LESS_THAN", "ten"),                # not an integer
]


class RulesValidationTest(DaemonTest):
    def test_invalid_rules_are_config_errors_at_their_line(self):
        lines = ["server:", '  listen: "@LISTEN@"', "store:",
                 '  path: "@STORE@"', "triggers:"]
        where = []
        for n, (var, op, value) in enumerate(BAD_RULES):
            lines += ["  - name: bad%d" % n,
                      "    method: POST",
                      '    url: "http://127.0.0.1:9/x"',
                      '    jobs: ["*"]',
                      "    rules:",
                      "      - variable_name: %s" % var,
                      "        operation: %s" % op,
                      "        value: %s" % json.dumps(value)]
            where.append((len(lines) - 2, len(lines) - 1))  # 0-based op line
        d = self.new_daemon("\n".join(lines) + "\n")
        p = d.check()
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        errs = re.findall(r"^%s:(\d+):(\d+): error: (.*)$"
                          % re.escape(d.cfg_path), p.stderr, re.M)
        err_lines = {int(ln) for ln, _, _ in errs}
        for (var, op, value), (op_line, value_line) in zip(BAD_RULES, where):
            self.assertTrue({op_line + 1, value_line + 1} & err_lines,
                            "no error at line %d or %d for %s %s %r:\n%s"
                            % (op_line + 1, value_line + 1, var, op, value,
                               p.stderr))
        self.assertEqual(len(errs), len(BAD_RULES), p.stderr)


if __name__ == "__main__":
    unittest.main()
