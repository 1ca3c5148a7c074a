#!/usr/bin/env python3
"""Exactly-once requests between real processes (CTest label integration).

A real moonpool-echo-server and moonpool-pingpong on loopback (DESIGN.md
sections 5 and 6, "Exactly-once"; issue 15).

  cut   The client reaches the server through a TCP proxy in this script
        that resets every connection it carries (an RST to both sides) every
        CUT_EVERY_S while the load runs: the connection is cut, the server
        process lives on. First plain requests (--allow-faults): some end
        Aborted ("maybe delivered"), which proves the cuts land on requests
        in flight. Then M exactly-once requests from 4 clients (4
        incarnations): every one must end OK, the clients must have sent some
        again with the same id, and the server, which counts the runs of each
        exactly-once request by (client incarnation, correlation id)
        (--count-runs), must have run exactly M, each once.
  rss   A client that never settles (moonpool-pingpong --never-settle: a bare
        connection whose exactly-once requests never carry answeredBelow)
        sends many requests with 32 KiB replies to a server whose
        exactly-once bounds are small (--exactly-once-max-*): the server's
        peak RSS stays under a bound derived from those bounds (far below
        what keeping every reply would take), its records stay within them,
        and it counts records forgotten by a bound.

Usage: exactly_once_test.py TEST --server PATH --pingpong PATH [--json FILE]
Exit status 0 (pass), 1 (fail).
"""

import argparse
import json
import os
import re
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

from process_util import (Failure, check, kill_children,
                          read_listening_address, server_env, spawn,
                          status_kib)

tmpdir = tempfile.mkdtemp(prefix="moonpool-exactly-once-test.")
figures = {}

CUT_EVERY_S = 0.25


def log(msg):
    print(f"exactly_once_test: {msg}", flush=True)


def rss_kib(pid, field="VmRSS"):
    try:
        return status_kib(pid, field)
    except (Failure, OSError):
        return 0  # the process is gone


# ---- the proxy ----


class ResettingProxy:
    """A TCP proxy on 127.0.0.1 to `target`, on a thread of its own: each
    connection accepted is joined to a new one to the target, bytes copied
    both ways; every `every_s` seconds (0: never) every connection it carries
    is reset, both sides (SO_LINGER 0, then close: an RST)."""

    def __init__(self, target, every_s):
        self.target = target
        self.every_s = every_s
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(128)
        self.listener.setblocking(False)
        self.address = self.listener.getsockname()
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.listener, selectors.EVENT_READ, None)
        self.pending = {}  # socket -> bytes waiting to be written to it
        self.peer = {}  # socket -> the other side
        self.accepted = 0
        self.resets = 0  # connections reset (pairs)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self):
        self._stop.set()
        self._thread.join(5)
        for s in list(self.peer):
            s.close()
        self.listener.close()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except BlockingIOError:
                return
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            self.accepted += 1
            for s in (client, server):
                s.setblocking(False)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self.pending[s] = b""
                self.sel.register(s, selectors.EVENT_READ, None)
            self.peer[client] = server
            self.peer[server] = client

    def _drop(self, s, reset):
        """Closes `s` and its peer, with an RST when `reset`."""
        for x in (s, self.peer.get(s)):
            if x is None or x not in self.peer:
                continue
            try:
                self.sel.unregister(x)
            except (KeyError, ValueError):
                pass
            if reset:
                x.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                             struct.pack("ii", 1, 0))
            x.close()
            del self.peer[x]
            del self.pending[x]

    def _reset_all(self):
        pairs = {min(id(a), id(b)): a for a, b in self.peer.items()}
        for s in pairs.values():
            self._drop(s, reset=True)
            self.resets += 1

    def _interest(self, s):
        events = selectors.EVENT_READ
        if self.pending[s]:
            events |= selectors.EVENT_WRITE
        self.sel.modify(s, events, None)

    def _run(self):
        next_reset = time.monotonic() + self.every_s
        while not self._stop.is_set():
            if self.every_s > 0 and time.monotonic() >= next_reset:
                self._reset_all()
                next_reset = time.monotonic() + self.every_s
            for key, events in self.sel.select(timeout=0.01):
                s = key.fileobj
                if s is self.listener:
                    self._accept()
                    continue
                if s not in self.peer:
                    continue  # dropped earlier in this batch
                other = self.peer[s]
                if events & selectors.EVENT_WRITE and self.pending[s]:
                    try:
                        n = s.send(self.pending[s])
                        self.pending[s] = self.pending[s][n:]
                        self._interest(s)
                    except BlockingIOError:
                        pass
                    except OSError:
                        self._drop(s, reset=True)
                        continue
                if events & selectors.EVENT_READ:
                    # Read only while the other side keeps up (backpressure).
                    if len(self.pending[other]) > (1 << 20):
                        continue
                    try:
                        data = s.recv(65536)
                    except BlockingIOError:
                        continue
                    except OSError:
                        self._drop(s, reset=True)
                        continue
                    if not data:
                        self._drop(s, reset=False)
                        continue
                    self.pending[other] += data
                    self._interest(other)


# ---- processes ----


class Server:
    def __init__(self, binary, extra=()):
        self.log_path = os.path.join(tmpdir, "server.log")
        self.log = open(self.log_path, "w")
        cmd = [binary, "--listen", "127.0.0.1:0", "--drain-timeout", "2"] + \
            list(extra)
        log(" ".join(cmd))
        self.proc = spawn(cmd, stdout=subprocess.PIPE, stderr=self.log,
                          text=True, env=server_env())
        address = read_listening_address(self.proc)
        if address is None:
            raise Failure(f"server did not start; {self.stderr()}")
        host, port = address.rsplit(":", 1)
        self.address = (host, int(port))
        self.peak_rss_kib = 0
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def _sample(self):
        while not self._stop.is_set() and self.proc.poll() is None:
            self.peak_rss_kib = max(self.peak_rss_kib, rss_kib(self.proc.pid))
            time.sleep(0.02)

    def stderr(self):
        self.log.flush()
        with open(self.log_path) as f:
            return f.read().strip()

    def stop(self):
        """SIGTERM (drain), checks exit 0, returns its counter lines, each
        as a dict: "stats", "exactly_once" and (with --count-runs) "runs"."""
        self.peak_rss_kib = max(self.peak_rss_kib,
                                rss_kib(self.proc.pid, "VmHWM"))
        self._stop.set()
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(20)
        except subprocess.TimeoutExpired:
            raise Failure(f"server did not exit; log: {self.stderr()[-3000:]}")
        err = self.stderr()
        check(rc == 0, f"server exited {rc}; log: {err[-3000:]}")
        out = {}
        for name in ("stats", "exactly_once", "runs"):
            m = re.search(rf"moonpool-echo-server: {name}: (.*)$", err, re.M)
            if m:
                out[name] = {k: int(v) for k, v in
                             (kv.split("=") for kv in m.group(1).split())}
        check("stats" in out and "exactly_once" in out,
              f"no counter lines; log: {err[-3000:]}")
        log(f"server: {out}; peak RSS {self.peak_rss_kib / 1024:.1f} MiB")
        return out


def run_pingpong(binary, address, name, args, timeout=120):
    """Runs moonpool-pingpong --connect ADDRESS with `args`; returns (exit
    status, its JSON summary or None, its output)."""
    json_path = os.path.join(tmpdir, f"{name}.json")
    cmd = [binary, "--connect", f"{address[0]}:{address[1]}",
           "--json", json_path] + list(args)
    log(" ".join(cmd))
    p = spawn(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
              text=True)
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise Failure(f"{name}: pingpong still running after {timeout} s")
    print("".join(f"  {name} | {l}\n" for l in out.splitlines()[-9:]),
          end="", flush=True)
    summary = None
    try:
        with open(json_path) as f:
            summary = json.load(f)
    except (OSError, ValueError):
        pass
    return p.returncode, summary, out


# ---- tests ----


def test_cut(a):
    requests = 2000
    server = Server(a.server, ["--count-runs", "--reply-delay-ms", "150",
                               "--handlers", "8"])
    proxy = ResettingProxy(server.address, CUT_EVERY_S)
    try:
        # Plain requests under the same cuts: some are lost in flight.
        rc, plain, out = run_pingpong(
            a.pingpong, proxy.address, "plain",
            ["--connections", "4", "--in-flight", "16", "--payload", "256",
             "--duration", "2", "--timeout", "10", "--max-backoff", "0.05",
             "--allow-faults"])
        check(rc == 0 and plain is not None, f"plain run failed ({rc}): {out}")
        aborted = plain["outcomes"].get("ABORTED", 0)
        check(aborted > 0,
              f"no plain request was Aborted: the cuts missed ({plain})")
        resets_before = proxy.resets

        rc, once, out = run_pingpong(
            a.pingpong, proxy.address, "exactly_once",
            ["--connections", "4", "--in-flight", "16", "--payload", "256",
             "--exactly-once", "--requests", str(requests), "--duration",
             "60", "--timeout", "30", "--max-backoff", "0.05"])
        resets = proxy.resets - resets_before
    finally:
        proxy.stop()
    check(once is not None, f"exactly-once run: no summary ({rc}): {out}")
    check(rc == 0, f"exactly-once run exited {rc}: {out}")
    check(once["requests"] == requests and
          once["outcomes"] == {"OK": requests},
          f"not every exactly-once request ended OK: {once['outcomes']} "
          f"of {once['requests']}")
    check(once["resent_exactly_once"] > 0,
          f"no request was sent again: the cuts missed ({once})")
    check(once["exactly_once_aborted"] == 0, f"Aborted: {once}")
    check(resets > 0, "the proxy reset nothing during the exactly-once run")
    s = server.stop()
    runs, eo = s.get("runs"), s["exactly_once"]
    check(runs is not None, "the server printed no run counts")
    check(runs["ran_more_than_once"] == 0,
          f"{runs['ran_more_than_once']} request(s) ran more than once")
    check(runs["exactly_once_ids"] == requests and
          runs["exactly_once_runs"] == requests,
          f"{runs['exactly_once_runs']} runs of {runs['exactly_once_ids']} "
          f"ids for {requests} requests")
    check(eo["duplicates_running"] + eo["duplicates_completed"] > 0,
          f"no resend was answered from a record: {eo}")
    figures.update(
        requests=requests, plain_aborted=aborted,
        plain_ok=plain["outcomes"].get("OK", 0), connections_reset=resets,
        resent_exactly_once=once["resent_exactly_once"],
        duplicates_running=eo["duplicates_running"],
        duplicates_completed=eo["duplicates_completed"],
        tcp_connections=once["tcp_connections"])


def test_rss(a):
    payload = 32 << 10
    requests = 8000  # 250 MiB of replies, were they all kept
    per_client_records = 256
    per_client_bytes = 4 << 20
    total_records = 1024
    total_bytes = 8 << 20
    server = Server(a.server, [
        "--exactly-once-max-records-per-client", str(per_client_records),
        "--exactly-once-max-bytes-per-client", str(per_client_bytes),
        "--exactly-once-max-records", str(total_records),
        "--exactly-once-max-bytes", str(total_bytes)])
    # A first, short run warms the server (its buffers and allocator), so
    # that the baseline includes what any client costs.
    rc, _, out = run_pingpong(a.pingpong, server.address, "warm",
                              ["--never-settle", "--in-flight", "32",
                               "--payload", str(payload), "--requests",
                               "300", "--duration", "100", "--timeout",
                               "10"])
    check(rc == 0, f"warm-up failed ({rc}): {out}")
    time.sleep(0.2)
    baseline_kib = rss_kib(server.proc.pid)
    server.peak_rss_kib = baseline_kib
    rc, _, out = run_pingpong(a.pingpong, server.address, "never_settle",
                              ["--never-settle", "--in-flight", "32",
                               "--payload", str(payload), "--requests",
                               str(requests), "--duration", "100",
                               "--timeout", "30"])
    check(rc == 0, f"the never-settling client failed ({rc}): {out}")
    check(f"{requests} sent, {requests} ok" in out,
          f"not every request of the never-settling client was OK: {out}")
    peak_kib = max(server.peak_rss_kib, rss_kib(server.proc.pid))
    # The records may hold at most per_client_bytes; ASan's allocator and
    # the 8 MiB quarantine (server_env) and the connection's buffers (a
    # window of 32 requests and their replies, copied a few times) come on
    # top: three times the record bytes and 48 MiB. Kept, the replies
    # would take 250 MiB.
    bound_kib = 3 * per_client_bytes // 1024 + 48 * 1024
    kept_kib = requests * payload // 1024
    check(bound_kib < kept_kib // 2, "the bound would not catch anything")
    growth_kib = peak_kib - baseline_kib
    log(f"server RSS: baseline {baseline_kib / 1024:.1f} MiB, peak "
        f"{peak_kib / 1024:.1f} MiB, growth {growth_kib / 1024:.1f} MiB "
        f"(bound {bound_kib / 1024:.0f} MiB; all replies "
        f"{kept_kib / 1024:.0f} MiB)")
    s = server.stop()
    eo = s["exactly_once"]
    check(growth_kib < bound_kib,
          f"server RSS grew {growth_kib / 1024:.1f} MiB, over the bound "
          f"{bound_kib / 1024:.0f} MiB")
    check(eo["forgotten_by_bound"] > 0, f"nothing forgotten by a bound: {eo}")
    # Two clients (the warm-up's and this one's incarnations) hold records.
    check(eo["records"] <= min(2 * per_client_records, total_records) and
          eo["bytes"] <= min(2 * per_client_bytes, total_bytes),
          f"records over the bounds at the end: {eo}")
    check(eo["recorded"] >= requests + 300, f"outcomes not recorded: {eo}")
    check(eo["settled"] == 0, f"the client settled something: {eo}")
    figures.update(
        requests=requests, payload_bytes=payload,
        baseline_rss_mib=round(baseline_kib / 1024, 1),
        peak_rss_mib=round(peak_kib / 1024, 1),
        growth_mib=round(growth_kib / 1024, 1),
        bound_mib=round(bound_kib / 1024, 1),
        forgotten_by_bound=eo["forgotten_by_bound"],
        records_at_end=eo["records"], record_bytes_at_end=eo["bytes"])


TESTS = {"cut": test_cut, "rss": test_rss}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("test", choices=sorted(TESTS))
    parser.add_argument("--server", required=True)
    parser.add_argument("--pingpong", required=True)
    parser.add_argument("--json")
    a = parser.parse_args()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: sys.exit(1))
    start = time.monotonic()
    try:
        TESTS[a.test](a)
    except Failure as e:
        log(f"FAIL {a.test}: {e} (logs kept in {tmpdir})")
        return 1
    finally:
        kill_children()
    figures["seconds"] = round(time.monotonic() - start, 1)
    log(f"PASS {a.test} ({figures['seconds']} s): "
        f"{json.dumps(figures, sort_keys=True)}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({a.test: figures}, f, indent=2, sort_keys=True)
    shutil.rmtree(tmpdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
