"""What native LINE's checks inside lines cost once every line ran, and
what the cover core's quieting saves: CPython 3.12/3.13 DISABLE the unit of
a line that reported, and keep checking its jump targets (a comprehension's
loop, `yield from`, a loop on one line) on every pass, without calling the
tool; the collector takes its LINE off all of them (src/cover/quiet.h).

    python bench/cover_line_checks.py [--runs N] [--python PY ...]

For each interpreter and workload it times the workload alone, then under a
sys.monitoring tool whose LINE callback records the line and returns DISABLE
(as coverage.py's sysmon core does), then under a lowimpact cover Collector
(lines), each once every line has run, all in one process, and prints the
medians of --runs rounds as ratios to the workload alone.  On 3.9-3.11 the
monitoring API is the engine's, whose disarmed probes leave no check.
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
# for a circular reference): no DISABLE ever turns such a code object's
# LINE off as a whole.
def squares_checked(items):
    if not isinstance(items, list):
        raise TypeError("a list, please")
    return sum([x * x for x in items if x % 3])

def comprehensions_partly_run():
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

def yield_from_partly_run():
    for _ in range(3):
        sum(nested_checked(100, ()))

def timed(workload):
    start = time.perf_counter()
    workload()
    return time.perf_counter() - start

def steady(workload):
    workload()   # (each line that runs has once: what follows is the steady state)
    return timed(workload)

def measured_by_collector(workload):
    collector = _cover.Collector(1, lambda name, frame: name if name == "<string>" else None)
    collector.start()
    try:
        return steady(workload)
    finally:
        collector.stop()
        monitoring.use_tool_id(1, "reset")
        forget(1, [code for code, _ in collector.data()[0].values()])

def measured_by_disable(workload):
    codes = set()

    def on_start(code, offset):
        if code.co_filename == "<string>":
            codes.add(code)
            monitoring.set_local_events(2, code, monitoring.events.LINE)
        return monitoring.DISABLE

    def on_line(code, line):
        lines.add((code, line))
        return monitoring.DISABLE

    lines = set()
    monitoring.use_tool_id(2, "disable")
    monitoring.register_callback(2, monitoring.events.PY_START, on_start)
    monitoring.register_callback(2, monitoring.events.LINE, on_line)
    monitoring.set_events(2, monitoring.events.PY_START)
    try:
        return steady(workload)
    finally:
        monitoring.set_events(2, 0)
        forget(2, codes)

def forget(tool, codes):
    """Leave no LINE on the measured code (`tool` held) for the runs alone
    to pay for."""
    for code in codes:
        monitoring.set_local_events(tool, code, 0)
    monitoring.free_tool_id(tool)
    monitoring.restart_events()

runs = int(sys.argv[1])
for workload in (comprehensions, yield_from, comprehensions_partly_run, yield_from_partly_run):
    times = {"plain": [], "disable": [], "collector": []}
    for _ in range(runs):
        times["plain"].append(timed(workload))
        times["disable"].append(measured_by_disable(workload))
        times["collector"].append(measured_by_collector(workload))
    base = statistics.median(times["plain"])
    print("| %s | %s | %.3f | %.2fx | %.2fx |" % (
        sys.version.split()[0], workload.__name__, base,
        statistics.median(times["disable"]) / base, statistics.median(times["collector"]) / base))
'''


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--python", action="append", help="interpreter (repeatable)")
    options = parser.parse_args()
    print("| CPython | workload | alone s | LINE + DISABLE | lowimpact |")
    print("|---|---|---|---|---|")
    for python in options.python or [sys.executable]:
        env = dict(os.environ, PYTHONPATH=str(SRC))
        subprocess.run([python, "-c", MEASURE, str(options.runs)], env=env, check=True)


if __name__ == "__main__":
    main()
