#!/usr/bin/env python3
"""Peak memory of `callrec process` on a batch of 1,000 files against one of 10,000 (issue 4:
the larger batch may use at most 10% more). Each file is the same 2-second 8 kHz call.

    python3 benches/memory.py [SMALL] [LARGE]

Builds the release binaries first; needs about 350 MB of disk under a temporary folder.
"""
import os
import resource
import shutil
import subprocess
import sys
import tempfile

small = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
large = int(sys.argv[2]) if len(sys.argv) > 2 else 10000
target = os.environ.get("CARGO_TARGET_DIR", os.path.join(os.path.expanduser("~"), ".cache", "callrec", "target"))
env = dict(os.environ, CARGO_TARGET_DIR=target)
subprocess.run(["cargo", "build", "--release", "-q", "-p", "callrec", "-p", "callrec-fixtures"], check=True, env=env)
callrec = os.path.join(target, "release", "callrec")
gen = os.path.join(target, "release", "gen-fixtures")

work = tempfile.mkdtemp(prefix="callrec-memory-")
try:
    call = os.path.join(work, "call.wav")
    subprocess.run([gen, "--long", call, "--minutes", str(2 / 60)], check=True, stdout=subprocess.DEVNULL)
    results = {}
    for n in (small, large):
        folder = os.path.join(work, f"in-{n}")
        os.makedirs(folder)
        for i in range(n):
            os.link(call, os.path.join(folder, f"call-{i:05d}.wav"))
        out = os.path.join(work, f"out-{n}")
        # A child of its own so its peak is not mixed with the previous run's.
        probe = ("import resource, subprocess, sys;"
                 "r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL);"
                 "print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
        line = subprocess.run([sys.executable, "-c", probe, callrec, "process", folder, "-o", out, "--threads", "2"],
                              check=True, capture_output=True, text=True).stdout.split()
        code, peak_kib = int(line[0]), int(line[1])
        if code != 0:
            sys.exit(f"callrec process failed on {n} files (exit {code})")
        results[n] = peak_kib
        print(f"{n:6d} files: peak RSS {peak_kib / 1024:.1f} MiB")
        shutil.rmtree(out)
    growth = results[large] / results[small] - 1
    print(f"growth from {small} to {large} files: {growth * 100:+.1f}% (target: at most +10%)")
finally:
    shutil.rmtree(work)
