#!/usr/bin/env python3
"""How often the sampler's reads race with the target, with the two on one
CPU or on two (Linux, at least two CPUs).

    python bench/stack/torn_bench.py [--python P ...] [--rate HZ] [--seconds S]

For each interpreter (default: every pyenv CPython 3.9-3.13) and placement
(target and sampler pinned to CPU 0 both, or to CPUs 0 and 1), it samples
target.py (the benchmark's target) and tests/stack/oracle.py's alternate
(leaves that take each other's addresses) at --rate with Reader.sample() (eight reads at most) and
prints, per run: reads found torn per sample, samples dropped, the sampler's
CPU time per sample, and, for alternate, the kept samples that show a
leaf under the other leaf's caller (mixed moments the checks let through).
"""

from __future__ import annotations

import argparse
import glob
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "src"))
ORACLE = os.path.join(ROOT, "tests", "stack", "oracle.py")

from lowimpact import _stack  # noqa: E402


def pythons():
    root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    found = []
    for minor in range(9, 14):
        versions = sorted(glob.glob(os.path.join(root, "versions", "3.%d.*" % minor)))
        if versions:
            found.append(os.path.join(versions[-1], "bin", "python3.%d" % minor))
    return [p for p in found if os.access(p, os.X_OK)]


def version_of(python):
    return subprocess.check_output(
        [python, "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"],
        text=True).strip()


def run(python, script, args, target_cpu, sampler_cpu, rate, seconds):
    os.sched_setaffinity(0, {sampler_cpu})
    child = subprocess.Popen([python, script] + args,
                             stdout=subprocess.PIPE, text=True,
                             preexec_fn=lambda: os.sched_setaffinity(0, {target_cpu}))
    try:
        child.stdout.readline()
        reader = _stack.Reader(child.pid)
        mixed = kept = 0
        cpu0 = time.process_time()
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            sample = reader.sample()
            if sample:
                for _thread, ids in sample:
                    names = [reader.frame(i)[1] for i in ids]
                    for caller, callee in zip(names, names[1:]):
                        if callee.endswith("_leaf"):
                            kept += 1
                            mixed += caller != callee[:-len("_leaf")]
            _stack.sleep(1 / rate)
        cpu = time.process_time() - cpu0
    finally:
        child.kill()
        child.wait()
    taken = max(1, reader.samples_taken)
    return (reader.samples_torn / taken, 100.0 * reader.samples_dropped / taken,
            1e6 * cpu / taken, mixed, kept)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", action="append")
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=2.0)
    options = parser.parse_args()
    if len(os.sched_getaffinity(0)) < 2:
        print("needs two CPUs", file=sys.stderr)
        return 1
    print("| interpreter | CPUs | target | torn reads/sample | dropped | CPU/sample | mixed |")
    print("|---|---|---|---:|---:|---:|---:|")
    for python in options.python or pythons():
        version = version_of(python)
        for cpus in ((0, 0), (0, 1)):
            for script, args in ((os.path.join(HERE, "target.py"), ["100000", "0.1"]),
                                 (ORACLE, ["alternate", "60"])):
                torn, dropped, cpu, mixed, kept = run(python, script, args, cpus[0], cpus[1],
                                                      options.rate, options.seconds)
                print("| %s | %s | %s | %.2f | %.1f%% | %.1f us | %s |"
                      % (version, "one" if cpus[0] == cpus[1] else "two",
                         os.path.basename(script) if script != ORACLE else "alternate", torn,
                         dropped, cpu, "%d of %d" % (mixed, kept) if kept else "-"),
                      flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
