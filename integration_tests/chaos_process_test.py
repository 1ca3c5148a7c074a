#!/usr/bin/env python3
"""The fault plan on real sockets between real processes (label integration).

A real moonpool-echo-server process, and moonpool-chaos-pingpong as its
client: the client's loop is a FaultyLoop around a UvLoop (moonpool-chaos),
injecting write delays, partial writes, short reads, resets, and refused and
hung connects from a seed (`--config storm`), with a mix of idempotent and
plain requests; then a quiet phase with the faults off.

Passes when the client exits 0 (every request had exactly one allowed
outcome and a right payload, and every quiet-phase request succeeded), every
kind of fault was injected at least once, and the server, SIGTERMed, drains
and exits 0.

Usage: chaos_process_test.py --server PATH --chaos-pingpong PATH [--seed N]
Exit status 0 (pass) or 1 (fail). Children die with this script.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

from process_util import (Failure, check, kill_children,
                          read_listening_address, spawn)

FAULT_KINDS = ["delays", "partial_writes", "short_reads", "resets",
               "connects_refused", "connects_hung"]


def log(msg):
    print(f"chaos_process_test: {msg}", flush=True)


def run(a, tmpdir):
    server_log = open(os.path.join(tmpdir, "server.log"), "w")
    server = spawn(
        [a.server, "--listen", "127.0.0.1:0", "--drain-timeout", "5"],
        stdout=subprocess.PIPE, stderr=server_log, text=True)
    address = read_listening_address(server)
    check(address is not None, "server did not start")
    log(f"server on {address}")

    json_path = os.path.join(tmpdir, "chaos-pingpong.json")
    cmd = [a.chaos_pingpong, "--connect", address, "--seed", str(a.seed),
           "--config", "storm", "--idempotent", "mixed", "--requests", "3000",
           "--quiet-requests", "200", "--connections", "4", "--in-flight", "4",
           "--json", json_path]
    log(" ".join(cmd))
    client = spawn(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                   text=True)
    try:
        output, _ = client.communicate(timeout=25)
    except subprocess.TimeoutExpired:
        raise Failure("moonpool-chaos-pingpong still running after 25 s")
    print("".join(f"  chaos-pingpong | {l}\n" for l in output.splitlines()),
          end="", flush=True)
    check(client.returncode == 0,
          f"moonpool-chaos-pingpong exited {client.returncode}")
    with open(json_path) as f:
        s = json.load(f)
    check(s["passed"], "summary says FAIL")
    for phase in ("faulty", "quiet"):
        p = s[phase]
        check(p["violations"] == 0, f"{phase}: {p['violations']} violations")
        check(p["completed"] == p["requests"], f"{phase}: requests unfinished")
        check(sum(p["outcomes"].values()) == p["requests"],
              f"{phase}: outcomes {p['outcomes']} do not add up")
    check(s["faulty"]["outcomes"].get("OK", 0) > 0,
          "no request succeeded under faults")
    check(s["quiet"]["outcomes"].get("OK", 0) == s["quiet"]["requests"],
          "a quiet-phase request failed")
    missing = [k for k in FAULT_KINDS if s["faults"][k] == 0]
    check(not missing, f"faults never injected: {missing}; {s['faults']}")
    log(f"faults injected: {s['faults']}")

    server.send_signal(signal.SIGTERM)
    try:
        rc = server.wait(10)
    except subprocess.TimeoutExpired:
        raise Failure("server did not exit within 10 s of SIGTERM")
    server_log.close()
    with open(os.path.join(tmpdir, "server.log")) as f:
        log(f"server: {f.read().strip()}")
    check(rc == 0, f"server exited {rc}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", required=True)
    parser.add_argument("--chaos-pingpong", required=True)
    parser.add_argument("--seed", type=int, default=1)
    a = parser.parse_args()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: sys.exit(1))
    tmpdir = tempfile.mkdtemp(prefix="moonpool-chaos-process-test.")
    start = time.monotonic()
    try:
        run(a, tmpdir)
    except (Failure, OSError, ValueError, KeyError) as e:
        log(f"FAIL: {e} (logs kept in {tmpdir})")
        return 1
    finally:
        kill_children()
    log(f"PASS ({time.monotonic() - start:.1f} s)")
    for name in os.listdir(tmpdir):
        os.remove(os.path.join(tmpdir, name))
    os.rmdir(tmpdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
