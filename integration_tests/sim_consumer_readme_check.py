#!/usr/bin/env python3
"""Checks that the chaos README quotes integration_tests/sim_consumer exactly.

Each quoted file is a fenced code block right after a line
`<!-- sim_consumer: <file> -->`; its text must equal the file's, and every
file of the directory must be quoted once. So the example users copy from
the README is the one install_test.sh builds and runs.

Usage: sim_consumer_readme_check.py <README.md> <sim_consumer dir>
"""
import os
import re
import sys


def quoted_blocks(readme):
    """{file: text of the fenced block after its marker}."""
    lines = readme.splitlines(keepends=True)
    blocks = {}
    marker = re.compile(r"^<!-- sim_consumer: (\S+) -->\s*$")
    i = 0
    while i < len(lines):
        m = marker.match(lines[i])
        i += 1
        if not m:
            continue
        name = m.group(1)
        if i >= len(lines) or not lines[i].startswith("```"):
            sys.exit(f"FAIL: no code block right after the marker of {name}")
        i += 1
        body = []
        while i < len(lines) and not lines[i].startswith("```"):
            body.append(lines[i])
            i += 1
        if name in blocks:
            sys.exit(f"FAIL: {name} is quoted twice")
        blocks[name] = "".join(body)
    return blocks


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    readme_path, directory = sys.argv[1], sys.argv[2]
    with open(readme_path, encoding="utf-8") as f:
        blocks = quoted_blocks(f.read())
    files = sorted(os.listdir(directory))
    failures = 0
    for name in files:
        with open(os.path.join(directory, name), encoding="utf-8") as f:
            text = f.read()
        if name not in blocks:
            print(f"FAIL: {name} is not quoted in {readme_path}")
            failures += 1
        elif blocks[name] != text:
            print(f"FAIL: the README's {name} differs from {directory}/{name}")
            failures += 1
        else:
            print(f"ok: {name}")
    for name in sorted(set(blocks) - set(files)):
        print(f"FAIL: the README quotes {name}, which is not in {directory}")
        failures += 1
    if failures:
        sys.exit(f"{failures} problem(s)")
    print(f"PASSED: the README quotes all {len(files)} files exactly")


if __name__ == "__main__":
    main()
