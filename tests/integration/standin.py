#!/usr/bin/env python3
"""A stand-in for dbt Cloud's runs API, for triggerd's tests and demo.

DESIGN: one ThreadingHTTPServer speaking HTTP/1.1 with keep-alive answers,
the way dbt-cloud-openapi-v2.yaml describes them (Bearer auth, dbt's
{"status":{...},"data":...} envelope on answers and errors):

  POST /api/v2/accounts/{a}/jobs/{j}/run/      Trigger Job Run: checks the
       body against TriggerRunRequestRequest (plus dbt's 255-character limit
       on cause, counted in code points), creates a run, answers 200 (the
       status the OpenAPI documents) with a RunResponse, status 1.
  GET  /api/v2/accounts/{a}/runs/              List Runs
  GET  /api/v2/accounts/{a}/runs/{id}/         Retrieve Run
  POST /api/v2/accounts/{a}/runs/{id}/cancel/  Cancel Run

Every request is recorded (method, path, query, headers in order, raw body,
times) in a list guarded by one lock, so a test thread can read it while
handler threads append. Runs live in a dict by id plus a list of ids per
(account, job); a run's status is computed when read from its timeline
(a list of (monotonic time, status, message) steps), so progression over
time is exact and needs no timer thread. Standard library only; runs
in-process (Standin with start()/stop(), or as a context manager) or
standalone, printing one line per request:

    python3 tests/integration/standin.py --port 8765 [--token T]
        [--queued-s 0.2] [--running-s 0.3] [--final 10] [--fail 503,429]

CONTROL API (all methods thread-safe)

Runs (dbt statuses: 1 queued, 2 starting, 3 running, 10 success, 20 error,
30 cancelled):
  runs() -> [dict]          copies of every run created so far, by id: the
                            RunResponse as Retrieve Run would give it with
                            include_related=["trigger"] (id, account_id,
                            job_definition_id, status, status_humanized,
                            cause, trigger {"cause", ...}, created_at,
                            started_at, finished_at, status_message,
                            duration, href, ...) plus "forgotten" (bool;
                            forgotten runs stay here but the API answers 404).
  run(run_id) -> dict|None  one of those.
  first_run_id              constructor argument (default 70403000001); ids
                            then increase by one per created run.
  run_queued_s = 0.2        a new run is queued (1) this long, then
  run_running_s = 0.3       running (3) this long, then
  run_final = 10            ends with this status (None: stays running).
  run_final_message         status_message of failed (20) runs by default:
                            "Job failed".
  script_runs(final=10, queued_s=None, running_s=None, count=1,
              status_message=None)
                            the next `count` created runs (FIFO, before the
                            defaults) follow this script instead; None for
                            queued_s/running_s = the default at creation;
                            final=None: stays running until set by hand.
  set_run_status(run_id, status, status_message=None)
                            from now on the run has this status (no more
                            automatic steps). KeyError if unknown.
  forget_run(run_id)        Retrieve/Cancel answer 404 and List Runs omits
                            it from now on.
  run_status(run_id) -> int|None   the run's status now (cheap).
  cancels                   list of run ids, one per authorised Cancel Run
                            request that named a known run (the run becomes
                            30, status_message "Cancelled by user.", unless
                            it had already ended: then it is left as it
                            was and returned).
  href_host                 host in each run's href (default
                            "ab123.us1.dbt.com"):
                            https://<href_host>/deploy/<a>/projects/<p>/runs/<id>/

Fault injection on the runs API (each entry consumed once per use, FIFO):
  create_then(action, count=1)
        the next `count` Trigger Job Run POSTs that create a run (valid
        token and body) create it, then: "drop" (close the connection
        without answering), "reset" (TCP RST), "500"/"502"/"504" or any
        status (int or str; answered with dbt's error envelope),
        "hang:<seconds>" (sleep, then answer 200; stop() cuts it short),
        "hold" (block until release() or the client closes the
        connection; then answer 200, or nothing if the client went away:
        Received.action "gone").
  release()                 ends every hold in progress; returns how many.
  holding() -> int          POSTs held now.
  create_then_left() -> int entries not used yet.
  fail_list(count, status=500, retry_after=None)
        the next `count` List Runs requests answer `status` (count -1:
        every one, until fail_list(0), which clears every entry).
  fail_get(count, status=500, retry_after=None, run_id=None)
        likewise for Retrieve Run (only for run_id if given); retry_after
        sets a Retry-After header.
  fail_cancel(count, status=500, retry_after=None)   likewise for Cancel.
  Faults are checked after the path and method match, before auth.

Counters (each an int; the *_requests() forms give the Received objects):
  posts_to_run()   / posts_to_run_requests()   Trigger Job Run POSTs
                   received, whether a run was created or not.
  list_calls()     / list_requests()           List Runs GETs.
  get_calls(run_id=None) / get_requests(run_id=None)   Retrieve Run GETs
                   (of one run if given).
  Each counts every such request received, whatever it was answered.
  cancel_calls()   / cancel_requests()         Cancel Run POSTs.
  Received.kind is "trigger", "list", "get", "cancel" or None (any other
  path); Received.run_id is the run a request created or named (or None).

Generic steering, as before: a plan (script(*answers), fail(), slow(),
drop(): a FIFO of Answer objects), a default delay (`delay`) and a seeded
random-failure mode (set_random_failures). They apply to Trigger Job Run
POSTs and unknown paths, NOT to List/Retrieve/Cancel requests (those have
fail_list/fail_get/fail_cancel), so that a test scripting the answers to
triggerd's POSTs is not disturbed by its look-ups and polls. A scripted
Answer with a status answers it without creating a run; one without a
status (e.g. slow(), a gate) answers as dbt would, creating the run.

URLs: base_url, run_url(account, job) (Trigger Job Run), runs_url(account).

What came: requests(), count(), in_flight(), max_in_flight,
max_in_flight_by_path, wait_for_requests(n, timeout), wait_for(pred,
timeout, what) — every request of every kind is in the log.

List Runs takes job_definition_id, status, status__in ("[1,2,3]", "1,2,3"
or repeated), id__gt, order_by (id, -id, created_at, -created_at,
finished_at, -finished_at; default id), limit (default 100, 1..100, else
400), offset, include_related ("trigger" in a list such as ["trigger"] or
"trigger,job": each run carries its "trigger" object; without it "trigger"
is null, as dbt leaves unrequested relations) and answers
{"status", "data": [runs], "extra": {"filters": {...}, "order_by": ...,
"pagination": {"count": <runs in page>, "total_count": <matching>}}}.
Retrieve Run takes include_related likewise. A run of another account is
404. Other query parameters are ignored.
"""

import argparse
import collections
import datetime
import http.server
import json
import random
import re
import select
import socket
import struct
import sys
import threading
import time
import urllib.parse

RUN_PATH = re.compile(r"^/api/v2/accounts/([0-9]+)/jobs/([0-9]+)/run/$")
RUNS_PATH = re.compile(r"^/api/v2/accounts/([0-9]+)/runs/$")
RUN_GET_PATH = re.compile(r"^/api/v2/accounts/([0-9]+)/runs/([0-9]+)/$")
RUN_CANCEL_PATH = re.compile(
    r"^/api/v2/accounts/([0-9]+)/runs/([0-9]+)/cancel/$")

QUEUED, STARTING, RUNNING, SUCCESS, ERROR, CANCELLED = 1, 2, 3, 10, 20, 30
FINAL_STATUSES = (SUCCESS, ERROR, CANCELLED)
STATUS_HUMANIZED = {1: "Queued", 2: "Starting", 3: "Running", 10: "Success",
                    20: "Error", 30: "Cancelled"}
CAUSE_MAX = 255  # dbt Cloud refuses a longer cause (code points)

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
# Maximum lengths dbt enforces beyond the OpenAPI's minLength.
TRIGGER_RUN_MAX_LEN = {"cause": CAUSE_MAX}

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
        self.action = None   # "close" / "reset" when dropped, "gone" when
        #                      the client closed a held POST
        self.answer = None   # the Answer used (scripted, random or default)
        self.kind = None     # "trigger", "list", "get", "cancel" or None
        self.run_id = None   # the run created (trigger) or named (get/cancel)

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
        elif kind == "string" and name in TRIGGER_RUN_MAX_LEN \
                and len(v) > TRIGGER_RUN_MAX_LEN[name]:
            # len() of a str counts code points, as dbt (Python) does.
            errors[name] = ["Ensure this field has no more than %d "
                            "characters." % TRIGGER_RUN_MAX_LEN[name]]
    return errors


def _iso(ts):
    return datetime.datetime.fromtimestamp(
        ts, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f+00:00")


def run_response(run_id, account_id, job_id, body, now,
                 href_host="ab123.us1.dbt.com"):
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
        "href": "https://%s/deploy/%d/projects/270542/runs/%d/"
                % (href_host, account_id, run_id),
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

DEFAULT_STATUS_MESSAGES = {ERROR: "Job failed",
                           CANCELLED: "Cancelled by user."}


def error_envelope(status, message=None, data=None):
    return envelope(status, message if message is not None else
                    ERROR_MESSAGES.get(status, "Error %d." % status), data)


def _hms(seconds):
    s = max(0, int(seconds))
    return "%02d:%02d:%02d" % (s // 3600, s // 60 % 60, s % 60)


def _humanized(seconds):
    m = max(0, int(seconds)) // 60
    return "1 minute" if m == 1 else "%d minutes" % m


def parse_list_param(values):
    """dbt's list-valued query parameters as strings: '["a","b"]', '[1,2]',
    'a,b' or the parameter repeated. values: the list parse_qs gives."""
    out = []
    for v in values:
        v = v.strip()
        if v.startswith("[") and v.endswith("]"):
            v = v[1:-1]
        for item in v.split(","):
            item = item.strip().strip("\"'").strip()
            if item:
                out.append(item)
    return out


class _Run:
    """One run: its RunResponse as created, and a timeline of statuses."""

    def __init__(self, run_id, account_id, job_id, body, t_mono, t_wall,
                 queued_s, running_s, final, final_message, href_host):
        self.id = run_id
        self.account_id = account_id
        self.job_id = job_id
        self.t_mono = t_mono
        self.t_wall = t_wall
        self.base = run_response(run_id, account_id, job_id, body, t_wall,
                                 href_host)
        self.forgotten = False
        t = t_mono + max(0.0, queued_s)
        self.timeline = [(t_mono, QUEUED, None), (t, RUNNING, None)]
        if final is not None:
            self.timeline.append((t + max(0.0, running_s), final,
                                  final_message))

    def wall(self, t):
        return self.t_wall + (t - self.t_mono)

    def step(self, now):
        cur = self.timeline[0]
        for st in self.timeline:
            if st[0] <= now:
                cur = st
            else:
                break
        return cur

    def status(self, now):
        return self.step(now)[1]

    def set(self, now, status, message):
        self.timeline = [s for s in self.timeline if s[0] <= now]
        self.timeline.append((now, status, message))

    def finished_t(self, now):
        t, status, _ = self.step(now)
        return t if status in FINAL_STATUSES else None

    def view(self, now, with_trigger):
        """The RunResponse now (a fresh dict, safe to hand out)."""
        t, status, message = self.step(now)
        d = dict(self.base)
        trig = dict(d["trigger"])
        if isinstance(trig.get("steps_override"), list):
            trig["steps_override"] = list(trig["steps_override"])
        d["trigger"] = trig if with_trigger else None
        d["blocked_by"] = []
        d["run_steps"] = []
        started = None
        for (ts, s, _) in self.timeline:
            if ts > now:
                break
            if s in (STARTING, RUNNING, SUCCESS, ERROR):
                started = ts
                break
        final = status in FINAL_STATUSES
        finished = t if final else None
        end = finished if final else now
        d.update({
            "status": status,
            "status_humanized": STATUS_HUMANIZED.get(status, str(status)),
            "status_message": message,
            "updated_at": _iso(self.wall(t)),
            "dequeued_at": _iso(self.wall(started)) if started else None,
            "started_at": _iso(self.wall(started)) if started else None,
            "finished_at": _iso(self.wall(finished)) if final else None,
            "last_checked_at": _iso(self.wall(min(now, end)))
            if started else None,
            "in_progress": not final,
            "is_complete": final,
            "is_success": status == SUCCESS,
            "is_error": status == ERROR,
            "is_cancelled": status == CANCELLED,
            "is_running": status == RUNNING,
        })
        dur = end - self.t_mono
        qdur = (started if started is not None else end) - self.t_mono
        rdur = end - started if started is not None else 0.0
        d.update({
            "duration": _hms(dur), "duration_humanized": _humanized(dur),
            "queued_duration": _hms(qdur),
            "queued_duration_humanized": _humanized(qdur),
            "run_duration": _hms(rdur),
            "run_duration_humanized": _humanized(rdur),
            "created_at_humanized": "%s ago" % _humanized(now - self.t_mono),
            "finished_at_humanized": "%s ago" % _humanized(now - finished)
            if final else "0 minutes from now",
        })
        return d


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "dbt-standin/1.0"
    sys_version = ""
    # One write per answer (head and body together) and no Nagle: a small
    # second write would otherwise wait for the client's delayed ACK.
    wbufsize = 64 * 1024
    disable_nagle_algorithm = True

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

    def _send(self, status, headers, payload):
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

    def _drop(self, st, rec, action):
        st._finish(rec, None, action)
        self.close_connection = True
        if action == "reset":
            self.server.reset_requests.add(self.connection)

    def _peer_gone(self, timeout):
        """True once the client has closed the connection (waits up to
        timeout seconds for a sign of it)."""
        try:
            r, _, _ = select.select([self.connection], [], [], timeout)
            if not r:
                return False
            data = self.connection.recv(1, socket.MSG_PEEK)
        except (OSError, ValueError):
            return True
        if not data:
            return True
        time.sleep(timeout)  # a pipelined request waits: do not spin
        return False

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
        if rec.kind in ("list", "get", "cancel"):
            status, headers, payload = st._runs_api(rec)
            st._finish(rec, status, None)
            self._send(status, headers, payload)
            return
        ans = st._next_answer()
        rec.answer = ans
        if ans.delay > 0:
            # A slow dbt Cloud: stop() cuts the wait short.
            st._stopping.wait(ans.delay)
        while ans.gate is not None and not ans.gate.is_set() \
                and not st._stopping.is_set():
            ans.gate.wait(0.05)  # polled so that stop() ends it too
        if ans.action is not None:
            self._drop(st, rec, ans.action)
            return
        status, headers, payload = st._answer(rec, ans)
        then = getattr(rec, "then", None)
        if then is not None:
            if then in ("drop", "close", "reset"):
                self._drop(st, rec, "reset" if then == "reset" else "close")
                return
            if then.startswith("hang:"):
                st._stopping.wait(float(then[len("hang:"):]))
            elif then == "hold":
                ev = threading.Event()
                with st._cond:
                    st._holds.add(ev)
                    st._cond.notify_all()
                gone = False
                try:
                    while not ev.is_set() and not st._stopping.is_set():
                        if self._peer_gone(0.05):
                            gone = True
                            break
                finally:
                    with st._cond:
                        st._holds.discard(ev)
                        st._cond.notify_all()
                if gone:
                    self._drop(st, rec, "gone")
                    return
            else:
                code = int(then)
                status, headers, payload = code, [], error_envelope(code)
        st._finish(rec, status, None)
        self._send(status, headers, payload)

    do_POST = do_GET = do_PUT = do_PATCH = do_DELETE = _handle


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024  # a thousand pollers may connect at once

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


def _classify(path):
    """(kind, match) for a request path."""
    for kind, rx in (("trigger", RUN_PATH), ("list", RUNS_PATH),
                     ("get", RUN_GET_PATH), ("cancel", RUN_CANCEL_PATH)):
        m = rx.match(path)
        if m:
            return kind, m
    return None, None


_CREATE_THEN = re.compile(r"^(drop|close|reset|hold|hang:[0-9.]+|[1-5][0-9][0-9])$")
ORDER_BY = ("id", "-id", "created_at", "-created_at", "finished_at",
            "-finished_at")


class Standin:
    """The stand-in. Thread-safe; see the module comment."""

    def __init__(self, host="127.0.0.1", port=0, token="dbt-standin-token",
                 verbose=False, out=None, first_run_id=70403000001):
        self.host = host
        self.requested_port = port
        self.token = token
        self.verbose = verbose
        self.out = out or sys.stdout
        self.delay = 0.0  # seconds added before every unscripted answer
        self.run_queued_s = 0.2
        self.run_running_s = 0.3
        self.run_final = SUCCESS
        self.run_final_message = DEFAULT_STATUS_MESSAGES[ERROR]
        self.href_host = "ab123.us1.dbt.com"
        self.cancels = []
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._requests = []
        self._by_kind = collections.defaultdict(list)
        self._gets_by_run = collections.defaultdict(list)
        self._plan = collections.deque()
        self._random = None   # (p, random.Random, [Answer factories])
        self._next_run_id = first_run_id
        self._runs = {}                                  # id -> _Run
        self._by_job = collections.defaultdict(list)     # (a, j) -> [ids]
        self._by_account = collections.defaultdict(list)  # a -> [ids]
        self._run_scripts = collections.deque()
        self._create_then = collections.deque()
        self._faults = {"list": collections.deque(),
                        "get": collections.deque(),
                        "cancel": collections.deque()}
        self._holds = set()
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

    def runs_url(self, account_id):
        return "%s/api/v2/accounts/%s/runs/" % (self.base_url, account_id)

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

    # ---- runs: steering ----

    def script_runs(self, final=SUCCESS, queued_s=None, running_s=None,
                    count=1, status_message=None):
        """The next count created runs follow this script (FIFO)."""
        if final is not None and final not in STATUS_HUMANIZED:
            raise ValueError("final must be a dbt status or None")
        with self._lock:
            for _ in range(count):
                self._run_scripts.append((final, queued_s, running_s,
                                          status_message))

    def set_run_status(self, run_id, status, status_message=None):
        if status_message is None:
            status_message = DEFAULT_STATUS_MESSAGES.get(status)
            if status == ERROR:
                status_message = self.run_final_message
        with self._lock:
            self._runs[run_id].set(time.monotonic(), status, status_message)

    def forget_run(self, run_id):
        with self._lock:
            run = self._runs[run_id]
            if not run.forgotten:
                run.forgotten = True
                self._by_job[(run.account_id, run.job_id)].remove(run_id)
                self._by_account[run.account_id].remove(run_id)

    def create_then(self, action, count=1):
        """The next count run-creating trigger POSTs create the run, then
        do action (see the module comment)."""
        action = str(action)
        if not _CREATE_THEN.match(action):
            raise ValueError("bad create_then action %r" % action)
        with self._lock:
            self._create_then.extend([action] * count)

    def create_then_left(self):
        with self._lock:
            return len(self._create_then)

    def release(self):
        """Ends every hold in progress; returns how many there were."""
        with self._lock:
            holds = list(self._holds)
        for ev in holds:
            ev.set()
        return len(holds)

    def holding(self):
        with self._lock:
            return len(self._holds)

    def _fault(self, kind, count, status, retry_after, run_id=None):
        with self._lock:
            q = self._faults[kind]
            if count == 0:
                q.clear()
            elif count < 0:
                q.append([-1, status, retry_after, run_id])
            else:
                q.append([count, status, retry_after, run_id])

    def fail_list(self, count, status=500, retry_after=None):
        self._fault("list", count, status, retry_after)

    def fail_get(self, count, status=500, retry_after=None, run_id=None):
        self._fault("get", count, status, retry_after, run_id)

    def fail_cancel(self, count, status=500, retry_after=None):
        self._fault("cancel", count, status, retry_after)

    # ---- runs: what there is ----

    def runs(self):
        """Copies of every run created, by id (see the module comment)."""
        now = time.monotonic()
        with self._lock:
            out = []
            for rid in sorted(self._runs):
                r = self._runs[rid]
                d = r.view(now, True)
                d["forgotten"] = r.forgotten
                out.append(d)
            return out

    def run(self, run_id):
        now = time.monotonic()
        with self._lock:
            r = self._runs.get(run_id)
            if r is None:
                return None
            d = r.view(now, True)
            d["forgotten"] = r.forgotten
            return d

    def run_status(self, run_id):
        """The run's dbt status now, or None if there is no such run."""
        now = time.monotonic()
        with self._lock:
            r = self._runs.get(run_id)
            return None if r is None else r.status(now)

    def _kind_requests(self, kind, method=None):
        with self._lock:
            return [q for q in self._by_kind[kind]
                    if method is None or q.method == method]

    def posts_to_run_requests(self):
        return self._kind_requests("trigger", "POST")

    def posts_to_run(self):
        return len(self.posts_to_run_requests())

    def list_requests(self):
        return self._kind_requests("list", "GET")

    def list_calls(self):
        return len(self.list_requests())

    def get_requests(self, run_id=None):
        if run_id is None:
            return self._kind_requests("get", "GET")
        with self._lock:
            return [q for q in self._gets_by_run[run_id] if q.method == "GET"]

    def get_calls(self, run_id=None):
        return len(self.get_requests(run_id))

    def cancel_requests(self):
        return self._kind_requests("cancel", "POST")

    def cancel_calls(self):
        return len(self.cancel_requests())

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
            rec.kind, m = _classify(rec.path)
            if rec.kind in ("get", "cancel"):
                rec.run_id = int(m.group(2))
            self._requests.append(rec)
            if rec.kind is not None:
                self._by_kind[rec.kind].append(rec)
                if rec.kind == "get":
                    self._gets_by_run[rec.run_id].append(rec)
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
            extra = " run=%s" % rec.run_id if rec.run_id is not None else ""
            print("standin:   -> %s%s" % (status if status else action, extra),
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
                body = error_envelope(ans.status)
            return ans.status, extra, body
        status, hdrs, body = self._dbt(rec)
        return status, hdrs + extra, body

    def _authorized(self, rec):
        auth = rec.header_values("Authorization")
        return (len(auth) == 1 and auth[0].startswith("Bearer ")
                and auth[0][len("Bearer "):] == self.token)

    def _dbt(self, rec):
        """What dbt Cloud answers to rec (a trigger POST or another path)."""
        m = RUN_PATH.match(rec.path)
        if not m:
            return 404, [], error_envelope(404)
        if rec.method != "POST":
            return 405, [("Allow", "POST, OPTIONS")], envelope(
                405, 'Method "%s" not allowed.' % rec.method)
        if not self._authorized(rec):
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
        account_id, job_id = int(m.group(1)), int(m.group(2))
        with self._lock:
            run_id = self._next_run_id
            self._next_run_id += 1
            if self._run_scripts:
                final, queued_s, running_s, msg = self._run_scripts.popleft()
            else:
                final, queued_s, running_s, msg = self.run_final, None, None, \
                    None
            if queued_s is None:
                queued_s = self.run_queued_s
            if running_s is None:
                running_s = self.run_running_s
            if msg is None and final == ERROR:
                msg = self.run_final_message
            elif msg is None:
                msg = DEFAULT_STATUS_MESSAGES.get(final)
            now = time.monotonic()
            run = _Run(run_id, account_id, job_id, body, now,
                       rec.wall + (now - rec.t), queued_s, running_s, final,
                       msg, self.href_host)
            self._runs[run_id] = run
            self._by_job[(account_id, job_id)].append(run_id)
            self._by_account[account_id].append(run_id)
            rec.run_id = run_id
            rec.then = self._create_then.popleft() if self._create_then \
                else None
            data = run.view(now, True)
        return 200, [], envelope(200, "Success!", data)

    # ---- the runs API: List, Retrieve, Cancel ----

    def _take_fault(self, kind, run_id):
        with self._lock:
            q = self._faults[kind]
            for e in q:
                if e[3] is not None and e[3] != run_id:
                    continue
                if e[0] > 0:
                    e[0] -= 1
                    if e[0] == 0:
                        q.remove(e)
                return e[1], e[2]
        return None

    def _runs_api(self, rec):
        """(status, headers, body) for List/Retrieve/Cancel requests."""
        kind = rec.kind
        want = "POST" if kind == "cancel" else "GET"
        if rec.method != want:
            return 405, [("Allow", "%s, OPTIONS" % want)], envelope(
                405, 'Method "%s" not allowed.' % rec.method)
        fault = self._take_fault(kind, rec.run_id)
        if fault is not None:
            status, ra = fault
            hdrs = [("Retry-After", str(ra))] if ra is not None else []
            return status, hdrs, error_envelope(status)
        if not self._authorized(rec):
            return 401, [], envelope(401, "Invalid token.")
        _, m = _classify(rec.path)
        account_id = int(m.group(1))
        try:
            q = urllib.parse.parse_qs(rec.query, keep_blank_values=True)
        except ValueError:
            q = {}
        related = parse_list_param(q.get("include_related", []))
        with_trigger = "trigger" in related
        if kind == "list":
            return self._list_runs(account_id, q, related)
        now = time.monotonic()
        with self._lock:
            run = self._runs.get(rec.run_id)
            if run is None or run.forgotten or run.account_id != account_id:
                return 404, [], envelope(404, "Run not found.")
            if kind == "cancel":
                self.cancels.append(rec.run_id)
                if run.status(now) not in FINAL_STATUSES:
                    run.set(now, CANCELLED,
                            DEFAULT_STATUS_MESSAGES[CANCELLED])
            data = run.view(now, with_trigger)
        return 200, [], envelope(200, "Success!", data)

    def _list_runs(self, account_id, q, related):
        def bad(msg):
            return 400, [], envelope(400, "The request was invalid: " + msg,
                                     {"detail": [msg]})

        def one_int(name, default=None):
            vals = q.get(name)
            if not vals:
                return default
            return int(vals[-1])

        filters = {"account_id": account_id}
        try:
            job_id = one_int("job_definition_id")
            status = one_int("status")
            id_gt = one_int("id__gt")
            limit = one_int("limit", 100)
            offset = one_int("offset", 0)
            status_in = [int(x) for x in
                         parse_list_param(q.get("status__in", []))]
        except ValueError as e:
            return bad("not a valid integer (%s)" % e)
        order_by = (q.get("order_by") or ["id"])[-1]
        if order_by not in ORDER_BY:
            return bad("order_by must be one of %s" % ", ".join(ORDER_BY))
        if limit < 1 or limit > 100:
            return bad("limit must be between 1 and 100")
        if offset < 0:
            return bad("offset must not be negative")
        statuses = set(status_in)
        if status is not None:
            statuses = statuses & {status} if status_in else {status}
        for name, v in (("job_definition_id", job_id), ("status", status),
                        ("id__gt", id_gt)):
            if v is not None:
                filters[name] = v
        if "status__in" in q:
            filters["status__in"] = status_in
        if related:
            filters["include_related"] = related
        filters["limit"] = limit
        filters["offset"] = offset
        with_trigger = "trigger" in related
        now = time.monotonic()
        with self._lock:
            ids = self._by_job.get((account_id, job_id), []) \
                if job_id is not None else self._by_account.get(account_id, [])
            if order_by.startswith("-"):
                ids = reversed(ids)
            if not statuses and id_gt is None \
                    and order_by.lstrip("-") != "finished_at":
                ids = list(ids)
                total = len(ids)
                page_ids = ids[offset:offset + limit]
            else:
                match = [i for i in ids
                         if (id_gt is None or i > id_gt)
                         and (not statuses or
                              self._runs[i].status(now) in statuses)]
                if order_by.lstrip("-") == "finished_at":
                    # Unfinished runs last (ascending), as NULLs sort in
                    # Postgres; ties by id.
                    def key(i):
                        f = self._runs[i].finished_t(now)
                        return (f is None, f or 0.0, i)
                    match.sort(key=key, reverse=order_by.startswith("-"))
                total = len(match)
                page_ids = match[offset:offset + limit]
            data = [self._runs[i].view(now, with_trigger) for i in page_ids]
        return 200, [], json.dumps({
            "status": {"code": 200, "is_success": True,
                       "user_message": "Success!", "developer_message": ""},
            "data": data,
            "extra": {"filters": filters, "order_by": order_by,
                      "pagination": {"count": len(data),
                                     "total_count": total}},
        }, separators=(",", ":")).encode()


def main(argv=None):
    ap = argparse.ArgumentParser(
        description="A local stand-in for dbt Cloud's runs API (Trigger Job "
                    "Run, List Runs, Retrieve Run, Cancel Run).")
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
    ap.add_argument("--queued-s", type=float, default=0.2,
                    help="seconds a new run stays queued")
    ap.add_argument("--running-s", type=float, default=0.3,
                    help="seconds a run stays running")
    ap.add_argument("--final", type=int, default=SUCCESS,
                    choices=FINAL_STATUSES,
                    help="the status runs end with (10, 20 or 30)")
    ap.add_argument("--first-run-id", type=int, default=70403000001)
    args = ap.parse_args(argv)
    s = Standin(host=args.host, port=args.port, token=args.token,
                verbose=True, first_run_id=args.first_run_id)
    s.run_queued_s = args.queued_s
    s.run_running_s = args.running_s
    s.run_final = args.final
    for f in filter(None, args.fail.split(",")):
        s.fail(int(f), retry_after=1 if f.strip() == "429" else None)
    s.set_random_failures(args.random_failures, args.seed)
    s.start()
    print("standin: dbt Cloud stand-in on %s (token %s); POST "
          "/api/v2/accounts/ACCOUNT/jobs/JOB/run/, GET .../runs/ and "
          ".../runs/ID/, POST .../runs/ID/cancel/" % (s.base_url, args.token),
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
