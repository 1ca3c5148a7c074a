#!/usr/bin/env python3
"""moonpool-kv-server and moonpool-kv as real processes on loopback.

A server on port 0; the client program's get/put/delete print what they did
and exit 0 (a missing key included); scan prints one KEY=VALUE line per key
of its range in key order, then its end line, whatever the window (one far
smaller than the items too) or the limit; a usage error exits 2; a call to a port
nobody listens on fails (exit 1, its Status on stderr), at once with
--fail-fast; SIGTERM drains the server, which exits 0 and writes one line of
counters per method to stderr.

Usage: programs_test.py --server BIN --client BIN
"""
import argparse
import re
import select
import signal
import socket
import subprocess
import sys
import time


class Failure(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Failure(msg)


def kv(client, address, *args, timeout="5", extra=()):
    cmd = [client, "--server", address, "--timeout", timeout, *extra, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30)


def expect(client, address, args, stdout, code=0):
    out = kv(client, address, *args)
    check(out.returncode == code and out.stdout == stdout,
          f"moonpool-kv {' '.join(args)}: exit {out.returncode} stdout "
          f"{out.stdout!r} stderr {out.stderr!r}; wanted exit {code} stdout "
          f"{stdout!r}")
    shown = repr(stdout.strip())
    print(f"ok: moonpool-kv {' '.join(args)} -> "
          f"{shown if len(shown) < 100 else shown[:96] + '...'}")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(server_bin, client):
    server = subprocess.Popen([server_bin, "--listen", "127.0.0.1:0"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    try:
        ready, _, _ = select.select([server.stdout], [], [], 20)
        line = server.stdout.readline() if ready else ""
        check(line.startswith("listening on "), f"server said {line!r}")
        address = line.split()[-1]

        expect(client, address, ["get", "colour"], "(not found)\n")
        expect(client, address, ["put", "colour", "blue"], "OK\n")
        expect(client, address, ["get", "colour"], "blue\n")
        expect(client, address, ["put", "colour", "green"], "OK\n")
        expect(client, address, ["get", "colour"], "green\n")
        expect(client, address, ["delete", "colour"], "deleted\n")
        expect(client, address, ["delete", "colour"], "(not found)\n")
        expect(client, address, ["get", "colour"], "(not found)\n")

        # Scans: one KEY=VALUE line per key of [START, END), then the end.
        fruit = {"apple": "red", "banana": "yellow", "cherry": "dark red",
                 "date": "brown", "elderberry": "purple" * 40}
        for key, value in fruit.items():
            expect(client, address, ["put", key, value], "OK\n")

        def lines(keys):
            return "".join(f"{k}={fruit[k]}\n" for k in keys) + \
                f"(end: {len(keys)} {'key' if len(keys) == 1 else 'keys'})\n"
        everything = sorted(fruit)
        expect(client, address, ["scan", ""], lines(everything))
        expect(client, address, ["scan", "b", "d"], lines(["banana", "cherry"]))
        expect(client, address, ["scan", "banana", "date"],
               lines(["banana", "cherry"]))
        expect(client, address, ["scan", "a", "--limit", "2"],
               lines(["apple", "banana"]))
        expect(client, address, ["scan", "z"], lines([]))
        # A window of 64 bytes: smaller than every item (~240 B for
        # elderberry); the server waits for credit before each one.
        expect(client, address, ["scan", "", "--window-bytes", "64"],
               lines(everything))
        scans = 6

        out = kv(client, address, "scan")
        check(out.returncode == 2, f"scan without START: exit {out.returncode}")
        out = kv(client, address, "scan", "a", "--window-bytes", "0")
        check(out.returncode == 2, f"scan --window-bytes 0: exit {out.returncode}")

        out = kv(client, address, "frobnicate", "colour")
        check(out.returncode == 2 and "unknown command" in out.stderr,
              f"usage error: exit {out.returncode} stderr {out.stderr!r}")
        out = kv(client, address, "put", "colour")
        check(out.returncode == 2, f"put without a value: exit {out.returncode}")
        print("ok: usage errors exit 2")

        dead = f"127.0.0.1:{free_port()}"
        out = kv(client, dead, "get", "colour", timeout="1")
        check(out.returncode == 1 and out.stdout == "" and
              re.search(r"UNAVAILABLE|DEADLINE_EXCEEDED", out.stderr),
              f"nobody listening: exit {out.returncode} stderr {out.stderr!r}")
        start = time.monotonic()
        out = kv(client, dead, "get", "colour", timeout="20",
                 extra=["--fail-fast"])
        took = time.monotonic() - start
        check(out.returncode == 1 and "UNAVAILABLE" in out.stderr and took < 10,
              f"--fail-fast, nobody listening: exit {out.returncode} after "
              f"{took:.1f}s, stderr {out.stderr!r}")
        print(f"ok: nobody listening: exit 1; --fail-fast gave up after {took:.2f}s")
        out = kv(client, dead, "scan", "a", timeout="20", extra=["--fail-fast"])
        check(out.returncode == 1 and out.stdout == "" and
              "UNAVAILABLE" in out.stderr,
              f"scan, nobody listening: exit {out.returncode} stdout "
              f"{out.stdout!r} stderr {out.stderr!r}")
        print("ok: scan, nobody listening: exit 1")

        server.send_signal(signal.SIGTERM)
        _, err = server.communicate(timeout=30)
        check(server.returncode == 0, f"server exit {server.returncode}: {err}")
        stats = {m.group(1): m.group(2) for m in
                 re.finditer(r"method (\S+) (requests=.*)", err)}
        want = {"kv.KeyValue/Get": (4, 4), "kv.KeyValue/Put": (7, 7),
                "kv.KeyValue/Delete": (2, 2), "kv.KeyValue/Scan": (scans, scans)}
        for name, (requests, replies) in want.items():
            line = stats.get(name, "")
            check(f"requests={requests} " in line and
                  f"replies={replies} " in line and "errors=0 " in line and
                  "cancelled=0 " in line,
                  f"server counters for {name}: {line!r} (stderr {err!r})")
            print(f"ok: {name} {line}")
        scan_items = 5 + 2 + 2 + 2 + 0 + 5
        check(f"items={scan_items} " in stats.get("kv.KeyValue/Scan", ""),
              f"Scan items: {stats.get('kv.KeyValue/Scan')!r}, wanted {scan_items}")
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--server", required=True)
    p.add_argument("--client", required=True)
    a = p.parse_args()
    try:
        run(a.server, a.client)
    except Failure as e:
        sys.exit(f"FAIL: {e}")
    print("PASSED")


if __name__ == "__main__":
    main()
