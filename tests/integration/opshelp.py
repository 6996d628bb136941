"""Helpers for the operations tests (admin API, metrics, reload, life
cycle, systemd, container).

DESIGN: builds on harness.py and standin.py without changing them. Here:
a config builder (YAML text with harness's @LISTEN@/@STORE@ markers and
secrets taken from the environment), events, an admin-API client with
bounded polling, a strict parser of the Prometheus text format, an
sd_notify listener (an AF_UNIX datagram socket read by one thread), and
small parsers for the Dockerfile, scripts/deps.sh and unit files. Nothing
here sleeps for a fixed time: every wait polls a condition with a bound.

Standard library only (python3 >= 3.9).
"""

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import threading
import time
import uuid

import harness
from harness import wait_until

# ---- secrets and ids used by every ops test ----

DBT_TOKEN = "dbt-standin-token"  # what standin.Standin accepts by default
INBOUND_TOKEN = "in-tok-5f0c2a7e9b"
ADMIN_TOKEN = "adm-tok-81d4e6c3aa"
OTHER_SECRET = "other-secret-77e1b0"

SECRET_ENV = {
    "OPS_DBT_TOKEN": DBT_TOKEN,
    "OPS_INBOUND_TOKEN": INBOUND_TOKEN,
    "OPS_ADMIN_TOKEN": ADMIN_TOKEN,
    "OPS_OTHER_SECRET": OTHER_SECRET,
}
SECRET_VALUES = (DBT_TOKEN, INBOUND_TOKEN, ADMIN_TOKEN, OTHER_SECRET)

ACCOUNT = "70403103912345"
JOB_A = "0b9d5c55-6c2e-4d0a-9b6f-3f8e2a1c7d10"
JOB_B = "6c1f0e3a-2b4d-4e8f-9a7c-5d3e1b2a4f60"
JOB_C = "a3e9d2c1-7b6f-4a5e-8d9c-1f2e3d4c5b6a"

DELIVERY_KEYS = {"id", "event", "trigger", "state", "attempts",
                 "last_status", "last_error", "next_attempt_at",
                 "created_at", "run", "events"}
HISTORY_KEYS = {"at", "status", "error", "ms"}
STATES = {"pending", "delivered", "failed", "cancelled"}
RFC3339_UTC = re.compile(
    r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$")


# ---- config ----

def trigger_yaml(name, url, jobs=(JOB_A,), active=True, rules=None,
                 header_extra=None, body=None):
    """One trigger entry (a YAML list item) in the Erathos shape. rules: a
    list of (variable, operation, value); default STATUS EQUAL FINISHED.
    url may hold ${{...}} templates."""
    if rules is None:
        rules = [("STATUS", "EQUAL", "FINISHED")]
    lines = [
        "  - name: %s" % name,
        "    is_active: %s" % ("true" if active else "false"),
        "    method: POST",
        '    url: "%s"' % url,
        "    header:",
        "      Accept: application/json",
        '      Authorization: "Bearer ${{secrets.dbt_token}}"',
    ]
    for k, v in (header_extra or {}).items():
        lines.append('      %s: "%s"' % (k, v))
    lines.append("    body:")
    lines.append('      cause: "%s"' % (
        body or "Erathos job ${{erathos.job_id}} finished "
                "(${{erathos.table_name}})"))
    if rules:
        lines.append("    rules:")
        for var, op, val in rules:
            lines.append("      - {variable_name: %s, operation: %s, "
                         "value: %s}" % (var, op, json.dumps(val)))
    lines.append("    jobs: [%s]" % ", ".join(json.dumps(j) for j in jobs))
    return "\n".join(lines) + "\n"


def run_url(standin_or_port, job=42):
    """The dbt run URL of a stand-in (or of a bare port, e.g. a closed
    one), with the account id from a config variable."""
    port = standin_or_port if isinstance(standin_or_port, int) \
        else standin_or_port.port
    return ("http://127.0.0.1:%d/api/v2/accounts/${{variables.account}}"
            "/jobs/%d/run/" % (port, job))


def config_yaml(triggers, admin=True, inbound=True, workers=2,
                max_attempts=5, initial_backoff="100ms",
                max_backoff="200ms", timeout="10s", max_body=None,
                extra=""):
    """A whole config. triggers: YAML text of the list items (see
    trigger_yaml). Secrets come from SECRET_ENV (pass env=SECRET_ENV to the
    Daemon)."""
    server = ['server:', '  listen: "@LISTEN@"']
    if max_body:
        server.append("  max_body: %s" % max_body)
    server.append("  auth:")
    server.append('    tokens: [%s]' % (
        '"${{secrets.inbound_token}}"' if inbound else ""))
    server.append('  admin_tokens: [%s]' % (
        '"${{secrets.admin_token}}"' if admin else ""))
    text = "\n".join(server) + "\n" + """\
store:
  path: "@STORE@"
dispatch:
  workers: %d
  timeout: %s
  connect_timeout: 2s
  retry:
    max_attempts: %d
    initial_backoff: %s
    max_backoff: %s
variables:
  account: "%s"
secrets:
  dbt_token: {env: OPS_DBT_TOKEN}
  inbound_token: {env: OPS_INBOUND_TOKEN}
  admin_token: {env: OPS_ADMIN_TOKEN}
  other_secret: {env: OPS_OTHER_SECRET}
%striggers:
""" % (workers, timeout, max_attempts, initial_backoff, max_backoff,
       ACCOUNT, extra)
    return text + triggers


def event(job=JOB_A, status="FINISHED", table="orders", execution=None,
          **extra):
    """An Erathos event as the shipped webhook sends it (strings)."""
    ev = {
        "JOB_ID": job,
        "CONNECTION_ID": "5f1e7a2b-93c4-4e1d-8a6f-2b7c9d0e1f23",
        "CONNECTION_NAME": "Postgres production",
        "SCHEMA_NAME": "raw_shop",
        "TABLE_NAME": table,
        "EXECUTION_ID": execution or str(uuid.uuid4()),
        "STATUS": status,
        "ROWS": "12345",
        "TRIGGERED_BY": "Erathos Schedule",
        "FINISHED_AT_DATE": "2026-11-27",
        "FINISHED_AT_TIME": "06:42",
    }
    ev.update(extra)
    return ev


# ---- admin API ----

def admin(d, method, path, token=ADMIN_TOKEN, body=None):
    hdrs = [] if token is None else [("Authorization", "Bearer " + token)]
    return d.request(method, path, body, hdrs)


def admin_json(tc, d, path):
    """GET path with the admin token; asserts 200 and returns the JSON."""
    r = admin(d, "GET", path)
    tc.assertEqual(r.status, 200, "GET %s: %r" % (path, r))
    tc.assertIsNotNone(r.json, "GET %s: not JSON: %r" % (path, r))
    return r.json


def get_delivery(d, delivery_id):
    r = admin(d, "GET", "/v1/deliveries/" + delivery_id)
    if r.status != 200:
        raise AssertionError("GET /v1/deliveries/%s: %r" % (delivery_id, r))
    return r.json


def wait_delivery(d, delivery_id, pred, timeout=10.0, what=None):
    """Polls GET /v1/deliveries/{id} until pred(obj) holds; returns obj.
    pred may be a state name."""
    if isinstance(pred, str):
        state = pred
        pred = lambda o: o["state"] == state  # noqa: E731
        what = what or "delivery %s to be %s" % (delivery_id, state)
    last = {}

    def check():
        last["obj"] = get_delivery(d, delivery_id)
        return last["obj"] if pred(last["obj"]) else None
    return wait_until(check, timeout,
                      lambda: "%s (last: %r)" % (what or "delivery",
                                                 last.get("obj")),
                      interval=0.05)


def delivery_ids(accept_json):
    return [x["id"] for x in accept_json["deliveries"]]


# ---- signals and reloads ----

def reloads(d):
    m = scrape(d)
    return (m.value("triggerd_config_reloads_total", result="success"),
            m.value("triggerd_config_reloads_total", result="failure"))


def sighup_and_wait(tc, d, expect="success", timeout=10.0):
    """Sends SIGHUP and waits until the reload counter of `expect` has
    grown by one (so the reload is done); asserts the other did not."""
    ok0, bad0 = reloads(d)
    d.proc.send_signal(signal.SIGHUP)
    want = (ok0 + 1, bad0) if expect == "success" else (ok0, bad0 + 1)
    wait_until(lambda: reloads(d) != (ok0, bad0), timeout,
               "triggerd_config_reloads_total to move after SIGHUP")
    got = reloads(d)
    tc.assertEqual(got, want, "reload counters (success, failure) after "
                   "SIGHUP; log:\n%s" % d.log_tail())


# ---- Prometheus text format ----

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_SAMPLE = re.compile(r"^(%s)(\{.*\})?[ \t]+(\S+)([ \t]+-?[0-9]+)?$" % _NAME)
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"')


def parse_labels(text):
    """'{a="x",b="y\\"z"}' -> {"a": "x", "b": 'y"z'}; raises ValueError on
    anything the text format does not allow (bad escapes, duplicates)."""
    assert text[0] == "{" and text[-1] == "}"
    s, pos, out = text[1:-1], 0, {}
    while pos < len(s):
        m = _LABEL.match(s, pos)
        if not m:
            raise ValueError("bad label at %r" % s[pos:])
        name, pos, val = m.group(1), m.end(), []
        while True:
            if pos >= len(s):
                raise ValueError("unterminated label value in %r" % text)
            c = s[pos]
            if c == "\\":
                nxt = s[pos + 1:pos + 2]
                if nxt not in ("\\", '"', "n"):
                    raise ValueError("bad escape \\%s in %r" % (nxt, text))
                val.append("\n" if nxt == "n" else nxt)
                pos += 2
            elif c == '"':
                pos += 1
                break
            elif c == "\n":
                raise ValueError("raw newline in label value")
            else:
                val.append(c)
                pos += 1
        if name in out:
            raise ValueError("label %s twice in %r" % (name, text))
        out[name] = "".join(val)
        rest = s[pos:].lstrip()
        if rest.startswith(","):
            pos = len(s) - len(rest) + 1
        elif rest:
            raise ValueError("junk after label value: %r" % rest)
        else:
            pos = len(s)
    return out


def _number(v):
    if v in ("+Inf", "Inf"):
        return float("inf")
    if v == "-Inf":
        return float("-inf")
    return float(v)  # raises ValueError on junk (NaN is allowed)


class Metrics:
    """A parsed exposition: samples [(name, labels, value)], help and type
    by family name. Strict: raises ValueError on a malformed line, a
    sample without a preceding TYPE of its family, a family declared
    twice, or a series given twice."""

    def __init__(self, text):
        self.text = text
        self.samples = []
        self.help = {}
        self.type = {}
        seen = set()
        for n, line in enumerate(text.split("\n"), 1):
            if line == "":
                continue
            if line.startswith("#"):
                parts = line.split(None, 3)
                if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                    table = self.help if parts[1] == "HELP" else self.type
                    if parts[2] in table:
                        raise ValueError("line %d: second %s for %s"
                                         % (n, parts[1], parts[2]))
                    table[parts[2]] = parts[3] if len(parts) > 3 else ""
                continue
            m = _SAMPLE.match(line)
            if not m:
                raise ValueError("line %d does not parse: %r" % (n, line))
            name = m.group(1)
            labels = parse_labels(m.group(2)) if m.group(2) else {}
            fam = self.family(name)
            if fam not in self.type:
                raise ValueError("line %d: sample %s before the TYPE of %s"
                                 % (n, name, fam))
            key = (name, tuple(sorted(labels.items())))
            if key in seen:
                raise ValueError("line %d: series given twice: %r"
                                 % (n, line))
            seen.add(key)
            self.samples.append((name, labels, _number(m.group(3))))

    def family(self, sample_name):
        """The family a sample belongs to (histogram/summary suffixes)."""
        for suf in ("_bucket", "_sum", "_count"):
            base = sample_name[:-len(suf)]
            if sample_name.endswith(suf) and \
                    self.type.get(base) in ("histogram", "summary"):
                return base
        return sample_name

    def series(self, name, **labels):
        """Samples of name whose labels include the given ones."""
        return [(lb, v) for (n, lb, v) in self.samples if n == name and
                all(lb.get(k) == val for k, val in labels.items())]

    def value(self, name, **labels):
        """The value of the one series name{labels} (labels exact), or
        None if absent."""
        for n, lb, v in self.samples:
            if n == name and lb == labels:
                return v
        return None

    def sum(self, name, **labels):
        return sum(v for _, v in self.series(name, **labels))


def scrape(d):
    r = d.request("GET", "/metrics")
    if r.status != 200:
        raise AssertionError("GET /metrics: %r" % r)
    return Metrics(r.body.decode("utf-8"))


# ---- sd_notify ----

def has_libsystemd(binary=None):
    """True if the binary links libsystemd (so sd_notify is compiled in)."""
    out = subprocess.run(["ldd", binary or harness.binary()],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         universal_newlines=True).stdout
    return "libsystemd" in out


class NotifySocket:
    """An AF_UNIX datagram socket that plays systemd's NOTIFY_SOCKET. A
    thread records every message as (monotonic time, {field: value}, raw
    text); on_message(fields) is called from that thread as each comes,
    before it is recorded (so a test can look at the world at that very
    moment)."""

    def __init__(self, directory, on_message=None):
        self.path = os.path.join(directory, "notify.sock")
        self.on_message = on_message
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.05)
        self._lock = threading.Lock()
        self._msgs = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True,
                                        name="notify-socket")
        self._thread.start()

    def _loop(self):
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            raw = data.decode("utf-8", "replace")
            fields = {}
            for line in raw.split("\n"):
                if "=" in line:
                    k, v = line.split("=", 1)
                    fields[k] = v
            t = time.monotonic()
            extra = self.on_message(fields) if self.on_message else None
            with self._lock:
                self._msgs.append((t, fields, raw, extra))

    def messages(self):
        with self._lock:
            return list(self._msgs)

    def wait_for(self, pred, timeout=10.0, what="a notify message"):
        """Waits until pred(messages) is true; returns the messages."""
        return wait_until(lambda: pred(self.messages()) and self.messages(),
                          timeout,
                          lambda: "%s; got %r" % (
                              what, [m[2] for m in self.messages()]))

    def close(self):
        self._stop.set()
        self._thread.join(2)
        self.sock.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass


def port_accepts(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


# ---- files: Dockerfile, deps.sh, unit files ----

def logical_lines(text):
    """Dockerfile / shell lines with backslash continuations joined and
    comment lines dropped."""
    out, cur = [], ""
    for line in text.split("\n"):
        if cur == "" and line.lstrip().startswith("#"):
            continue
        if cur and line.lstrip().startswith("#"):
            continue  # a comment inside a continued instruction
        if line.rstrip().endswith("\\"):
            cur += line.rstrip()[:-1] + " "
            continue
        cur += line
        if cur.strip():
            out.append(cur.strip())
        cur = ""
    if cur.strip():
        out.append(cur.strip())
    return out


def dockerfile_stages(text):
    """[{"from": image, "name": alias or None, "lines": [(INSTR, args)]}]"""
    stages = []
    for line in logical_lines(text):
        instr, _, args = line.partition(" ")
        instr = instr.upper()
        if instr == "FROM":
            m = re.match(r"^(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?\s*$", args,
                         re.IGNORECASE)
            stages.append({"from": m.group(1), "name": m.group(2),
                           "lines": []})
        elif stages:
            stages[-1]["lines"].append((instr, args.strip()))
    return stages


def apt_install_packages(command):
    """Package names of every `apt-get install` in a shell command."""
    pkgs = []
    for part in re.split(r"&&|\|\||;", command):
        words = shlex.split(part)
        for i in range(len(words) - 1):
            if words[i] in ("apt-get", "apt") and "install" in words[i + 1:]:
                j = words.index("install", i + 1)
                pkgs += [w for w in words[j + 1:] if not w.startswith("-")]
                break
    return pkgs


def deps_sh_packages(text):
    """The packages of scripts/deps.sh's `pkgs=( ... )` array."""
    m = re.search(r"^pkgs=\((.*?)\)", text, re.MULTILINE | re.DOTALL)
    if not m:
        raise AssertionError("scripts/deps.sh has no pkgs=( ... ) array")
    body = "\n".join(line.split("#", 1)[0] for line in m.group(1).split("\n"))
    return shlex.split(body)


def unit_directives(text):
    """{(section, key): [values...]} of a systemd unit file."""
    out, section = {}, None
    for line in logical_lines(text):
        if line.startswith(";"):
            continue
        m = re.match(r"^\[(.+)\]$", line)
        if m:
            section = m.group(1)
            continue
        if "=" in line:
            k, v = line.split("=", 1)
            out.setdefault((section, k.strip()), []).append(v.strip())
    return out
