#!/usr/bin/env python3
"""A stand-in for dbt Cloud's "Trigger Job Run" API, for triggerd's tests.

DESIGN: one ThreadingHTTPServer speaking HTTP/1.1 with keep-alive answers
POST /api/v2/accounts/{account_id}/jobs/{job_id}/run/ the way
dbt-cloud-openapi-v2.yaml describes it (Bearer auth, a body checked against
TriggerRunRequestRequest, a RunResponseEnveloped on success, dbt's
{"status":{...},"data":...} envelope on errors). Every request is recorded
(method, path, query, headers in order, raw body, times) in a list guarded
by one lock, so a test thread can read it while handler threads append.

A test steers the answers with a plan (a FIFO of scripted answers: a status,
a slow answer, a closed or reset connection), a default delay, and a seeded
random-failure mode. Standard library only; runs in-process (Standin with
start()/stop()) or standalone:

    python3 tests/integration/standin.py --port 8765 [--token T]
"""

import argparse
import collections
import datetime
import http.server
import json
import random
import re
import socket
import struct
import sys
import threading
import time
import urllib.parse

RUN_PATH = re.compile(r"^/api/v2/accounts/([0-9]+)/jobs/([0-9]+)/run/$")

# TriggerRunRequestRequest from dbt-cloud-openapi-v2.yaml, as (type,
# minLength): "cause" is required; steps_override is an array of strings of
# minLength 1. Properties not listed are ignored, as dbt (DRF) ignores them.
TRIGGER_RUN_SCHEMA = {
    "cause": ("string", 1),
    "git_sha": ("string", 1),
    "git_branch": ("string", 1),
    "azure_pull_request_id": ("integer", None),
    "github_pull_request_id": ("integer", None),
    "gitlab_merge_request_id": ("integer", None),
    "non_native_pull_request_id": ("integer", None),
    "schema_override": ("string", 1),
    "dbt_version_override": ("string", 1),
    "threads_override": ("integer", None),
    "target_name_override": ("string", 1),
    "generate_docs_override": ("boolean", None),
    "timeout_seconds_override": ("integer", None),
    "steps_override": ("array-of-string", 1),
}
TRIGGER_RUN_REQUIRED = ("cause",)

MAX_BODY = 1 << 20


class Answer:
    """One scripted answer.

    status: an HTTP status to answer with a dbt error envelope (None: answer
    as dbt would, after validating the request). delay: seconds to wait
    before answering. action: None, "close" (close the connection without
    answering) or "reset" (abort it with a TCP RST). retry_after: a
    Retry-After header value (str or int, or a callable giving one when
    the answer is sent) or None. headers/body override
    the answer's extra headers and body bytes. gate: a threading.Event
    to wait for (after delay) before answering; stop() also ends the wait.
    """

    def __init__(self, status=None, delay=0.0, action=None, retry_after=None,
                 headers=None, body=None, gate=None):
        if action not in (None, "close", "reset"):
            raise ValueError("action must be None, 'close' or 'reset'")
        self.status = status
        self.delay = delay
        self.action = action
        self.retry_after = retry_after
        self.headers = list(headers or [])
        self.body = body
        self.gate = gate

    def __repr__(self):
        return ("Answer(status=%r, delay=%r, action=%r, retry_after=%r)"
                % (self.status, self.delay, self.action, self.retry_after))


class Received:
    """One request as the stand-in received it.

    headers is a list of (name, value) in the order they came; t and
    t_answer are time.monotonic() values (t when the body was read,
    t_answer just before the first byte of the answer was written, or when
    the connection was dropped; None while the request is being handled).
    """

    def __init__(self, seq, method, target, headers, body, t, wall,
                 client=None):
        parts = urllib.parse.urlsplit(target)
        self.seq = seq
        self.method = method
        self.target = target
        self.path = parts.path
        self.query = parts.query
        self.headers = headers
        self.body = body
        self.t = t
        self.wall = wall
        self.client = client  # (host, port) of the connection
        self.t_answer = None
        self.status = None   # status answered, None if none was
        self.action = None   # "close" / "reset" when dropped
        self.answer = None   # the Answer used (scripted, random or default)

    def header(self, name):
        """The value of the only header called name (any case), or None.
        Raises AssertionError if it came more than once."""
        vals = self.header_values(name)
        if len(vals) > 1:
            raise AssertionError("header %s sent %d times: %r"
                                 % (name, len(vals), vals))
        return vals[0] if vals else None

    def header_values(self, name):
        name = name.lower()
        return [v for (k, v) in self.headers if k.lower() == name]

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def brief(self):
        key = self.header("Idempotency-Key")
        return "%s %s%s%s key=%s body=%s" % (
            self.method, self.path, "?" if self.query else "", self.query,
            key, self.body[:200].decode("utf-8", "replace"))

    def __repr__(self):
        return "Received(#%d %s)" % (self.seq, self.brief())


def envelope(code, user_message, data=None, developer_message=""):
    """dbt Cloud's response envelope as compact JSON bytes."""
    return json.dumps({
        "status": {
            "code": code,
            "is_success": 200 <= code < 300,
            "user_message": user_message,
            "developer_message": developer_message,
        },
        "data": data,
    }, separators=(",", ":")).encode()


def _json_type_ok(kind, v):
    if kind == "string":
        return isinstance(v, str)
    if kind == "integer":
        return isinstance(v, int) and not isinstance(v, bool)
    if kind == "boolean":
        return isinstance(v, bool)
    return False


def validate_trigger_run(body):
    """Checks a decoded JSON value against TriggerRunRequestRequest.

    Returns {} when valid, else {field: [message, ...]} in the style of
    dbt's (Django REST framework's) validation errors.
    """
    if not isinstance(body, dict):
        return {"non_field_errors": [
            "Invalid data. Expected a dictionary, but got %s."
            % type(body).__name__]}
    errors = {}
    for name in TRIGGER_RUN_REQUIRED:
        if name not in body:
            errors[name] = ["This field is required."]
    for name, (kind, min_len) in TRIGGER_RUN_SCHEMA.items():
        if name not in body:
            continue
        v = body[name]
        if v is None:
            errors[name] = ["This field may not be null."]
        elif kind == "array-of-string":
            if not isinstance(v, list):
                errors[name] = ['Expected a list of items but got type "%s".'
                                % type(v).__name__]
                continue
            for i, item in enumerate(v):
                if not isinstance(item, str):
                    errors[name] = ["Item %d: not a valid string." % i]
                    break
                if len(item) < min_len:
                    errors[name] = ["Item %d: this field may not be blank."
                                    % i]
                    break
        elif not _json_type_ok(kind, v):
            errors[name] = ["Not a valid %s." % kind]
        elif kind == "string" and min_len and len(v) < min_len:
            errors[name] = ["This field may not be blank."]
    return errors


def _iso(ts):
    return datetime.datetime.fromtimestamp(
        ts, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f+00:00")


def run_response(run_id, account_id, job_id, body, now):
    """A RunResponse for a run just queued (status 1)."""
    cause = body.get("cause")
    created = _iso(now)
    return {
        "id": run_id,
        "trigger_id": run_id + 500000,
        "account_id": account_id,
        "environment_id": 218762,
        "project_id": 270542,
        "job_definition_id": job_id,
        "job_id": job_id,
        "status": 1,
        "status_humanized": "Queued",
        "status_message": None,
        "cause": cause,
        "dbt_version": body.get("dbt_version_override", "versionless"),
        "git_branch": body.get("git_branch"),
        "git_sha": body.get("git_sha"),
        "owner_thread_id": None,
        "executed_by_thread_id": None,
        "deferring_run_id": None,
        "artifacts_saved": False,
        "artifact_s3_path": None,
        "has_docs_generated": False,
        "has_sources_generated": False,
        "notifications_sent": False,
        "blocked_by": [],
        "created_at": created,
        "updated_at": created,
        "dequeued_at": None,
        "started_at": None,
        "finished_at": None,
        "last_checked_at": None,
        "last_heartbeat_at": None,
        "should_start_at": None,
        "trigger": {
            "id": run_id + 500000,
            "cause": cause,
            "job_definition_id": job_id,
            "git_branch": body.get("git_branch"),
            "git_sha": body.get("git_sha"),
            "schema_override": body.get("schema_override"),
            "dbt_version_override": body.get("dbt_version_override"),
            "threads_override": body.get("threads_override"),
            "target_name_override": body.get("target_name_override"),
            "generate_docs_override": body.get("generate_docs_override"),
            "timeout_seconds_override": body.get("timeout_seconds_override"),
            "steps_override": body.get("steps_override"),
            "created_at": created,
            "updated_at": created,
        },
        "job": None,
        "environment": None,
        "run_steps": [],
        "in_progress": True,
        "is_complete": False,
        "is_success": False,
        "is_error": False,
        "is_cancelled": False,
        "is_running": False,
        "duration": "00:00:00",
        "queued_duration": "00:00:00",
        "run_duration": "00:00:00",
        "duration_humanized": "0 minutes",
        "queued_duration_humanized": "0 minutes",
        "run_duration_humanized": "0 minutes",
        "created_at_humanized": "0 minutes ago",
        "finished_at_humanized": "0 minutes from now",
        "retrying_run_id": None,
        "can_retry": False,
        "retry_not_supported_reason": None,
        "href": "https://ab123.us1.dbt.com/deploy/%d/projects/270542/runs/%d/"
                % (account_id, run_id),
        "used_repo_cache": None,
    }


ERROR_MESSAGES = {
    400: "The request was invalid. Please double check the provided data "
         "and try again.",
    401: "Invalid token.",
    403: "You do not have permission to perform this action.",
    404: "The requested resource was not found.",
    405: "Method not allowed.",
    408: "Request timeout.",
    415: "Unsupported media type.",
    429: "Rate limit exceeded. Please wait before making more requests.",
    500: "An unexpected error occurred.",
    502: "Bad gateway.",
    503: "Service temporarily unavailable.",
    504: "Gateway timeout.",
}


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "dbt-standin/1.0"
    sys_version = ""

    def log_message(self, fmt, *args):
        pass  # the stand-in prints its own one-line summaries (verbose)

    def _read_body(self):
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if te == "chunked":
            chunks = []
            while True:
                line = self.rfile.readline(1024)
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n",
                                                            b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline(1024)
        n = int(self.headers.get("Content-Length") or 0)
        if n < 0 or n > MAX_BODY:
            raise ValueError("bad Content-Length")
        return self.rfile.read(n) if n else b""

    def _handle(self):
        st = self.server.standin
        try:
            body = self._read_body()
        except (ValueError, OSError):
            self.close_connection = True
            return
        rec = st._record(self.command, self.path,
                         list(self.headers.items()), body,
                         self.client_address)
        ans = st._next_answer()
        rec.answer = ans
        if ans.delay > 0:
            # A slow dbt Cloud: stop() cuts the wait short.
            st._stopping.wait(ans.delay)
        while ans.gate is not None and not ans.gate.is_set() \
                and not st._stopping.is_set():
            ans.gate.wait(0.05)  # polled so that stop() ends it too
        if ans.action is not None:
            st._finish(rec, None, ans.action)
            self.close_connection = True
            if ans.action == "reset":
                self.server.reset_requests.add(self.connection)
            return
        status, headers, payload = st._answer(rec, ans)
        st._finish(rec, status, None)
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for k, v in headers:
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(payload)
            self.wfile.flush()
        except OSError:
            # The client gave up (e.g. its timeout passed during a slow
            # answer): nothing more to do on this connection.
            self.close_connection = True

    do_POST = do_GET = do_PUT = do_PATCH = do_DELETE = _handle


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr, standin):
        self.standin = standin
        self.reset_requests = set()
        super().__init__(addr, _Handler)

    def handle_error(self, request, client_address):
        # A client that goes away (triggerd killed with -9, a timeout) is
        # part of the tests, not an error worth a traceback.
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)

    def shutdown_request(self, request):
        if request in self.reset_requests:
            # SO_LINGER 0 then close (without shutdown(SHUT_WR), which
            # would send a FIN first): the peer gets a RST.
            self.reset_requests.discard(request)
            try:
                request.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                   struct.pack("ii", 1, 0))
            except OSError:
                pass
            request.close()
            return
        super().shutdown_request(request)


class Standin:
    """The stand-in. Thread-safe; see the module comment."""

    def __init__(self, host="127.0.0.1", port=0, token="dbt-standin-token",
                 verbose=False, out=None):
        self.host = host
        self.requested_port = port
        self.token = token
        self.verbose = verbose
        self.out = out or sys.stdout
        self.delay = 0.0  # seconds added before every unscripted answer
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._requests = []
        self._plan = collections.deque()
        self._random = None   # (p, random.Random, [Answer factories])
        self._next_run_id = 70403000001
        self._in_flight = 0
        self._in_flight_by_path = collections.Counter()
        self.max_in_flight = 0
        self.max_in_flight_by_path = collections.Counter()
        self._stopping = threading.Event()
        self._server = None
        self._thread = None

    # ---- life cycle ----

    def start(self):
        self._stopping.clear()
        self._server = _Server((self.host, self.requested_port), self)
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05},
                                        name="standin", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        if self._server is None:
            return
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
        self._server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def port(self):
        return self._server.server_address[1]

    @property
    def base_url(self):
        return "http://%s:%d" % (self.host, self.port)

    def run_url(self, account_id, job_id):
        return "%s/api/v2/accounts/%s/jobs/%s/run/" % (self.base_url,
                                                        account_id, job_id)

    # ---- steering ----

    def script(self, *answers):
        """Queues answers for the next requests, in order."""
        with self._lock:
            self._plan.extend(answers)

    def fail(self, status, count=1, retry_after=None):
        self.script(*[Answer(status=status, retry_after=retry_after)
                      for _ in range(count)])

    def slow(self, seconds, count=1):
        self.script(*[Answer(delay=seconds) for _ in range(count)])

    def drop(self, count=1, reset=False):
        self.script(*[Answer(action="reset" if reset else "close")
                      for _ in range(count)])

    def clear_plan(self):
        with self._lock:
            self._plan.clear()

    def plan_left(self):
        with self._lock:
            return len(self._plan)

    def set_random_failures(self, p, seed, answers=None):
        """From now on, each unscripted request fails with probability p,
        with an answer drawn (seeded) from answers (Answer objects; default
        500, 502, 503, 429 with and without Retry-After, a closed
        connection). p = 0 turns the mode off."""
        if answers is None:
            answers = [Answer(status=500), Answer(status=502),
                       Answer(status=503), Answer(status=429),
                       Answer(status=429, retry_after=1),
                       Answer(action="close")]
        with self._lock:
            self._random = (p, random.Random(seed), list(answers)) if p > 0 \
                else None

    # ---- what came ----

    def requests(self):
        """A snapshot of the requests received so far."""
        with self._lock:
            return list(self._requests)

    def count(self):
        with self._lock:
            return len(self._requests)

    def in_flight(self):
        with self._lock:
            return self._in_flight

    def wait_for_requests(self, n, timeout=10.0):
        """Waits until at least n requests have come; returns the snapshot.
        Raises AssertionError after timeout seconds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self._requests) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        "stand-in: %d request(s) after %.1fs, wanted %d: %r"
                        % (len(self._requests), timeout, n, self._requests))
                self._cond.wait(min(left, 0.2))
            return list(self._requests)

    def wait_for(self, predicate, timeout=10.0, what="condition"):
        """Waits until predicate(snapshot) is true; returns the snapshot."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                snap = list(self._requests)
                if predicate(snap):
                    return snap
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("stand-in: %s not reached after "
                                         "%.1fs; requests: %r"
                                         % (what, timeout, snap))
                self._cond.wait(min(left, 0.2))

    # ---- handler side ----

    def _record(self, method, target, headers, body, client):
        with self._cond:
            rec = Received(len(self._requests), method, target, headers, body,
                           time.monotonic(), time.time(), client)
            self._requests.append(rec)
            self._in_flight += 1
            self._in_flight_by_path[rec.path] += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
            self.max_in_flight_by_path[rec.path] = max(
                self.max_in_flight_by_path[rec.path],
                self._in_flight_by_path[rec.path])
            self._cond.notify_all()
        if self.verbose:
            print("standin: %s %s" % (time.strftime("%H:%M:%S"), rec.brief()),
                  file=self.out, flush=True)
        return rec

    def _finish(self, rec, status, action):
        with self._cond:
            rec.t_answer = time.monotonic()
            rec.status = status
            rec.action = action
            self._in_flight -= 1
            self._in_flight_by_path[rec.path] -= 1
            self._cond.notify_all()
        if self.verbose:
            print("standin:   -> %s" % (status if status else action),
                  file=self.out, flush=True)

    def _next_answer(self):
        with self._lock:
            if self._plan:
                return self._plan.popleft()
            if self._random is not None:
                p, rng, answers = self._random
                if rng.random() < p:
                    return rng.choice(answers)
            return Answer(delay=self.delay)

    def _answer(self, rec, ans):
        """(status, extra headers, body bytes) for a request."""
        extra = list(ans.headers)
        if ans.retry_after is not None:
            ra = ans.retry_after
            extra.append(("Retry-After", str(ra() if callable(ra) else ra)))
        if ans.status is not None:
            body = ans.body
            if body is None:
                body = envelope(ans.status, ERROR_MESSAGES.get(
                    ans.status, "Error %d." % ans.status))
            return ans.status, extra, body
        status, hdrs, body = self._dbt(rec)
        return status, hdrs + extra, body

    def _dbt(self, rec):
        """What dbt Cloud answers to rec."""
        m = RUN_PATH.match(rec.path)
        if not m:
            return 404, [], envelope(404, ERROR_MESSAGES[404])
        if rec.method != "POST":
            return 405, [("Allow", "POST, OPTIONS")], envelope(
                405, 'Method "%s" not allowed.' % rec.method)
        auth = rec.header_values("Authorization")
        if (len(auth) != 1 or not auth[0].startswith("Bearer ")
                or auth[0][len("Bearer "):] != self.token):
            return 401, [], envelope(401, "Invalid token.")
        ctype = (rec.header("Content-Type") or "").split(";")[0].strip()
        ctype = ctype.lower()
        try:
            if ctype == "application/json":
                body = json.loads(rec.body.decode("utf-8"))
            elif ctype == "application/x-www-form-urlencoded":
                body = dict(urllib.parse.parse_qsl(
                    rec.body.decode("utf-8"), keep_blank_values=True))
            else:
                return 415, [], envelope(
                    415, 'Unsupported media type "%s" in request.' % ctype)
        except (UnicodeDecodeError, ValueError) as e:
            return 400, [], envelope(
                400, "JSON parse error - %s" % e,
                {"non_field_errors": ["JSON parse error - %s" % e]})
        errors = validate_trigger_run(body)
        if errors:
            problems = "; ".join("%s: %s" % (k, " ".join(v))
                                 for k, v in sorted(errors.items()))
            return 400, [], envelope(
                400, "The request was invalid: %s" % problems, errors)
        with self._lock:
            run_id = self._next_run_id
            self._next_run_id += 1
        data = run_response(run_id, int(m.group(1)), int(m.group(2)), body,
                            rec.wall)
        return 200, [], envelope(200, "Success!", data)


def main(argv=None):
    ap = argparse.ArgumentParser(
        description="A local stand-in for dbt Cloud's Trigger Job Run API.")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--token", default="dbt-standin-token",
                    help="the Bearer token it accepts")
    ap.add_argument("--fail", default="",
                    help="comma-separated statuses for the first requests, "
                         "e.g. 503,429")
    ap.add_argument("--random-failures", type=float, default=0.0,
                    metavar="P", help="fail each request with probability P")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    s = Standin(host=args.host, port=args.port, token=args.token,
                verbose=True)
    for f in filter(None, args.fail.split(",")):
        s.fail(int(f), retry_after=1 if f.strip() == "429" else None)
    s.set_random_failures(args.random_failures, args.seed)
    s.start()
    print("standin: dbt Cloud stand-in on %s (token %s); POST "
          "/api/v2/accounts/ACCOUNT/jobs/JOB/run/" % (s.base_url, args.token),
          flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        s.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
