#!/usr/bin/env python3
"""The KV README's quick start is the code that is built, and it works.

1. Each file of quickstart/ is quoted exactly in README.md, as the fenced
   code block right after a line `<!-- kv quickstart: <file> -->`, and the
   README quotes no other file that way; together they stay under 60
   lines, not counting blank lines (the way the README counts them).
2. The built quick-start server (from exactly those files) starts and says
   where it listens; the built client puts "greeting" and reads it back
   from it ("put OK, get OK: hello"); a second client run reads it again.

Usage: readme_check.py README.md QUICKSTART_DIR --server BIN --client BIN
"""
import argparse
import os
import re
import select
import signal
import subprocess
import sys


def quoted_blocks(text):
    lines = text.splitlines(keepends=True)
    marker = re.compile(r"^<!-- kv quickstart: (\S+) -->\s*$")
    blocks, i = {}, 0
    while i < len(lines):
        m = marker.match(lines[i])
        i += 1
        if not m:
            continue
        if i >= len(lines) or not lines[i].startswith("```"):
            sys.exit(f"FAIL: no code block right after the marker of {m.group(1)}")
        i += 1
        body = []
        while i < len(lines) and not lines[i].startswith("```"):
            body.append(lines[i])
            i += 1
        if m.group(1) in blocks:
            sys.exit(f"FAIL: {m.group(1)} is quoted twice")
        blocks[m.group(1)] = "".join(body)
    return blocks


def code_lines(text):
    """Lines that are not blank."""
    return sum(1 for line in text.splitlines() if line.strip())


def check_quotes(readme, directory):
    with open(readme, encoding="utf-8") as f:
        blocks = quoted_blocks(f.read())
    files = sorted(os.listdir(directory))
    problems = 0
    for name in files:
        with open(os.path.join(directory, name), encoding="utf-8") as f:
            text = f.read()
        if blocks.get(name) != text:
            print(f"FAIL: README.md {'differs from' if name in blocks else 'does not quote'} quickstart/{name}")
            problems += 1
        else:
            print(f"ok: README.md quotes quickstart/{name} ({text.count(chr(10))} lines)")
    code = sum(code_lines(blocks.get(name, "")) for name in files)
    total = sum(blocks.get(name, "").count("\n") for name in files)
    if code >= 60:
        print(f"FAIL: the quick start has {code} non-blank lines (59 at most)")
        problems += 1
    else:
        print(f"ok: the quick start has {code} non-blank lines ({total} lines)")
    for name in sorted(set(blocks) - set(files)):
        print(f"FAIL: README.md quotes {name}, which is not in quickstart/")
        problems += 1
    return problems


def run_quickstart(server_bin, client_bin):
    server = subprocess.Popen([server_bin], stdout=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([server.stdout], [], [], 20)
        line = server.stdout.readline() if ready else ""
        if not line.startswith("listening on "):
            print(f"FAIL: the server said {line!r}, not 'listening on ...'")
            return 1
        address = line.split()[-1]
        for attempt in (1, 2):
            out = subprocess.run([client_bin, address], capture_output=True,
                                 text=True, timeout=20)
            if out.returncode != 0 or out.stdout.strip() != "put OK, get OK: hello":
                print(f"FAIL: client run {attempt}: exit {out.returncode}, "
                      f"stdout {out.stdout!r}, stderr {out.stderr!r}")
                return 1
            print(f"ok: client run {attempt}: {out.stdout.strip()}")
        return 0
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=20)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("readme")
    p.add_argument("quickstart")
    p.add_argument("--server", required=True)
    p.add_argument("--client", required=True)
    a = p.parse_args()
    problems = check_quotes(a.readme, a.quickstart)
    problems += run_quickstart(a.server, a.client)
    if problems:
        sys.exit(f"{problems} problem(s)")
    print("PASSED: the README's quick start is the built one, and it works")


if __name__ == "__main__":
    main()
