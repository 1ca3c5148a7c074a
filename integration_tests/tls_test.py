#!/usr/bin/env python3
"""TLS between real processes, and hostile TLS peers (CTest label integration).

One moonpool-echo-server speaks mutual TLS on loopback (--tls-cert server.pem,
--tls-ca ca.pem, --tls-require-client-cert, --tls-handshake-timeout 1s) and
a good moonpool-pingpong with its client certificate keeps one connection
busy for the whole test. Meanwhile each case below runs, one after another,
and asserts the clear Status on the side that should see one: the server's
"TLS handshake from ADDRESS failed: STATUS" lines (ServerOptions::
on_tls_handshake_failure) or the failing pingpong's output (its UNEXPECTED
lines and "last error:"). After each case the server must still answer a
fresh mutual TLS client; at the end the good client must have seen every
request succeed on its one connection, and the server must exit 0 on SIGTERM
with the failures counted (tls_handshake_failures).

  plaintext_client   a plaintext pingpong against the TLS server
  missing_client_cert  a TLS pingpong without a client certificate
  other_ca_client    a client certificate from another CA
  garbage            random bytes instead of a ClientHello (raw socket)
  truncated_hello    half a ClientHello, then close (raw socket)
  silent             connect and send nothing: closed after the 1 s timeout
  raw_alert          a TLS alert record instead of a ClientHello
  client_alert       a Python ssl client that does not trust the server's CA
                     (it sends the unknown_ca alert mid-handshake)
  reset_mid_record   a Python ssl client with its certificate completes the
                     handshake, sends half a record, then resets (SO_LINGER 0)
  plaintext_server   a TLS pingpong against a plaintext echo server
  unknown_ca         a server whose certificate is from another CA
  expired            a server whose certificate expired in 2001
  wrong_name         a server whose certificate names wrong.example (dialled
                     by IP, then with --tls-server-name localhost)

The last four start a server of their own (the main one keeps running).
Certificates come from MOONPOOL_TEST_CERTS (or --certs): the files of
packages/moonpool-driver/tools/moonpool-make-test-certs, which CTest runs
first (the fixture moonpool_integration_test_certs).

Usage: tls_test.py [CASE...] --server PATH --pingpong PATH [--certs DIR]
Without CASE every case runs. Exit status 0 (pass), 1 (fail).
"""

import argparse
import json
import os
import random
import re
import select
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time

from process_util import (Failure, check, kill_children,
                          read_listening_address, spawn)

tmpdir = tempfile.mkdtemp(prefix="moonpool-tls-test.")
SEED = 20261203
HANDSHAKE_TIMEOUT_S = 1.0


def log(msg):
    print(f"tls_test: {msg}", flush=True)


class Certs:
    def __init__(self, directory):
        self.dir = directory
        for name in ("ca.pem", "server.pem", "server.key", "client.pem",
                     "client.key", "other-server.pem", "other-client.pem",
                     "expired.pem", "wrong-name.pem"):
            check(os.path.isfile(self.path(name)),
                  f"no {name} in {directory}: run moonpool-make-test-certs")

    def path(self, name):
        return os.path.join(self.dir, name)


# ---- processes ----

class Server:
    """A moonpool-echo-server; its stderr goes to a file that is read for
    the TLS failure lines."""

    def __init__(self, binary, name, flags):
        self.name = name
        self.log_path = os.path.join(tmpdir, f"{name}.log")
        self.log = open(self.log_path, "w")
        cmd = [binary, "--listen", "127.0.0.1:0", "--drain-timeout", "2"]
        cmd += flags
        log(" ".join(cmd))
        self.proc = spawn(cmd, stdout=subprocess.PIPE, stderr=self.log,
                          text=True)
        address = read_listening_address(self.proc)
        if address is None:
            raise Failure(f"{name} did not start; {self.stderr()}")
        host, port = address.rsplit(":", 1)
        self.address = (host, int(port))
        self.connect_arg = f"{host}:{port}"

    def stderr(self):
        self.log.flush()
        with open(self.log_path) as f:
            return f.read()

    def failure_lines(self):
        return re.findall(r"^moonpool-echo-server: TLS handshake from "
                          r"(\S+) failed: (.*)$", self.stderr(), re.M)

    def wait_for_failure(self, since, pattern, port=None, timeout=5):
        """The first TLS failure line after the first `since` ones that
        matches `pattern` (and comes from local `port` when given)."""
        deadline = time.monotonic() + timeout
        while True:
            for address, status in self.failure_lines()[since:]:
                if port is not None and not address.endswith(f":{port}"):
                    continue
                if re.search(pattern, status):
                    return status
            if time.monotonic() > deadline:
                raise Failure(
                    f"{self.name}: no TLS failure matching /{pattern}/"
                    f"{f' from port {port}' if port else ''}; its lines: "
                    f"{self.failure_lines()[since:]}")
            time.sleep(0.05)

    def check_alive(self):
        check(self.proc.poll() is None,
              f"{self.name} exited {self.proc.returncode}: "
              f"{self.stderr()[-2000:]}")

    def stop(self):
        """SIGTERM (drain); checks exit 0; returns the stats line's
        counters."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(15)
        except subprocess.TimeoutExpired:
            raise Failure(f"{self.name} did not exit; {self.stderr()[-2000:]}")
        err = self.stderr()
        check(rc == 0, f"{self.name} exited {rc}; {err[-3000:]}")
        m = re.search(r"stats: (.*)$", err, re.M)
        check(m is not None, f"{self.name}: no stats line; {err[-3000:]}")
        return {k: int(v) for k, v in
                (kv.split("=") for kv in m.group(1).split())}


def pingpong_cmd(a, server, tls_flags, extra):
    return ([a.pingpong, "--connect", server.connect_arg, "--connections",
             "1"] + tls_flags + extra)


def run_failing_pingpong(a, server, tls_flags):
    """A short pingpong that must fail: returns its output (stdout and
    stderr), after checking it reported failures and no success."""
    cmd = pingpong_cmd(a, server, tls_flags,
                       ["--duration", "0.5", "--timeout", "1",
                        "--max-backoff", "0.2"])
    log(" ".join(cmd))
    p = spawn(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
              text=True)
    try:
        out, _ = p.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        raise Failure("failing pingpong still running after 20 s")
    # A sanitizer's report also exits 1: name it, and keep the output.
    crash = re.search(r"^(SUMMARY: .*|.*runtime error: .*)$", out, re.M)
    if crash is not None:
        path = os.path.join(tmpdir, f"pingpong-{time.monotonic_ns()}.out")
        with open(path, "w") as f:
            f.write(out)
        raise Failure(f"pingpong crashed: {crash.group(1)} (output: {path})")
    check(p.returncode == 1, f"pingpong exited {p.returncode}: {out[-2000:]}")
    check("\nresult:     FAIL" in out, f"pingpong gave no result: {out[-2000:]}")
    check(re.search(r"^requests: .* 0 ok", out, re.M) is not None,
          f"a request succeeded: {out[-2000:]}")
    for line in out.splitlines():
        if "UNEXPECTED" in line or line.startswith("last error:"):
            log(f"  pingpong | {line.strip()}")
            break
    return out


class GoodClient:
    """The mutual TLS pingpong that runs through the whole test."""

    def __init__(self, a, server, certs):
        self.json_path = os.path.join(tmpdir, "good.json")
        self.out_path = os.path.join(tmpdir, "good.out")
        self.out = open(self.out_path, "w")
        cmd = pingpong_cmd(a, server, client_tls(certs),
                           ["--in-flight", "4", "--payload", "512",
                            "--duration", "300", "--timeout", "5",
                            "--json", self.json_path])
        log(" ".join(cmd))
        self.proc = spawn(cmd, stdout=self.out, stderr=subprocess.STDOUT)

    def finish(self):
        check(self.proc.poll() is None,
              f"the good client ended early (exit {self.proc.returncode})")
        self.proc.send_signal(signal.SIGINT)  # drain and report
        try:
            rc = self.proc.wait(30)
        except subprocess.TimeoutExpired:
            raise Failure("good client still running 30 s after SIGINT")
        self.out.close()
        with open(self.out_path) as f:
            out = f.read()
        print("".join(f"  good | {l}\n" for l in out.splitlines()[-9:]),
              end="", flush=True)
        try:
            with open(self.json_path) as f:
                s = json.load(f)
        except (OSError, ValueError) as e:
            raise Failure(f"good client: no summary ({e}), exit {rc}")
        outcomes = s["outcomes"]
        check(rc == 0, f"good client exited {rc}")
        check(s["tls"], "good client did not speak TLS")
        check(s["mismatches"] == 0, f"good client: {s['mismatches']} wrong")
        check(s["unfinished"] == 0, f"good client: {s['unfinished']} silent")
        check(set(outcomes) <= {"OK"}, f"good client: failures {outcomes}")
        check(outcomes.get("OK", 0) == s["requests"] > 0,
              f"good client: {outcomes} of {s['requests']}")
        check(s["tcp_connections"] == 1,
              f"good client reconnected ({s['tcp_connections']} connections)")
        log(f"good client: {outcomes['OK']} requests OK, 0 failed, "
            f"1 connection")
        return s


def client_tls(certs, cert="client"):
    flags = ["--tls-ca", certs.path("ca.pem")]
    if cert:
        flags += ["--tls-cert", certs.path(f"{cert}.pem"),
                  "--tls-key", certs.path(f"{cert}.key")]
    return flags


def server_tls(certs, cert="server", mutual=True):
    flags = ["--tls-cert", certs.path(f"{cert}.pem"),
             "--tls-key", certs.path(f"{cert}.key"),
             "--tls-handshake-timeout", f"{HANDSHAKE_TIMEOUT_S:g}s"]
    if mutual:
        flags += ["--tls-ca", certs.path("ca.pem"), "--tls-require-client-cert"]
    return flags


# ---- raw sockets and Python's ssl ----

def connect(address, timeout=5):
    s = socket.create_connection(address, timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def closed_by_peer(sock, timeout):
    """Seconds until the peer closed (EOF or reset), or None if it did not
    within `timeout`; what it sends before (its alert) is read and ignored."""
    start = time.monotonic()
    sock.setblocking(False)
    while True:
        left = timeout - (time.monotonic() - start)
        if left <= 0:
            return None
        r, _, _ = select.select([sock], [], [], left)
        if not r:
            continue
        try:
            if not sock.recv(65536):
                return time.monotonic() - start
        except (ConnectionResetError, BrokenPipeError):
            return time.monotonic() - start
        except BlockingIOError:
            pass


def send_ignoring_reset(sock, data):
    try:
        sock.sendall(data)
    except (ConnectionResetError, BrokenPipeError):
        pass


def ssl_context(certs, trust=True, cert=True):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.set_alpn_protocols(["moonpool"])
    if trust:
        ctx.load_verify_locations(certs.path("ca.pem"))
    else:
        ctx.load_verify_locations(certs.path("other-ca.pem"))
    if cert:
        ctx.load_cert_chain(certs.path("client.pem"), certs.path("client.key"))
    return ctx


class MemoryTls:
    """Python's ssl over memory BIOs on a raw socket: the test decides which
    TLS bytes go on the wire and when."""

    def __init__(self, ctx, sock):
        self.sock = sock
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.incoming, self.outgoing,
                                server_hostname="localhost")

    def client_hello(self):
        try:
            self.obj.do_handshake()
        except ssl.SSLWantReadError:
            pass
        return self.outgoing.read()

    def handshake(self, timeout=5):
        """Runs the handshake over the socket; raises ssl.SSLError on a
        verification failure (after sending its alert)."""
        self.sock.settimeout(timeout)
        while True:
            try:
                self.obj.do_handshake()
                self.flush()
                return
            except ssl.SSLWantReadError:
                self.flush()
                data = self.sock.recv(65536)
                if not data:
                    raise Failure("server closed during the handshake")
                self.incoming.write(data)
            except ssl.SSLError:
                self.flush()  # the alert
                raise

    def flush(self):
        data = self.outgoing.read()
        if data:
            self.sock.sendall(data)


def reset(sock):
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                    struct.pack("ii", 1, 0))
    sock.close()


# ---- the cases ----

def case_plaintext_client(ctx):
    since = len(ctx.server.failure_lines())
    out = run_failing_pingpong(ctx.a, ctx.server, [])
    status = ctx.server.wait_for_failure(since, r"^UNAVAILABLE: ")
    log(f"  server | {status}")
    check(re.search(r"UNAVAILABLE|ABORTED", out),
          f"pingpong: no Unavailable/Aborted: {out[-2000:]}")


def case_missing_client_cert(ctx):
    since = len(ctx.server.failure_lines())
    out = run_failing_pingpong(ctx.a, ctx.server,
                               client_tls(ctx.certs, cert=None))
    status = ctx.server.wait_for_failure(since, r"^UNAUTHENTICATED: .*"
                                         r"certificate")
    log(f"  server | {status}")
    check(re.search(r"certificate required", out),
          f"pingpong does not say the server required a certificate: "
          f"{out[-2000:]}")


def case_other_ca_client(ctx):
    since = len(ctx.server.failure_lines())
    out = run_failing_pingpong(ctx.a, ctx.server,
                               client_tls(ctx.certs, cert="other-client"))
    status = ctx.server.wait_for_failure(since, r"^UNAUTHENTICATED: ")
    log(f"  server | {status}")
    check(re.search(r"UNAUTHENTICATED|alert", out),
          f"pingpong does not say why: {out[-2000:]}")


def case_garbage(ctx):
    rng = random.Random(SEED)
    for size in (1, 5, 300, 4096):
        since = len(ctx.server.failure_lines())
        s = connect(ctx.server.address)
        port = s.getsockname()[1]
        data = rng.randbytes(size)
        if size == 5:
            data = b"\x16" + data[1:]  # a handshake record with a bad header
        send_ignoring_reset(s, data)
        if size == 1:
            s.shutdown(socket.SHUT_WR)  # otherwise only the timeout ends it
        closed = closed_by_peer(s, HANDSHAKE_TIMEOUT_S + 3)
        s.close()
        check(closed is not None, f"{size} random bytes: left open")
        status = ctx.server.wait_for_failure(since, r"^UNAVAILABLE: ", port)
        log(f"  {size} random bytes: closed after {closed:.2f} s; "
            f"server | {status}")


def case_truncated_hello(ctx):
    since = len(ctx.server.failure_lines())
    s = connect(ctx.server.address)
    port = s.getsockname()[1]
    hello = MemoryTls(ssl_context(ctx.certs), s).client_hello()
    check(len(hello) > 100, f"ClientHello of {len(hello)} bytes")
    send_ignoring_reset(s, hello[:len(hello) // 2])
    s.shutdown(socket.SHUT_WR)
    closed = closed_by_peer(s, 3)
    s.close()
    check(closed is not None, "half a ClientHello then EOF: left open")
    status = ctx.server.wait_for_failure(since, r"^UNAVAILABLE: ", port)
    log(f"  {len(hello) // 2} of {len(hello)} bytes: closed after "
        f"{closed:.2f} s; server | {status}")


def case_silent(ctx):
    since = len(ctx.server.failure_lines())
    s = connect(ctx.server.address)
    port = s.getsockname()[1]
    closed = closed_by_peer(s, HANDSHAKE_TIMEOUT_S + 3)
    s.close()
    check(closed is not None, "a silent connection was left open")
    check(HANDSHAKE_TIMEOUT_S - 0.2 <= closed <= HANDSHAKE_TIMEOUT_S + 1.5,
          f"closed after {closed:.2f} s; the handshake timeout is "
          f"{HANDSHAKE_TIMEOUT_S} s")
    status = ctx.server.wait_for_failure(since, r"^DEADLINE_EXCEEDED: ", port)
    log(f"  closed after {closed:.2f} s; server | {status}")


def case_raw_alert(ctx):
    since = len(ctx.server.failure_lines())
    s = connect(ctx.server.address)
    port = s.getsockname()[1]
    # An alert record (content type 21), fatal (2) handshake_failure (40).
    send_ignoring_reset(s, bytes([21, 3, 3, 0, 2, 2, 40]))
    closed = closed_by_peer(s, 3)
    s.close()
    check(closed is not None, "an alert record: left open")
    status = ctx.server.wait_for_failure(since, r"^UNAVAILABLE: ", port)
    log(f"  closed after {closed:.2f} s; server | {status}")


def case_client_alert(ctx):
    since = len(ctx.server.failure_lines())
    s = connect(ctx.server.address)
    port = s.getsockname()[1]
    tls = MemoryTls(ssl_context(ctx.certs, trust=False), s)
    try:
        tls.handshake()
        raise Failure("a client trusting only other-ca accepted the server")
    except ssl.SSLCertVerificationError as e:
        log(f"  python ssl | {e.verify_message}")
    closed = closed_by_peer(s, 3)
    s.close()
    check(closed is not None, "the server kept the connection after an alert")
    status = ctx.server.wait_for_failure(
        since, r"^(UNAVAILABLE|UNAUTHENTICATED): .*alert: .*unknown ca", port)
    log(f"  server | {status}")


def case_reset_mid_record(ctx):
    s = connect(ctx.server.address)
    tls = MemoryTls(ssl_context(ctx.certs), s)
    tls.handshake()
    check(tls.obj.selected_alpn_protocol() == "moonpool",
          f"ALPN {tls.obj.selected_alpn_protocol()!r}")
    check(tls.obj.version() == "TLSv1.3", f"version {tls.obj.version()}")
    tls.obj.write(b"x" * 2000)
    record = tls.outgoing.read()
    s.sendall(record[:len(record) // 2])
    time.sleep(0.1)
    reset(s)
    log(f"  handshake done ({tls.obj.version()}, "
        f"{tls.obj.cipher()[0]}), {len(record) // 2} of a {len(record)}-byte "
        f"record sent, then a reset")


def case_plaintext_server(ctx):
    server = Server(ctx.a.server, "plaintext-server", [])
    try:
        out = run_failing_pingpong(ctx.a, server,
                                   client_tls(ctx.certs, cert=None))
        check(re.search(r"UNAVAILABLE: .*TLS", out),
              f"pingpong does not say TLS failed: {out[-2000:]}")
        server.check_alive()
    finally:
        server.stop()


def wrong_server_case(ctx, name, cert, pattern, client_flags=()):
    """A server with the wrong certificate: the client says why, and the
    server hears the client's alert."""
    server = Server(ctx.a.server, name, server_tls(ctx.certs, cert, False))
    try:
        out = run_failing_pingpong(
            ctx.a, server, client_tls(ctx.certs, cert=None) + list(client_flags))
        check(re.search(pattern, out),
              f"pingpong does not say /{pattern}/: {out[-2000:]}")
        status = server.wait_for_failure(0, r"alert")
        log(f"  {name} | {status}")
        server.check_alive()
    finally:
        server.stop()


def case_unknown_ca(ctx):
    wrong_server_case(ctx, "other-ca-server", "other-server",
                      r"UNAUTHENTICATED.*(unable to get local issuer|"
                      r"unknown ca|certificate verify failed)")


def case_expired(ctx):
    wrong_server_case(ctx, "expired-server", "expired",
                      r"UNAUTHENTICATED.*expired")


def case_wrong_name(ctx):
    # Dialled as 127.0.0.1: its IP SANs are checked; named: its DNS names.
    wrong_server_case(ctx, "wrong-name-server", "wrong-name",
                      r"UNAUTHENTICATED.*IP address mismatch")
    wrong_server_case(ctx, "wrong-name-server", "wrong-name",
                      r"UNAUTHENTICATED.*hostname mismatch",
                      ["--tls-server-name", "localhost"])


CASES = {
    "plaintext_client": case_plaintext_client,
    "missing_client_cert": case_missing_client_cert,
    "other_ca_client": case_other_ca_client,
    "garbage": case_garbage,
    "truncated_hello": case_truncated_hello,
    "silent": case_silent,
    "raw_alert": case_raw_alert,
    "client_alert": case_client_alert,
    "reset_mid_record": case_reset_mid_record,
    "plaintext_server": case_plaintext_server,
    "unknown_ca": case_unknown_ca,
    "expired": case_expired,
    "wrong_name": case_wrong_name,
}


def check_serves(ctx):
    """A fresh mutual TLS connection is served (the server is up and its
    TLS still works)."""
    s = connect(ctx.server.address)
    tls = MemoryTls(ssl_context(ctx.certs), s)
    tls.handshake()
    s.close()
    ctx.server.check_alive()


class Context:
    pass


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("cases", nargs="*", metavar="CASE",
                        help=f"one of {', '.join(CASES)} (default: all)")
    parser.add_argument("--server", required=True)
    parser.add_argument("--pingpong", required=True)
    parser.add_argument("--certs", default=os.environ.get(
        "MOONPOOL_TEST_CERTS"))
    a = parser.parse_args()
    unknown = [c for c in a.cases if c not in CASES]
    if unknown:
        parser.error(f"unknown cases {unknown}")
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: sys.exit(1))
    start = time.monotonic()
    cases = a.cases or list(CASES)
    ctx = Context()
    ctx.a = a
    try:
        check(a.certs, "no certificates: set MOONPOOL_TEST_CERTS or --certs")
        ctx.certs = Certs(a.certs)
        ctx.server = Server(a.server, "server", server_tls(ctx.certs))
        good = GoodClient(a, ctx.server, ctx.certs)
        time.sleep(1.0)  # its connection is up before the hostile ones
        for name in cases:
            t = time.monotonic()
            log(f"case {name}")
            CASES[name](ctx)
            check_serves(ctx)
            log(f"case {name}: ok ({time.monotonic() - t:.1f} s)")
        good.finish()
        stats = ctx.server.stop()
        log(f"server stats: {stats}")
        check(stats["tls_handshakes"] >= 1 + len(cases),
              f"handshakes not counted: {stats}")
        server_side = {"plaintext_client", "missing_client_cert",
                       "other_ca_client", "garbage", "truncated_hello",
                       "silent", "raw_alert", "client_alert"}
        check(stats["tls_handshake_failures"] >=
              len(server_side & set(cases)),
              f"handshake failures not counted: {stats}")
    except (Failure, ssl.SSLError, OSError) as e:
        log(f"FAIL: {type(e).__name__}: {e} (logs kept in {tmpdir})")
        return 1
    finally:
        kill_children()
    log(f"PASS: {len(cases)} cases in {time.monotonic() - start:.1f} s")
    shutil.rmtree(tmpdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
