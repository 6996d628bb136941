#!/usr/bin/env python3
"""Store faults (SPEC section 2, issue 4): the store's file system fills up
or fails while the daemon runs.

- Disk full: the store lives on a tiny tmpfs; a filler file takes the
  last byte. POST /v1/events answers 503 with Retry-After and a JSON
  error, /readyz 503, /healthz still 200; nothing of a 503'd event is
  kept (no delivery is listed or sent for it, its dedup key is not
  remembered). The filler is deleted: without a restart the daemon is
  ready again and accepts events; every event accepted before, during
  and after the fault is delivered.
- I/O error: the store lives on ext4 in a loop device, which is shut down
  (EXT4_IOC_SHUTDOWN: every later read, write and fsync fails with EIO,
  deterministically). The daemon answers 503 and stays up; after a
  restart on the repaired file system every 202'd event is delivered.

Both need root (mount); without it the tests are skipped, saying why.
Every mount is undone in cleanup, after the daemon is stopped."""

import errno
import fcntl
import os
import shutil
import struct
import subprocess
import tempfile
import threading
import unittest

from harness import (DBT_TOKEN, DEFAULT_ENV, INBOUND_TOKEN, DaemonTest,
                     dbt_trigger, event, make_config, wait_delivered,
                     wait_until)
from standin import Answer

ADMIN_TOKEN = "faults-admin-0c5e7a"
EXT4_IOC_SHUTDOWN = 0x8004587D       # _IOR('X', 125, __u32)
EXT4_GOING_FLAGS_NOLOGFLUSH = 2      # as if the disk vanished: no flush


def run(*cmd):
    return subprocess.run(list(cmd), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True)


def umount(path):
    """Unmounts path, lazily if it is still busy (never leaves it)."""
    if run("umount", path).returncode != 0:
        run("umount", "-l", path)


class StoreFaultsTest(DaemonTest):

    def setUp(self):
        if os.geteuid() != 0:
            self.skipTest("store fault tests need root to mount a tmpfs "
                          "or loop device (running as uid %d)" % os.geteuid())
        self.dir = tempfile.mkdtemp(prefix="triggerd-faults-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.mnt = os.path.join(self.dir, "mnt")
        os.mkdir(self.mnt)
        self.st = self.start_standin(token=DBT_TOKEN)

    def mount(self, *args):
        try:
            p = run("mount", *(list(args) + [self.mnt]))
        except OSError as e:
            self.skipTest("cannot run mount: %s" % e)
        if p.returncode != 0:
            self.skipTest("cannot mount (%s): %s" % (" ".join(args),
                                                     p.stdout.strip()))
        # Registered before the daemon's cleanup, so it runs after it.
        self.addCleanup(umount, self.mnt)

    def daemon(self):
        cfg = make_config(
            [dbt_trigger("t1", self.st, 1)],
            server={"admin_tokens": ["${{secrets.admin_token}}"]},
            dispatch={"workers": 2, "timeout": "60s",
                      "max_in_flight_per_trigger": 1},
            retry={"initial_backoff": "100ms", "max_backoff": "200ms"},
            secrets={"admin_token": {"env": "FAULTS_ADMIN_TOKEN"}})
        cfg = cfg.replace("@STORE@", os.path.join(self.mnt, "triggerd.db"))
        env = dict(DEFAULT_ENV, FAULTS_ADMIN_TOKEN=ADMIN_TOKEN)
        return self.start_daemon(cfg, env=env, token=INBOUND_TOKEN)

    def admin_ids(self, d):
        r = d.request("GET", "/v1/deliveries?limit=10000", headers=[
            ("Authorization", "Bearer " + ADMIN_TOKEN)])
        self.assertEqual(r.status, 200, r)
        return {o["id"] for o in r.json["deliveries"]}

    def assert503(self, r, what):
        self.assertEqual(r.status, 503, "%s: %r" % (what, r))
        ra = r.header("Retry-After")
        self.assertIsNotNone(ra, "%s: no Retry-After" % what)
        self.assertTrue(ra.isdigit() and int(ra) >= 1,
                        "%s: Retry-After %r" % (what, ra))
        self.assertTrue((r.header("Content-Type") or "").startswith(
            "application/json"), r.headers)
        self.assertIsInstance(r.json, dict, r)
        self.assertIsInstance(r.json.get("error"), str, r)

    def hold_first_delivery(self, d, accepted):
        """Posts events whose first delivery the stand-in holds (until
        self.gate is set): with one in flight per trigger, all stay
        pending through the fault."""
        self.gate = threading.Event()
        self.addCleanup(self.gate.set)
        self.st.script(Answer(gate=self.gate))
        for i in range(4):
            r = d.accept(event(table_name="before-%d" % i))
            accepted.update(x["id"] for x in r["deliveries"])
        wait_until(lambda: self.st.in_flight() == 1, 10,
                   "the first delivery held in flight")

    def fill(self):
        """Writes a filler file until the file system is full."""
        path = os.path.join(self.mnt, "filler")
        chunk = b"\0" * 65536
        with open(path, "wb", buffering=0) as f:
            while True:
                try:
                    f.write(chunk)
                except OSError as e:
                    if e.errno != errno.ENOSPC:
                        raise
                    if len(chunk) == 1:
                        break
                    chunk = chunk[:len(chunk) // 2]
        return path

    def test_disk_full_gives_503_and_recovers_without_restart(self):
        self.mount("-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs")
        d = self.daemon()
        accepted = set()
        self.hold_first_delivery(d, accepted)

        filler = self.fill()
        # Commits need new space in the WAL (it only grows until a
        # checkpoint, far away here): the next event cannot commit.
        refused = []
        for i in range(6):
            ev = event(table_name="refused-%d" % i)
            r = d.post_event(ev)
            self.assert503(r, "POST /v1/events with the disk full (#%d)" % i)
            refused.append(ev)
        self.assert503(d.request("GET", "/readyz"), "GET /readyz, disk full")
        self.assertEqual(d.request("GET", "/healthz").status, 200)
        # Reads still work, and show nothing of the refused events.
        self.assertEqual(self.admin_ids(d), accepted)

        os.unlink(filler)
        # Without a restart: ready again, and new events are accepted.
        wait_until(lambda: d.request("GET", "/readyz").status == 200, 10,
                   lambda: "GET /readyz 200 after the space came back; "
                   "log:\n%s" % d.log_tail())
        for i in range(4):
            r = d.accept(event(table_name="after-%d" % i))
            accepted.update(x["id"] for x in r["deliveries"])
        # A refused event's dedup key was never remembered: sent again,
        # it is accepted (not a duplicate) ...
        r = d.accept(refused[0])
        accepted.update(x["id"] for x in r["deliveries"])
        # ... while an accepted one stays a duplicate.
        r = d.post_event(refused[0])
        self.assertEqual((r.status, r.json and r.json.get("status")),
                         (200, "duplicate"), r)

        self.gate.set()
        reqs = wait_delivered(self.st, accepted, timeout=20)
        self.assertEqual(self.admin_ids(d), accepted)
        causes = [q.json()["cause"] for q in reqs]
        for i in range(1, len(refused)):
            self.assertFalse([c for c in causes if c.endswith(
                "refused-%d" % i)], "a 503'd event was delivered")
        self.assertEqual(len(reqs), len(accepted), [q.brief() for q in reqs])
        self.assertTrue(d.running())

    def loop_ext4(self):
        img = os.path.join(self.dir, "store.img")
        with open(img, "wb") as f:
            f.truncate(32 << 20)
        try:
            p = run("mkfs.ext4", "-q", "-F", img)
        except OSError as e:
            self.skipTest("cannot run mkfs.ext4: %s" % e)
        if p.returncode != 0:
            self.skipTest("mkfs.ext4 failed: %s" % p.stdout.strip())
        self.mount("-o", "loop", img)
        return img

    def test_io_error_gives_503_and_a_restart_delivers_everything(self):
        img = self.loop_ext4()
        d = self.daemon()
        accepted = set()
        self.hold_first_delivery(d, accepted)

        fd = os.open(self.mnt, os.O_RDONLY)
        try:
            fcntl.ioctl(fd, EXT4_IOC_SHUTDOWN,
                        struct.pack("I", EXT4_GOING_FLAGS_NOLOGFLUSH))
        finally:
            os.close(fd)
        with self.assertRaises(OSError, msg="the shutdown did not take"):
            open(os.path.join(self.mnt, "probe"), "wb").close()

        for i in range(4):
            self.assert503(d.post_event(event(table_name="refused-%d" % i)),
                           "POST /v1/events after an I/O error (#%d)" % i)
        self.assert503(d.request("GET", "/readyz"), "GET /readyz, I/O error")
        self.assertEqual(d.request("GET", "/healthz").status, 200)
        r = d.request("GET", "/v1/deliveries", headers=[
            ("Authorization", "Bearer " + ADMIN_TOKEN)])
        self.assertIn(r.status, (200, 503), r)
        self.assertTrue(d.running(), d.log_tail())

        # The store's disk is gone for good: stop, repair, restart.
        self.gate.set()
        rc = d.terminate(timeout=20)
        self.assertEqual(rc, 0, "exit status after SIGTERM with a dead "
                      "store: %s; log:\n%s" % (rc, d.log_tail()))
        wait_until(lambda: run("umount", self.mnt).returncode == 0, 10,
                   "umount of the shut-down file system")
        p = run("mount", "-o", "loop", img, self.mnt)
        self.assertEqual(p.returncode, 0, p.stdout)
        d.start()
        reqs = wait_delivered(self.st, accepted, timeout=20)
        self.assertEqual(self.admin_ids(d), accepted)
        self.assertFalse([q for q in reqs if "refused-" in q.json()["cause"]],
                         "a 503'd event was delivered")
        # The held delivery was in flight at the fault: it may come twice.
        keys = [q.header("Idempotency-Key") for q in reqs]
        self.assertLessEqual(len(keys) - len(set(keys)), 1, keys)


if __name__ == "__main__":
    unittest.main()
