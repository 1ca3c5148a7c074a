"""What the process integration tests share: child processes that die with
the test, failures and skips, and the server's memory from /proc.

Used by process_test.py, hostile_test.py and chaos_process_test.py (each
imports it from its own directory).
"""

import ctypes
import os
import select
import signal
import subprocess

SKIP = 77  # ctest's SKIP_RETURN_CODE for these tests

children = []


class Failure(Exception):
    pass


class Skipped(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Failure(msg)


def die_with_parent():
    # SIGKILL this child if the test driver dies (ctest timeout, ^C).
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)


def spawn(cmd, **kw):
    """Popen that is killed with the test, however the test ends."""
    p = subprocess.Popen(cmd, preexec_fn=die_with_parent, **kw)
    children.append(p)
    return p


def kill_children():
    for p in children:
        if p.poll() is None:
            p.kill()
            p.wait()


def server_env():
    """The environment for a server whose RSS is measured: ASan (the test
    command's build) keeps freed memory in a 256 MiB quarantine that would
    dominate RSS, so it is kept small."""
    env = dict(os.environ)
    env["ASAN_OPTIONS"] = ":".join(
        filter(None, [env.get("ASAN_OPTIONS", ""), "quarantine_size_mb=8"]))
    return env


def read_listening_address(proc, timeout=10):
    """The "HOST:PORT" of a moonpool-echo-server's first stdout line
    ("listening on HOST:PORT"), or None if it did not come in time."""
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    line = proc.stdout.readline() if ready else ""
    if not line.startswith("listening on "):
        return None
    return line.split()[-1]


def status_kib(pid, field="VmRSS"):
    """A /proc/PID/status memory field (VmRSS, VmHWM: peak RSS) in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise Failure(f"no {field} in /proc/{pid}/status")
