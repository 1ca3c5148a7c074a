#!/usr/bin/env python3
"""Process-level integration tests of the transport (CTest label integration).

Real moonpool-echo-server and moonpool-pingpong processes on loopback (and,
for `netns`, across a veth pair between two network namespaces):

  many_clients      100 connections against one server: every request answered
                    and its payload checked.
  kill_restart      the server is SIGKILLed mid-load and restarted on the same
                    port: idempotent requests all succeed; non-idempotent ones
                    succeed or fail with Aborted/Unavailable/DeadlineExceeded,
                    never silence, never a wrong payload.
  graceful_restart  the server is SIGTERMed mid-load (a drain with Goodbye) and
                    restarted: nothing is lost, every request ends OK.
  netns             server and client in two network namespaces joined by a veth
                    pair (192.0.2.1/24 and 192.0.2.2/24); skipped, with the
                    reason, where `ip netns add` is not permitted.
  load_1000         1,000 concurrent connections against one server: every
                    request's outcome counted (all OK, no wrong payload), the
                    throughput, latency percentiles and the server's peak RSS
                    reported, and the RSS held under a bound.
  stall_short       the server is SIGSTOPped for 2 s mid-load, less than the
                    keepalive timeout (4 s), then SIGCONTed: a stall is not a
                    close, so every request ends OK on the same connections.
  stall_long        SIGSTOP for 6 s, past the keepalive timeout: the keepalive
                    declares the connections dead and they are replaced;
                    idempotent requests all end OK, the others OK or with a
                    documented failure, none silent.
  partition         in network namespaces, the veth link is set down for 2 s
                    mid-load and up again (a real partition): every request
                    ends OK (skipped where `ip netns add` is not permitted).
  threads           moonpool-echo-server --threads 2 (two loops on one port,
                    SO_REUSEPORT) and moonpool-pingpong --threads 2 over 32
                    connections: every request answered with its payload,
                    both server loops served some, and the server's summed
                    counters match the client's.

Usage: process_test.py TEST --server PATH --pingpong PATH [--long]
--long runs the load tests for 30 s instead of a few (the documented long
version, `bash ci/reliability-long.sh`); figures go to stdout.
Every child is killed when the test ends, however it ends (and, through
PR_SET_PDEATHSIG, if this script itself is killed); namespaces it made are
deleted. Exit status 0 (pass), 1 (fail), 77 (skipped).
"""

import argparse
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from process_util import (SKIP, Failure, Skipped, check, kill_children,
                          read_listening_address, server_env, spawn,
                          status_kib)

FAULT_CODES = {"ABORTED", "UNAVAILABLE", "DEADLINE_EXCEEDED"}

namespaces = []
tmpdir = tempfile.mkdtemp(prefix="moonpool-process-test.")


def log(msg):
    print(f"process_test: {msg}", flush=True)


# Each server's log file gets the next number.
next_server = itertools.count().__next__


def cleanup():
    kill_children()
    for ns in namespaces:
        subprocess.run(["ip", "netns", "del", ns], stderr=subprocess.DEVNULL)


def prefix(netns):
    return ["ip", "netns", "exec", netns] if netns else []


class Server:
    """A moonpool-echo-server; its address comes from its first stdout line."""

    def __init__(self, binary, host="127.0.0.1", port=0, netns=None,
                 args=()):
        self.log_path = os.path.join(tmpdir, f"server-{next_server()}.log")
        self.log = open(self.log_path, "w")
        cmd = prefix(netns) + [binary, "--listen", f"{host}:{port}",
                               "--drain-timeout", "5"] + list(args)
        self.proc = spawn(cmd, stdout=subprocess.PIPE, stderr=self.log,
                          text=True, env=server_env())
        address = read_listening_address(self.proc)
        if address is None:
            self.proc.kill()
            raise Failure(f"server did not start; log: {self.stderr()}")
        self.address = address
        self.port = int(self.address.rsplit(":", 1)[1])

    def stderr(self):
        self.log.flush()
        with open(self.log_path) as f:
            return f.read().strip()

    def signal(self, sig):
        self.proc.send_signal(sig)

    def status_kib(self, field):
        """VmRSS, VmHWM (peak RSS) ... of the live server, in KiB."""
        return status_kib(self.proc.pid, field)

    def wait(self, timeout):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise Failure(f"server did not exit within {timeout} s; "
                          f"log: {self.stderr()}")


def restart_server(binary, port, netns=None):
    # The port was just released; give the kernel a moment if it disagrees.
    for _ in range(50):
        try:
            return Server(binary, port=port, netns=netns)
        except Failure as e:
            last = e
            time.sleep(0.1)
    raise last


class Pingpong:
    def __init__(self, binary, address, args, name, netns=None):
        self.name = name
        self.json_path = os.path.join(tmpdir, f"{name}.json")
        self.out_path = os.path.join(tmpdir, f"{name}.out")
        self.out = open(self.out_path, "w")
        cmd = prefix(netns) + [binary, "--connect", address,
                               "--json", self.json_path] + args
        log(f"{name}: {' '.join(cmd)}")
        self.proc = spawn(cmd, stdout=self.out, stderr=subprocess.STDOUT)

    def finish(self, timeout=30):
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise Failure(f"{self.name}: still running after {timeout} s")
        self.out.close()
        with open(self.out_path) as f:
            output = f.read()
        print("".join(f"  {self.name} | {l}\n" for l in output.splitlines()),
              end="", flush=True)
        try:
            with open(self.json_path) as f:
                summary = json.load(f)
        except (OSError, ValueError) as e:
            raise Failure(f"{self.name}: no summary ({e}), exit {rc}")
        return rc, summary


def check_accounted(name, s, allowed):
    """Every request has exactly one outcome, all of them allowed."""
    outcomes = s["outcomes"]
    check(s["mismatches"] == 0, f"{name}: {s['mismatches']} wrong payloads")
    check(s["unfinished"] == 0, f"{name}: {s['unfinished']} requests silent")
    check(sum(outcomes.values()) + s["mismatches"] == s["requests"],
          f"{name}: outcomes {outcomes} do not add up to {s['requests']}")
    check(s["completed"] == s["requests"], f"{name}: not all completed")
    bad = {k: v for k, v in outcomes.items() if k != "OK" and k not in allowed}
    check(not bad, f"{name}: unexpected outcomes {bad}")
    check(outcomes.get("OK", 0) > 0, f"{name}: no request succeeded")


def test_many_clients(a):
    server = Server(a.server)
    pp = Pingpong(a.pingpong, server.address,
                  ["--connections", "100", "--in-flight", "2", "--payload",
                   "256", "--duration", "2"], "pingpong")
    rc, s = pp.finish()
    check_accounted("pingpong", s, allowed=set())
    check(rc == 0, f"pingpong exited {rc}")
    server.signal(signal.SIGTERM)
    check(server.wait(10) == 0, f"server exit status; log: {server.stderr()}")
    log(f"server: {server.stderr()}")
    check("100 connections accepted" in server.stderr(),
          "server did not see 100 connections")


def test_kill_restart(a):
    server = Server(a.server)
    common = ["--connections", "4", "--in-flight", "8", "--duration",
              duration(a, "3"),
              "--timeout", "5", "--max-backoff", "0.2"]
    idem = Pingpong(a.pingpong, server.address, common + ["--idempotent"],
                    "idempotent")
    plain = Pingpong(a.pingpong, server.address, common + ["--allow-faults"],
                     "non-idempotent")
    time.sleep(1.0)
    log("SIGKILL the server mid-load")
    server.signal(signal.SIGKILL)
    server.wait(5)
    time.sleep(0.3)
    server = restart_server(a.server, server.port)
    log(f"restarted on {server.address}")
    rc_i, s_i = idem.finish(timeout=120 if a.long else 30)
    rc_p, s_p = plain.finish(timeout=120 if a.long else 30)
    check_accounted("idempotent", s_i, allowed=set())
    check(rc_i == 0, f"idempotent pingpong exited {rc_i}")
    check_accounted("non-idempotent", s_p, allowed=FAULT_CODES)
    check(rc_p == 0, f"non-idempotent pingpong exited {rc_p}")
    log(f"outcomes: idempotent {s_i['outcomes']}, "
        f"non-idempotent {s_p['outcomes']}")
    for name, s in (("idempotent", s_i), ("non-idempotent", s_p)):
        check(s["tcp_connections"] > 4,
              f"{name}: never reconnected ({s['tcp_connections']})")
    server.signal(signal.SIGTERM)
    check(server.wait(10) == 0, "restarted server exit status")


def test_graceful_restart(a):
    server = Server(a.server)
    pp = Pingpong(a.pingpong, server.address,
                  ["--connections", "4", "--in-flight", "16", "--duration",
                   duration(a, "3"), "--timeout", "5", "--max-backoff", "0.2"],
                  "pingpong")
    time.sleep(1.0)
    log("SIGTERM the server mid-load (drain)")
    server.signal(signal.SIGTERM)
    rc = server.wait(10)
    log(f"server: {server.stderr()}")
    check(rc == 0, f"drained server exited {rc}")
    server = restart_server(a.server, server.port)
    log(f"restarted on {server.address}")
    rc, s = pp.finish(timeout=120 if a.long else 30)
    check_accounted("pingpong", s, allowed=set())
    check(rc == 0, f"pingpong exited {rc}")
    check(s["tcp_connections"] > 4,
          f"never reconnected ({s['tcp_connections']} connections)")
    log(f"{s['retries']} requests sent again after the Goodbye")
    server.signal(signal.SIGTERM)
    check(server.wait(10) == 0, "restarted server exit status")


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise Failure(f"{' '.join(cmd)}: {r.stderr.strip()}")


def test_netns(a):
    ns_srv, ns_cli, _ = make_namespaces()
    server = Server(a.server, host="192.0.2.1", netns=ns_srv)
    log(f"server in {ns_srv} on {server.address}")
    pp = Pingpong(a.pingpong, server.address,
                  ["--connections", "8", "--in-flight", "8", "--payload",
                   "1024", "--duration", "2"], "pingpong", netns=ns_cli)
    rc, s = pp.finish()
    check_accounted("pingpong", s, allowed=set())
    check(rc == 0, f"pingpong exited {rc}")
    server.signal(signal.SIGTERM)
    check(server.wait(10) == 0, "server exit status")


def duration(a, short):
    return "30" if a.long else short


def report(name, s):
    lat = s["latency_us"]
    log(f"{name}: {s['requests']} requests, {s['requests_per_second']:.0f}"
        f" req/s, p50 {lat['p50']:.0f} us, p99 {lat['p99']:.0f} us, p99.9"
        f" {lat['p999']:.0f} us, max {lat['max']:.0f} us, outcomes"
        f" {s['outcomes']}, {s['tcp_connections']} TCP connections")


def test_load_1000(a):
    server = Server(a.server)
    rss_idle = server.status_kib("VmRSS")
    pp = Pingpong(a.pingpong, server.address,
                  ["--connections", "1000", "--in-flight", "1", "--payload",
                   "256", "--duration", duration(a, "5"), "--timeout", "20"],
                  "pingpong")
    rc, s = pp.finish(timeout=120 if a.long else 60)
    peak = server.status_kib("VmHWM")
    report("load_1000", s)
    log(f"server RSS: {rss_idle} KiB idle, peak {peak} KiB")
    check_accounted("pingpong", s, allowed=set())
    check(rc == 0, f"pingpong exited {rc}")
    check(s["tcp_connections"] == 1000,
          f"{s['tcp_connections']} TCP connections, not 1000 (reconnects)")
    # 1,000 connections of 256 B requests take a few KiB each (7 KiB idle,
    # idle_memory_benchmark; ASan's shadow and redzones add to it): growth
    # of 64 MiB, 64 KiB a connection, is far above that and far below
    # unbounded growth.
    growth = peak - rss_idle
    check(growth < 64 * 1024,
          f"server RSS grew {growth} KiB (>= 64 MiB) over 1,000 connections")
    server.signal(signal.SIGTERM)
    check(server.wait(15) == 0, f"server exit status; log: {server.stderr()}")


def stall(a, seconds, name):
    """SIGSTOP the server for `seconds` mid-load, then SIGCONT."""
    server = Server(a.server)
    common = ["--connections", "4", "--in-flight", "8", "--duration",
              duration(a, str(seconds + 3)), "--timeout", "20",
              "--max-backoff", "0.5"]
    idem = Pingpong(a.pingpong, server.address, common + ["--idempotent"],
                    "idempotent")
    plain = Pingpong(a.pingpong, server.address, common + ["--allow-faults"],
                     "non-idempotent")
    time.sleep(1.0)
    log(f"SIGSTOP the server for {seconds} s")
    server.signal(signal.SIGSTOP)
    time.sleep(seconds)
    server.signal(signal.SIGCONT)
    log("SIGCONT")
    rc_i, s_i = idem.finish(timeout=120 if a.long else 60)
    rc_p, s_p = plain.finish(timeout=120 if a.long else 60)
    report("idempotent", s_i)
    report("non-idempotent", s_p)
    check_accounted("idempotent", s_i, allowed=set())
    check(rc_i == 0, f"idempotent pingpong exited {rc_i}")
    server.signal(signal.SIGTERM)
    check(server.wait(15) == 0, "server exit status")
    return s_i, s_p, rc_p


def test_stall_short(a):
    s_i, s_p, rc_p = stall(a, 2, "stall_short")
    # Shorter than the keepalive timeout: nothing fails, nothing reconnects.
    check_accounted("non-idempotent", s_p, allowed=set())
    check(rc_p == 0, f"non-idempotent pingpong exited {rc_p}")
    for name, s in (("idempotent", s_i), ("non-idempotent", s_p)):
        check(s["tcp_connections"] == 4,
              f"{name}: a 2 s stall closed connections "
              f"({s['tcp_connections']} made)")


def test_stall_long(a):
    s_i, s_p, rc_p = stall(a, 6, "stall_long")
    check_accounted("non-idempotent", s_p, allowed=FAULT_CODES)
    check(rc_p == 0, f"non-idempotent pingpong exited {rc_p}")
    # Past the keepalive timeout the client gave up on the connections
    # and made new ones.
    for name, s in (("idempotent", s_i), ("non-idempotent", s_p)):
        check(s["tcp_connections"] > 4,
              f"{name}: the keepalive never replaced a connection")


def make_namespaces():
    """Two namespaces joined by a veth pair; returns (ns_srv, ns_cli, dev)."""
    tag = f"mp{os.getpid()}"
    ns_srv, ns_cli = f"{tag}-srv", f"{tag}-cli"
    r = subprocess.run(["ip", "netns", "add", ns_srv], capture_output=True,
                       text=True)
    if r.returncode != 0:
        raise Skipped(f"`ip netns add` is not permitted here: "
                      f"{r.stderr.strip()}")
    namespaces.append(ns_srv)
    run(["ip", "netns", "add", ns_cli])
    namespaces.append(ns_cli)
    veth_s, veth_c = f"{tag}s", f"{tag}c"
    run(["ip", "link", "add", veth_s, "type", "veth", "peer", "name", veth_c])
    # Moved into the namespaces at once: deleting them deletes the pair.
    for dev, ns, addr in ((veth_s, ns_srv, "192.0.2.1/24"),
                          (veth_c, ns_cli, "192.0.2.2/24")):
        run(["ip", "link", "set", dev, "netns", ns])
        run(["ip", "-n", ns, "addr", "add", addr, "dev", dev])
        run(["ip", "-n", ns, "link", "set", dev, "up"])
        run(["ip", "-n", ns, "link", "set", "lo", "up"])
    return ns_srv, ns_cli, veth_c


def test_partition(a):
    ns_srv, ns_cli, dev = make_namespaces()
    server = Server(a.server, host="192.0.2.1", netns=ns_srv)
    log(f"server in {ns_srv} on {server.address}")
    pp = Pingpong(a.pingpong, server.address,
                  ["--connections", "8", "--in-flight", "8", "--payload",
                   "1024", "--duration", duration(a, "5"), "--timeout", "20"],
                  "pingpong", netns=ns_cli)
    time.sleep(1.5)
    log(f"link {dev} down for 2 s")
    run(["ip", "-n", ns_cli, "link", "set", dev, "down"])
    time.sleep(2)
    run(["ip", "-n", ns_cli, "link", "set", dev, "up"])
    log(f"link {dev} up")
    rc, s = pp.finish(timeout=120 if a.long else 60)
    report("partition", s)
    # Shorter than the keepalive timeout: the partition is a stall, and
    # every request still ends OK.
    check_accounted("pingpong", s, allowed=set())
    check(rc == 0, f"pingpong exited {rc}")
    server.signal(signal.SIGTERM)
    check(server.wait(15) == 0, "server exit status")


def test_threads(a):
    server = Server(a.server, args=["--threads", "2"])
    pp = Pingpong(a.pingpong, server.address,
                  ["--threads", "2", "--connections", "32", "--in-flight", "4",
                   "--duration", duration(a, "2")], "pingpong")
    rc, s = pp.finish(timeout=120 if a.long else 30)
    report("threads", s)
    check_accounted("pingpong", s, allowed=set())
    check(rc == 0, f"pingpong exited {rc}")
    check(s["tcp_connections"] == 32,
          f"{s['tcp_connections']} TCP connections, not 32")
    server.signal(signal.SIGTERM)
    check(server.wait(10) == 0, f"server exit status; log: {server.stderr()}")
    log_text = server.stderr()
    log(f"server: {log_text}")
    # "loops: 0: connections=A requests=B; 1: connections=C requests=D":
    # with 32 connections hashed over two listeners, both get some (all on
    # one has a chance of 2^-31).
    loops = re.search(r"loops: (.*)$", log_text, re.M)
    check(loops is not None, "the server printed no per-loop line")
    shares = re.findall(r"(\d+): connections=(\d+) requests=(\d+)",
                        loops.group(1))
    check(len(shares) == 2, f"not two loops: {loops.group(1)}")
    for index, conns, requests in shares:
        check(int(conns) > 0 and int(requests) > 0,
              f"loop {index} served nothing: {loops.group(1)}")
    check(sum(int(c) for _, c, _ in shares) == 32,
          f"the loops accepted {loops.group(1)}, not 32 connections")
    stats = re.search(r"stats: .*requests_received=(\d+) replies_sent=(\d+)",
                      log_text)
    check(stats is not None, "no stats line")
    check(int(stats.group(1)) == s["requests"] and
          int(stats.group(2)) == s["requests"],
          f"server counted {stats.group(1)} requests and {stats.group(2)}"
          f" replies; the client sent {s['requests']}")


TESTS = {
    "many_clients": test_many_clients,
    "kill_restart": test_kill_restart,
    "graceful_restart": test_graceful_restart,
    "netns": test_netns,
    "load_1000": test_load_1000,
    "stall_short": test_stall_short,
    "stall_long": test_stall_long,
    "partition": test_partition,
    "threads": test_threads,
}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("test", choices=sorted(TESTS))
    parser.add_argument("--server", required=True)
    parser.add_argument("--pingpong", required=True)
    parser.add_argument("--long", action="store_true",
                        help="the 30 s versions of the load tests")
    a = parser.parse_args()
    # ctest's timeout (or ^C) still cleans up.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: sys.exit(1))
    start = time.monotonic()
    try:
        TESTS[a.test](a)
    except Skipped as e:
        log(f"SKIPPED {a.test}: {e}")
        shutil.rmtree(tmpdir, ignore_errors=True)
        return SKIP
    except Failure as e:
        log(f"FAIL {a.test}: {e} (logs kept in {tmpdir})")
        return 1
    finally:
        cleanup()
    log(f"PASS {a.test} ({time.monotonic() - start:.1f} s)")
    shutil.rmtree(tmpdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
