#!/usr/bin/env python3
"""The command line (SPEC section 7) and config validation as a user meets
it (SPEC section 3): exit codes, --version/--help, --check on a valid
config, on Erathos's quickstart pasted as-is and on a config full of
errors, --dry-run from a file and from stdin, and start-up failures."""

import os
import re
import socket
import unittest

import harness
from harness import (DEFAULT_ENV, DaemonTest, dbt_trigger, make_config,
                     read_data)

FINISHED = read_data("erathos-event-finished.json")


def diag(path, text, kind):
    """(line, col, message) of every `PATH:LINE:COL: kind: message`."""
    return [(int(a), int(b), m) for a, b, m in re.findall(
        r"^%s:(\d+):(\d+): %s: (.*)$" % (re.escape(path), kind), text, re.M)]


def position(text, needle, nth=0):
    """1-based (line, col) of the nth occurrence of needle in text."""
    idx = -1
    for _ in range(nth + 1):
        idx = text.index(needle, idx + 1)
    line = text.count("\n", 0, idx) + 1
    col = idx - (text.rfind("\n", 0, idx) + 1) + 1
    return line, col


SEED_HEAD = """\
server:
  listen: "@LISTEN@"
  auth:
    tokens: ["${{secrets.inbound_token}}"]
store:
  path: "@STORE@"
variables:
  dbt_account_id: "70403103912345"
secrets:
  inbound_token: {env: TRIGGERD_INBOUND_TOKEN}
  dbt_personal_token: {env: DBT_PERSONAL_TOKEN}
triggers:
"""

MANY_ERRORS = """\
server:
  listen: "@LISTEN@"
  bogus_key: 1
store:
  path: "@STORE@"
dispatch:
  workers: many
triggers:
  - name: a
    method: FETCH
    url: "http://127.0.0.1:9/${{variables.nope}}"
    header:
      X-Key: "${{secrets.missing}}"
    jobs: ["*"]
    rules:
      - {variable_name: STATUS, operation: SOUNDS_LIKE, value: FINISHED}
  - name: a
    method: POST
    url: "not a url"
    jobs: ["*"]
    rules:
      - {variable_name: STATUS, operation: EQUAL, value: FINISHED}
"""
# (line, what) of each error in MANY_ERRORS
MANY_ERROR_LINES = [(3, "unknown key"), (7, "wrong type"),
                    (10, "invalid method"), (11, "undefined variable"),
                    (13, "undefined secret"), (16, "unknown operation"),
                    (17, "duplicate name"), (19, "invalid url")]


class CliTest(DaemonTest):
    def setUp(self):
        # marking on (SPEC section 8's default): a valid config warns of nothing
        self.d = self.new_daemon(make_config([dbt_trigger("t1", None, 1,
                                                          dbt={})]),
                                 env=DEFAULT_ENV)

    def test_version(self):
        p = self.d.run(["--version"])
        self.assertEqual((p.returncode, p.stdout, p.stderr),
                         (0, "triggerd %s\n" % harness.version(), ""))

    def test_help(self):
        p = self.d.run(["--help"])
        self.assertEqual(p.returncode, 0)
        self.assertEqual(p.stderr, "")
        for opt in ("-c", "--check", "--dry-run", "--version", "--help",
                    "--log-level"):
            self.assertIn(opt, p.stdout)

    def test_usage_errors_exit_2(self):
        cfg = self.d.cfg_path
        for args in (["--bogus"], ["-x"], ["--log-level", "verbose"],
                     ["--log-level"], ["-c"], ["--dry-run"],
                     ["-c", cfg, "--check", "--log-level", "loud"],
                     ["-c", cfg, "--check", "stray-argument"]):
            with self.subTest(args=args):
                p = self.d.run(args)
                self.assertEqual(p.returncode, 2, p.stdout + p.stderr)
                self.assertEqual(p.stdout, "")
                self.assertNotEqual(p.stderr, "")

    def test_log_levels(self):
        for level in ("debug", "info", "warn", "error"):
            p = self.d.run(["-c", self.d.cfg_path, "--check", "--log-level",
                            level])
            self.assertEqual(p.returncode, 0, p.stderr)

    def test_missing_config_exits_1(self):
        missing = os.path.join(self.d.tmp, "nope.yaml")
        p = self.d.run(["-c", missing, "--check"])
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn(missing, p.stderr)
        p = self.d.run(["-c", missing])
        self.assertEqual(p.returncode, 1, p.stderr)
        if not os.path.exists("/etc/triggerd/triggerd.yaml"):
            p = self.d.run(["--check"])
            self.assertEqual(p.returncode, 1, p.stderr)
            self.assertIn("/etc/triggerd/triggerd.yaml", p.stderr)

    def test_check_valid_config(self):
        p = self.d.check()
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stderr, "")  # no errors, no warnings
        self.assertIn("t1", p.stdout)

    def test_check_seed_pasted_as_is(self):
        seed = read_data("seed-dbt-cloud-webhook.json").decode()
        lines = seed.rstrip("\n").split("\n")
        text = self.d.subst(SEED_HEAD + "  - " + lines[0] + "\n" + "".join(
            "    " + ln + "\n" for ln in lines[1:]))
        self.d.write_config(text)
        p = self.d.check()
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        path = self.d.cfg_path
        errors = diag(path, p.stderr, "error")
        warnings = diag(path, p.stderr, "warning")
        job_at = position(text, '"<ERATHOS_JOB_ID>"')
        self.assertEqual([e[:2] for e in errors], [job_at], p.stderr)
        url_line = position(text, '"url"')[0]
        getdbt = [w for w in warnings if "cloud.getdbt.com" in w[2]]
        placeholder = [w for w in warnings if "<DBT_JOB_ID" in w[2]]
        status = [w for w in warnings if "STATUS" in w[2]]
        self.assertEqual([w[0] for w in getdbt], [url_line], p.stderr)
        self.assertEqual([w[0] for w in placeholder], [url_line], p.stderr)
        self.assertEqual(len(status), 1, p.stderr)
        self.assertNotIn(": error:", p.stdout)
        self.assertNotIn(": warning:", p.stdout)

    def test_check_reports_every_error_at_once(self):
        self.d.write_config(MANY_ERRORS)
        p = self.d.check()
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        errors = diag(self.d.cfg_path, p.stderr, "error")
        got = {line for line, _, _ in errors}
        missing = [(ln, what) for ln, what in MANY_ERROR_LINES
                   if ln not in got]
        self.assertEqual(missing, [], p.stderr)
        # The daemon refuses to start on it, with the same exit code.
        self.d.start(wait=False)
        self.assertEqual(self.d.wait_exit(10), 1)
        self.assertIn("bogus_key", self.d.log())

    def test_dry_run_file_and_stdin(self):
        st = self.start_standin()
        t2 = dbt_trigger("t2", st, 2, rules=[{
            "variable_name": "STATUS", "operation": "EQUAL",
            "value": "FAILED"}], dbt={})
        self.d.write_config(make_config([dbt_trigger("t1", st, 1, dbt={}),
                                         t2]))
        path = self.d.write_file("event.json", FINISHED)
        by_file = self.d.dry_run(path)
        by_stdin = self.d.run(["-c", self.d.cfg_path, "--dry-run", "-"],
                              stdin=FINISHED)
        for p in (by_file, by_stdin):
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertEqual(p.stderr, "")
        self.assertEqual(by_file.stdout, by_stdin.stdout)
        out = by_file.stdout
        for want in ("t1", "t2", "POST",
                     "%s/api/v2/accounts/70403103912345/jobs/1/run/"
                     % st.base_url,
                     "Bearer <secret:dbt_personal_token>",
                     '{"cause":"t1: orders [triggerd <delivery-id>]"}', "STATUS",
                     "FAILED"):
            self.assertIn(want, out)
        self.assertNotIn("/jobs/2/run/", out)  # t2 does not match: why only
        self.assertEqual(st.count(), 0)        # sends nothing
        self.assertFalse(os.path.exists(self.d.store))  # writes nothing

    def test_dry_run_bad_event(self):
        for args, stdin in ((["--dry-run", os.path.join(self.d.tmp, "no")],
                             None),
                            (["--dry-run", "-"], b'{"status":"FINISHED"}'),
                            (["--dry-run", "-"], b"[")):
            p = self.d.run(["-c", self.d.cfg_path] + args, stdin=stdin)
            self.assertNotEqual(p.returncode, 0, args)
            self.assertNotEqual(p.stderr, "", args)
            self.assertFalse(os.path.exists(self.d.store))

    def test_cannot_listen_exits_3(self):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.d.port))
        s.listen(1)
        self.addCleanup(s.close)
        self.d.start(wait=False)
        self.assertEqual(self.d.wait_exit(10), 3, self.d.log_tail())
        self.assertIn(str(self.d.port), self.d.log())

    def test_cannot_bind_address_exits_3(self):
        self.d.write_config(self.d.config_text.replace(
            self.d.listen, "192.0.2.1:%d" % self.d.port))
        self.d.start(wait=False)
        self.assertEqual(self.d.wait_exit(10), 3, self.d.log_tail())

    def test_store_not_writable_exits_3(self):
        self.d.write_file("afile", "not a directory")
        self.d.write_config(self.d.config_text.replace(
            self.d.store, os.path.join(self.d.tmp, "afile", "triggerd.db")))
        self.d.start(wait=False)
        self.assertEqual(self.d.wait_exit(10), 3, self.d.log_tail())

    def test_default_store_path(self):
        text = make_config([dbt_trigger("t1", None, 1)]).replace(
            'store: {"path": "@STORE@"}\n', "")
        self.assertNotIn("store", text)
        self.d.write_config(text)
        state = os.path.join(self.d.tmp, "state")
        os.mkdir(state)
        self.d.env["STATE_DIRECTORY"] = state
        self.d.start()
        self.assertTrue(os.path.exists(os.path.join(state, "triggerd.db")))
        self.assertEqual(self.d.terminate(), 0)
        del self.d.env["STATE_DIRECTORY"]
        self.d.start()
        self.assertTrue(os.path.exists(os.path.join(self.d.tmp,
                                                    "triggerd.db")))


if __name__ == "__main__":
    unittest.main()
