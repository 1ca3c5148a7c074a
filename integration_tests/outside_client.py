#!/usr/bin/env python3
"""An outside client of moonpool, written from DESIGN.md section 5 alone.

What it is: a small, blocking, one-connection client of the moonpool wire
protocol (versions 1 and 2) in Python, built only from the normative text of
DESIGN.md section 5 and the schema file it names
(packages/moonpool-wire/include/moonpool/wire/frame.capnp). It frames bodies
itself (the 16-byte header: body length, XXH3_64bits of the body, low 32 bits
of XXH3_64bits of the first 12 header bytes, all little-endian, seed 0) and
lets the `capnp` tool encode and decode the Cap'n Proto bodies
(`capnp convert text:binary` in, `capnp convert binary:json` out). It
negotiates the version with a Hello range, calls named methods (endpoint =
XXH3_64bits(name), seed 0) or raw endpoint tokens, reads replies and error
replies (errorCode, errorMessage), sends `cancel` on a version 2 connection,
and answers pings with pongs. Nothing here comes from the C++ sources: it is
the check that DESIGN is enough to talk to a moonpool server.

What it is not: a production client. One connection, no reconnection, no
concurrency beyond pipelining requests and reading their replies in any
order; each body costs a `capnp` process. The caller owns the Connection and
closes it.

Library use (see outside_client_test.py):

    codec = Capnp(FRAME_SCHEMA)
    with Connection.open("127.0.0.1:4000", codec) as conn:
        conn.hello(1, 2)                   # -> conn.version == 2
        body = codec.encode("kv.capnp", "GetRequest", {"key": "a"})
        reply = conn.call("kv.KeyValue/Get", body, timeout=1.0)

CLI:

    outside_client.py --server HOST:PORT [--versions 1-2] hello
    outside_client.py --server HOST:PORT call kv.KeyValue/Get \\
        --schema examples/kv/kv.capnp --request-type GetRequest \\
        --reply-type GetReply --request '(key = "a")' [--timeout 1]
    outside_client.py --server HOST:PORT raw 0 'payload bytes'

Exit status: 0 for an OK reply (or Hello), 2 for an error reply (its code
and message printed), 1 for anything else (connection or protocol failure).
"""

import argparse
import ctypes
import json
import os
import random
import select
import socket
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
FRAME_SCHEMA = os.path.join(HERE, os.pardir, "packages", "moonpool-wire",
                            "include", "moonpool", "wire", "frame.capnp")

MAGIC = 0x4D4F4F4E504F4F4C  # "MOONPOOL"
HEADER_BYTES = 16
MAX_FRAME_BYTES = 16 << 20  # the default limit; a peer may choose another
PING_INTERVAL = 1.0  # DESIGN's documented defaults
PEER_TIMEOUT = 4.0

# absl::StatusCode values that error replies carry in errorCode.
STATUS_NAMES = {
    0: "OK", 1: "CANCELLED", 2: "UNKNOWN", 3: "INVALID_ARGUMENT",
    4: "DEADLINE_EXCEEDED", 5: "NOT_FOUND", 6: "ALREADY_EXISTS",
    7: "PERMISSION_DENIED", 8: "RESOURCE_EXHAUSTED", 9: "FAILED_PRECONDITION",
    10: "ABORTED", 11: "OUT_OF_RANGE", 12: "UNIMPLEMENTED", 13: "INTERNAL",
    14: "UNAVAILABLE", 15: "DATA_LOSS", 16: "UNAUTHENTICATED",
}
UNIMPLEMENTED = 12


# ---------------------------------------------------------------- XXH3


def _xxh3_function():
    """XXH3_64bits with seed 0: python3-xxhash (Debian python3-xxhash) if this
    interpreter has it, else the system libxxhash (libxxhash-dev, which the
    build needs anyway) through ctypes, for an interpreter (pyenv, venv) that
    does not see the Debian module."""
    try:
        import xxhash  # noqa: PLC0415
        return xxhash.xxh3_64_intdigest
    except ImportError:
        pass
    for name in ("libxxhash.so.0", "libxxhash.so"):
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        fn = lib.XXH3_64bits
        fn.restype = ctypes.c_uint64
        fn.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
        return lambda data: fn(bytes(data), len(data))
    raise ImportError("no xxhash: apt-get install python3-xxhash libxxhash0")


xxh3_64 = _xxh3_function()


def endpoint_token(name):
    """A method's endpoint token: XXH3_64bits of its name, seed 0."""
    return xxh3_64(name.encode("ascii"))


def frame_header(body, length=None, checksum=None, header_check=None):
    """The 16-byte header of a body. length, checksum and header_check
    override the computed fields (to send a corrupt frame on purpose); the
    header check is computed over the fields as given."""
    head = struct.pack("<IQ", len(body) if length is None else length,
                       xxh3_64(body) if checksum is None else checksum)
    if header_check is None:
        header_check = xxh3_64(head) & 0xFFFFFFFF
    return head + struct.pack("<I", header_check)


# ---------------------------------------------------------------- Cap'n Proto


class Enum(str):
    """An enumerant in a text literal: written bare, not quoted."""


def text_literal(value):
    """A Python value as a Cap'n Proto text-format literal: dict -> struct (a
    one-key dict is also how a union member is chosen), bytes -> Data,
    str -> Text, Enum -> enumerant, bool, int, list."""
    if isinstance(value, dict):
        return "(" + ", ".join(f"{k} = {text_literal(v)}"
                               for k, v in value.items()) + ")"
    if isinstance(value, (bytes, bytearray)):
        # The tool's parser refuses an empty 0x"" literal.
        return '0x"' + bytes(value).hex() + '"' if value else '""'
    if isinstance(value, Enum):
        return str(value)
    if isinstance(value, str):
        out = []
        for b in value.encode("utf-8"):
            c = chr(b)
            if c in '"\\' or not 0x20 <= b < 0x7F:
                out.append(f"\\x{b:02x}")
            else:
                out.append(c)
        return '"' + "".join(out) + '"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(text_literal(v) for v in value) + "]"
    raise TypeError(f"no text literal for {value!r}")


class Capnp:
    """Encodes and decodes Cap'n Proto messages with the `capnp` tool (one
    process per message). Messages are in the standard unpacked stream
    framing, as DESIGN section 5 says frame bodies are."""

    def __init__(self, frame_schema=FRAME_SCHEMA, capnp="capnp"):
        self.frame_schema = os.path.abspath(frame_schema)
        self.capnp = capnp

    def _run(self, args, data):
        p = subprocess.run([self.capnp, "convert"] + args, input=data,
                           capture_output=True, timeout=30)
        if p.returncode != 0:
            raise ValueError(f"capnp convert {' '.join(args)}: "
                             f"{p.stderr.decode(errors='replace').strip()}")
        return p.stdout

    def encode(self, schema, type_name, value):
        """value: a dict (see text_literal) or a text literal string."""
        text = value if isinstance(value, str) else text_literal(value)
        return self._run(["text:binary", schema, type_name], text.encode())

    def decode(self, schema, type_name, data):
        """The message as the tool's JSON: UInt64 as decimal strings, Data as
        lists of byte values, enums as names, a union as its one member."""
        # --quiet: the tool guesses the input's format and refuses some
        # valid standard-framing messages (an empty struct) as "flat"; we
        # know the framing, so its guess is not wanted.
        out = self._run(["binary:json", "--short", "--quiet", schema,
                         type_name], bytes(data))
        return json.loads(out)

    def encode_frame(self, frame):
        return self.encode(self.frame_schema, "Frame", frame)

    def decode_frame(self, body):
        return self.decode(self.frame_schema, "Frame", body)


# ---------------------------------------------------------------- connection


class ProtocolError(Exception):
    """The peer broke DESIGN section 5 (or the connection ended); status is
    the absl code name DESIGN gives for that check."""

    def __init__(self, status, message):
        super().__init__(f"{status}: {message}")
        self.status = status


class Reply:
    """The answer to one request: kind "reply" (payload) or "error"
    (error_code, error_message)."""

    def __init__(self, envelope):
        self.correlation_id = int(envelope.get("correlationId", "0"))
        self.kind = envelope.get("kind", "request")
        self.payload = bytes(envelope.get("payload", []))
        self.error_code = int(envelope.get("errorCode", 0))
        self.error_message = envelope.get("errorMessage", "")

    @property
    def ok(self):
        return self.kind == "reply"

    def __repr__(self):
        if self.ok:
            return f"Reply(id={self.correlation_id}, payload={self.payload!r})"
        return (f"Reply(id={self.correlation_id}, {self.kind}, "
                f"{STATUS_NAMES.get(self.error_code, self.error_code)}: "
                f"{self.error_message!r})")


class Connection:
    """One TCP connection speaking the moonpool wire protocol as a client."""

    def __init__(self, sock, codec):
        self.sock = sock
        self.codec = codec
        self.buf = bytearray()
        self.version = 0  # negotiated; 0 before the server's Hello
        self.server_hello = None
        self.next_id = 1  # correlation ids increase from 1, never reused
        self.pending = set()  # ids sent and not answered nor cancelled
        self.replies = {}  # id -> Reply read while waiting for another id
        self.cancelled = set()
        self.dropped = 0  # replies for unknown (or cancelled) ids
        self.pings_answered = 0
        self.pongs_received = 0
        self.goodbye = None
        self.last_received = time.monotonic()
        self.ping_nonce = 0
        self.send_pings = True  # False: only answer the server's pings

    @classmethod
    def open(cls, address, codec, timeout=5.0):
        host, port = address.rsplit(":", 1)
        sock = socket.create_connection((host.strip("[]"), int(port)),
                                        timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(sock, codec)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self.sock.close()

    # -- frames out

    def send_frame(self, frame):
        body = self.codec.encode_frame(frame)
        self.sock.sendall(frame_header(body) + body)

    def send_raw(self, data):
        self.sock.sendall(data)

    # -- frames in

    def _fill(self, deadline):
        """Reads what the socket has (up to deadline). Sends a ping after
        PING_INTERVAL without a byte; PEER_TIMEOUT without one is a dead
        peer."""
        while True:
            now = time.monotonic()
            if now >= deadline:
                raise TimeoutError("no frame before the deadline")
            quiet = now - self.last_received
            if quiet >= PEER_TIMEOUT:
                raise ProtocolError("UNAVAILABLE",
                                    f"no byte from the peer for {quiet:.1f} s")
            wait = min(deadline - now, PING_INTERVAL)
            ready, _, _ = select.select([self.sock], [], [], wait)
            if ready:
                data = self.sock.recv(1 << 16)
                if not data:
                    raise ProtocolError("UNAVAILABLE", "connection closed by "
                                        "the peer")
                self.buf += data
                self.last_received = time.monotonic()
                return
            quiet = time.monotonic() - self.last_received
            if (self.send_pings and self.server_hello is not None
                    and quiet >= PING_INTERVAL):
                self.ping_nonce += 1
                self.send_frame({"ping": self.ping_nonce})

    def read_frame(self, timeout=5.0):
        """The next frame as decoded JSON, after DESIGN's checks in DESIGN's
        order."""
        deadline = time.monotonic() + timeout
        while len(self.buf) < HEADER_BYTES:
            self._fill(deadline)
        head = bytes(self.buf[:HEADER_BYTES])
        length, checksum, check = struct.unpack("<IQI", head)
        if xxh3_64(head[:12]) & 0xFFFFFFFF != check:
            raise ProtocolError("DATA_LOSS", "header check mismatch")
        if length == 0 or length % 8:
            raise ProtocolError("INVALID_ARGUMENT", f"body length {length}")
        if length > MAX_FRAME_BYTES:
            raise ProtocolError("RESOURCE_EXHAUSTED", f"body length {length}")
        while len(self.buf) < HEADER_BYTES + length:
            self._fill(deadline)
        body = bytes(self.buf[HEADER_BYTES:HEADER_BYTES + length])
        del self.buf[:HEADER_BYTES + length]
        if xxh3_64(body) != checksum:
            raise ProtocolError("DATA_LOSS", "body checksum mismatch")
        try:
            return self.codec.decode_frame(body)
        except ValueError as e:
            raise ProtocolError("INVALID_ARGUMENT", str(e)) from e

    def _dispatch(self, frame):
        """Handles one frame after the Hello; returns the Reply if it is an
        answer to a pending request, else None."""
        if "ping" in frame:
            self.send_frame({"pong": int(frame["ping"])})
            self.pings_answered += 1
        elif "pong" in frame:
            self.pongs_received += 1
        elif "goodbye" in frame:
            self.goodbye = frame["goodbye"]
        elif "envelope" in frame:
            env = frame["envelope"]
            if env.get("kind") not in ("reply", "error"):
                raise ProtocolError("UNIMPLEMENTED", "this client serves no "
                                    f"requests: {env}")
            reply = Reply(env)
            if reply.correlation_id not in self.pending:
                self.dropped += 1  # unknown or cancelled: dropped, counted
                return None
            self.pending.discard(reply.correlation_id)
            return reply
        elif "hello" in frame:
            raise ProtocolError("FAILED_PRECONDITION", "a second Hello")
        # Union members this client does not know (a later version) on a
        # connection that negotiated them cannot happen: we offer at most 2.
        return None

    # -- handshake

    def hello(self, min_version=1, max_version=2, peer_name="outside-client",
              incarnation=None, timeout=5.0):
        """Sends Hello{protocolVersion = min, maxProtocolVersion = max (0
        when max == min: a version 1 Hello when both are 1)}, reads the
        server's Hello, checks it and returns the negotiated version."""
        self.send_hello(min_version, max_version, peer_name, incarnation)
        return self.read_hello(timeout)

    def send_hello(self, min_version=1, max_version=2,
                   peer_name="outside-client", incarnation=None):
        """The Hello alone: requests may be pipelined after it, before
        read_hello (relying on nothing new in version 2)."""
        self.min_version, self.max_version = min_version, max_version
        if incarnation is None:
            incarnation = random.getrandbits(64) or 1
        self.incarnation = incarnation
        hello = {"magic": MAGIC, "protocolVersion": min_version,
                 "peerName": peer_name, "incarnation": incarnation}
        if max_version != min_version:
            hello["maxProtocolVersion"] = max_version
        self.send_frame({"hello": hello})

    def read_hello(self, timeout=5.0):
        frame = self.read_frame(timeout)
        if "hello" not in frame:
            raise ProtocolError("FAILED_PRECONDITION",
                                f"first frame is not a Hello: {frame}")
        h = frame["hello"]
        self.server_hello = h
        if int(h.get("magic", "0")) != MAGIC:
            raise ProtocolError("FAILED_PRECONDITION",
                                f"wrong magic {h.get('magic')}")
        v = int(h.get("protocolVersion", 0))
        server_max = int(h.get("maxProtocolVersion", 0)) or v
        if not self.min_version <= v <= self.max_version:
            raise ProtocolError(
                "FAILED_PRECONDITION",
                f"incompatible protocol version: the server speaks "
                f"[{v}, {server_max}], this side [{self.min_version}, "
                f"{self.max_version}]")
        self.version = v
        return v

    # -- requests

    def request(self, endpoint, payload=b"", timeout_micros=0,
                correlation_id=None):
        """Sends a request; endpoint is a method name or a token (0: the
        server's default queue). Returns its correlation id."""
        token = endpoint_token(endpoint) if isinstance(endpoint, str) \
            else endpoint
        cid = correlation_id if correlation_id is not None else self.next_id
        self.next_id = max(self.next_id, cid + 1)
        self.pending.add(cid)
        self.send_frame({"envelope": {
            "correlationId": cid, "kind": Enum("request"), "endpoint": token,
            "payload": payload, "timeoutMicros": timeout_micros}})
        return cid

    def cancel(self, correlation_id):
        """Gives up on a request: one `cancel` frame; its answer, if one
        comes, is dropped. Version 2 only (DESIGN: what is new in version 2
        is sent only on a version 2 connection)."""
        if self.version < 2:
            raise ProtocolError("FAILED_PRECONDITION",
                                f"cancel on a version {self.version} "
                                "connection")
        self.pending.discard(correlation_id)
        self.cancelled.add(correlation_id)
        self.send_frame({"cancel": correlation_id})

    def wait(self, correlation_id, timeout=5.0):
        """The answer to one request, reading (and answering pings) until it
        comes; answers to other requests are kept for their own wait."""
        deadline = time.monotonic() + timeout
        while correlation_id not in self.replies:
            reply = self._dispatch(
                self.read_frame(max(0.0, deadline - time.monotonic())))
            if reply is not None:
                self.replies[reply.correlation_id] = reply
        return self.replies.pop(correlation_id)

    def call(self, endpoint, payload=b"", timeout=5.0):
        """request + wait, with the timeout also sent as the budget."""
        cid = self.request(endpoint, payload, int(timeout * 1e6))
        return self.wait(cid, timeout + 1.0)

    def pump(self, seconds):
        """Reads and handles frames for a while (pings, late replies)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                reply = self._dispatch(
                    self.read_frame(max(0.0, deadline - time.monotonic())))
            except TimeoutError:
                return
            if reply is not None:
                self.replies[reply.correlation_id] = reply


# ---------------------------------------------------------------- CLI


def _versions(text):
    lo, _, hi = text.partition("-")
    return int(lo), int(hi or lo)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--server", required=True, help="HOST:PORT")
    ap.add_argument("--versions", type=_versions, default=(1, 2),
                    help="the version range offered, MIN-MAX (default 1-2)")
    ap.add_argument("--frame-schema", default=FRAME_SCHEMA)
    ap.add_argument("--timeout", type=float, default=5.0, help="seconds")
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("hello", help="handshake only; prints the server's Hello")
    c = sub.add_parser("call", help="a typed call of a named method")
    c.add_argument("method", help='"Service/Method"')
    c.add_argument("--schema", required=True, help="the method's .capnp")
    c.add_argument("--request-type", required=True)
    c.add_argument("--reply-type", required=True)
    c.add_argument("--request", default="()", help="a Cap'n Proto text "
                   "literal of the request struct")
    r = sub.add_parser("raw", help="a request with bytes as its payload")
    r.add_argument("endpoint", help="a method name or a decimal token "
                   "(0: the default queue)")
    r.add_argument("payload", nargs="?", default="")
    args = ap.parse_args(argv)

    codec = Capnp(args.frame_schema)
    try:
        with Connection.open(args.server, codec, args.timeout) as conn:
            v = conn.hello(*args.versions, timeout=args.timeout)
            if args.command == "hello":
                print(json.dumps({"version": v, "hello": conn.server_hello}))
                return 0
            if args.command == "call":
                payload = codec.encode(args.schema, args.request_type,
                                       args.request)
                reply = conn.call(args.method, payload, args.timeout)
            else:
                ep = int(args.endpoint) if args.endpoint.isdigit() \
                    else args.endpoint
                reply = conn.wait(conn.request(
                    ep, args.payload.encode(), int(args.timeout * 1e6)),
                    args.timeout + 1.0)
            if not reply.ok:
                print(f"{STATUS_NAMES.get(reply.error_code, reply.error_code)}"
                      f" ({reply.error_code}): {reply.error_message}")
                return 2
            if args.command == "call":
                print(json.dumps(codec.decode(args.schema, args.reply_type,
                                              reply.payload)))
            else:
                sys.stdout.buffer.write(reply.payload + b"\n")
            return 0
    except (OSError, ProtocolError, TimeoutError, ValueError) as e:
        print(f"outside_client: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
