#!/usr/bin/env python3
"""The Dockerfile (SPEC section 7), checked without a Docker engine: its
build stage installs what scripts/deps.sh installs (and README names),
builds with cmake as README says, and its runtime stage provides every
shared library the built binary loads (each one's Debian package is
installed there, pulled in by what is installed, or part of
debian:bookworm-slim). Plus its USER, VOLUME, EXPOSE, HEALTHCHECK, and
`triggerd --health`, which that HEALTHCHECK runs."""

import json
import os
import re
import shlex
import subprocess
import tempfile
import unittest

import harness
from harness import free_port
from opshelp import (INBOUND_TOKEN, SECRET_ENV, apt_install_packages,
                     config_yaml, deps_sh_packages, dockerfile_stages, event,
                     run_url, sighup_and_wait, trigger_yaml)

SRC = harness.SOURCE_DIR
BASE_ESSENTIAL = {"libc6", "libgcc-s1"}
# Sanitizer runtimes (an ASan/TSan build under test) are not shipped: the
# image is built without sanitizers.
SANITIZER_LIB = re.compile(r"^lib(asan|ubsan|tsan|lsan|hwasan)\.so")


def read(rel):
    with open(os.path.join(SRC, rel)) as f:
        return f.read()


def run(args, timeout=60):
    p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       universal_newlines=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def ldd(path):
    """[(soname, resolved path)] as ldd prints them; vdso and the dynamic
    loader left out. Raises if a library is not found."""
    rc, out, err = run(["ldd", path])
    if rc != 0:
        raise AssertionError("ldd %s: %s" % (path, err))
    libs = []
    for line in out.split("\n"):
        line = line.strip()
        if not line or "vdso" in line or "ld-linux" in line:
            continue
        m = re.match(r"^(\S+)\s+=>\s+(\S+)", line)
        if not m or m.group(2) == "not":
            raise AssertionError("ldd: unresolved: %r" % line)
        libs.append((m.group(1), m.group(2)))
    return libs


def owner_package(path):
    """The Debian package that ships path (trying the /lib and /usr/lib
    forms of it and of its real path, as usrmerge leaves them)."""
    cands = []
    for p in (path, os.path.realpath(path)):
        cands.append(p)
        if p.startswith("/usr/lib/"):
            cands.append(p[len("/usr"):])
        elif p.startswith("/lib/"):
            cands.append("/usr" + p)
    for c in cands:
        rc, out, _ = run(["dpkg", "-S", c])
        if rc == 0 and out.strip():
            pkgs = out.strip().split("\n")[0].rsplit(": ", 1)[0]
            return [x.strip().split(":")[0] for x in pkgs.split(",")]
    return None


def priority(pkg):
    rc, out, _ = run(["dpkg-query", "-W", "-f=${Priority}", pkg])
    return out.strip() if rc == 0 else None


def _dpkg_depends(pkg):
    rc, out, _ = run(["dpkg-query", "-W", "-f=${Depends}, ${Pre-Depends}",
                      pkg])
    if rc != 0:
        return set()
    names = set()
    for alt in out.split(","):
        for name in alt.split("|"):
            name = name.strip().split(" ")[0].split(":")[0]
            if name:
                names.add(name)
    return names


def dependency_closure(pkgs):
    """Every package that installing pkgs pulls in (hard dependencies),
    with apt-cache as the brief asks; dpkg's own records if apt-cache
    knows nothing (no package lists)."""
    rc, out, _ = run(["apt-cache", "depends", "--recurse", "--no-recommends",
                      "--no-suggests", "--no-conflicts", "--no-breaks",
                      "--no-replaces", "--no-enhances"] + list(pkgs), 120)
    closure = set(pkgs)
    if rc == 0:
        for line in out.split("\n"):
            m = re.match(r"^\s*\|?(?:Pre)?Depends:\s+<?([^\s>:]+)", line) or \
                re.match(r"^([^\s<>:]+)", line)
            if m:
                closure.add(m.group(1))
        return closure
    todo = list(pkgs)
    while todo:
        for dep in _dpkg_depends(todo.pop()):
            if dep not in closure:
                closure.add(dep)
                todo.append(dep)
    return closure


class DockerfileTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.text = read("Dockerfile")
        cls.stages = dockerfile_stages(cls.text)

    def stage(self, which):
        if which == "build":
            st = [s for s in self.stages
                  if (s["name"] or "").lower() == "build"]
            self.assertEqual(len(st), 1, "one stage FROM ... AS build")
            return st[0]
        return self.stages[-1]

    def instr(self, stage, name):
        return [a for (i, a) in stage["lines"] if i == name]

    def apt_packages(self, stage):
        pkgs = []
        for cmd in self.instr(stage, "RUN"):
            pkgs += apt_install_packages(cmd)
        return pkgs

    # ---- stages ----

    def test_multi_stage(self):
        self.assertGreaterEqual(len(self.stages), 2)
        build, runtime = self.stage("build"), self.stage("runtime")
        self.assertIsNot(build, runtime)
        self.assertRegex(build["from"], r"^debian:bookworm(@|$)")
        self.assertRegex(runtime["from"], r"^debian:bookworm-slim(@|$)")
        copies = [a for a in self.instr(runtime, "COPY")
                  if re.search(r"--from=build\b", a, re.IGNORECASE)]
        self.assertTrue(copies, "the runtime stage copies from build")

    def test_build_stage_packages_equal_deps_sh_and_readme(self):
        docker = self.apt_packages(self.stage("build"))
        deps = deps_sh_packages(read("scripts/deps.sh"))
        self.assertEqual(len(docker), len(set(docker)), docker)
        self.assertEqual(sorted(set(docker)), sorted(set(deps)),
                         "Dockerfile build stage vs scripts/deps.sh")
        readme = read("README.md")
        missing = [p for p in deps if not re.search(
            r"(?<![\w.+-])%s(?![\w+-]|\.\w)" % re.escape(p), readme)]
        self.assertEqual(missing, [], "packages README.md does not name")

    def test_build_uses_cmake_like_readme(self):
        build = self.stage("build")
        cmds = " && ".join(self.instr(build, "RUN"))
        m = re.search(r"cmake\s+-S\s+\.\s+-B\s+(\S+)", cmds)
        self.assertTrue(m, "cmake -S . -B DIR in the build stage")
        bdir = m.group(1)
        self.assertRegex(cmds, r"cmake\s+--build\s+%s(\s|$)"
                         % re.escape(bdir))
        readme = read("README.md")
        self.assertRegex(readme, r"cmake\s+-S\s+\.\s+-B\s+\S+")
        self.assertRegex(readme, r"cmake\s+--build\s+\S+")
        # the binary copied out is the one that command builds
        workdir = (self.instr(build, "WORKDIR") or ["/"])[-1]
        want = os.path.normpath(os.path.join(workdir, bdir, "triggerd"))
        srcs = [shlex.split(a) for a in self.instr(self.stage("runtime"),
                                                   "COPY")
                if "--from=build" in a]
        self.assertIn(want, [os.path.normpath(s[-2]) for s in srcs])

    def test_copied_files_exist(self):
        ignore = [l.strip() for l in read(".dockerignore").split("\n")
                  if l.strip() and not l.startswith("#")] \
            if os.path.exists(os.path.join(SRC, ".dockerignore")) else []
        for stage in self.stages:
            for a in self.instr(stage, "COPY"):
                words = shlex.split(a)
                if any(w.startswith("--from") for w in words):
                    continue
                for src in [w for w in words[:-1] if not w.startswith("--")]:
                    if src == ".":
                        continue
                    self.assertTrue(os.path.exists(os.path.join(SRC, src)),
                                    "COPY %s: no such file in the tree" % src)
                    for pat in ignore:
                        self.assertFalse(
                            src.startswith(pat.rstrip("/*")),
                            "COPY %s is excluded by .dockerignore %s"
                            % (src, pat))

    # ---- runtime stage ----

    def test_runtime_has_every_shared_library(self):
        runtime = self.apt_packages(self.stage("runtime"))
        self.assertTrue(runtime, "no apt-get install in the runtime stage")
        for p in runtime:
            rc, _, _ = run(["apt-cache", "show", "--no-all-versions", p])
            self.assertTrue(rc == 0 or priority(p) is not None,
                            "no Debian package %s" % p)
        closure = dependency_closure(runtime)
        libs = ldd(harness.binary())
        skip = set()
        for name, path in libs:
            if SANITIZER_LIB.match(name):
                skip |= {n for n, _ in ldd(path)} | {name}
        problems = []
        for name, path in libs:
            if name in skip:
                continue
            pkgs = owner_package(path)
            if not pkgs:
                problems.append("%s (%s): no Debian package owns it"
                                % (name, path))
                continue
            if any(p in runtime or p in closure or p in BASE_ESSENTIAL or
                   priority(p) == "required" for p in pkgs):
                continue
            problems.append("%s: package %s is not installed in the runtime "
                            "stage (nor pulled in by %s, nor in "
                            "bookworm-slim)" % (name, "/".join(pkgs),
                                                " ".join(runtime)))
        self.assertEqual(problems, [])

    def test_user_volume_expose_healthcheck(self):
        rt = self.stage("runtime")
        users = self.instr(rt, "USER")
        self.assertTrue(users, "USER in the runtime stage")
        user = users[-1].split(":")[0]
        self.assertNotIn(user, ("root", "0"))
        runs = " ".join(self.instr(rt, "RUN"))
        if not user.isdigit():
            self.assertRegex(runs, r"(useradd|adduser)\b[^&;]*\b%s\b"
                             % re.escape(user), "USER %s is created" % user)
        vols = []
        for a in self.instr(rt, "VOLUME"):
            vols += json.loads(a) if a.startswith("[") else a.split()
        self.assertIn("/var/lib/triggerd", vols)
        self.assertRegex(runs, r"chown\s+\S*%s\S*\s+(\S+\s+)*/var/lib/triggerd"
                         % re.escape(user),
                         "/var/lib/triggerd belongs to the USER")
        exposed = [p.split("/")[0] for a in self.instr(rt, "EXPOSE")
                   for p in a.split()]
        self.assertTrue(exposed, "EXPOSE")
        hc = self.instr(rt, "HEALTHCHECK")
        self.assertEqual(len(hc), 1, "one HEALTHCHECK")
        m = re.search(r"\bCMD\s+(.*)$", hc[0])
        self.assertTrue(m, hc)
        cmd = json.loads(m.group(1)) if m.group(1).startswith("[") \
            else shlex.split(m.group(1))
        self.assertTrue(cmd[0].endswith("/triggerd"), cmd)
        self.assertIn("--health", cmd)
        url = cmd[cmd.index("--health") + 1]
        um = re.match(r"^http://(127\.0\.0\.1|localhost):(\d+)/healthz$", url)
        self.assertTrue(um, url)
        self.assertIn(um.group(2), exposed,
                      "HEALTHCHECK asks the EXPOSEd port")
        copies = [shlex.split(a) for a in self.instr(rt, "COPY")]
        self.assertIn(cmd[0], [c[-1] for c in copies],
                      "HEALTHCHECK runs the copied binary")
        # The config is read at SPEC's path, but the image ships none there:
        # a baked-in one would accept events it cannot deliver.
        self.assertNotIn("/etc/triggerd/triggerd.yaml",
                         [c[-1] for c in copies],
                         "no config baked in at /etc/triggerd/triggerd.yaml")
        cmdline = json.loads(self.instr(rt, "CMD")[-1])
        self.assertEqual(cmdline, ["-c", "/etc/triggerd/triggerd.yaml"])

    def test_fixed_uid_and_gid(self):
        """USER is numeric 10001:10001 (a bind mount or a 0600 config can
        be chowned to it ahead of time; Kubernetes' runAsNonRoot can check a
        numeric USER), and the user and group are made with those ids."""
        rt = self.stage("runtime")
        self.assertEqual(self.instr(rt, "USER")[-1], "10001:10001")
        runs = " ".join(self.instr(rt, "RUN"))
        self.assertRegex(runs, r"groupadd\b[^&;]*--gid 10001\b")
        self.assertRegex(runs, r"useradd\b[^&;]*--uid 10001\b")
        self.assertRegex(runs, r"useradd\b[^&;]*--gid 10001\b")

    def test_apt_layers_are_clean(self):
        """Every apt-get install skips recommends, and its RUN cleans apt's
        cache and lists itself (not trusting the base image's hook)."""
        for stage in self.stages:
            for cmd in self.instr(stage, "RUN"):
                if not re.search(r"apt-get\s+install", cmd):
                    continue
                for inst in re.findall(r"apt-get\s+install[^&;]*", cmd):
                    self.assertIn("--no-install-recommends", inst)
                self.assertRegex(cmd, r"apt-get\s+clean\b", cmd)
                self.assertRegex(cmd, r"rm\s+-rf\s+(\S+\s+)*"
                                 r"/var/lib/apt/lists/\*", cmd)

    def test_shipped_config_fits_the_container(self):
        """The example config the image ships (to copy and mount), run through the built binary's
        --check with the image's ENV (and dummy values for its {env:}
        secrets): it is valid, listens on every interface (a published
        port cannot reach 127.0.0.1 inside the container) on the EXPOSEd
        port, and keeps its store on the /var/lib/triggerd volume."""
        rt = self.stage("runtime")
        copies = [shlex.split(a) for a in self.instr(rt, "COPY")]
        srcs = [c[-2] for c in copies
                if c[-1] == "/etc/triggerd/triggerd.example.yaml"]
        self.assertEqual(len(srcs), 1,
                         "COPY ... /etc/triggerd/triggerd.example.yaml")
        conf = os.path.join(SRC, srcs[0])
        env = harness.base_env()
        for a in self.instr(rt, "ENV"):
            pairs = re.findall(r'(\w+)=("[^"]*"|\S+)', a) or \
                [tuple(a.split(None, 1))]
            for k, v in pairs:
                env[k] = v.strip('"')
        with open(conf) as f:
            for name in re.findall(r"\{\s*env:\s*(\w+)\s*\}", f.read()):
                env.setdefault(name, "dummy-value-for-check")
        p = subprocess.run([harness.binary(), "-c", conf, "--check"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           universal_newlines=True, env=env, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        lm = re.search(r"^listen: (.*):(\d+)$", p.stdout, re.M)
        sm = re.search(r"^store: (.*)$", p.stdout, re.M)
        self.assertTrue(lm and sm, "--check summary:\n" + p.stdout)
        problems = []
        if lm.group(1) not in ("0.0.0.0", "::", "[::]", "*", ""):
            problems.append("%s listens on %s: inside the container that is "
                            "unreachable through a published port"
                            % (srcs[0], lm.group(1)))
        exposed = [q.split("/")[0] for a in self.instr(rt, "EXPOSE")
                   for q in a.split()]
        if lm.group(2) not in exposed:
            problems.append("%s listens on port %s, the image EXPOSEs %s"
                            % (srcs[0], lm.group(2), exposed))
        workdir = (self.instr(rt, "WORKDIR") or ["/"])[-1]
        store = os.path.normpath(os.path.join(workdir, sm.group(1)))
        if not store.startswith("/var/lib/triggerd/"):
            problems.append("the store (%s: %s from WORKDIR %s) is not on "
                            "the /var/lib/triggerd volume" %
                            (srcs[0], sm.group(1), workdir))
        self.assertEqual(problems, [])


class HealthOptionTest(harness.DaemonTest):
    """`triggerd --health URL`, the container's HEALTHCHECK command."""

    def health(self, url):
        p = subprocess.run([harness.binary(), "--health", url],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           env=harness.base_env(), timeout=30 * harness.SLOW)
        return p.returncode, p.stderr.decode("utf-8", "replace")

    def test_health_against_running_daemon_and_closed_port(self):
        st = self.start_standin()
        d = self.start_daemon(config_yaml(trigger_yaml("to-dbt",
                                                       run_url(st))),
                              env=SECRET_ENV, token=INBOUND_TOKEN)
        rc, err = self.health("http://127.0.0.1:%d/healthz" % d.port)
        self.assertEqual(rc, 0, err)
        rc, err = self.health("http://127.0.0.1:%d/no-such-path" % d.port)
        self.assertEqual(rc, 1, "a 404 is not healthy: %s" % err)
        self.assertTrue(err.strip(), "says why")
        rc, err = self.health("http://127.0.0.1:%d/healthz" % free_port())
        self.assertEqual(rc, 1, "a closed port is not healthy: %s" % err)
        self.assertTrue(err.strip(), "says why")


class ContainerConfigTest(harness.DaemonTest):
    """What the image relies on, checked on the binary itself: it refuses
    to start without a config at the default path and says what to do, and
    a secret file laid out as Kubernetes mounts a secret volume (NAME ->
    ..data/NAME, ..data -> ..TIMESTAMP/) is read, and read anew after the
    atomic ..data swap Kubernetes does on an update, at the next SIGHUP."""

    def test_no_config_refuses_to_start(self):
        missing = os.path.join(tempfile.mkdtemp(prefix="triggerd-nocfg-"),
                               "triggerd.yaml")
        p = subprocess.run([harness.binary(), "-c", missing],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           universal_newlines=True, env=harness.base_env(),
                           timeout=30 * harness.SLOW)
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn("in the container image, mount it", p.stderr)

    def test_kubernetes_secret_volume(self):
        st = self.start_standin()
        d = self.new_daemon(config_yaml(
            trigger_yaml("to-dbt", run_url(st))).replace(
                "inbound_token: {env: OPS_INBOUND_TOKEN}",
                "inbound_token: {file: @TMP@/secrets/inbound_token}"),
            env=SECRET_ENV, token=INBOUND_TOKEN)
        sec = os.path.join(d.tmp, "secrets")

        def publish(stamp, value):
            """As the kubelet does: a new timestamped dir, then ..data
            renamed over atomically."""
            os.makedirs(os.path.join(sec, stamp))
            with open(os.path.join(sec, stamp, "inbound_token"), "w") as f:
                f.write(value)
            os.symlink(stamp, os.path.join(sec, "..data_tmp"))
            os.rename(os.path.join(sec, "..data_tmp"),
                      os.path.join(sec, "..data"))

        os.makedirs(sec)
        publish("..2026_12_01_10_00_00.1", INBOUND_TOKEN)
        os.symlink("..data/inbound_token", os.path.join(sec, "inbound_token"))
        d.start()
        self.assertEqual(d.post_event(event()).status, 202)
        new = INBOUND_TOKEN + "-rotated"
        publish("..2026_12_01_11_00_00.2", new)
        sighup_and_wait(self, d)
        self.assertEqual(d.post_event(event()).status, 401)
        self.assertEqual(d.post_event(event(), token=new).status, 202)


if __name__ == "__main__":
    unittest.main()
