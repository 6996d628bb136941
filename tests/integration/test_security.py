#!/usr/bin/env python3
"""Security (SPEC sections 2, 5, 6, 7; issue 4).

- Secrets never leave memory: the inbound token, the admin token, a dbt
  token read from a file and a secret from $CREDENTIALS_DIRECTORY are
  looked for, byte for byte, in every output: the log at debug level
  after accepted, retried, timed-out, failed and refused deliveries,
  rejected requests and a reload; --check and --dry-run; every admin API
  answer; /metrics; every other answer; the store file with its -wal and
  -shm (while running, after kill -9, after SIGTERM).
- Event data cannot change where a request goes: values that try `../`,
  `@host`, `%2F`, `#`, `?`, CR/LF in the URL are percent-encoded, and the
  request reaches the configured host under the configured path prefix.
- A header value rendered with CR, LF or NUL from event data is never
  sent: the delivery fails permanently and the stand-in sees nothing.
- Tokens: near misses (same length, last byte different, a prefix, the
  token with more after it, the token then a NUL) get 401, for the
  inbound and the admin token alike.
"""

import glob
import socket
import json
import os
import signal
import unittest
import urllib.parse

import harness
from harness import DaemonTest, event, job_uuid, wait_until
from opshelp import scrape
from standin import Answer

DBT_SECRET = "dbtFILEsecret-5b1e93c7"
INBOUND_SECRET = "inboundSECRET-0d4f82aa"
ADMIN_SECRET = "adminSECRET-9c3e11f0"
CRED_SECRET = "credDIRsecret-7a26d5e4"
SECRETS = [DBT_SECRET, INBOUND_SECRET, ADMIN_SECRET, CRED_SECRET]

JOB_OK, JOB_DEAD, JOB_URL, JOB_HDR, JOB_ECHO = (job_uuid(n)
                                               for n in (71, 72, 73, 74, 75))

CONFIG = """\
server:
  listen: "@LISTEN@"
  auth:
    tokens: ["${{secrets.inbound_token}}"]
  admin_tokens: ["${{secrets.admin_token}}"]
store:
  path: "@STORE@"
dispatch:
  workers: 2
  timeout: 1s
  connect_timeout: 1s
  retry:
    max_attempts: 3
    initial_backoff: 100ms
    max_backoff: 200ms
variables:
  account: "70403103912345"
secrets:
  dbt_token: {file: "@TMP@/dbt_token"}
  inbound_token: {env: SEC_INBOUND}
  admin_token: {env: SEC_ADMIN}
  api_key: {credential: api_key}
triggers:
  - name: sec-ok
    method: POST
    url: "%(base)s/api/v2/accounts/${{variables.account}}/jobs/1/run/?key=${{secrets.api_key}}"
    header:
      Content-Type: application/json
      Authorization: "Bearer ${{secrets.dbt_token}}"
      X-Api-Key: "${{secrets.api_key}}"
    body:
      cause: "finished ${{erathos.table_name}}"
      x_token: "${{secrets.api_key}}"
    jobs: ["%(job_ok)s"]
  - name: sec-echo
    method: POST
    url: "%(base)s/api/v2/accounts/${{variables.account}}/jobs/3/run/"
    header:
      Authorization: "Bearer ${{secrets.dbt_token}}"
    body:
      cause: "echo"
      steps_override: ["dbt run --vars '{api_key: ${{secrets.api_key}}}'"]
    jobs: ["%(job_echo)s"]
  - name: sec-dead
    method: POST
    url: "http://127.0.0.1:%(dead)d/${{secrets.api_key}}/hook?t=${{secrets.dbt_token}}"
    header:
      Authorization: "Bearer ${{secrets.dbt_token}}"
    body: "token=${{secrets.dbt_token}}&table=${{erathos.table_name}}"
    jobs: ["%(job_dead)s"]
  - name: sec-url
    method: POST
    url: "%(base)s/prefix/${{erathos.table_name}}/run/?s=${{erathos.schema_name}}"
    header:
      Authorization: "Bearer ${{secrets.dbt_token}}"
    body: {cause: "url"}
    jobs: ["%(job_url)s"]
  - name: sec-hdr
    method: POST
    url: "%(base)s/api/v2/accounts/${{variables.account}}/jobs/2/run/"
    header:
      Authorization: "Bearer ${{secrets.dbt_token}}"
      X-Table: "${{erathos.table_name}}"
    body: {cause: "hdr ${{erathos.table_name}}"}
    jobs: ["%(job_hdr)s"]
"""

# Values that try to leave the path segment or the query they are put in.
HOSTILE_URL_VALUES = [
    "../../../admin", "..", ".", "x@evil.example", "evil.example:80/x",
    "a%2Fb", "a#frag", "a?x=1&y=2", "http://evil.example/", "a\r\nHost: e",
    "a b/c\\d", "\u00e9\u00e8/\u2603",
]
# Values that must never reach a header.
HOSTILE_HEADER_VALUES = ["a\r\nX-Injected: 1", "a\nX-Injected: 1",
                         "a\rX-Injected: 1", "a\u0000b"]


class SecurityTest(DaemonTest):
    def setUp(self):
        self.st = self.start_standin(token=DBT_SECRET)
        cfg = CONFIG % {"base": self.st.base_url, "dead": harness.free_port(),
                        "job_ok": JOB_OK, "job_dead": JOB_DEAD,
                        "job_url": JOB_URL, "job_hdr": JOB_HDR,
                        "job_echo": JOB_ECHO}
        self.d = self.new_daemon(cfg, token=INBOUND_SECRET,
                                 env={"SEC_INBOUND": INBOUND_SECRET,
                                      "SEC_ADMIN": ADMIN_SECRET})
        self.d.env["CREDENTIALS_DIRECTORY"] = os.path.join(self.d.tmp, "creds")
        self.d.write_file("dbt_token", DBT_SECRET + "\n")
        self.d.write_file("creds/api_key", CRED_SECRET + "\n")
        self.outputs = []  # (where, bytes) of everything the daemon said

    def keep(self, where, data):
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        self.outputs.append((where, data))
        return data

    def answer(self, where, r):
        self.keep(where, b"%d\n" % r.status + b"".join(
            ("%s: %s\n" % (k, v)).encode("latin-1") for k, v in r.headers) +
            r.body)
        return r

    def admin(self, path, method="GET", token=ADMIN_SECRET):
        r = self.d.request(method, path, headers=[
            ("Authorization", "Bearer " + token)])
        return self.answer("%s %s" % (method, path), r)

    def delivery(self, r):
        """The one delivery id of a 202 (a Response or its JSON)."""
        (dl,) = (r if isinstance(r, dict) else r.json)["deliveries"]
        return dl["id"]

    def wait_state(self, dl, state, timeout=15):
        def reached():
            o = self.d.request("GET", "/v1/deliveries/" + dl, headers=[
                ("Authorization", "Bearer " + ADMIN_SECRET)]).json
            return o if o and o.get("state") == state else None
        return wait_until(reached, timeout, lambda: "delivery %s %s; log:\n%s"
                          % (dl, state, self.d.log_tail()))

    def store_files(self):
        files = [f for f in glob.glob(self.d.store + "*")
                 if os.path.isfile(f)]
        self.assertIn(self.d.store, files)
        return files

    def keep_store(self, when):
        for f in self.store_files():
            with open(f, "rb") as fh:
                self.keep("%s (%s)" % (os.path.basename(f), when), fh.read())

    def assertNoSecretAnywhere(self):
        leaks = []
        for where, data in self.outputs:
            for s in SECRETS:
                if s.encode() in data:
                    leaks.append("%s in %s" % (s, where))
        self.assertEqual(leaks, [], "secret bytes found")

    # ---- secrets ----

    def test_secrets_appear_in_no_output(self):
        p = self.d.check()
        self.keep("--check stdout", p.stdout_bytes)
        self.keep("--check stderr", p.stderr_bytes)
        self.assertEqual(p.returncode, 0, p.stderr)
        for job in (JOB_OK, JOB_DEAD, JOB_URL, JOB_HDR, JOB_ECHO):
            for ev in (event(job=job), event(job=job, status="FAILED")):
                p = self.d.dry_run(ev)
                self.keep("--dry-run stdout", p.stdout_bytes)
                self.keep("--dry-run stderr", p.stderr_bytes)
                self.assertEqual(p.returncode, 0, p.stderr)
        p = self.d.dry_run(event(job=JOB_OK))
        self.assertIn("<secret:dbt_token>", p.stdout)
        self.assertIn("<secret:api_key>", p.stdout)

        self.d.start()
        self.assertEqual(self.d.log_level, "debug")
        # Retried (500, then a stall past the 1 s timeout), then delivered.
        self.st.script(Answer(status=500), Answer(delay=2.5, status=504))
        ok = self.delivery(self.answer("POST /v1/events", self.d.post_event(
            event(job=JOB_OK))))
        self.wait_state(ok, "delivered")
        # Failed for good: 401 (permanent); refused connections (retried).
        self.st.script(Answer(status=401))
        perm = self.delivery(self.d.post_event(event(job=JOB_OK)))
        dead = self.delivery(self.d.post_event(event(job=JOB_DEAD)))
        self.wait_state(perm, "failed")
        self.wait_state(dead, "failed")
        # Refused inbound requests, some with the other secret as token.
        for tok in (None, "nope", ADMIN_SECRET, INBOUND_SECRET[:-1] + "X"):
            r = self.d.post_event(event(job=JOB_OK), token=tok)
            self.answer("POST /v1/events token=%r" % tok, r)
            self.assertEqual(r.status, 401, r)
        for body, ctype in ((b"{", "application/json"),
                            (b"{}", "text/plain"), (b"[]", None)):
            self.answer("POST /v1/events bad", self.d.post_event(
                body, content_type=ctype))
        self.answer("unmatched", self.d.post_event(event(job=job_uuid(99))))
        for tok in (INBOUND_SECRET, DBT_SECRET, "x"):
            self.assertEqual(self.admin("/v1/triggers", token=tok).status,
                             401)
        # A reload re-reads every secret.
        before = scrape(self.d).value("triggerd_config_reloads_total",
                                      result="success")
        self.d.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: scrape(self.d).value(
            "triggerd_config_reloads_total", result="success") == before + 1,
            10, "the reload")

        # Every answer of the admin API and the other endpoints.
        listing = self.admin("/v1/deliveries?limit=1000").json["deliveries"]
        for state in ("pending", "delivered", "failed", "cancelled"):
            self.admin("/v1/deliveries?state=" + state)
        for o in listing:
            self.admin("/v1/deliveries/" + o["id"])
        r = self.admin("/v1/triggers")
        self.assertEqual(r.status, 200, r)
        self.assertIn(b"<secret:dbt_token>", r.body)
        self.assertIn(b"<secret:api_key>", r.body)
        self.admin("/v1/deliveries/%s/retry" % perm, method="POST")
        for path in ("/metrics", "/healthz", "/readyz", "/nowhere"):
            self.answer("GET " + path, self.d.request("GET", path))

        # The secrets were really sent (so their absence above means
        # something) ...
        q = [q for q in self.st.requests()
             if q.header("Idempotency-Key") == ok][-1]
        self.assertEqual(q.header("Authorization"), "Bearer " + DBT_SECRET)
        self.assertEqual(q.header("X-Api-Key"), CRED_SECRET)
        self.assertEqual(q.query, "key=" + CRED_SECRET)
        self.assertEqual(q.json()["x_token"], CRED_SECRET)
        # ... and appear in no output, no answer and no store file, while
        # running, after kill -9 and after SIGTERM.
        self.keep_store("running")
        self.d.kill()
        self.keep_store("after kill -9")
        self.d.start()
        self.assertEqual(self.d.terminate(), 0)
        self.keep_store("after SIGTERM")
        self.keep("the log", self.d.log_bytes())
        self.assertNoSecretAnywhere()

    def test_a_secret_echoed_by_the_upstream_is_not_stored(self):
        # dbt Cloud's RunResponse echoes the trigger's steps_override, so a
        # secret an operator puts in a body (dbt --vars) comes back in the
        # answer, whose first 4 KiB the daemon keeps (SPEC 6). SPEC 5:
        # secrets never reach the store nor an admin API answer.
        self.d.start()
        dl = self.delivery(self.d.accept(event(job=JOB_ECHO)))
        self.wait_state(dl, "delivered")
        (q,) = [q for q in self.st.requests()
                if q.header("Idempotency-Key") == dl]
        self.assertIn(CRED_SECRET, q.json()["steps_override"][0])
        self.admin("/v1/deliveries/" + dl)
        self.d.terminate()
        self.keep_store("after SIGTERM")
        self.assertNoSecretAnywhere()

    # ---- URLs ----

    def test_event_data_cannot_change_the_host_or_path(self):
        self.d.start()
        want = {}
        for v in HOSTILE_URL_VALUES:
            r = self.d.accept(event(job=JOB_URL, table_name=v,
                                    schema_name=v))
            want[self.delivery(r)] = v
        reqs = self.st.wait_for(
            lambda rs: set(want) <= {q.header("Idempotency-Key")
                                     for q in rs}, 15, "every URL delivery")
        bad = []
        for q in reqs:
            v = want.get(q.header("Idempotency-Key"))
            if v is None:
                continue
            enc = urllib.parse.quote(v.encode("utf-8"), safe="")
            if v and set(v) == {"."}:
                # a dots-only value could form a "." or ".." segment:
                # triggerd writes it as %2E… (see tmpl.c url_encode)
                enc = "%2E" * len(v)
            # The target as sent, segment by segment: only the event's
            # value, fully encoded, in its own segment and in the query.
            target = "/prefix/%s/run/?s=%s" % (enc, enc)
            got = q.target
            if got.lower() != target.lower() or \
                    q.header("Host") != "127.0.0.1:%d" % self.st.port:
                bad.append((v, got, q.header("Host")))
        self.assertEqual(bad, [], "value, target sent, Host (want %s)"
                         % "/prefix/<value %-encoded>/run/?s=<same>")

    # ---- headers ----

    def test_crlf_or_nul_in_a_rendered_header_is_never_sent(self):
        self.d.start()
        ids = {}
        for v in HOSTILE_HEADER_VALUES:
            ids[self.delivery(self.d.accept(event(job=JOB_HDR,
                                                  table_name=v)))] = v
        for dl in ids:
            o = self.wait_state(dl, "failed")
            self.assertEqual(o["attempts"], 1, o)
            self.assertTrue(o["last_error"], o)
        harness.barrier(self, self.d, self.st, event(job=JOB_HDR))
        sent = [q for q in self.st.requests()
                if q.header("Idempotency-Key") in ids or
                q.header_values("X-Injected")]
        self.assertEqual(sent, [], "requests with a CR/LF/NUL header")

    # ---- tokens ----

    def test_near_miss_tokens_get_401(self):
        self.d.start()

        def near(tok):
            last = chr(ord(tok[-1]) ^ 1)
            return [("same length, every byte different",
                     "".join("z" if c != "z" else "y" for c in tok)),
                    ("the last byte different", tok[:-1] + last),
                    ("the first byte different", last + tok[1:]),
                    ("a prefix", tok[:-1]), ("one byte more", tok + "a"),
                    ("the token twice", tok + tok),
                    # Not here: "<token>\0junk". libmicrohttpd 0.9.75
                    # ends a header value at a NUL, so the daemon sees
                    # exactly the token: only its holder can send that.
                    ("lower case", tok.lower()), ("empty", "")]
        bad = []
        for what, tok in near(INBOUND_SECRET):
            r = self.raw_post(tok)
            if r[0] != 401:
                bad.append(("POST /v1/events", what, r))
        for what, tok in near(ADMIN_SECRET):
            r = self.raw_get("/v1/deliveries", tok)
            if r[0] != 401:
                bad.append(("GET /v1/deliveries", what, r))
        # The right ones still work (the test is not vacuous).
        self.assertEqual(self.raw_post(INBOUND_SECRET)[0], 202)
        self.assertEqual(self.raw_get("/v1/deliveries", ADMIN_SECRET)[0],
                         200)
        self.assertEqual(bad, [], "near-miss tokens not refused")

    def raw(self, data):
        """One request written by hand (http.client refuses a NUL in a
        header); returns (status, first line of the body)."""
        with socket.create_connection(("127.0.0.1", self.d.port),
                                      timeout=5 * harness.SLOW) as s:
            s.sendall(data)
            buf = b""
            while True:
                b = s.recv(65536)
                if not b:
                    break
                buf += b
        head, _, body = buf.partition(b"\r\n\r\n")
        return int(head.split(b" ")[1]), body[:120]

    def raw_post(self, tok):
        body = json.dumps(event(job=JOB_OK)).encode()
        return self.raw(b"POST /v1/events HTTP/1.1\r\nHost: t\r\n"
                        b"Connection: close\r\nAuthorization: Bearer " +
                        tok.encode() + b"\r\nContent-Type: application/json"
                        b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body)

    def raw_get(self, path, tok):
        return self.raw(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: t\r\n"
                        b"Connection: close\r\nAuthorization: Bearer " +
                        tok.encode() + b"\r\n\r\n")


if __name__ == "__main__":
    unittest.main()
