#!/usr/bin/env python3
"""The container image built and run for real (SPEC section 7, README "In a
container"), with podman or docker, whichever works here.

Skipped, saying why, when no engine is usable (none installed, or docker
without a daemon) or when a base image the Dockerfile names is not in local
storage: no image registry is reachable from CI, so the test never pulls.
Otherwise: build (with the flags this machine needs, found by probing, e.g.
podman's --isolation chroot), print the image size, check the HEALTHCHECK
survived the build, refuse to start without a mounted config, then run with
a mounted 0600 config owned by 10001:10001 and the tokens as file secrets
under /run/secrets/: /healthz, an event delivered to the dbt stand-in on the
host, SIGHUP reload, stop with exit 0 within 10 s, and the deliveries still
there in a new container on the same volume.

The container shares the host's network (--network host) so that it reaches
the stand-in on 127.0.0.1 without any traffic to other addresses."""

import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

import harness
from harness import free_port, http_request, wait_until
from opshelp import ACCOUNT, DBT_TOKEN, JOB_A, dockerfile_stages, event
from standin import Standin

SRC = harness.SOURCE_DIR
TAG = "localhost/triggerd-it:latest"
UID = 10001
INBOUND = "in-" + "5f0c2a7e9b1d4c3a8e6f"   # >= 16 bytes (CONFIG_MIN_TOKEN)
ADMIN = "adm-" + "81d4e6c3aa0b7f52"


def sh(args, timeout=120, check=False):
    p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       universal_newlines=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError("%s: rc=%d\n%s%s" % (" ".join(args),
                                                   p.returncode, p.stdout,
                                                   p.stderr[-4000:]))
    return p


def find_engine():
    """(engine, None) or (None, why no engine is usable)."""
    why = []
    for name in ("podman", "docker"):
        path = shutil.which(name)
        if not path:
            why.append("%s: not installed" % name)
            continue
        try:
            p = sh([path, "info"], timeout=30)
        except subprocess.TimeoutExpired:
            why.append("%s: `%s info` timed out" % (name, name))
            continue
        if p.returncode == 0:
            return name, None
        last = (p.stderr.strip().splitlines() or ["rc %d" % p.returncode])[-1]
        why.append("%s: %s" % (name, last[:200]))
    return None, "; ".join(why)


def image_exists(engine, image):
    return sh([engine, "image", "inspect", image], timeout=30).returncode == 0


def build_flag_sets(engine):
    """Candidates, most ordinary first. podman and buildah drop HEALTHCHECK
    unless the image is built in docker format."""
    if engine == "podman":
        return [["--format", "docker", "--pull=never"],
                ["--format", "docker", "--pull=never", "--isolation",
                 "chroot"]]
    return [[]]


def run_flag_sets():
    """Candidates for `run`: in a sandbox the default OCI runtime may fail
    to set rlimits or cgroups, and runc with the caller's own (lower)
    nofile/nproc limits works."""
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)
    lowered = ["--ulimit", "nofile=%d:%d" % (min(nofile[0], 65536),
                                             min(nofile[0], 65536)),
               "--ulimit", "nproc=4096:4096"]
    sets = [[], lowered]
    if shutil.which("runc"):
        sets += [["--runtime", "runc"], ["--runtime", "runc"] + lowered]
    return sets


class ContainerRunTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.engine, why = find_engine()
        if not cls.engine:
            raise unittest.SkipTest("no usable container engine (%s): the "
                                    "image is not built or run" % why)
        with open(os.path.join(SRC, "Dockerfile")) as f:
            bases = sorted({s["from"] for s in dockerfile_stages(f.read())})
        missing = [b for b in bases if not image_exists(cls.engine, b)]
        if missing:
            raise unittest.SkipTest(
                "base image(s) %s not in %s's local storage and no image "
                "registry is reachable (README \"In a container\" shows how "
                "to make them with debootstrap)" % (", ".join(missing),
                                                    cls.engine))
        cls.tmp = tempfile.mkdtemp(prefix="triggerd-ctr-")
        cls.build_flags = cls.probe_build(bases[-1])
        cls.run_flags = cls.probe_run(bases[-1])
        cls.names = []
        cls.volume = "triggerd-it-%d" % os.getpid()
        cls.secrets = []

    @classmethod
    def tearDownClass(cls):
        for n in cls.names:
            sh([cls.engine, "rm", "-f", n], timeout=60)
        sh([cls.engine, "volume", "rm", "-f", cls.volume], timeout=60)
        for s in cls.secrets:
            sh([cls.engine, "secret", "rm", s], timeout=60)
        shutil.rmtree(cls.tmp, ignore_errors=True)

    @classmethod
    def probe_build(cls, base):
        d = os.path.join(cls.tmp, "probe")
        os.makedirs(d)
        with open(os.path.join(d, "Dockerfile"), "w") as f:
            f.write("FROM %s\nRUN true\n" % base)
        errs = []
        for flags in build_flag_sets(cls.engine):
            p = sh([cls.engine, "build"] + flags + ["-t", TAG + "-probe", d],
                   timeout=300)
            if p.returncode == 0:
                sh([cls.engine, "rmi", TAG + "-probe"], timeout=60)
                return flags
            errs.append("%s: %s" % (flags, p.stderr.strip()[-300:]))
        raise AssertionError("%s cannot build even `FROM %s; RUN true`:\n%s"
                             % (cls.engine, base, "\n".join(errs)))

    @classmethod
    def probe_run(cls, base):
        errs = []
        for flags in run_flag_sets():
            p = sh([cls.engine, "run", "--rm", "--network", "host"] + flags
                   + [base, "true"], timeout=120)
            if p.returncode == 0:
                return flags
            errs.append("%s: %s" % (flags, p.stderr.strip()[-300:]))
        raise AssertionError("%s cannot run `%s true`:\n%s"
                             % (cls.engine, base, "\n".join(errs)))

    # ---- helpers ----

    def file(self, name, text, mode):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, mode)
        if os.geteuid() == 0:
            os.chown(path, UID, UID)   # as README says for a 0600 file
        elif mode & 0o044 == 0:
            os.chmod(path, mode | 0o044)   # cannot chown: make it readable
        return path

    def secret_args(self, name, path):
        """A file secret at /run/secrets/NAME: podman's own secrets, or a
        read-only bind mount (docker run has no --secret outside swarm)."""
        if self.engine == "podman":
            sname = "%s-%d" % (name, os.getpid())
            if sname not in self.secrets:
                sh([self.engine, "secret", "create", sname, path], check=True)
                self.secrets.append(sname)
            return ["--secret", "%s,target=%s,uid=%d,gid=%d,mode=0400"
                    % (sname, name, UID, UID)]
        return ["-v", "%s:/run/secrets/%s:ro" % (path, name)]

    def config(self, port, job):
        return """\
server:
  listen: "127.0.0.1:%d"
  auth: {tokens: ["${{secrets.inbound_token}}"]}
  admin_tokens: ["${{secrets.admin_token}}"]
dispatch:
  connect_timeout: 2s
  retry: {initial_backoff: 100ms, max_backoff: 200ms}
variables: {account: "%s"}
secrets:
  inbound_token: {file: /run/secrets/inbound_token}
  admin_token: {file: /run/secrets/admin_token}
  dbt_token: {file: /run/secrets/dbt_token}
triggers:
  - name: dbt
    method: POST
    url: "http://127.0.0.1:%d/api/v2/accounts/${{variables.account}}/jobs/%d/run/"
    header: {Authorization: "Bearer ${{secrets.dbt_token}}"}
    body: {cause: "erathos ${{erathos.table_name}}"}
    rules: [{variable_name: STATUS, operation: EQUAL, value: FINISHED}]
    jobs: ["%s"]
""" % (port, ACCOUNT, self.st.port, job, JOB_A)

    def run_container(self, name, port):
        args = [self.engine, "run", "-d", "--name", name, "--network",
                "host"] + self.run_flags + [
                "-v", "%s:/var/lib/triggerd" % self.volume,
                "-v", "%s:/etc/triggerd/triggerd.yaml:ro" % self.cfg]
        for s in ("inbound_token", "admin_token", "dbt_token"):
            args += self.secret_args(s, self.secret_files[s])
        self.names.append(name)
        sh(args + [TAG], check=True, timeout=120)
        wait_until(lambda: self.healthy(port), 30 * harness.SLOW,
                   "%s to answer /healthz (logs: %s)" % (name, name))

    def healthy(self, port):
        try:
            return http_request(port, "GET", "/healthz", timeout=2).status \
                == 200
        except OSError:
            return False

    def logs(self, name):
        p = sh([self.engine, "logs", name], timeout=60)
        return p.stdout + p.stderr

    def admin(self, port, path):
        r = http_request(port, "GET", path,
                         headers=[("Authorization", "Bearer " + ADMIN)])
        self.assertEqual(r.status, 200, r)
        return r.json

    def post(self, port, ev):
        return http_request(port, "POST", "/v1/events", ev, headers=[
            ("Authorization", "Bearer " + INBOUND),
            ("Content-Type", "application/json")])

    def reload_successes(self, port):
        r = http_request(port, "GET", "/metrics")
        m = re.search(r'^triggerd_config_reloads_total\{result="success"\} '
                      r'(\S+)$', r.body.decode(), re.M)
        return float(m.group(1)) if m else 0.0

    # ---- the test ----

    def test_build_and_run(self):
        e = self.engine
        t0 = time.monotonic()
        p = sh([e, "build"] + self.build_flags + ["-t", TAG, SRC],
               timeout=1200)
        self.assertEqual(p.returncode, 0, p.stdout[-3000:] + p.stderr[-3000:])
        built = time.monotonic() - t0
        info = json.loads(sh([e, "image", "inspect", TAG], check=True)
                          .stdout)[0]
        size = info.get("Size") or info.get("VirtualSize") or 0
        sys.stderr.write("\ncontainer: %s build %s, run %s: image %s is "
                         "%.1f MB (built in %.0f s)\n"
                         % (e, " ".join(self.build_flags) or "(no flags)",
                            " ".join(self.run_flags) or "(no flags)", TAG,
                            size / 1e6, built))
        cfg = info.get("Config") or {}
        self.assertTrue(cfg.get("Healthcheck") or info.get("Healthcheck"),
                        "HEALTHCHECK lost in the build (podman needs "
                        "--format docker)")
        self.assertEqual(cfg.get("User"), "%d:%d" % (UID, UID))

        # Without a mounted config it refuses to start and says why.
        p = sh([e, "run", "--rm", "--network", "host"] + self.run_flags +
               [TAG], timeout=120)
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        self.assertIn("in the container image, mount it", p.stderr)

        self.st = Standin(token=DBT_TOKEN).start()
        self.addCleanup(self.st.stop)
        self.secret_files = {
            "inbound_token": self.file("inbound_token", INBOUND + "\n",
                                       0o600),
            "admin_token": self.file("admin_token", ADMIN + "\n", 0o600),
            "dbt_token": self.file("dbt_token", DBT_TOKEN + "\n", 0o600)}
        port = free_port()
        self.cfg = self.file("triggerd.yaml", self.config(port, 42), 0o600)

        a = "triggerd-it-a-%d" % os.getpid()
        self.run_container(a, port)
        p = sh([e, "exec", a, "/usr/local/bin/triggerd", "--health",
                "http://127.0.0.1:%d/healthz" % port], timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        p = sh([e, "exec", a, "id", "-u"], timeout=60)
        self.assertEqual(p.stdout.strip(), str(UID))

        r = self.post(port, event())
        self.assertEqual(r.status, 202, r)
        first = r.json["deliveries"][0]["id"]
        wait_until(lambda: any(q.path.endswith("/jobs/42/run/")
                               for q in self.st.requests()),
                   20 * harness.SLOW, "the event delivered to job 42")
        q = [q for q in self.st.requests() if q.path.endswith("/42/run/")][0]
        self.assertEqual(q.header("Authorization"), "Bearer " + DBT_TOKEN)

        # HUP: the config is rewritten in place (a bind-mounted file keeps
        # its inode; an editor that renames would not be seen).
        with open(self.cfg, "w") as f:
            f.write(self.config(port, 43))
        sh([e, "kill", "--signal", "HUP", a], check=True)
        wait_until(lambda: self.reload_successes(port) >= 1,
                   20 * harness.SLOW, "a successful reload after HUP")
        r = self.post(port, event())
        self.assertEqual(r.status, 202, r)
        second = r.json["deliveries"][0]["id"]
        wait_until(lambda: any(q.path.endswith("/jobs/43/run/")
                               for q in self.st.requests()),
                   20 * harness.SLOW, "the event delivered to job 43")
        wait_until(lambda: self.admin(port, "/v1/deliveries/%s" % second)
                   ["state"] == "delivered", 20 * harness.SLOW,
                   "delivery %s delivered" % second)

        t0 = time.monotonic()
        sh([e, "stop", "-t", "10", a], check=True, timeout=60)
        stopped = time.monotonic() - t0
        code = sh([e, "inspect", a, "--format", "{{.State.ExitCode}}"],
                  check=True).stdout.strip()
        self.assertEqual(code, "0", self.logs(a)[-3000:])
        self.assertLess(stopped, 10.0, "stop took %.1f s" % stopped)
        sys.stderr.write("container: stopped in %.1f s, exit %s\n"
                         % (stopped, code))
        logs = self.logs(a)
        for secret in (INBOUND, ADMIN, DBT_TOKEN):
            self.assertNotIn(secret, logs)

        b = "triggerd-it-b-%d" % os.getpid()
        self.run_container(b, port)
        ids = [d["id"] for d in
               self.admin(port, "/v1/deliveries")["deliveries"]]
        self.assertIn(first, ids, "state kept on volume %s" % self.volume)
        self.assertIn(second, ids)
        sh([e, "stop", "-t", "10", b], check=True, timeout=60)


if __name__ == "__main__":
    unittest.main()
