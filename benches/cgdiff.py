#!/usr/bin/env python3
"""Where two callgrind profiles differ, by function, per request.

    python3 benches/cgdiff.py OFF.prof ON.prof [REQUESTS, default 20000] [TOP, default 50]

Profiles are callgrind.sh's (target/callgrind.out.N, copied aside between runs), e.g. the same
build with and without ACCESS_LOG=alb. Each function's exclusive instructions
(callgrind_annotate --inclusive=no) are summed over its inlined copies (call counts stripped from
the names), and the differences printed per request, largest first, with their sum.
"""
import collections
import re
import subprocess
import sys


def load(path):
    out = subprocess.run(
        ["callgrind_annotate", "--threshold=100", "--inclusive=no", "--auto=no", path],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, check=True,
    ).stdout
    costs = collections.Counter()
    for line in out.splitlines():
        m = re.match(r"^\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+(.*)$", line)
        if not m or "=>" in line or "PROGRAM TOTALS" in line:
            continue
        name = re.sub(r" \(\d+x\)", "", m.group(2))
        name = re.sub(r"/root/.cargo/registry/src/[^/]*/", "", name)
        costs[name] += int(m.group(1).replace(",", ""))
    return costs


def main():
    off, on = load(sys.argv[1]), load(sys.argv[2])
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 20000
    top = int(sys.argv[4]) if len(sys.argv) > 4 else 50
    diff = sorted(((on[k] - off[k], k) for k in set(off) | set(on)), reverse=True)
    for d, k in diff[:top]:
        if abs(d) / n >= 10:
            print(f"{d / n:8.1f} {k[:160]}")
    print(f"sum {sum(d for d, _ in diff) / n:.0f} per request")


if __name__ == "__main__":
    main()
