#!/usr/bin/env python3
"""Hostile clients against a real moonpool-echo-server (CTest label integration).

Each test runs one moonpool-echo-server process on loopback and a well-behaved
moonpool-pingpong (--connect) on a connection of its own for the whole test;
while it runs, raw Python sockets misbehave on other connections. Every test
then checks that the good client's every request succeeded with its own
payload (pingpong checks each reply), that the server closed the hostile
connections the way DESIGN.md sections 5 and 6 say, and reads the server's
counters from the last line of its stderr (after a graceful SIGTERM) and its
memory from /proc/PID/status.

  random_bytes       connections sending seeded random bytes: each is closed.
  hello_garbage      a valid Hello (answered by the server's Hello), then
                     garbage: random bytes, a bad header check, a bad body
                     checksum, a body that is not a Frame, a zero length.
  huge_header        a header announcing 4 GiB (with and without a Hello): the
                     connection is closed at the header, the server's RSS does
                     not grow.
  slowloris          a header sent one byte per second, never finished (with
                     and without a Hello): closed after --read-timeout.
  idle_flood         2,000 idle connections against --max-connections 1000:
                     the excess is closed at once, the rest after
                     --idle-timeout.
  no_read            a client sending requests as fast as it can and never
                     reading a reply: the server stops reading it, its RSS
                     stays under a bound.

Frames are built here: the header's XXH3 comes from the system libxxhash
(the library moonpool-wire links), through ctypes; the Cap'n Proto bodies are
hand-laid (their layout is pinned by moonpool-wire's golden tests).

Usage: hostile_test.py TEST --server PATH --pingpong PATH [--json FILE]
With --json the test's figures are written to FILE (docs/RELIABILITY.md
quotes them). Exit status 0 (pass), 1 (fail).
"""

import argparse
import ctypes
import errno
import json
import os
import random
import re
import select
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

tmpdir = tempfile.mkdtemp(prefix="moonpool-hostile-test.")
figures = {}

# The server's timeouts, short so that each test takes seconds.
READ_TIMEOUT_S = 2
IDLE_TIMEOUT_S = 3
SEED = 20240607


def log(msg):
    print(f"hostile_test: {msg}", flush=True)


# ---- frames (DESIGN.md section 5) ----

_xxh = ctypes.CDLL("libxxhash.so.0")
_xxh.XXH3_64bits.restype = ctypes.c_uint64
_xxh.XXH3_64bits.argtypes = [ctypes.c_char_p, ctypes.c_size_t]


def xxh3(data):
    return _xxh.XXH3_64bits(data, len(data))


def header(body_length, body_checksum):
    h = struct.pack("<IQ", body_length, body_checksum)
    return h + struct.pack("<I", xxh3(h) & 0xFFFFFFFF)


def frame(body):
    return header(len(body), xxh3(body)) + body


def pad8(b):
    return b + b"\0" * (-len(b) % 8)


# Hello{magic "MOONPOOL", version 1, peerName "hostile", incarnation 7}, as
# `capnp encode` lays it out (segment table, Frame, Hello, the name).
HELLO_BODY = bytes.fromhex(
    "0000000009000000" "0000000002000100" "0000000000000000"
    "0000000000000000" "0000000003000100" "4c4f4f504e4f4f4d"
    "0100000000000000" "0700000000000000" "0100000042000000"
    "686f7374696c6500")
HELLO = frame(HELLO_BODY)


def request(correlation_id, payload):
    """A request Envelope frame: no deadline, default endpoint."""
    p = pad8(payload)
    words = (0x58 + len(p)) // 8 - 1
    body = (struct.pack("<II", 0, words)           # one segment
            + bytes.fromhex("0000000002000100")     # root: Frame
            + struct.pack("<QQ", 1, 0)              # union: envelope
            + bytes.fromhex("0000000004000200")     # -> Envelope
            + struct.pack("<QQQQ", correlation_id, 0, 0, 0)
            + struct.pack("<II", 5, (len(payload) << 3) | 2)  # payload
            + b"\0" * 8                             # errorMessage: null
            + p)
    return frame(body)


# ---- processes ----

def rss_kib(pid, field="VmRSS"):
    try:
        return status_kib(pid, field)
    except Failure:
        return 0  # the process is gone


class Server:
    def __init__(self, binary, extra=()):
        self.log_path = os.path.join(tmpdir, "server.log")
        self.log = open(self.log_path, "w")
        cmd = [binary, "--listen", "127.0.0.1:0", "--drain-timeout", "2",
               "--read-timeout", str(READ_TIMEOUT_S),
               "--idle-timeout", str(IDLE_TIMEOUT_S)] + list(extra)
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
            try:
                self.peak_rss_kib = max(self.peak_rss_kib,
                                        rss_kib(self.proc.pid))
            except OSError:
                return
            time.sleep(0.05)

    def rss_kib(self):
        return rss_kib(self.proc.pid)

    def stderr(self):
        self.log.flush()
        with open(self.log_path) as f:
            return f.read().strip()

    def stop(self):
        """SIGTERM (drain), checks exit 0, returns the counters."""
        self.peak_rss_kib = max(self.peak_rss_kib,
                                rss_kib(self.proc.pid, "VmHWM"))
        self._stop.set()
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(15)
        except subprocess.TimeoutExpired:
            raise Failure(f"server did not exit; log: {self.stderr()}")
        err = self.stderr()
        check(rc == 0, f"server exited {rc}; log: {err[-3000:]}")
        m = re.search(r"stats: (.*)$", err, re.M)
        check(m is not None, f"no stats line; log: {err[-3000:]}")
        stats = {k: int(v) for k, v in
                 (kv.split("=") for kv in m.group(1).split())}
        log(f"server stats: {stats}; peak RSS "
            f"{self.peak_rss_kib / 1024:.1f} MiB")
        return stats


class GoodClient:
    """moonpool-pingpong --connect: the well-behaved client of every test."""

    def __init__(self, binary, address, duration):
        self.json_path = os.path.join(tmpdir, "good.json")
        self.out_path = os.path.join(tmpdir, "good.out")
        self.out = open(self.out_path, "w")
        cmd = [binary, "--connect", f"{address[0]}:{address[1]}",
               "--connections", "1", "--in-flight", "4", "--payload", "512",
               "--duration", str(duration), "--timeout", "5",
               "--json", self.json_path]
        log(" ".join(cmd))
        self.proc = spawn(cmd, stdout=self.out, stderr=subprocess.STDOUT)
        self.start = time.monotonic()

    def finish(self):
        try:
            rc = self.proc.wait(60)
        except subprocess.TimeoutExpired:
            raise Failure("good client still running after 60 s")
        self.out.close()
        with open(self.out_path) as f:
            out = f.read()
        print("".join(f"  good | {l}\n" for l in out.splitlines()[-8:]),
              end="", flush=True)
        try:
            with open(self.json_path) as f:
                s = json.load(f)
        except (OSError, ValueError) as e:
            raise Failure(f"good client: no summary ({e}), exit {rc}")
        outcomes = s["outcomes"]
        check(rc == 0, f"good client exited {rc}")
        check(s["mismatches"] == 0, f"good client: {s['mismatches']} wrong")
        check(s["unfinished"] == 0, f"good client: {s['unfinished']} silent")
        check(set(outcomes) <= {"OK"}, f"good client: failures {outcomes}")
        check(outcomes.get("OK", 0) == s["requests"] > 0,
              f"good client: {outcomes} of {s['requests']}")
        check(s["tcp_connections"] == 1,
              f"good client reconnected ({s['tcp_connections']} connections)")
        figures["good_requests_ok"] = outcomes["OK"]
        figures["good_failures"] = s["requests"] - outcomes["OK"]
        figures["good_tcp_connections"] = s["tcp_connections"]
        log(f"good client: {outcomes['OK']} requests OK, 0 failed, "
            f"1 connection")
        return s


def connect(address, timeout=5):
    s = socket.create_connection(address, timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def closed_by_peer(sock, timeout):
    """True once the peer closes (EOF or reset) within `timeout`; what the
    server sends before (its Hello, pings) is read and ignored."""
    deadline = time.monotonic() + timeout
    sock.setblocking(False)
    while True:
        left = max(0.0, deadline - time.monotonic())
        r, _, _ = select.select([sock], [], [], left)
        if not r:
            if time.monotonic() >= deadline:
                return False
            continue
        try:
            if not sock.recv(65536):
                return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except BlockingIOError:
            pass


def send_ignoring_reset(sock, data):
    try:
        sock.sendall(data)
    except (ConnectionResetError, BrokenPipeError):
        pass  # the server closed it already: what we test for


def read_frame(sock, timeout=5):
    """Reads one whole frame; checks its header and checksum."""
    sock.settimeout(timeout)
    buf = b""
    while len(buf) < 16:
        chunk = sock.recv(16 - len(buf))
        check(chunk, "closed before a frame header")
        buf += chunk
    length, checksum, hcheck = struct.unpack("<IQI", buf)
    check(hcheck == xxh3(buf[:12]) & 0xFFFFFFFF, "bad header check from server")
    body = b""
    while len(body) < length:
        chunk = sock.recv(length - len(body))
        check(chunk, "closed inside a frame")
        body += chunk
    check(xxh3(body) == checksum, "bad body checksum from server")
    return body


def hello(address):
    """A connection past the handshake (the server's Hello read)."""
    s = connect(address)
    s.sendall(HELLO)
    body = read_frame(s)
    # Frame.hello: discriminant 0; Hello's magic at its data section.
    check(struct.unpack_from("<H", body, 16)[0] == 0, "server sent no Hello")
    check(b"LOOPNOOM" in body, "server Hello without the magic")
    return s


def run_with_good_client(a, duration, body, server_flags=()):
    server = Server(a.server, server_flags)
    good = GoodClient(a.pingpong, server.address, duration)
    time.sleep(0.5)  # its connection is up before the hostile ones
    figures["server_rss_start_mib"] = round(server.rss_kib() / 1024, 1)
    t0 = time.monotonic()
    body(server)
    log(f"hostile part took {time.monotonic() - t0:.1f} s")
    check(good.proc.poll() is None,
          "the good client ended before the hostile part did; "
          "give it a longer --duration")
    good.finish()
    stats = server.stop()
    figures["server_peak_rss_mib"] = round(server.peak_rss_kib / 1024, 1)
    figures["server_stats"] = stats
    return stats


# ---- the tests ----

def test_random_bytes(a):
    rng = random.Random(SEED)
    n = 20

    def body(server):
        socks = []
        for i in range(n):
            s = connect(server.address)
            send_ignoring_reset(s, rng.randbytes(rng.choice([1, 15, 16, 17,
                                                             4096, 65536])))
            socks.append(s)
        closed = 0
        for s in socks:
            # 1-15 bytes are not even a header: the keepalive (4 s) or the
            # read timeout ends those.
            if closed_by_peer(s, READ_TIMEOUT_S + 3):
                closed += 1
            s.close()
        check(closed == n, f"{n - closed} of {n} random-byte connections "
              f"left open")
        figures["hostile_connections"] = n

    stats = run_with_good_client(a, 5, body)
    check(stats["protocol_errors"] + stats["read_timeouts"] +
          stats["keepalive_timeouts"] >= n, "closes not counted")


def test_hello_garbage(a):
    rng = random.Random(SEED)
    good_body = HELLO_BODY
    garbage = {
        "random": lambda: rng.randbytes(4096),
        "bad header check": lambda: header(8, 0)[:12] + b"\xde\xad\xbe\xef"
        + b"\0" * 8,
        "bad body checksum": lambda: header(len(good_body), 12345)
        + good_body,
        "not a Frame": lambda: frame(rng.randbytes(64)),
        "zero length": lambda: header(0, xxh3(b"")),
        "length not x8": lambda: header(12, 0) + b"\0" * 12,
        "second Hello": lambda: HELLO,
    }

    def body(server):
        results = {}
        for name, make in garbage.items():
            s = hello(server.address)
            # A valid request first: the connection works until the garbage.
            s.sendall(request(1, b"still fine"))
            reply = read_frame(s)
            check(b"still fine" in reply, f"{name}: no echo before garbage")
            send_ignoring_reset(s, make())
            t = time.monotonic()
            results[name] = closed_by_peer(s, READ_TIMEOUT_S + 3)
            log(f"  {name}: closed={results[name]} after "
                f"{time.monotonic() - t:.2f} s")
            s.close()
        bad = [k for k, v in results.items() if not v]
        check(not bad, f"left open after garbage: {bad}")
        figures["hostile_connections"] = len(garbage)
        figures["garbage_kinds"] = sorted(garbage)

    stats = run_with_good_client(a, 4, body)
    check(stats["protocol_errors"] >= len(garbage) - 1,
          f"protocol errors not counted: {stats}")


def test_huge_header(a):
    four_gib = 0xFFFFFFF8  # the largest multiple of 8 a u32 holds

    def body(server):
        before = server.rss_kib()
        times = []
        for with_hello in (False, True, False, True):
            s = hello(server.address) if with_hello else connect(
                server.address)
            t = time.monotonic()
            send_ignoring_reset(s, header(four_gib, 0))
            check(closed_by_peer(s, 1.0),
                  f"4 GiB header (hello={with_hello}) not closed within 1 s")
            times.append(time.monotonic() - t)
            s.close()
            # And one that keeps sending body bytes after the header.
            s = hello(server.address) if with_hello else connect(
                server.address)
            send_ignoring_reset(s, header(four_gib, 0) + b"\0" * 65536)
            check(closed_by_peer(s, 1.0), "4 GiB header + bytes not closed")
            s.close()
        time.sleep(0.2)
        after = server.rss_kib()
        grown = (after - before) / 1024
        log(f"RSS {before / 1024:.1f} -> {after / 1024:.1f} MiB; closed in "
            f"at most {max(times) * 1000:.0f} ms")
        check(grown < 8, f"server RSS grew by {grown:.1f} MiB")
        figures["rss_growth_mib"] = round(grown, 1)
        figures["max_close_ms"] = round(max(times) * 1000)
        figures["hostile_connections"] = 8

    stats = run_with_good_client(a, 4, body)
    check(stats["protocol_errors"] >= 8, f"oversized not counted: {stats}")


def test_slowloris(a):
    def body(server):
        # Two at once: before the handshake, and after it.
        socks = [(connect(server.address), "no Hello"),
                 (hello(server.address), "after Hello")]
        hdr = header(64, 0)
        start = time.monotonic()
        closed_at = {}
        sent = {}
        for i in range(len(hdr)):
            for s, name in socks:
                if name in closed_at:
                    continue
                try:
                    s.send(hdr[i:i + 1])
                    sent[name] = i + 1
                except OSError:
                    closed_at[name] = time.monotonic() - start
                    continue
                if closed_by_peer(s, 0.0):
                    closed_at[name] = time.monotonic() - start
            if len(closed_at) == len(socks):
                break
            step_end = time.monotonic() + 1.0
            while time.monotonic() < step_end:
                time.sleep(0.1)
                for s, name in socks:
                    if name not in closed_at and closed_by_peer(s, 0.0):
                        closed_at[name] = time.monotonic() - start
        for s, name in socks:
            s.close()
        log(f"closed after {closed_at} s, bytes sent {sent}")
        check(len(closed_at) == len(socks),
              f"slowloris connections left open: {closed_at}")
        for name, t in closed_at.items():
            check(READ_TIMEOUT_S - 0.2 <= t <= READ_TIMEOUT_S + 1.5,
                  f"{name}: closed after {t:.1f} s, read timeout is "
                  f"{READ_TIMEOUT_S} s")
            check(sent[name] < 16, f"{name}: header finished")
        figures["closed_after_s"] = {k: round(v, 1)
                                     for k, v in closed_at.items()}
        figures["hostile_connections"] = len(socks)

    stats = run_with_good_client(a, 6, body)
    check(stats["read_timeouts"] >= 2, f"read timeouts not counted: {stats}")


def test_idle_flood(a):
    n, limit = 2000, 1000

    def body(server):
        socks = []
        for _ in range(n):
            s = socket.socket()
            s.setblocking(False)
            err = s.connect_ex(server.address)
            check(err in (0, errno.EINPROGRESS), f"connect: {os.strerror(err)}")
            socks.append(s)
        opened = time.monotonic()
        # Wait for every connect to complete.
        pending = {s.fileno(): s for s in socks}
        poller = select.poll()
        for fd in pending:
            poller.register(fd, select.POLLOUT)
        while pending and time.monotonic() - opened < 10:
            for fd, _ in poller.poll(1000):
                poller.unregister(fd)
                del pending[fd]
        check(not pending, f"{len(pending)} connects did not complete")
        time.sleep(1.0)
        live = set(socks)

        def reap():
            poller = select.poll()
            by_fd = {s.fileno(): s for s in live}
            for fd in by_fd:
                poller.register(fd, select.POLLIN)
            gone = set()
            for fd, _ in poller.poll(0):
                s = by_fd[fd]
                try:
                    if not s.recv(4096):
                        gone.add(s)
                except (ConnectionResetError, BrokenPipeError):
                    gone.add(s)
                except BlockingIOError:
                    pass
            live.difference_update(gone)
            for s in gone:
                s.close()

        reap()
        open_after_1s = len(live)
        log(f"{n} connections opened, {open_after_1s} still open after 1 s "
            f"(limit {limit}, the good client holds one)")
        check(open_after_1s <= limit - 1,
              f"limit broken: {open_after_1s} open")
        check(open_after_1s >= limit - 50,
              f"too few accepted: {open_after_1s}")
        deadline = opened + IDLE_TIMEOUT_S + 4
        while live and time.monotonic() < deadline:
            time.sleep(0.25)
            reap()
        closed_at = time.monotonic() - opened
        check(not live, f"{len(live)} idle connections still open after "
              f"{closed_at:.1f} s (idle timeout {IDLE_TIMEOUT_S} s)")
        log(f"all idle connections closed {closed_at:.1f} s after opening")
        figures["hostile_connections"] = n
        figures["open_after_1s"] = open_after_1s
        figures["all_closed_after_s"] = round(closed_at, 1)

    stats = run_with_good_client(
        a, 8, body, ["--max-connections", str(limit)])
    check(stats["connections_refused"] >= n - limit,
          f"refusals not counted: {stats}")
    check(stats["idle_timeouts"] >= limit - 50,
          f"idle timeouts not counted: {stats}")


def test_no_read(a):
    payload = b"x" * 4096
    bound_mib = 160  # ASan build; see RELIABILITY.md

    def body(server):
        s = hello(server.address)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.setblocking(False)
        cid, sent, stalled_since = 1, 0, None
        frame_bytes = request(1, payload)
        pending = b""
        start = time.monotonic()
        while time.monotonic() - start < 6:
            if not pending:
                pending = request(cid, payload)
                cid += 1
            try:
                n = s.send(pending)
                pending = pending[n:]
                sent += n
                stalled_since = None
            except BlockingIOError:
                if stalled_since is None:
                    stalled_since = time.monotonic()
                select.select([], [s], [], 0.05)
            except (ConnectionResetError, BrokenPipeError):
                raise Failure("server closed the non-reading client")
        stalled = stalled_since is not None and \
            time.monotonic() - stalled_since > 1
        requests = sent // len(frame_bytes)
        log(f"sent {sent / 2**20:.1f} MiB ({requests} requests) in 6 s; "
            f"stalled at the end: {stalled}; server RSS "
            f"{server.rss_kib() / 1024:.1f} MiB, peak "
            f"{server.peak_rss_kib / 1024:.1f} MiB")
        check(stalled, "the server never stopped reading the flooder")
        check(server.peak_rss_kib / 1024 < bound_mib,
              f"server peak RSS {server.peak_rss_kib / 1024:.1f} MiB over "
              f"{bound_mib} MiB")
        figures["flood_requests_sent"] = requests
        figures["flood_mib_sent"] = round(sent / 2**20, 1)
        figures["rss_bound_mib"] = bound_mib
        figures["hostile_connections"] = 1
        s.close()

    stats = run_with_good_client(a, 8, body)
    check(stats["backpressure_pauses"] >= 1, f"no pause counted: {stats}")


TESTS = {
    "random_bytes": test_random_bytes,
    "hello_garbage": test_hello_garbage,
    "huge_header": test_huge_header,
    "slowloris": test_slowloris,
    "idle_flood": test_idle_flood,
    "no_read": test_no_read,
}


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
