"""Starts the real triggerd binary for the integration tests.

DESIGN: a Daemon owns one temporary directory (config, store, log, secret
files) and at most one triggerd process at a time. The config is a YAML
string in which @LISTEN@ (127.0.0.1:<free port>), @PORT@, @STORE@ and @TMP@
are replaced, so tests write real YAML (with its `${{...}}` templates)
without escaping. stderr of every run goes to one log file (appended across
restarts). Everything waits by bounded polling (wait_until), never by fixed
sleeps. DaemonTest registers every daemon and stand-in for cleanup, and its
cleanup fails the test if a daemon died on its own (a crash is a bug).

Standard library only (python3 >= 3.9).
"""

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data")
sys.path.insert(0, HERE)

import standin  # noqa: E402  (after the path is set)

SOURCE_DIR = os.environ.get("TRIGGERD_SOURCE_DIR") or os.path.dirname(
    os.path.dirname(HERE))

# TRIGGERD_IT_STORE=postgres runs the same tests on the PostgreSQL store:
# every config written with make_config() (store: {"path": "@STORE@"})
# gets store: {url: ...} instead, one fresh database per Daemon, in one
# throw-away cluster per test process (pgcluster.py).
STORE_BACKEND = os.environ.get("TRIGGERD_IT_STORE", "sqlite")
SQLITE_STORE = '{"path": "@STORE@"}'

# Slow builds (sanitizers) need more time; every bound scales with this.
SLOW = float(os.environ.get("TRIGGERD_IT_SLOW", "1"))

# Environment variables passed through to the daemon (sanitizer options);
# everything else is dropped so proxies, JOURNAL_STREAM, STATE_DIRECTORY or
# CREDENTIALS_DIRECTORY of the caller never leak into a test.
PASS_ENV = ("PATH", "ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS",
            "TSAN_OPTIONS", "LD_LIBRARY_PATH")


def binary():
    """Path of the triggerd binary under test ($TRIGGERD_BIN)."""
    b = os.environ.get("TRIGGERD_BIN")
    if not b:
        for d in ("build", "build-it"):
            cand = os.path.join(SOURCE_DIR, d, "triggerd")
            if os.access(cand, os.X_OK):
                return cand
        raise RuntimeError("set TRIGGERD_BIN to the triggerd binary")
    if not os.access(b, os.X_OK):
        raise RuntimeError("TRIGGERD_BIN=%s is not an executable" % b)
    return b


def version():
    """The project version, from CMakeLists.txt."""
    with open(os.path.join(SOURCE_DIR, "CMakeLists.txt")) as f:
        m = re.search(r"project\(\s*triggerd\s+VERSION\s+([0-9.]+)", f.read())
    return m.group(1)


def data_path(name):
    return os.path.join(DATA, name)


def read_data(name):
    with open(data_path(name), "rb") as f:
        return f.read()


def free_port():
    """A TCP port nothing listens on right now (bound then released)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_until(predicate, timeout=10.0, what="condition", interval=0.02):
    """Polls predicate() until it returns a true value, which is returned.
    Raises AssertionError naming `what` (a string or a callable giving one)
    after timeout seconds (scaled by TRIGGERD_IT_SLOW)."""
    deadline = time.monotonic() + timeout * SLOW
    while True:
        v = predicate()
        if v:
            return v
        if time.monotonic() > deadline:
            desc = what() if callable(what) else what
            raise AssertionError("timed out after %.1fs waiting for %s"
                                 % (timeout * SLOW, desc))
        time.sleep(interval)  # the poll interval of a bounded wait


def stays(predicate, duration, interval=0.02):
    """True if predicate() holds at every poll for `duration` seconds.
    Only for asserting that something does NOT happen (a retry that must
    not come): there is no event to wait for, so a window is the test."""
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        if not predicate():
            return False
        time.sleep(interval)  # the poll interval of a bounded wait
    return bool(predicate())


class Response:
    """An HTTP answer: status, headers (list of pairs), body bytes, and
    json (the parsed body, or None if it is not JSON)."""

    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body
        try:
            self.json = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            self.json = None

    def header(self, name):
        vals = [v for (k, v) in self.headers if k.lower() == name.lower()]
        return vals[0] if vals else None

    def __repr__(self):
        return "Response(%d, %r)" % (self.status, self.body[:300])


def http_request(port, method, path, body=None, headers=None, timeout=10.0):
    """One request on a new connection. body: bytes, str, or a JSON value
    (dict/list) that is encoded compactly. headers: list of pairs or dict."""
    if body is not None and not isinstance(body, (bytes, str)):
        body = json.dumps(body, separators=(",", ":"))
    if isinstance(body, str):
        body = body.encode("utf-8")
    hdrs = list(headers.items()) if isinstance(headers, dict) else \
        list(headers or [])
    conn = http.client.HTTPConnection("127.0.0.1", port,
                                      timeout=timeout * SLOW)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        names = {k.lower() for k, _ in hdrs}
        for k, v in hdrs:
            conn.putheader(k, v)
        if body is not None and "content-length" not in names \
                and "transfer-encoding" not in names:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders()
        if body:
            conn.send(body)
        r = conn.getresponse()
        data = r.read()
        return Response(r.status, r.getheaders(), data)
    finally:
        conn.close()


def base_env():
    return {k: os.environ[k] for k in PASS_ENV if k in os.environ}


class Daemon:
    """One triggerd under test; see the module comment."""

    def __init__(self, config, env=None, token=None, log_level="debug",
                 port=None):
        self.tmp = tempfile.mkdtemp(prefix="triggerd-it-")
        self.port = port or free_port()
        self.listen = "127.0.0.1:%d" % self.port
        self.store = os.path.join(self.tmp, "triggerd.db")
        self.pg_url = None
        if STORE_BACKEND == "postgres":
            import pgcluster
            cluster = pgcluster.shared()
            self.pg_db = cluster.createdb()
            self.pg_url = cluster.url(self.pg_db)
        self.cfg_path = os.path.join(self.tmp, "triggerd.yaml")
        self.log_path = os.path.join(self.tmp, "triggerd.log")
        self.env = base_env()
        self.env.update(env or {})
        self.token = token
        self.log_level = log_level
        self.proc = None
        self.stopped_by_us = True
        self.runs = 0
        self.write_config(config)

    # ---- files ----

    def subst(self, text):
        for k, v in (("@LISTEN@", self.listen), ("@PORT@", str(self.port)),
                     ("@STORE@", self.store), ("@TMP@", self.tmp)):
            text = text.replace(k, v)
        return text

    def write_config(self, text):
        if self.pg_url:
            text = text.replace(SQLITE_STORE, json.dumps({"url": self.pg_url}))
        self.config_text = self.subst(text)
        with open(self.cfg_path, "w") as f:
            f.write(self.config_text)

    def write_file(self, name, data, mode=0o600):
        path = os.path.join(self.tmp, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        os.chmod(path, mode)
        return path

    def log_bytes(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read()
        except FileNotFoundError:
            return b""

    def log(self):
        return self.log_bytes().decode("utf-8", "replace")

    def log_tail(self, n=40):
        return "\n".join(self.log().splitlines()[-n:])

    def log_records(self):
        """The log parsed as logfmt records (dicts); lines that do not
        parse are kept as {"_raw": line}."""
        return [parse_logfmt(line) for line in self.log().splitlines()]

    # ---- the process ----

    def start(self, wait=True, timeout=10.0, args=()):
        assert self.proc is None or self.proc.poll() is not None
        self.runs += 1
        with open(self.log_path, "ab") as logf:
            logf.write(b"--- harness: start #%d ---\n" % self.runs)
            logf.flush()
            self.proc = subprocess.Popen(
                [binary(), "-c", self.cfg_path, "--log-level",
                 self.log_level] + list(args),
                env=self.env, stdin=subprocess.DEVNULL,
                stdout=logf, stderr=logf, cwd=self.tmp)
        self.stopped_by_us = False
        if wait:
            self.wait_healthy(timeout)
        return self

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def wait_healthy(self, timeout=10.0):
        def healthy():
            if self.proc.poll() is not None:
                raise AssertionError(
                    "triggerd exited with %s while starting; log:\n%s"
                    % (self.proc.returncode, self.log_tail()))
            try:
                return http_request(self.port, "GET", "/healthz",
                                    timeout=1).status == 200
            except OSError:
                return False
        wait_until(healthy, timeout, "GET /healthz to answer 200")

    def wait_exit(self, timeout=15.0):
        """Waits for the process to end; returns its exit status."""
        try:
            return self.proc.wait(timeout * SLOW)
        finally:
            self.stopped_by_us = True

    def terminate(self, timeout=15.0):
        """SIGTERM, then waits; returns the exit status."""
        self.stopped_by_us = True
        self.proc.send_signal(signal.SIGTERM)
        return self.wait_exit(timeout)

    def kill(self):
        """SIGKILL (kill -9), then waits."""
        self.stopped_by_us = True
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def restart(self, wait=True):
        self.kill()
        return self.start(wait=wait)

    def check_alive(self):
        """Raises if the daemon died without being told to."""
        if self.proc is not None and not self.stopped_by_us \
                and self.proc.poll() is not None:
            self.stopped_by_us = True
            raise AssertionError("triggerd died on its own (exit %s); log:\n%s"
                                 % (self.proc.returncode, self.log_tail()))

    def sanitizer_reports(self):
        """Lines of the log where a sanitizer reported a problem."""
        return [ln for ln in self.log().splitlines()
                if re.search(r"ERROR: (Address|Leak|Thread|UndefinedBehavior)"
                             r"Sanitizer|WARNING: ThreadSanitizer|"
                             r"runtime error:", ln)]

    def cleanup(self):
        try:
            self.check_alive()
            reports = self.sanitizer_reports()
            if reports:
                raise AssertionError("sanitizer report(s) in the log:\n%s\n"
                                     "log tail:\n%s" % ("\n".join(reports),
                                                         self.log_tail(60)))
        finally:
            self.kill()
            if os.environ.get("TRIGGERD_IT_KEEP"):
                sys.stderr.write("kept %s\n" % self.tmp)
            else:
                shutil.rmtree(self.tmp, ignore_errors=True)

    # ---- HTTP ----

    def request(self, method, path, body=None, headers=None, timeout=10.0):
        return http_request(self.port, method, path, body, headers, timeout)

    def post_event(self, body, token="default",
                   content_type="application/json", headers=None,
                   path="/v1/events"):
        """POSTs an event. token "default" uses the daemon's token (if
        any); None sends no Authorization. body: dict (JSON) or bytes."""
        hdrs = []
        if token == "default":
            token = self.token
        if token is not None:
            hdrs.append(("Authorization", "Bearer " + token))
        if content_type is not None:
            hdrs.append(("Content-Type", content_type))
        hdrs += list(headers or [])
        return self.request("POST", path, body, hdrs)

    def accept(self, body, **kw):
        """POSTs an event that must be answered 202; returns the JSON."""
        r = self.post_event(body, **kw)
        if r.status != 202:
            raise AssertionError("expected 202 for %r, got %r" % (body, r))
        return r.json

    # ---- the CLI ----

    def run(self, args, stdin=None, env=None, timeout=20.0):
        """Runs triggerd with args; returns CompletedProcess with text
        stdout/stderr and the raw bytes in .stdout_bytes/.stderr_bytes."""
        e = dict(self.env)
        e.update(env or {})
        p = subprocess.run([binary()] + list(args), input=stdin, env=e,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           cwd=self.tmp, timeout=timeout * SLOW)
        p.stdout_bytes, p.stderr_bytes = p.stdout, p.stderr
        p.stdout = p.stdout.decode("utf-8", "replace")
        p.stderr = p.stderr.decode("utf-8", "replace")
        return p

    def check(self, **kw):
        return self.run(["-c", self.cfg_path, "--check"], **kw)

    def dry_run(self, event, **kw):
        """--dry-run with event (a path, or a dict/bytes given on stdin)."""
        if isinstance(event, str):
            return self.run(["-c", self.cfg_path, "--dry-run", event], **kw)
        if isinstance(event, dict):
            event = json.dumps(event).encode()
        return self.run(["-c", self.cfg_path, "--dry-run", "-"], stdin=event,
                        **kw)


_LOGFMT = re.compile(r'\s*([^\s=]+)=("(?:[^"\\]|\\.)*"|\S*)')


def parse_logfmt(line):
    rec = {}
    s = re.sub(r"^<[0-7]>", "", line)
    pos = 0
    while pos < len(s):
        m = _LOGFMT.match(s, pos)
        if not m:
            return {"_raw": line}
        v = m.group(2)
        if v.startswith('"'):
            try:
                v = json.loads(v)
            except ValueError:
                v = v[1:-1]
        rec[m.group(1)] = v
        pos = m.end()
        if s[pos:].strip() == "":
            break
    return rec


class DaemonTest(unittest.TestCase):
    """Base class: start_standin() / start_daemon() clean up after the test
    (and fail it if a daemon crashed)."""

    maxDiff = None

    def start_standin(self, **kw):
        s = standin.Standin(**kw).start()
        self.addCleanup(s.stop)
        return s

    def new_daemon(self, config, **kw):
        d = Daemon(config, **kw)
        self.addCleanup(d.cleanup)
        return d

    def start_daemon(self, config, **kw):
        return self.new_daemon(config, **kw).start()

    def assertSentNothingMore(self, st, n, window=1.0, why=""):
        """Asserts the stand-in gets no request beyond the n it has, over a
        window (for retries that must not come)."""
        ok = stays(lambda: st.count() <= n, window)
        self.assertTrue(ok, "unexpected request(s) %s: %r"
                        % (why, st.requests()[n:]))


# ---- shared test vocabulary ----

INBOUND_TOKEN = "inb-7c1e0b5a-token"
DBT_TOKEN = "dbtc-3f9a2e61b7-token"
ACCOUNT = "70403103912345"
JOB = "0b9d5c55-6c2e-4d0a-9b6f-3f8e2a1c7d10"
STATUS_FINISHED = {"variable_name": "STATUS", "operation": "EQUAL",
                   "value": "FINISHED"}
DEFAULT_ENV = {"TRIGGERD_INBOUND_TOKEN": INBOUND_TOKEN,
               "DBT_PERSONAL_TOKEN": DBT_TOKEN}


def job_uuid(n):
    """A distinct Erathos job uuid per number."""
    return "00000000-0000-4000-8000-%012d" % n


def dbt_trigger(name, st, job_number, jobs=(JOB,), rules=(STATUS_FINISHED,),
                cause=None, **extra):
    """A dbt Cloud trigger (as a dict) that POSTs to the stand-in st at
    /api/v2/accounts/ACCOUNT/jobs/<job_number>/run/."""
    t = {
        "name": name,
        "method": "POST",
        "url": "%s/api/v2/accounts/${{variables.dbt_account_id}}/jobs/%s"
               "/run/" % (st.base_url if st else "http://127.0.0.1:9",
                          job_number),
        "header": {"Content-Type": "application/json",
                   "Accept": "application/json",
                   "Authorization": "Bearer ${{secrets.dbt_personal_token}}"},
        "body": {"cause": cause or ("%s: ${{erathos.table_name}}" % name)},
        "rules": list(rules),
        "jobs": list(jobs),
        # Tests written before SPEC section 8 assert the exact cause sent;
        # the dbt tests (test_dbt_*.py) replace this with their options.
        "dbt": {"mark": False},
    }
    t.update(extra)
    return t


DEFAULT_DISPATCH = {"workers": 2, "timeout": "5s", "connect_timeout": "2s",
                    "max_in_flight_per_trigger": 1}
DEFAULT_RETRY = {"max_attempts": 5, "initial_backoff": "100ms",
                 "max_backoff": "1s", "max_age": "1h",
                 "rate_limited_backoff": "1s"}


def make_config(triggers, server=None, dispatch=None, retry=None,
                events=None, variables=None, secrets=None):
    """A whole config: block-style sections whose values are JSON flow
    mappings (YAML takes JSON as it is). Listens on @LISTEN@, stores in
    @STORE@, authenticates with $TRIGGERD_INBOUND_TOKEN."""
    srv = {"listen": "@LISTEN@",
           "auth": {"tokens": ["${{secrets.inbound_token}}"]}}
    srv.update(server or {})
    disp = dict(DEFAULT_DISPATCH)
    disp.update(dispatch or {})
    disp["retry"] = dict(DEFAULT_RETRY)
    disp["retry"].update(retry or {})
    var = {"dbt_account_id": ACCOUNT}
    var.update(variables or {})
    sec = {"inbound_token": {"env": "TRIGGERD_INBOUND_TOKEN"},
           "dbt_personal_token": {"env": "DBT_PERSONAL_TOKEN"}}
    sec.update(secrets or {})
    parts = [("server", srv), ("store", {"path": "@STORE@"}),
             ("dispatch", disp)]
    if events:
        parts.append(("events", events))
    parts += [("variables", var), ("secrets", sec)]
    out = ["# written by tests/integration/harness.py"]
    for k, v in parts:
        out.append("%s: %s" % (k, json.dumps(v)))
    out.append("triggers:")
    for t in triggers:
        out.append("  - " + json.dumps(t))
    return "\n".join(out) + "\n"


_seq = [0]


def event(job=JOB, status="FINISHED", **fields):
    """An Erathos event (dict) with a fresh execution_id."""
    _seq[0] += 1
    ev = {"job_id": job, "execution_id": "%08x-0000-4000-8000-%012x"
          % (os.getpid() & 0xffffffff, _seq[0]),
          "table_name": "orders", "status": status,
          "triggered_by": "Erathos Schedule"}
    ev.update(fields)
    return {k: v for k, v in ev.items() if v is not None}


def keys_of(reqs):
    """The Idempotency-Key of each request."""
    return [r.header("Idempotency-Key") for r in reqs]


def wait_delivered(st, delivery_ids, timeout=10.0):
    """Waits until the stand-in got a request for every delivery id."""
    want = set(delivery_ids)
    return st.wait_for(lambda reqs: want <= set(keys_of(reqs)),
                       timeout * SLOW,
                       "deliveries %s" % sorted(want))


def barrier(test, d, st, ev=None):
    """Posts a sentinel event that matches and waits until it arrives.
    Deliveries queued before it were due before it, so once it has come
    they would have come too. Returns the snapshot of requests."""
    body = ev or event()
    r = d.accept(body)
    return wait_delivered(st, [x["id"] for x in r["deliveries"]])
