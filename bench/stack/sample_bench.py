#!/usr/bin/env python3
"""``lowimpact sample`` against ``py-spy record --nonblocking`` on one target.

    python bench/stack/sample_bench.py [--python P ...] [--py-spy PATH]
                                       [--rates 1000 10000] [--runs 3] [--rounds N]

For each interpreter (default: pyenv's 3.11 and 3.13) and each rate, the
target (target.py: recursion, string work, a generator) runs alone and then
with each sampler attached by pid; one row per sampler and rate:

- achieved rate: samples taken (dropped ones included) over the sampler's
  wall time from start to exit;
- CPU per sample: the sampler's CPU time (all its threads, schedstat)
  during the target's measured part, over the samples of that part (the
  achieved rate times its length);
- slowdown: the target's own time for its rounds, with the sampler over
  alone (medians of --runs); CPU slowdown: the same of the CPU time the
  target used, which other load on the machine disturbs less than its wall
  time (a sampler that never stops the target slows it only through the
  caches, memory and kernel locks they share, and by taking a CPU it needs);
- dropped: share of samples dropped (lowimpact: torn reads; py-spy: errors).

Medians of --runs runs.  Wall-clock figures on a shared machine vary by a few
percent from run to run; the slowdown column is only as good as that.
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
TARGET = os.path.join(HERE, "target.py")
WAIT = 1.0      # seconds the target sleeps for the sampler to attach


def pyenv_python(minor: int) -> Optional[str]:
    root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    for d in sorted(glob.glob(os.path.join(root, "versions", "3.%d.*" % minor)), reverse=True):
        p = os.path.join(d, "bin", "python3.%d" % minor)
        if os.access(p, os.X_OK):
            return p
    return shutil.which("python3.%d" % minor)


def cpu_ns(pid: int) -> Optional[int]:
    """CPU time of every thread of pid, in ns (schedstat), None if gone."""
    total = 0
    try:
        for tid in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/schedstat" % (pid, tid)) as f:
                total += int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return total


def run_target(python: str, rounds: int, sampler: Optional[List[str]]) -> Dict[str, float]:
    """One run; the target's time and, with a sampler, its figures."""
    target = subprocess.Popen([python, TARGET, str(rounds), str(WAIT)],
                              stdout=subprocess.PIPE, text=True)
    result: Dict[str, float] = {}
    proc = None
    start_wall = time.perf_counter()
    if sampler is not None:
        proc = subprocess.Popen(sampler + [str(target.pid)], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
    assert target.stdout is not None
    assert target.stdout.readline().strip() == "start"
    cpu0 = cpu_ns(proc.pid) if proc else None
    t0 = time.perf_counter()
    line = target.stdout.readline()
    cpu1 = cpu_ns(proc.pid) if proc else None
    t1 = time.perf_counter()
    target.wait()
    wall_s, cpu_s = line.split()
    result["target"], result["target_cpu"] = float(wall_s), float(cpu_s)
    if proc is None:
        return result
    out, _ = proc.communicate()
    wall = time.perf_counter() - start_wall
    taken, dropped = parse_counts(out)
    result["rate"] = taken / wall
    result["dropped"] = dropped / taken if taken else 0.0
    if cpu0 is not None and cpu1 is not None:
        result["cpu_us"] = (cpu1 - cpu0) / 1e3 / max(1.0, result["rate"] * (t1 - t0))
    return result


def parse_counts(out: str) -> Tuple[int, int]:
    m = re.search(r"(\d+) samples in .*?(\d+) dropped", out)
    if m:
        return int(m.group(1)), int(m.group(2))
    m = re.search(r"Samples: (\d+) Errors: (\d+)", out)
    if m:
        return int(m.group(1)) + int(m.group(2)), int(m.group(2))
    raise RuntimeError("no sample counts in the sampler's output:\n" + out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", action="append", help="interpreter (repeatable)")
    parser.add_argument("--py-spy", default=shutil.which("py-spy")
                        or "/tmp/wt-stack-venv/bin/py-spy")
    parser.add_argument("--rates", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3000)
    options = parser.parse_args()
    pythons = options.python or [p for p in (pyenv_python(11), pyenv_python(13)) if p]
    out_dir = tempfile.mkdtemp(prefix="sample-bench-")
    env_path = os.path.join(ROOT, "src")
    print("| interpreter | sampler | requested | achieved | CPU/sample | slowdown | CPU slowdown "
          "| dropped |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for python in pythons:
        version = subprocess.check_output(
            [python, "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"],
            text=True).strip()
        samplers = {
            "lowimpact": lambda rate: [sys.executable, "-m", "lowimpact", "sample", "--rate",
                                       str(rate), "-o", os.path.join(out_dir, "li.txt")],
        }
        if os.access(options.py_spy, os.X_OK):
            samplers["py-spy --nonblocking"] = lambda rate: [
                options.py_spy, "record", "--nonblocking", "--rate", str(rate), "--format",
                "raw", "-o", os.path.join(out_dir, "pyspy.txt"), "--pid"]
        for rate in options.rates:
            rows: Dict[str, List[Dict[str, float]]] = {name: [] for name in samplers}
            alone: List[Dict[str, float]] = []
            for _ in range(options.runs):
                # Interleaved, so drifts of the machine fall on every column.
                alone.append(run_target(python, options.rounds, None))
                for name, command in samplers.items():
                    rows[name].append(run_target(python, options.rounds, command(rate)))
            base = statistics.median(r["target"] for r in alone)
            base_cpu = statistics.median(r["target_cpu"] for r in alone)
            for name, runs in rows.items():
                def med(key: str) -> float:
                    return statistics.median(r[key] for r in runs if key in r)
                print("| %s | %s | %d Hz | %.0f Hz | %.1f us | %.3fx | %.3fx | %.2f%% |"
                      % (version, name, rate, med("rate"), med("cpu_us"),
                         med("target") / base, med("target_cpu") / base_cpu,
                         100 * med("dropped")), flush=True)
    shutil.rmtree(out_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [os.path.join(ROOT, "src")] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    sys.exit(main())
