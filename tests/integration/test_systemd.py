#!/usr/bin/env python3
"""systemd/triggerd.service (SPEC section 7): the directives it must have,
`systemd-analyze verify` on it (with the built binary), and its
`systemd-analyze security` exposure. No systemd needs to run: both
analyses work offline."""

import os
import re
import shutil
import subprocess
import tempfile
import unittest

import harness
from opshelp import unit_directives

UNIT = os.path.join(harness.SOURCE_DIR, "systemd", "triggerd.service")
INSTALLED_BIN = "/usr/local/bin/triggerd"
ANALYZE = shutil.which("systemd-analyze")


def read_unit():
    with open(UNIT) as f:
        return f.read()


class UnitFileTest(unittest.TestCase):

    def setUp(self):
        self.u = unit_directives(read_unit())

    def one(self, key, section="Service"):
        vals = self.u.get((section, key))
        self.assertTrue(vals, "%s= missing from [%s]" % (key, section))
        self.assertEqual(len(vals), 1, "%s= given %d times" % (key, len(vals)))
        return vals[0]

    def test_type_notify_and_commands(self):
        self.assertEqual(self.one("Type"), "notify")
        start = self.one("ExecStart").split()
        self.assertEqual(start[0], INSTALLED_BIN)
        self.assertNotIn("--check", start)
        pre = self.one("ExecStartPre").lstrip("-+!@:").split()
        self.assertEqual(pre[0], INSTALLED_BIN)
        self.assertIn("--check", pre)
        # --check looks at the very file the daemon then runs with
        cfg = lambda args: args[args.index("-c") + 1] if "-c" in args \
            else "/etc/triggerd/triggerd.yaml"  # noqa: E731
        self.assertEqual(cfg(pre), cfg(start))
        reload_ = self.one("ExecReload")
        self.assertRegex(reload_, r"^(/usr)?/bin/kill\s+-(HUP|s\s+HUP|1)\s+"
                                  r"\$MAINPID$")

    def test_directories_and_credentials(self):
        self.assertEqual(self.one("StateDirectory"), "triggerd")
        self.assertEqual(self.one("ConfigurationDirectory"), "triggerd")
        creds = self.u.get(("Service", "LoadCredential"), [])
        self.assertTrue(creds, "LoadCredential= missing")
        for c in creds:
            self.assertRegex(c, r"^[A-Za-z0-9_.-]+:/\S+$",
                             "LoadCredential=ID:PATH, got %r" % c)

    def test_sandboxing(self):
        yes = ("yes", "true", "1", "on")
        self.assertIn(self.one("DynamicUser").lower(), yes)
        self.assertIn(self.one("NoNewPrivileges").lower(), yes)
        self.assertEqual(self.one("ProtectSystem"), "strict")
        fams = " ".join(self.u.get(("Service", "RestrictAddressFamilies"),
                                   [])).split()
        self.assertTrue(fams, "RestrictAddressFamilies= missing")
        self.assertNotIn("~", "".join(fams), "an allow list, not a deny list")
        # TCP in and out, and AF_UNIX for sd_notify
        self.assertTrue({"AF_INET", "AF_INET6", "AF_UNIX"} <= set(fams),
                        fams)
        filters = self.u.get(("Service", "SystemCallFilter"), [])
        self.assertIn("@system-service", filters)

    def test_stop_timeout_covers_the_grace_period(self):
        # triggerd takes up to 10 s to stop; systemd must not kill it first
        v = self.u.get(("Service", "TimeoutStopSec"))
        if v:
            m = re.match(r"^(\d+)(s|min)?$", v[-1])
            self.assertTrue(m, v)
            secs = int(m.group(1)) * (60 if m.group(2) == "min" else 1)
            self.assertGreater(secs, 10)


@unittest.skipIf(ANALYZE is None, "systemd-analyze is not installed")
class AnalyzeTest(unittest.TestCase):

    def run_analyze(self, *args):
        p = subprocess.run([ANALYZE] + list(args), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=120)
        return (p.returncode, p.stdout.decode("utf-8", "replace"),
                p.stderr.decode("utf-8", "replace"))

    def test_security_exposure_at_most_2(self):
        rc, out, err = self.run_analyze("security", "--offline=yes", UNIT)
        text = out + err
        m = re.search(r"Overall exposure level for \S+:\s*"
                      r"([0-9]+(?:\.[0-9]+)?)\s+(\S+)", text)
        self.assertTrue(m, "no exposure level in:\n%s" % text[-2000:])
        level = float(m.group(1))
        self.assertLessEqual(level, 2.0, "systemd-analyze security: %s %s"
                             % (level, m.group(2)))
        self.assertIn(m.group(2), ("OK", "SAFE", "PERFECT"))

    def test_verify(self):
        binary = os.path.abspath(harness.binary())
        tmp = tempfile.mkdtemp(prefix="triggerd-unit-")
        self.addCleanup(shutil.rmtree, tmp, True)
        unit = os.path.join(tmp, "triggerd.service")
        text = read_unit()
        self.assertIn(INSTALLED_BIN, text)
        with open(unit, "w") as f:
            f.write(text.replace(INSTALLED_BIN, binary))
        rc, out, err = self.run_analyze("verify", unit)
        ours = [l for l in (out + err).split("\n")
                if "triggerd.service" in l or unit in l or binary in l]
        self.assertEqual(ours, [], "systemd-analyze verify (exit %d):\n%s"
                         % (rc, out + err))

    def test_verify_sees_a_missing_binary(self):
        # the check above can fail: verify does complain about the unit
        tmp = tempfile.mkdtemp(prefix="triggerd-unit-")
        self.addCleanup(shutil.rmtree, tmp, True)
        unit = os.path.join(tmp, "triggerd.service")
        with open(unit, "w") as f:
            f.write(read_unit().replace(INSTALLED_BIN,
                                        os.path.join(tmp, "no-such-bin")))
        rc, out, err = self.run_analyze("verify", unit)
        self.assertTrue([l for l in (out + err).split("\n")
                         if "triggerd.service" in l], out + err)


if __name__ == "__main__":
    unittest.main()
