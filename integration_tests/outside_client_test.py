#!/usr/bin/env python3
"""The outside client (outside_client.py, written from DESIGN.md section 5
alone) against real moonpool servers on loopback (CTest label integration).

Each case starts its own server process, talks to it through
outside_client.Connection only, and checks what DESIGN promises:

  v2_named       Hello{1..2} -> the server's Hello says 2; Put, Get, Delete,
                 Get of a key through named methods with typed Cap'n Proto
                 bodies (examples/kv/kv.capnp); the value is read back.
  unimplemented  an unknown name ("kv.KeyValue/Nope") -> an error reply,
                 errorCode 12 (Unimplemented), whose message names the
                 token; the connection still serves a Get afterwards.
  v1             Hello{1, max 0} on one connection while a version 2 one is
                 open to the same server: the server's Hello says 1, a named
                 Get works and an unknown name is Unimplemented on version 1
                 too; the version 2 connection is undisturbed.
  negotiation    a Put pipelined right after Hello{1..2} is answered;
                 Hello{2, max 0} -> version 2; Hello{3..5} and Hello{0, max
                 0} are refused: the server's Hello says {1, max >= 2} and
                 the server closes, the client reports FAILED_PRECONDITION
                 naming both ranges.
  cancel         server with a Get delay: a Get, then `cancel` for its id
                 while the handler has it; the server's exit summary counts
                 one cancel for kv.KeyValue/Get and a Get that ended well
                 before the delay (its handler saw the cancel), anything it
                 sent for that id was dropped by the client, and a later Put
                 on the same connection works.
  bad_frames     after a Hello, frames with a wrong header check, a wrong
                 body checksum, a length not a multiple of 8, and a body
                 that is not a Frame, each on its own connection: the server
                 closes each one; a good connection opened before keeps
                 working.
  keepalive      a client that never pings, idle for 2.5 s: it answers the
                 server's pings with pongs and the connection survives.
  echo           moonpool-echo-server (packages/moonpool-transport/examples):
                 a version 1 Hello and a Hello{1..2}, each with a request on
                 the default queue (endpoint 0) echoed back.

Usage: outside_client_test.py CASE --server PATH [--kv-schema PATH]
         [--capnp PATH] [--get-delay-flag FLAG]
Exit status 0 (pass), 1 (fail).
"""

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import outside_client as oc  # noqa: E402
from process_util import (Failure, check, kill_children,  # noqa: E402
                          read_listening_address, spawn)

HERE = os.path.dirname(os.path.abspath(__file__))
KV_SCHEMA = os.path.join(HERE, os.pardir, "examples", "kv", "kv.capnp")
GET, PUT, DELETE = "kv.KeyValue/Get", "kv.KeyValue/Put", "kv.KeyValue/Delete"
NOPE = "kv.KeyValue/Nope"

tmpdir = tempfile.mkdtemp(prefix="moonpool-outside-client-test.")


class Server:
    """A server process whose stdout's first line is "listening on ADDR";
    its output after that goes to files read at stop()."""

    def __init__(self, path, *flags):
        self.out_path = os.path.join(tmpdir, "server.out")
        self.err_path = os.path.join(tmpdir, "server.err")
        self.err = open(self.err_path, "wb")
        self.proc = spawn([path, "--listen", "127.0.0.1:0", *flags],
                          stdout=subprocess.PIPE, stderr=self.err, text=True)
        self.address = read_listening_address(self.proc)
        check(self.address, f"{path} printed no 'listening on' line "
              f"(stderr in {self.err_path})")

    def stop(self):
        """SIGTERM (graceful close); returns everything it printed."""
        self.proc.send_signal(signal.SIGTERM)
        rest, _ = self.proc.communicate(timeout=20)
        self.err.close()
        with open(self.err_path, errors="replace") as f:
            err = f.read()
        check(self.proc.returncode == 0,
              f"server exit {self.proc.returncode}: {err[-2000:]}")
        return rest + err


class Kv:
    """Typed KV bodies through the capnp tool and kv.capnp."""

    def __init__(self, codec, schema):
        self.codec, self.schema = codec, schema

    def put(self, conn, key, value, timeout=5.0):
        body = self.codec.encode(self.schema, "PutRequest",
                                 {"key": key, "value": value})
        reply = conn.call(PUT, body, timeout)
        check(reply.ok, f"Put {key!r}: {reply}")
        self.codec.decode(self.schema, "PutReply", reply.payload)

    def get_request(self, key):
        return self.codec.encode(self.schema, "GetRequest", {"key": key})

    def get(self, conn, key, timeout=5.0):
        """(found, value) of a Get."""
        reply = conn.call(GET, self.get_request(key), timeout)
        check(reply.ok, f"Get {key!r}: {reply}")
        r = self.codec.decode(self.schema, "GetReply", reply.payload)
        return bool(r.get("found", False)), bytes(r.get("value", []))

    def delete(self, conn, key):
        body = self.codec.encode(self.schema, "DeleteRequest", {"key": key})
        reply = conn.call(DELETE, body)
        check(reply.ok, f"Delete {key!r}: {reply}")
        r = self.codec.decode(self.schema, "DeleteReply", reply.payload)
        return bool(r.get("existed", False))


def open_v2(address, codec):
    conn = oc.Connection.open(address, codec)
    v = conn.hello(1, 2, peer_name="outside-client-v2")
    check(v == 2, f"Hello{{1..2}}: the server's Hello says {v}, want 2 "
          f"({conn.server_hello})")
    return conn


def open_v1(address, codec):
    conn = oc.Connection.open(address, codec)
    v = conn.hello(1, 1, peer_name="outside-client-v1")  # maxProtocolVersion 0
    check(v == 1, f"Hello{{1, max 0}}: the server's Hello says {v}, want 1 "
          f"({conn.server_hello})")
    return conn


def check_unimplemented(conn, kv, what):
    token = oc.endpoint_token(NOPE)
    reply = conn.call(NOPE, kv.get_request("k"))
    check(reply.kind == "error" and reply.error_code == oc.UNIMPLEMENTED,
          f"{what}: {NOPE} answered {reply}, want errorCode 12")
    msg = reply.error_message.lower()
    names = [f"{token:x}", f"{token:016x}", str(token)]
    check(any(n in msg for n in names),
          f"{what}: the message {reply.error_message!r} does not name the "
          f"token {token:#x} ({token})")
    print(f"{what}: {NOPE} -> {reply}")


def case_v2_named(args, codec, kv):
    server = Server(args.server)
    with open_v2(server.address, codec) as conn:
        print(f"v2: server Hello {conn.server_hello}")
        check(int(conn.server_hello.get("maxProtocolVersion", 0)) >= 2,
              f"server Hello maxProtocolVersion: {conn.server_hello}")
        value = b"\x00value \xff\x01 from outside"
        kv.put(conn, "outside", value)
        found, got = kv.get(conn, "outside")
        check(found and got == value, f"Get after Put: {found} {got!r}")
        check(kv.delete(conn, "outside"), "Delete of a key Put: existed false")
        found, got = kv.get(conn, "outside")
        check(not found, f"Get after Delete: found {got!r}")
        check(not kv.delete(conn, "outside"), "second Delete: existed true")
        print("v2: Put, Get, Delete, Get by name: OK")
    server.stop()


def case_unimplemented(args, codec, kv):
    server = Server(args.server)
    with open_v2(server.address, codec) as conn:
        check_unimplemented(conn, kv, "v2")
        kv.put(conn, "k", b"v")
        check(kv.get(conn, "k") == (True, b"v"), "Get after Unimplemented")
    server.stop()


def case_v1(args, codec, kv):
    server = Server(args.server)
    with open_v2(server.address, codec) as v2, \
            open_v1(server.address, codec) as v1:
        kv.put(v2, "shared", b"written over v2")
        check(kv.get(v1, "shared") == (True, b"written over v2"),
              "v1: Get of a key Put over v2")
        kv.put(v1, "shared", b"written over v1")
        check(kv.get(v2, "shared") == (True, b"written over v1"),
              "v2: Get of a key Put over v1")
        check_unimplemented(v1, kv, "v1")
        try:
            v1.cancel(1)
            raise Failure("the client sent cancel on a version 1 connection")
        except oc.ProtocolError:
            pass  # DESIGN: new frames only on a version 2 connection
        check(kv.get(v1, "shared")[0], "v1 after Unimplemented")
        check(kv.get(v2, "shared")[0], "v2 beside v1")
        print("v1 and v2 on one server: OK")
    server.stop()


def case_negotiation(args, codec, kv):
    server = Server(args.server)
    with oc.Connection.open(server.address, codec) as conn:
        # Pipelined: a Put right after the Hello, before the server's Hello.
        conn.send_hello(1, 2)
        cid = conn.request(PUT, codec.encode(kv.schema, "PutRequest", {
            "key": "early", "value": b"pipelined"}), timeout_micros=5 * 10**6)
        check(conn.read_hello() == 2, f"pipelined: {conn.server_hello}")
        reply = conn.wait(cid)
        check(reply.ok, f"a Put pipelined after the Hello: {reply}")
        check(kv.get(conn, "early") == (True, b"pipelined"), "pipelined Put")
        print("a request pipelined after Hello{1..2}: OK")
    with oc.Connection.open(server.address, codec) as conn:
        v = conn.hello(2, 2)  # maxProtocolVersion 0, read as 2
        check(v == 2, f"Hello{{2, max 0}}: version {v}")
        check(kv.get(conn, "early")[0], "Get over Hello{2, max 0}")
        print("Hello{2, max 0} -> version 2")
    for lo, hi in ((3, 5), (0, 0)):
        with oc.Connection.open(server.address, codec) as conn:
            try:
                v = conn.hello(lo, hi)
                raise Failure(f"Hello{{{lo}..{hi}}} accepted: version {v}")
            except oc.ProtocolError as e:
                check(e.status == "FAILED_PRECONDITION", str(e))
                refusal = str(e)
            h = conn.server_hello
            # DESIGN: the refusal is Hello{its min, its max}, then a close.
            check(h is not None and int(h["protocolVersion"]) == 1 and
                  int(h.get("maxProtocolVersion", 0)) >= 2,
                  f"the refusing Hello: {h}")
            check(closed_by_server(conn), f"Hello{{{lo}..{hi}}}: the server "
                  "kept the connection open after refusing it")
            print(f"Hello{{{lo}..{hi}}} refused: {refusal}")
    server.stop()


def case_cancel(args, codec, kv):
    server = Server(args.server, *args.get_delay_flag.split())
    with open_v2(server.address, codec) as conn:
        kv.put(conn, "slow", b"value")
        start = time.monotonic()
        cid = conn.request(GET, kv.get_request("slow"), timeout_micros=10**7)
        time.sleep(0.3)  # the handler has it by now: its cancellation fires
        conn.cancel(cid)
        # Nothing for cid may surface; read past the Get delay.
        conn.pump(2.5)
        check(cid not in conn.replies, "a reply surfaced for a cancelled id")
        kv.put(conn, "after", b"cancel")  # (a Get would wait the delay)
        check(kv.delete(conn, "after"), "Delete of the key Put after the "
              "cancel: existed false")
        print(f"cancel of request {cid}: the connection stays healthy "
              f"({time.monotonic() - start:.1f} s; {conn.dropped} late "
              f"answer(s) dropped)")
    out = server.stop()
    lines = [l for l in out.splitlines() if GET in l and "cancelled=" in l]
    check(lines, f"no kv.KeyValue/Get line with cancelled= in the server's "
          f"output:\n{out[-3000:]}")
    m = re.search(r"cancelled=(\d+)", lines[-1])
    check(m and int(m.group(1)) == 1,
          f"want cancelled=1 for {GET}: {lines[-1]}")
    # The running handler was signalled (DESIGN: a cancel "signals the
    # running handler's cancellation"): the Get ended well before its 2 s
    # delay. absl's duration format; the longest Get is the cancelled one.
    m = re.search(r" max=([0-9.]+)(ms|s)\b", lines[-1])
    check(m is not None, f"no max= latency in the summary: {lines[-1]!r}")
    seconds = float(m.group(1)) / (1000 if m.group(2) == "ms" else 1)
    check(seconds < 1.5, f"the cancelled Get ran {seconds:.2f} s: its "
          "handler did not see the cancel")
    print(f"server: {lines[-1].strip()}")


def bad_frames(codec):
    """(name, bytes) sent after a good Hello; each must close the
    connection."""
    body = codec.encode_frame({"ping": 7})
    good_check = oc.xxh3_64(oc.frame_header(body)[:12]) & 0xFFFFFFFF
    twelve = bytes(12)
    junk = bytes(range(1, 9)) * 4  # a valid checksum, not a Frame message
    return [
        ("wrong header check",
         oc.frame_header(body, header_check=good_check ^ 1) + body),
        ("wrong body checksum",
         oc.frame_header(body, checksum=oc.xxh3_64(body) ^ 1) + body),
        ("length not a multiple of 8", oc.frame_header(twelve) + twelve),
        ("body not a Frame", oc.frame_header(junk) + junk),
    ]


def closed_by_server(conn, timeout=5.0):
    """True once the server closed the connection (EOF or reset)."""
    deadline = time.monotonic() + timeout
    conn.sock.settimeout(0.2)
    while time.monotonic() < deadline:
        try:
            data = conn.sock.recv(1 << 16)
        except socket.timeout:
            continue
        except ConnectionResetError:
            return True
        if not data:
            return True
    return False


def case_bad_frames(args, codec, kv):
    server = Server(args.server)
    with open_v2(server.address, codec) as good:
        kv.put(good, "k", b"before")
        for name, data in bad_frames(codec):
            with open_v2(server.address, codec) as bad:
                bad.send_raw(data)
                check(closed_by_server(bad),
                      f"{name}: the server kept the connection open")
            print(f"{name}: connection closed by the server")
            check(kv.get(good, "k") == (True, b"before"),
                  f"the good connection after {name}")
        kv.put(good, "k", b"after")
        check(kv.get(good, "k") == (True, b"after"), "the good connection")
        print("good connection undisturbed")
    out = server.stop()
    # A server that prints its ServerStats (moonpool-echo-server does) counts
    # each bad connection as one protocol error.
    m = re.findall(r"protocol_errors=(\d+)", out)
    if m:
        n = len(bad_frames(codec))
        check(int(m[-1]) == n, f"protocol_errors={m[-1]}, want {n}")


def case_keepalive(args, codec, kv):
    server = Server(args.server)
    with open_v2(server.address, codec) as conn:
        conn.send_pings = False
        kv.put(conn, "k", b"v")
        conn.pump(2.5)
        check(conn.pings_answered >= 1,
              "no ping from the server in 2.5 s of silence")
        check(kv.get(conn, "k") == (True, b"v"), "Get after the idle time")
        print(f"keepalive: {conn.pings_answered} ping(s) answered")
    server.stop()


def case_echo(args, codec, kv):
    server = Server(args.server, "--handlers", "2")
    for lo, hi in ((1, 1), (1, 2)):
        with oc.Connection.open(server.address, codec) as conn:
            v = conn.hello(lo, hi)
            check(lo <= v <= hi, f"Hello{{{lo}..{hi}}}: version {v}")
            payload = bytes(range(256)) * 3
            reply = conn.call(0, payload)
            check(reply.ok and reply.payload == payload,
                  f"echo over version {v}: {reply}")
            print(f"echo: Hello{{{lo}..{hi}}} -> version {v}, request on the "
                  f"default queue echoed")
    server.stop()


CASES = {"v2_named": case_v2_named, "unimplemented": case_unimplemented,
         "v1": case_v1, "negotiation": case_negotiation,
         "cancel": case_cancel, "bad_frames": case_bad_frames,
         "keepalive": case_keepalive, "echo": case_echo}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("case", choices=sorted(CASES))
    ap.add_argument("--server", required=True,
                    help="moonpool-kv-server (moonpool-echo-server for echo)")
    ap.add_argument("--kv-schema", default=KV_SCHEMA)
    ap.add_argument("--frame-schema", default=oc.FRAME_SCHEMA)
    ap.add_argument("--capnp", default="capnp")
    ap.add_argument("--get-delay-flag", default="--get_delay=2",
                    help="the server flag(s) that delay every Get")
    args = ap.parse_args()
    codec = oc.Capnp(args.frame_schema, args.capnp)
    kv = Kv(codec, os.path.abspath(args.kv_schema))
    try:
        CASES[args.case](args, codec, kv)
    except (Failure, oc.ProtocolError, TimeoutError, OSError) as e:
        print(f"FAIL {args.case}: {type(e).__name__}: {e}\n(logs in "
              f"{tmpdir})", file=sys.stderr)
        return 1
    finally:
        kill_children()
    print(f"PASS {args.case}")
    shutil.rmtree(tmpdir, ignore_errors=True)  # kept on failure only
    return 0


if __name__ == "__main__":
    sys.exit(main())
