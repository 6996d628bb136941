"""A throw-away PostgreSQL server for the integration tests (SPEC section 11).

DESIGN: Cluster.start() runs initdb into a fresh temporary directory and
starts `postgres` on a free loopback port (TCP only, trust auth for the
loopback user `triggerd`). As root, both run as the unprivileged user
`nobody` (PostgreSQL refuses to run as root); the directory is chowned to
it. The server is a child of the test process with PR_SET_PDEATHSIG, so it
dies with a test that is killed; stop() and an atexit hook remove the
directory. fsync is off unless asked for (tests crash triggerd, never the
machine; the benchmark turns it on). Databases are made with createdb()
(one per daemon config, so tests stay independent), SQL is run with psql.
Everything waits by bounded polling.

Standard library only.
"""

import atexit
import ctypes
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time

PR_SET_PDEATHSIG = 1
USER = "triggerd"


def bin_dir():
    """The newest /usr/lib/postgresql/*/bin that has initdb, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    return os.path.dirname(found[-1]) if found else None


def available():
    return bin_dir() is not None


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _demote(uid, gid):
    """preexec_fn: die with the parent, then drop root if we have it."""
    def run():
        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(
                PR_SET_PDEATHSIG, signal.SIGINT)
        except OSError:
            pass
        if uid is not None:
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
    return run


class Cluster:
    def __init__(self, fsync=False):
        self.bin = bin_dir()
        if not self.bin:
            raise RuntimeError("PostgreSQL server binaries not found "
                               "(scripts/deps.sh installs postgresql)")
        self.fsync = fsync
        self.tmp = tempfile.mkdtemp(prefix="triggerd-pg-")
        self.data = os.path.join(self.tmp, "data")
        self.log_path = os.path.join(self.tmp, "postgres.log")
        self.port = _free_port()
        self.proc = None
        self.ndb = 0
        if os.geteuid() == 0:
            pw = pwd.getpwnam("nobody")
            self.uid, self.gid = pw.pw_uid, pw.pw_gid
            os.chown(self.tmp, self.uid, self.gid)
        else:
            self.uid = self.gid = None
        os.chmod(self.tmp, 0o700)
        atexit.register(self.destroy)

    def _run(self, args, **kw):
        return subprocess.run(args, preexec_fn=_demote(self.uid, self.gid),
                              cwd=self.tmp, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, **kw)

    def init(self):
        r = self._run([os.path.join(self.bin, "initdb"), "-D", self.data,
                       "-U", USER, "--auth=trust", "-E", "UTF8",
                       "--no-sync", "--no-instructions"], timeout=120)
        if r.returncode != 0:
            raise RuntimeError("initdb failed:\n" + r.stdout.decode())
        return self

    def start(self, timeout=60.0):
        assert self.proc is None
        logf = open(self.log_path, "ab")
        args = [os.path.join(self.bin, "postgres"), "-D", self.data,
                "-p", str(self.port), "-c", "listen_addresses=127.0.0.1",
                "-c", "unix_socket_directories=", "-c", "max_connections=200",
                "-c", "fsync=%s" % ("on" if self.fsync else "off"),
                "-c", "shared_buffers=64MB"]
        if not self.fsync:
            args += ["-c", "full_page_writes=off"]
        self.proc = subprocess.Popen(args, stdout=logf, stderr=logf,
                                     stdin=subprocess.DEVNULL, cwd=self.tmp,
                                     preexec_fn=_demote(self.uid, self.gid))
        logf.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("postgres exited; log:\n" + self.log())
            if self.psql("SELECT 1", check=False).returncode == 0:
                return self
            time.sleep(0.05)
        raise RuntimeError("postgres did not answer in %ss; log:\n%s"
                           % (timeout, self.log()))

    def stop(self, mode=signal.SIGINT, timeout=60.0):
        """Stops the server (fast shutdown by default); the data stays."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(mode)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def destroy(self):
        self.stop(signal.SIGQUIT)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")[-4000:]
        except FileNotFoundError:
            return ""

    def psql(self, sql, db="postgres", check=True):
        r = subprocess.run(
            [os.path.join(self.bin, "psql"), "-X", "-q", "-A", "-t",
             "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p",
             str(self.port), "-U", USER, "-d", db, "-c", sql],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
        if check and r.returncode != 0:
            raise RuntimeError("psql %r failed: %s" % (sql, r.stderr.decode()))
        return r

    def query(self, sql, db="postgres"):
        """Rows of sql as lists of strings."""
        out = self.psql(sql, db).stdout.decode()
        return [ln.split("|") for ln in out.splitlines() if ln]

    def createdb(self, name=None):
        self.ndb += 1
        name = name or "t%d" % self.ndb
        self.psql('CREATE DATABASE "%s"' % name)
        return name

    def url(self, db):
        return "postgresql://%s@127.0.0.1:%d/%s" % (USER, self.port, db)


_shared = []


def shared():
    """One cluster for the whole test process, started on first use."""
    if not _shared:
        _shared.append(Cluster().init().start())
    return _shared[0]
