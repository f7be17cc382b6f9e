"""Overhead ratios counted in instructions (valgrind's callgrind), not time.

    python bench/callgrind.py [--python PY ...] [--workloads ...] [--scenarios ...] [-j N]

Timings on a shared 2-core machine wander by several percent; instruction
counts do not, so close calls between the engine and native monitoring are
settled here.  Each cell runs child.py under callgrind twice, at one and at
two times the workload's quick size (the same warm-up in both), and divides
what the monitored runs' difference costs by what the unmonitored runs'
difference costs: start-up, imports and turning events on cancel out, and the
ratio is that of the steady state, as the timed benchmarks measure it.

With --sim, callgrind also simulates the caches and the branch predictor, and
each cell gives three ratios: instructions, first-level cache misses
(instruction and data) and mispredicted branches (conditional and indirect),
each the monitored run's growth over the unmonitored one's.  Where the clock
reads more than the instruction count, these say whether the added code
misses or mispredicts more than the program it monitors.

Interpreters as for run.py --all (--python, else $LOWIMPACT_BENCH_PYTHONS,
else python3.9, 3.10, 3.11, 3.12 and 3.13 from PATH or pyenv); valgrind must be on PATH.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import re
import subprocess
import sys
from typing import Optional

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from run import default_pythons  # noqa: E402
from scenarios import BASELINE, SCENARIOS  # noqa: E402
from workloads import WORKLOADS  # noqa: E402

EVENTS = re.compile(r"Events\s*: (.+)")
COLLECTED = re.compile(r"Collected : ([\d ]+)")
# What --sim adds up from callgrind's events: per cell, the growth of each.
SIM_GROUPS = {"instructions": ("Ir",), "L1 misses": ("I1mr", "D1mr", "D1mw"),
              "mispredicts": ("Bcm", "Bim")}
TIMEOUT = 3600


def child(python: str, mode: str, sim: bool = False, **args: object) -> dict:
    """child.py's RESULT (plus callgrind's event counts when under it)."""
    argv = [python, os.path.join(HERE, "child.py"), mode]
    argv += ["%s=%s" % item for item in args.items()]
    counted = mode == "workload"
    if counted:
        argv = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"] + (
            ["--cache-sim=yes", "--branch-sim=yes"] if sim else []) + argv
    # A child that writes bytecode caches counts their compiling: one run
    # of a pair (or the first of two in parallel) would pay it alone.
    env = dict(os.environ, PYTHONHASHSEED="0", PYTHONDONTWRITEBYTECODE="1")
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        return {"error": "timed out"}
    result: Optional[dict] = None
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("RESULT "):
            result = json.loads(line[len("RESULT "):])
            break
    if result is None:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"error": "child exited %d: %s" % (proc.returncode, tail)}
    if counted:
        names, found = EVENTS.findall(proc.stderr), COLLECTED.findall(proc.stderr)
        if not names or not found:
            return {"error": "no callgrind count (is valgrind installed?)"}
        counts = dict(zip(names[-1].split(), map(int, found[-1].split())))
        result["events"] = {group: sum(counts.get(e, 0) for e in events)
                            for group, events in SIM_GROUPS.items()}
    return result


def measure(python: str, workload: str, scenarios: list[str], jobs: int,
            sim: bool = False) -> dict[str, object]:
    """Ratios (one per SIM_GROUPS entry with `sim`, else of instructions),
    or a reason there are none, per scenario of one workload."""
    quick = WORKLOADS[workload].quick_size
    warmup = max(1, quick // 4)
    found = child(python, "discover", workload=workload, size=quick)
    bp_line = found.get("bp_line") or ""
    cells = [(scenario, size) for scenario in [BASELINE.name] + scenarios for size in (quick, 2 * quick)]
    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        results = dict(zip(cells, pool.map(
            lambda cell: child(python, "workload", sim, workload=workload, size=cell[1],
                               warmup=warmup, scenario=cell[0], bp_line=bp_line), cells)))
    groups = list(SIM_GROUPS) if sim else ["instructions"]

    def growth(scenario: str) -> object:
        small, big = results[(scenario, quick)], results[(scenario, 2 * quick)]
        for r in (small, big):
            if "na" in r:
                return "n/a"
            if "error" in r:
                return "error: %s" % r["error"]
        return [big["events"][g] - small["events"][g] for g in groups]

    base = growth(BASELINE.name)
    table: dict[str, object] = {}
    for scenario in scenarios:
        grown = growth(scenario)
        if not isinstance(base, list):
            table[scenario] = "baseline %s" % base
        elif not isinstance(grown, list):
            table[scenario] = grown
        else:
            table[scenario] = [g / b for g, b in zip(grown, base)]
    return table


def version_of(python: str) -> str:
    out = subprocess.run([python, "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"],
                         capture_output=True, text=True)
    return out.stdout.strip() or python


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", action="append", help="interpreter (repeatable)")
    parser.add_argument("--workloads", nargs="+", choices=sorted(WORKLOADS), default=list(WORKLOADS))
    parser.add_argument("--scenarios", nargs="+", choices=sorted(SCENARIOS),
                        default=[s for s in SCENARIOS if SCENARIOS[s].family == "monitoring"])
    parser.add_argument("-j", "--jobs", type=int, default=2, help="callgrind runs at once")
    parser.add_argument("--sim", action="store_true",
                        help="also simulate caches and branches: ratios of L1 misses and mispredicts")
    options = parser.parse_args()
    pythons = options.python or os.environ.get("LOWIMPACT_BENCH_PYTHONS", "").split() or default_pythons()
    missing = [p for p in pythons if not os.path.exists(p)]
    if missing:
        print("no such interpreter: %s" % ", ".join(missing), file=sys.stderr)
        return 2
    versions = [version_of(p) for p in pythons]
    tables = {}
    for python, version in zip(pythons, versions):
        for workload in options.workloads:
            print("[%s] %s" % (version, workload), file=sys.stderr, flush=True)
            tables[(version, workload)] = measure(python, workload, options.scenarios, options.jobs,
                                                  options.sim)
    if options.sim:
        print("Growth of the monitored run over the unmonitored one's, as %s "
              "(callgrind, steady state)\n" % " / ".join(SIM_GROUPS))
    else:
        print("Instructions of the monitored run per instruction of the unmonitored one "
              "(callgrind, steady state)\n")
    print("| scenario | workload | " + " | ".join(versions) + " |")
    print("|---|---|" + "---:|" * len(versions))
    for scenario in options.scenarios:
        for workload in options.workloads:
            cells = []
            for version in versions:
                value = tables[(version, workload)].get(scenario)
                cells.append(" / ".join("%.3f" % v for v in value) if isinstance(value, list)
                             else str(value))
            print("| %s | %s | %s |" % (scenario, workload, " | ".join(cells)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
