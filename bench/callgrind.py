"""Overhead ratios counted in instructions (valgrind's callgrind), not time.

    python bench/callgrind.py [--python PY ...] [--workloads ...] [--scenarios ...] [-j N]

Timings on a shared 2-core machine wander by several percent; instruction
counts do not, so close calls between the engine and native monitoring are
settled here.  Each cell runs child.py under callgrind twice, at one and at
two times the workload's quick size (the same warm-up in both), and divides
what the monitored runs' difference costs by what the unmonitored runs'
difference costs: start-up, imports and turning events on cancel out, and the
ratio is that of the steady state, as the timed benchmarks measure it.

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

COLLECTED = re.compile(r"Collected : (\d+)")
TIMEOUT = 3600


def child(python: str, mode: str, **args: object) -> dict:
    """child.py's RESULT (plus the instruction count when under callgrind)."""
    argv = [python, os.path.join(HERE, "child.py"), mode]
    argv += ["%s=%s" % item for item in args.items()]
    counted = mode == "workload"
    if counted:
        argv = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"] + argv
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
        found = COLLECTED.findall(proc.stderr)
        if not found:
            return {"error": "no callgrind count (is valgrind installed?)"}
        result["instructions"] = int(found[-1])
    return result


def measure(python: str, workload: str, scenarios: list[str], jobs: int) -> dict[str, object]:
    """Ratio (or a reason it has none) per scenario of one workload."""
    quick = WORKLOADS[workload].quick_size
    warmup = max(1, quick // 4)
    found = child(python, "discover", workload=workload, size=quick)
    bp_line = found.get("bp_line") or ""
    cells = [(scenario, size) for scenario in [BASELINE.name] + scenarios for size in (quick, 2 * quick)]
    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        results = dict(zip(cells, pool.map(
            lambda cell: child(python, "workload", workload=workload, size=cell[1], warmup=warmup,
                               scenario=cell[0], bp_line=bp_line), cells)))

    def growth(scenario: str) -> object:
        small, big = results[(scenario, quick)], results[(scenario, 2 * quick)]
        for r in (small, big):
            if "na" in r:
                return "n/a"
            if "error" in r:
                return "error: %s" % r["error"]
        return big["instructions"] - small["instructions"]

    base = growth(BASELINE.name)
    table: dict[str, object] = {}
    for scenario in scenarios:
        grown = growth(scenario)
        if not isinstance(base, int):
            table[scenario] = "baseline %s" % base
        elif not isinstance(grown, int):
            table[scenario] = grown
        else:
            table[scenario] = grown / base
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
            tables[(version, workload)] = measure(python, workload, options.scenarios, options.jobs)
    print("Instructions of the monitored run per instruction of the unmonitored one "
          "(callgrind, steady state)\n")
    print("| scenario | workload | " + " | ".join(versions) + " |")
    print("|---|---|" + "---:|" * len(versions))
    for scenario in options.scenarios:
        for workload in options.workloads:
            cells = []
            for version in versions:
                value = tables[(version, workload)].get(scenario)
                cells.append("%.3f" % value if isinstance(value, float) else str(value))
            print("| %s | %s | %s |" % (scenario, workload, " | ".join(cells)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
