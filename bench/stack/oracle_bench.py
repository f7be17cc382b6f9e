#!/usr/bin/env python3
"""Samples kept that the target never had, and samples dropped, for the
oracle targets of tests/stack/oracle.py (whose possible stacks are known).

    python bench/stack/oracle_bench.py [--python P ...] [--kind K ...]
                                       [--rate HZ] [--seconds S] [--cpus C]
                                       [--trace line|settrace]

For each interpreter (default: every pyenv CPython 3.9-3.13) and kind, it
samples the target at --rate with Reader.sample() (eight reads at most),
the target and the sampler on two CPUs unless --cpus says otherwise, and
prints the samples taken, the share dropped, torn reads per sample, and
the kept samples that mix two moments, with the first few of them.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "src"))
sys.path.insert(0, os.path.join(ROOT, "tests", "stack"))

import oracle  # noqa: E402
from lowimpact import _stack  # noqa: E402
from torn_bench import ORACLE, pythons, version_of  # noqa: E402



def run(python, kind, rate, seconds, cpus, trace=None):
    """(samples taken, dropped, torn reads, kept, [mixed stacks])"""
    if cpus:
        os.sched_setaffinity(0, {cpus[1]})
    command = [python, ORACLE, kind, str(seconds + 30)] + ([trace] if trace else [])
    child = subprocess.Popen(command,
                             stdout=subprocess.PIPE, text=True,
                             preexec_fn=(lambda: os.sched_setaffinity(0, {cpus[0]})) if cpus
                             else None)
    mixed, kept = [], 0
    try:
        assert child.stdout.readline() == "ready\n"
        reader = _stack.Reader(child.pid)
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            sample = reader.sample()
            if sample:
                kept += 1
                for _thread, ids in sample:
                    names = [reader.frame(i)[1].rsplit(".", 1)[-1] for i in ids]
                    why = oracle.mixed(kind, names)
                    if why:
                        mixed.append("%s: %s" % (why, ";".join(names)))
            _stack.sleep(1 / rate)
    finally:
        child.kill()
        child.wait()
    return reader.samples_taken, reader.samples_dropped, reader.samples_torn, kept, mixed


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", action="append")
    parser.add_argument("--kind", action="append", choices=sorted(oracle.CALLERS))
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--show", type=int, default=3, help="mixed stacks shown per run")
    parser.add_argument("--cpus", choices=("one", "two", "any"), default="two",
                        help="target and sampler pinned to one CPU, to two (the reads race "
                        "the most), or left to the scheduler")
    parser.add_argument("--trace", choices=("line", "settrace"),
                        help="the target traced (oracle.py's TRACE; line: 3.12+)")
    options = parser.parse_args()
    print("| interpreter | target | samples | dropped | torn reads/sample | mixed |")
    print("|---|---|---:|---:|---:|---:|")
    for python in options.python or pythons():
        version = version_of(python)
        cpus = {"one": (0, 0), "two": (0, 1), "any": None}[options.cpus]
        for kind in options.kind or sorted(oracle.CALLERS):
            taken, dropped, torn, kept, mixed = run(python, kind, options.rate, options.seconds,
                                                    cpus, options.trace)
            print("| %s | %s | %d | %.2f%% | %.3f | %d of %d |"
                  % (version, kind, taken, 100.0 * dropped / max(1, taken),
                     torn / max(1, taken), len(mixed), kept), flush=True)
            for line in mixed[:options.show]:
                print("    " + line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
