"""What a debugger's breakpoints cost: stdlib pdb (bdb on sys.settrace)
beside ``lowimpact debug`` (pdb on sys.monitoring), on the same interpreter.

    python bench/debug.py [--runs N] [--quick] [--callgrind [--scenario S ...]]
                          [--python PY ...]

Scenarios, each timed in a fresh process and given as the median of --runs
processes, as a ratio to the same work run without a debugger:

  never-hit     one breakpoint in a hot function that is never hit (the
                debugger has stopped once, at the program's start, and
                continued, as ``pdb script.py`` then ``c`` would)
  after-stop    the same, after the program has stopped in the hot function
                itself (a temporary breakpoint), stepped a line and continued
  after-cont    the same, stopped there and continued without a step
  first-pass    a program compiling and running many functions once, in
                a file with a breakpoint elsewhere that is never hit: each
                code object is discovered, armed, and its lines pass once
  next-calls    a 'next' over a line whose call runs the stopped function's
                own code in many frames (and raises in others): the events
                of the frames it does not stop in
  next          milliseconds per stop of ``next`` over a line of a hot loop
                whose line calls a function that does some work (its column
                'none' is the loop's own time per stop, without a debugger)

Times are CPU times of the process (time.process_time: a process waiting
for a CPU on a busy machine is not charged).  --callgrind counts instructions
instead (valgrind), which settles close calls.

The debuggers are driven by their own command loop with the commands on a
stdin of their own (io.StringIO), their output going to another.  Runs of one
round alternate debuggers, so that drift on a busy machine hits all alike.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"

DEBUGGERS = ("none", "pdb", "lowimpact")
NEXT_STOPS = 40
WARM_UP = 100_000
COLLECTED = re.compile(r"Collected : (\d+)")
SCENARIOS = ("never-hit", "after-stop", "after-cont", "next")
#: The callgrind-only scenarios, whose size is not a number of iterations of hot().
FIRST_PASS_FUNCTIONS = 1_000
NEXT_CALLS = 2_000


# ---- the workload (line numbers below are found, not hard-coded) ----------

def hot(n: int) -> int:
    total = 0  # HOT-FIRST
    for i in range(n):
        total += i % 7
        if total < 0:
            total = -total  # NEVER-HIT
    return total


def step_work(k: int) -> int:
    acc = 0
    for j in range(k):
        acc += j & 3
    return acc


def step_loop(stops: int, work: int) -> int:
    total = 0
    for i in range(stops + 10):
        total += step_work(work)  # STEP-LINE
    return total


def leaf(i: int) -> int:
    try:
        raise KeyError(i)
    except KeyError:
        return 1


def calls(n: int, top: bool) -> int:
    total = 0
    if top:
        total = calls(n, False)  # CALLS-NEXT
        return total  # CALLS-AFTER
    for i in range(n):
        total += leaf(i) + (calls(0, False) if i % 2 else 0)
    return total


def _first_pass_source(functions: int) -> str:
    parts = ["def never():\n    return 0  # NEVER\n"]
    for i in range(functions):
        parts.append("def f%d(x):\n    y = x + %d\n    for j in range(3):\n        y += j\n"
                     "    if y < 0:\n        y = -y\n    return y\n" % (i, i))
    return "\n".join(parts)


def _line_of(marker: str) -> int:
    with open(__file__, encoding="utf-8") as source:
        for number, text in enumerate(source, 1):
            if text.rstrip().endswith("# " + marker):
                return number
    raise LookupError(marker)


# ---- the child: one measurement ---------------------------------------------

def _debugger(kind: str, commands: List[str]):
    if kind == "pdb":
        from pdb import Pdb
    else:
        from lowimpact.debug import Pdb
    return Pdb(stdin=io.StringIO("".join(c + "\n" for c in commands)),
               stdout=io.StringIO(), readrc=False)


def child(scenario: str, kind: str, size: int) -> float:
    me = os.path.abspath(__file__)
    result: Dict[str, float] = {}

    def timed() -> None:
        hot(WARM_UP)  # under the debugger when there is one
        start = time.process_time()
        hot(size)
        result["seconds"] = time.process_time() - start

    if scenario == "first-pass":
        import tempfile

        folder = tempfile.mkdtemp()
        path = os.path.join(folder, "first_pass.py")
        source = _first_pass_source(size)
        with open(path, "w", encoding="utf-8") as out:
            out.write(source)
        never_line = source.splitlines().index("    return 0  # NEVER") + 1

        def first_pass() -> None:
            namespace: Dict[str, object] = {}
            exec(compile(source, path, "exec"), namespace)
            for i in range(size):
                namespace["f%d" % i](i)  # type: ignore[operator]

        try:
            if kind == "none":
                first_pass()
            else:
                _debugger(kind, ["b %s:%d" % (path, never_line), "c"]).runcall(first_pass)
        finally:
            os.remove(path)
            os.rmdir(folder)
        return 0.0
    if scenario == "next-calls":
        if kind == "none":
            calls(size, True)
            return 0.0
        # runcall() stops at the function's first line: two lines on, the
        # third 'next' runs the call and stops at the line after it.
        debugger = _debugger(kind, ["n", "n", "n", "c"])
        debugger.runcall(calls, size, True)
        out = debugger.stdout.getvalue()
        shown = [line for line in out.splitlines() if line.startswith("-> ")]
        if not shown or not shown[-1].endswith("# CALLS-AFTER"):
            raise RuntimeError("'next' did not stop after the call:\n" + out)
        return 0.0
    if scenario == "next":
        stops = NEXT_STOPS
        commands = ["b %s:%d" % (me, _line_of("STEP-LINE")), "c"] + ["n"] * (2 * stops) + ["cl 1", "c"]

        def stepped() -> None:
            start = time.process_time()
            step_loop(stops, size)
            result["seconds"] = time.process_time() - start

        if kind == "none":
            stepped()
            return result["seconds"]
        debugger = _debugger(kind, commands)
        debugger.runcall(stepped)
        # per stop: the loop's own time is measured apart (kind none) and
        # is small beside a stop's.
        return result["seconds"] / (2 * stops)
    if kind == "none":
        timed()
        return result["seconds"]
    never = "b %s:%d" % (me, _line_of("NEVER-HIT"))
    stop = "tbreak %s:%d" % (me, _line_of("HOT-FIRST"))
    commands = {"never-hit": [never, "c"], "after-stop": [never, stop, "c", "n", "c"],
                "after-cont": [never, stop, "c", "c"]}[scenario]
    debugger = _debugger(kind, commands)
    debugger.runcall(timed)
    out = debugger.stdout.getvalue()
    if scenario != "never-hit" and "hot()" not in out:
        raise RuntimeError("the debugger did not stop in hot():\n" + out)
    return result["seconds"]


# ---- the driver ---------------------------------------------------------------

def measure(python: str, scenario: str, kind: str, size: int) -> Optional[float]:
    env = dict(os.environ, PYTHONPATH=str(SRC))
    proc = subprocess.run([python, __file__, "--child", scenario, kind, str(size)],
                          capture_output=True, text=True, env=env, timeout=600)
    if proc.returncode != 0:
        print("  %s %s %s failed: %s" % (python, scenario, kind, proc.stderr.strip()[-500:]),
              file=sys.stderr)
        return None
    return json.loads(proc.stdout)["seconds"]


def instructions(python: str, scenario: str, kind: str, size: int) -> int:
    env = dict(os.environ, PYTHONPATH=str(SRC), PYTHONHASHSEED="0")
    proc = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
                           python, __file__, "--child", scenario, kind, str(size)],
                          capture_output=True, text=True, env=env, timeout=3600)
    found = COLLECTED.findall(proc.stderr)
    if proc.returncode != 0 or not found:
        raise RuntimeError("%s %s under callgrind: %s" % (scenario, kind, proc.stderr[-500:]))
    return int(found[-1])


CALLGRIND_SCENARIOS = ("never-hit", "after-stop", "after-cont", "first-pass", "next-calls")


def bench_callgrind(python: str, size: int, scenarios: Sequence[str] = CALLGRIND_SCENARIOS) -> None:
    """Instructions of *size* more iterations of the hot function (runs at
    size and 2 * size, subtracted: start-up and warm-up cancel out), as a
    ratio to the same without a debugger; stdlib pdb is left out (50-70x
    in time, no close call).  first-pass and next-calls grow by their own
    sizes (FIRST_PASS_FUNCTIONS functions, NEXT_CALLS calls)."""
    version = subprocess.run([python, "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    print("\nPython %s (%s), callgrind, %d more iterations" % (version, python, size))
    print("%-11s %14s %14s %10s" % ("scenario", "none", "lowimpact", "lowimpact"))
    sizes = {"first-pass": FIRST_PASS_FUNCTIONS, "next-calls": NEXT_CALLS}
    for scenario in scenarios:
        grown = {}
        n = sizes.get(scenario, size)
        for kind in ("none", "lowimpact"):
            grown[kind] = (instructions(python, scenario, kind, 2 * n)
                           - instructions(python, scenario, kind, n))
        print("%-11s %14d %14d %9.4fx" % (scenario, grown["none"], grown["lowimpact"],
                                          grown["lowimpact"] / grown["none"]))


def bench(python: str, runs: int, quick: bool) -> None:
    version = subprocess.run([python, "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    sizes = {"never-hit": 300_000 if quick else 1_000_000,
             "after-stop": 300_000 if quick else 1_000_000,
             "after-cont": 300_000 if quick else 1_000_000,
             "next": 2_000}
    print("\nPython %s (%s), median of %d processes" % (version, python, runs))
    print("%-11s %12s %12s %12s %10s %10s" % ("scenario", "none", "pdb", "lowimpact",
                                                "pdb", "lowimpact"))
    for scenario in SCENARIOS:
        samples: Dict[str, List[float]] = {k: [] for k in DEBUGGERS}
        for _ in range(runs):
            for kind in DEBUGGERS:
                value = measure(python, scenario, kind, sizes[scenario])
                if value is not None:
                    samples[kind].append(value)
        med = {k: statistics.median(v) if v else None for k, v in samples.items()}
        if scenario == "next":
            # 'none' runs the loop without stopping: its time per stop is the
            # work each stop's line does, included in the debuggers' figures.
            cells = ["%9.2f ms" % (med[k] * 1e3) if med[k] is not None else "-"
                     for k in DEBUGGERS]
            cells[0] = "%9.2f ms" % (med["none"] * 1e3 / (2 * NEXT_STOPS))
            print("%-11s %12s %12s %12s" % ("next /stop", *cells))
            continue
        base = med["none"]
        ratios = ["%9.3fx" % (med[k] / base) if med[k] and base else "-" for k in ("pdb", "lowimpact")]
        print("%-11s %10.3f s %10.3f s %10.3f s %10s %10s" % (
            scenario, base, med["pdb"] or float("nan"), med["lowimpact"] or float("nan"), *ratios))


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, 3 runs")
    parser.add_argument("--python", action="append", help="interpreter (repeatable; "
                        "default: this one)")
    parser.add_argument("--callgrind", action="store_true",
                        help="count instructions (valgrind) instead of timing")
    parser.add_argument("--scenario", action="append", choices=CALLGRIND_SCENARIOS,
                        help="with --callgrind: only this scenario (repeatable)")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.child:
        scenario, kind, size = options.child
        print(json.dumps({"seconds": child(scenario, kind, int(size))}))
        return 0
    runs = 3 if options.quick and options.runs == 5 else options.runs
    for python in options.python or [sys.executable]:
        if options.callgrind:
            bench_callgrind(python, 100_000 if options.quick else 300_000,
                            options.scenario or CALLGRIND_SCENARIOS)
        else:
            bench(python, runs, options.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
