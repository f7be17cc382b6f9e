"""What native LINE costs after every line of a loop ran, and what the
cover core's retire_lines saves: CPython 3.12/3.13 DISABLE a line where it
starts, and keep checking its jump targets (a comprehension's loop, `yield
from`, a loop on one line) on every pass, without calling the tool.

    python bench/cover_retired_lines.py [--runs N] [--python PY ...]

For each interpreter and workload it times the workload alone, then under a
lowimpact cover Collector (lines) without and with retire_lines (LINE off for
a code object once all its lines ran), all in one process, and prints the
medians of --runs rounds as ratios to the workload alone.  On 3.9-3.11 the
engine's disarmed probes cost nothing in the loops: retire_lines changes
nothing there (cover run uses it on 3.12+ only).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"

#: Run by each interpreter: prints one table row per workload.
MEASURE = r'''
import statistics, sys, time
from lowimpact import _cover, monitoring

def squares(items):
    return sum([x * x for x in items if x % 3])

def comprehensions():
    items = list(range(1000))
    for _ in range(300):
        squares(items)

def nested(depth):
    if depth == 0:
        for item in range(20000):
            yield item
    else:
        yield from nested(depth - 1)

def yield_from():
    for _ in range(3):
        sum(nested(100))

# The same with a line that never runs (as json's encoder checks each list
# for a circular reference): LINE cannot be retired there, and the checks
# go on costing (docs/COVER.md, "How it measures").
def squares_checked(items):
    if not isinstance(items, list):
        raise TypeError("a list, please")
    return sum([x * x for x in items if x % 3])

def comprehensions_unretired():
    items = list(range(1000))
    for _ in range(300):
        squares_checked(items)

def nested_checked(depth, seen):
    if depth in seen:
        raise ValueError("circular")
    if depth == 0:
        for item in range(20000):
            yield item
    else:
        yield from nested_checked(depth - 1, seen)

def yield_from_unretired():
    for _ in range(3):
        sum(nested_checked(100, ()))

def timed(workload):
    start = time.perf_counter()
    workload()
    return time.perf_counter() - start

def measured(workload, retire):
    collector = _cover.Collector(1, lambda name, frame: name if name == "<string>" else None,
                                 retire_lines=retire)
    collector.start()
    try:
        workload()   # (each line that runs has once: what follows is the steady state)
        return timed(workload)
    finally:
        collector.stop()
        # stop() leaves the measured code its local events (LINE where it was
        # not retired), which the next runs alone would pay for.
        monitoring.use_tool_id(1, "reset")
        for code, _ in collector.data()[0].values():
            monitoring.set_local_events(1, code, 0)
        monitoring.free_tool_id(1)

runs = int(sys.argv[1])
for workload in (comprehensions, yield_from, comprehensions_unretired, yield_from_unretired):
    times = {"plain": [], "kept": [], "retired": []}
    for _ in range(runs):
        times["plain"].append(timed(workload))
        times["kept"].append(measured(workload, False))
        times["retired"].append(measured(workload, True))
    base = statistics.median(times["plain"])
    print("| %s | %s | %.3f | %.2fx | %.2fx |" % (
        sys.version.split()[0], workload.__name__, base,
        statistics.median(times["kept"]) / base, statistics.median(times["retired"]) / base))
'''


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--python", action="append", help="interpreter (repeatable)")
    options = parser.parse_args()
    print("| CPython | workload | alone s | LINE kept | LINE retired |")
    print("|---|---|---|---|---|")
    for python in options.python or [sys.executable]:
        env = dict(os.environ, PYTHONPATH=str(SRC))
        subprocess.run([python, "-c", MEASURE, str(options.runs)], env=env, check=True)


if __name__ == "__main__":
    main()
