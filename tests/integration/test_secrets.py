#!/usr/bin/env python3
"""Secrets (SPEC sections 3, 5, 7) are used when sending and appear nowhere
else: not in the log (at debug level, through failures of every kind), not
in --check or --dry-run output (which shows <secret:NAME>), not in the store
(database, -wal, -shm, -journal)."""

import glob
import os
import re
import unittest

import harness
from harness import JOB, DaemonTest, barrier, event, wait_delivered, wait_until
from standin import Answer

DBT_SECRET = "dbtSECRETvalue-81f2c6"
INBOUND_SECRET = "inbSECRETvalue-4a9e07"
CRED_SECRET = "credSECRETvalue-c3d5e1"
PLAIN_SECRET = "plainSECRETvalue-77aa01"
SECRETS = [DBT_SECRET, INBOUND_SECRET, CRED_SECRET, PLAIN_SECRET]

CONFIG = """\
server:
  listen: "@LISTEN@"
  auth:
    tokens:
      - "${{secrets.inbound_token}}"
store:
  path: "@STORE@"
dispatch:
  timeout: 1s
  connect_timeout: 1s
  retry:
    max_attempts: 3
    initial_backoff: 100ms
    max_backoff: 200ms
variables:
  dbt_account_id: "70403103912345"
secrets:
  dbt_personal_token: {env: DBT_PERSONAL_TOKEN}
  inbound_token: {file: "@TMP@/inbound_token"}
  api_key: {credential: api_key}
  plain_one: "%(plain)s"
triggers:
  - name: dbt
    method: POST
    url: "%(base)s/api/v2/accounts/${{variables.dbt_account_id}}/jobs/1/run/"
    header:
      Content-Type: application/json
      Authorization: "Bearer ${{secrets.dbt_personal_token}}"
      X-Api-Key: "${{secrets.api_key}}"
      X-Plain: "${{secrets.plain_one}}"
    body:
      cause: "by ${{erathos.triggered_by}}"
    rules:
      - {variable_name: STATUS, operation: EQUAL, value: FINISHED}
    jobs: ["%(job)s"]
  - name: refused
    method: POST
    url: "http://127.0.0.1:%(dead)d/hook?key=${{secrets.api_key}}"
    header:
      Authorization: "Bearer ${{secrets.dbt_personal_token}}"
    body: "token=${{secrets.dbt_personal_token}}&table=${{erathos.table_name}}"
    rules:
      - {variable_name: TABLE_NAME, operation: EQUAL, value: refused}
    jobs: ["*"]
"""


class SecretsTest(DaemonTest):
    def setUp(self):
        self.st = self.start_standin(token=DBT_SECRET)
        cfg = CONFIG % {"plain": PLAIN_SECRET, "base": self.st.base_url,
                        "job": JOB, "dead": harness.free_port()}
        self.d = self.new_daemon(cfg, token=INBOUND_SECRET,
                                 env={"DBT_PERSONAL_TOKEN": DBT_SECRET})
        self.d.env["CREDENTIALS_DIRECTORY"] = os.path.join(self.d.tmp, "creds")
        self.d.write_file("inbound_token", INBOUND_SECRET + "\n")
        self.d.write_file("creds/api_key", CRED_SECRET + "\n")

    def assertNoSecret(self, data, where):
        if isinstance(data, str):
            data = data.encode("utf-8", "replace")
        for s in SECRETS:
            self.assertNotIn(s.encode(), data,
                             "secret %s found in %s" % (s, where))

    def store_files(self):
        files = [f for f in glob.glob(self.d.store + "*") if os.path.isfile(f)]
        self.assertIn(self.d.store, files)
        return files

    def test_secrets_never_leave_memory(self):
        self.d.start()
        # Failures of every kind on the way out: 500 (retried), a timeout,
        # 401 (permanent), then success; and a refused connection.
        self.st.script(Answer(status=500), Answer(delay=3),
                       Answer(status=200))
        first = self.d.accept(event(triggered_by="ana@example.com"))
        self.st.script(Answer(status=401))
        self.d.accept(event())
        refused = self.d.accept(event(table_name="refused"))
        # Inbound failures: a wrong token, bad JSON, wrong type, unmatched.
        self.assertEqual(self.d.post_event(event(), token="nope").status, 401)
        self.assertEqual(self.d.post_event(b"{").status, 400)
        self.assertEqual(self.d.post_event(event(),
                                           content_type="text/plain").status,
                         415)
        self.assertEqual(self.d.post_event(event(status="FAILED")).status, 200)
        ids = [dl["id"] for dl in first["deliveries"]]
        reqs = wait_delivered(self.st, ids, timeout=15)
        # The secrets were really used when sending ...
        q = [q for q in reqs if q.header("Idempotency-Key") == ids[0]][0]
        self.assertEqual(q.header("Authorization"), "Bearer " + DBT_SECRET)
        self.assertEqual(q.header("X-Api-Key"), CRED_SECRET)
        self.assertEqual(q.header("X-Plain"), PLAIN_SECRET)
        self.assertEqual(q.body, ('{"cause":"by ana@example.com [triggerd %s]"}'
                                  % ids[0]).encode())
        # ... the refused URL (with a secret in it) was tried ...
        (rid,) = [dl["id"] for dl in refused["deliveries"]
                  if dl["trigger"] == "refused"]
        wait_until(lambda: [ln for ln in self.d.log().splitlines()
                            if rid in ln and "refused" in ln.lower()], 10,
                   lambda: "a log line saying delivery %s was refused:\n%s"
                   % (rid, self.d.log_tail()))
        barrier(self, self.d, self.st)

        # ... and appear nowhere else, while running ...
        for f in self.store_files():
            with open(f, "rb") as fh:
                self.assertNoSecret(fh.read(), f)
        self.assertNoSecret(self.d.log_bytes(), "the log")
        # ... nor after a kill -9 (the -wal file stays) or a clean stop.
        self.d.kill()
        for f in self.store_files():
            with open(f, "rb") as fh:
                self.assertNoSecret(fh.read(), f + " after kill -9")
        self.d.start()
        self.assertEqual(self.d.terminate(), 0)
        for f in self.store_files():
            with open(f, "rb") as fh:
                self.assertNoSecret(fh.read(), f + " after SIGTERM")
        self.assertNoSecret(self.d.log_bytes(), "the log")

    def test_check_and_dry_run_mask_secrets(self):
        p = self.d.check()
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertNoSecret(p.stdout_bytes + p.stderr_bytes, "--check output")
        # A plain-string secret is allowed, with a warning naming it.
        warn = [ln for ln in p.stderr.splitlines() if ": warning:" in ln
                and "plain_one" in ln]
        self.assertEqual(len(warn), 1, p.stderr)
        self.assertTrue(warn[0].startswith(self.d.cfg_path + ":"), warn)

        for ev in (event(triggered_by="ana@example.com"),
                   event(table_name="refused")):
            p = self.d.dry_run(ev)
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertNoSecret(p.stdout_bytes + p.stderr_bytes,
                                "--dry-run output")
        p = self.d.dry_run(event(triggered_by="ana@example.com"))
        self.assertIn("Bearer <secret:dbt_personal_token>", p.stdout)
        self.assertIn("<secret:api_key>", p.stdout)
        self.assertIn("<secret:plain_one>", p.stdout)
        p = self.d.dry_run(event(table_name="refused"))
        self.assertIn("key=<secret:api_key>", p.stdout)
        self.assertIn("token=<secret:dbt_personal_token>&table=refused",
                      p.stdout)
        self.assertEqual(self.st.count(), 0)
        self.assertFalse(os.path.exists(self.d.store))

    def test_unresolvable_secret_is_named_not_shown(self):
        os.unlink(os.path.join(self.d.tmp, "creds", "api_key"))
        del self.d.env["DBT_PERSONAL_TOKEN"]
        p = self.d.check()
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        errs = [ln for ln in p.stderr.splitlines() if ": error:" in ln]
        self.assertTrue(any("dbt_personal_token" in ln for ln in errs), errs)
        self.assertTrue(any("api_key" in ln for ln in errs), errs)
        for ln in errs:
            self.assertTrue(re.match(r"%s:\d+:\d+: error: "
                                     % re.escape(self.d.cfg_path), ln), ln)
        self.assertNoSecret(p.stdout_bytes + p.stderr_bytes, "--check output")


if __name__ == "__main__":
    unittest.main()
