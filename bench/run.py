"""Overhead benchmarks of lowimpact.monitoring: ratio tables per interpreter.

    python bench/run.py [--runs N] [--quick] [--scenarios ...] [--workloads ...]
                        [--parts workloads enable imports] [--json FILE]
    python bench/run.py --all [--python PY ...] [same options]

The first form measures the interpreter that runs it.  ``--all`` runs the
first form under every interpreter (``--python``, else $LOWIMPACT_BENCH_PYTHONS,
else python3.9, 3.10, 3.11, 3.12 and 3.13 from pyenv or PATH) and adds a combined
comparison table.

Every measurement runs in a fresh child process (child.py), so monitoring
state never leaks from one measurement into another, and each cell is the
median of --runs such processes.  The unmonitored runs of a workload are
interleaved with its monitored runs (one of each per round) so that drift of
a noisy machine hits both alike.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from typing import Any, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import report  # noqa: E402
from child import load_monitoring  # noqa: E402
from costs import IMPORT_MODULES  # noqa: E402
from scenarios import BASELINE, SCENARIOS  # noqa: E402
from workloads import WORKLOADS  # noqa: E402

def default_pythons() -> list[str]:
    """python3.9, 3.10, 3.11, 3.12 and 3.13: the newest of each under pyenv, else on
    PATH (pyenv's shims on PATH run only the selected versions)."""
    found = []
    root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    for minor in (9, 10, 11, 12, 13):
        name = "python3.%d" % minor
        candidates = sorted(glob.glob(os.path.join(root, "versions", "3.%d.*" % minor, "bin", name)))
        path = candidates[-1] if candidates else shutil.which(name)
        if path:
            found.append(path)
    return found
HEAP_OBJECTS = 200_000
HEAP_FUNCTIONS = 5_000
CHILD_TIMEOUT = 900  # seconds; a hung child must not hang the whole run

Result = dict[str, Any]


def run_child(mode: str, options: tuple[str, ...] = (), **args: object) -> Result:
    """Run child.py in a fresh interpreter; return its result or {"error": ...}.

    *options* are interpreter options (e.g. ``-X importtime``); when given,
    the child's stderr is returned too, under "stderr".
    """
    argv = [sys.executable, *options, os.path.join(HERE, "child.py"), mode]
    argv += ["%s=%s" % (key, value) for key, value in args.items()]
    # A fixed hash seed makes set/dict iteration, and so the work done, the
    # same in every run.
    env = dict(os.environ, PYTHONHASHSEED="0")
    if mode == "imports":
        # The first (untimed) import must be able to write missing .pyc files,
        # or the timed ones would compile source.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, env=env,
                              timeout=CHILD_TIMEOUT)
    except subprocess.TimeoutExpired:
        return {"error": "timed out after %d s" % CHILD_TIMEOUT}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("RESULT "):
            result = json.loads(line[len("RESULT "):])
            if options:
                result["stderr"] = proc.stderr
            return result
    tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
    return {"error": "child exited %d: %s" % (proc.returncode, tail)}


def progress(message: str) -> None:
    """Progress goes to stderr so that stdout holds only the tables."""
    print("[%s] %s" % (sys.version.split()[0], message), file=sys.stderr, flush=True)


def _noise(values: list[float]) -> float:
    """Spread of repeated timings relative to their median."""
    return (max(values) - min(values)) / statistics.median(values)


def measure_workload(name: str, scenarios: list[str], runs: int, quick: bool) -> tuple[
        list[Result], Result]:
    """Rows (one per scenario) for one workload, and its breakpoint discovery."""
    workload = WORKLOADS[name]
    size = workload.quick_size if quick else workload.size
    warmup = max(1, size // 4)  # a smaller input: warms the same code for less time
    found = run_child("discover", workload=name, size=size)
    bp_line = found.get("bp_line") or ""
    samples: dict[str, list[Result]] = {s: [] for s in [BASELINE.name] + scenarios}
    reasons: dict[str, str] = {}
    if not bp_line:
        for scenario in scenarios:
            if SCENARIOS[scenario].needs_breakpoint:
                reasons[scenario] = "n/a: no line for a never-hit breakpoint: %s" % (
                    found.get("why") or found.get("error"))
    for round_ in range(runs):
        progress("%s (size %d): round %d/%d" % (name, size, round_ + 1, runs))
        for scenario in samples:
            if scenario in reasons:
                continue
            result = run_child("workload", workload=name, size=size, warmup=warmup,
                               scenario=scenario, bp_line=bp_line)
            if "na" in result:
                reasons[scenario] = "n/a: " + result["na"]
            elif "error" in result:
                reasons[scenario] = "error: " + result["error"]
            else:
                samples[scenario].append(result)
            if scenario == BASELINE.name and scenario in reasons:
                # Without a baseline there is nothing to take a ratio against.
                for other in scenarios:
                    reasons.setdefault(other, "baseline failed: " + reasons[scenario])
    base = samples[BASELINE.name]
    base_s = statistics.median(r["seconds"] for r in base) if base else None
    rows = []
    for scenario in scenarios:
        row: Result = {"scenario": scenario, "workload": name, "size": size, "base_s": base_s}
        if scenario in reasons:
            row["reason"] = reasons[scenario]
            rows.append(row)
            continue
        seconds = [r["seconds"] for r in samples[scenario]]
        row.update(mon_s=statistics.median(seconds), mon_samples=seconds,
                   base_samples=[r["seconds"] for r in base],
                   noise=_noise(seconds), base_noise=_noise([r["seconds"] for r in base]),
                   flags=_flags(scenario, samples[scenario], base[0]["checksum"]),
                   events=statistics.median(r["stats"].get("events", 0)
                                            for r in samples[scenario]),
                   by_event={event: statistics.median(r["stats"]["by_event"][event]
                                                      for r in samples[scenario])
                             for event in samples[scenario][0]["stats"].get("by_event", {})})
        row["ratio"] = row["mon_s"] / base_s
        # Processor time does not count the time the child waited for a core,
        # which is most of the noise when other work shares the machine.
        row["cpu_ratio"] = (statistics.median(r["cpu_seconds"] for r in samples[scenario])
                            / statistics.median(r["cpu_seconds"] for r in base))
        rows.append(row)
    return rows, found


def _flags(scenario: str, samples: list[Result], checksum: int) -> list[str]:
    """Signs that a measurement is not what it claims to be."""
    flags = []
    if any(r["checksum"] != checksum for r in samples):
        flags.append("RESULT DIFFERS FROM UNMONITORED RUN")
    if scenario != "idle" and any(not r["stats"].get("events") for r in samples):
        flags.append("NO EVENTS SEEN")
    else:
        for event in samples[0]["stats"].get("by_event", {}):
            if event not in SCENARIOS[scenario].may_be_zero and any(
                    not r["stats"]["by_event"][event] for r in samples):
                flags.append("NO %s EVENTS" % event)
    if any(r["stats"].get("breakpoint_hits") for r in samples):
        flags.append("BREAKPOINT WAS HIT")
    return flags


def measure_enable(runs: int) -> Result:
    """Median cost of set_events(LINE) / set_events(0) in a big heap."""
    results = []
    for i in range(runs):
        progress("enable cost: run %d/%d" % (i + 1, runs))
        result = run_child("heap", objects=HEAP_OBJECTS, functions=HEAP_FUNCTIONS)
        if "na" in result or "error" in result:
            return {"reason": result.get("na") or "error: " + result["error"]}
        if not result["events"]:
            return {"reason": "NO EVENTS SEEN with LINE on"}
        results.append(result)
    keys = [k for k, v in results[0].items() if isinstance(v, (int, float))]
    return {"runs": runs, "median": {k: statistics.median(r[k] for r in results) for k in keys}}


IMPORT_EVENTS = ("LINE", "LINE+BRANCH")


def measure_imports(runs: int) -> Result:
    """Median import time of big packages with LINE, and LINE+BRANCH, on vs off.

    Interleaved runs.  Two variants: every module, and every module but
    BIG_TABLE_MODULES (imported untimed first), which dominate native
    3.12/3.13's overhead.
    """
    modules = ",".join(IMPORT_MODULES)
    # Compile and cache every .pyc first, so compiling is never timed.
    warm = run_child("imports", events="", modules=modules, big_tables=1)
    if "error" in warm:
        return {"reason": "error: " + warm["error"]}
    variants = {"1": "all", "0": "big tables preloaded"}
    samples: dict[tuple[str, str], list[Result]] = {
        (big, events): [] for big in variants for events in ("",) + IMPORT_EVENTS}
    for i in range(runs):
        progress("imports: run %d/%d" % (i + 1, runs))
        for (big, events), results in samples.items():
            result = run_child("imports", events=events, modules=modules, big_tables=big)
            if "na" in result or "error" in result:
                return {"reason": result.get("na") or "error: " + result["error"]}
            if events and not result["events"]:
                return {"reason": "NO EVENTS SEEN with %s on" % events}
            if result["uncompiled"]:
                return {"reason": "modules without a .pyc were compiled while timed: %s"
                        % ", ".join(result["uncompiled"])}
            results.append(result)
    rows = []
    for big, label in variants.items():
        plain = [r["seconds"] for r in samples[big, ""]]
        row: Result = {"label": label, "modules": samples[big, ""][0]["modules"],
                       "plain_s": statistics.median(plain), "base_noise": _noise(plain)}
        for events in IMPORT_EVENTS:
            monitored = [r["seconds"] for r in samples[big, events]]
            row[events] = {"seconds": statistics.median(monitored),
                           "ratio": statistics.median(monitored) / statistics.median(plain),
                           "noise": _noise(monitored)}
        rows.append(row)
    return {"runs": runs, "rows": rows, "slowest": _import_outliers(modules)}


def _import_outliers(modules: str, count: int = 5) -> list[tuple[str, float, float]]:
    """The modules whose own import time grows most with LINE on.

    One extra, untimed pair of runs under ``-X importtime``: the ratio alone
    does not say whether the overhead is spread out or sits in a few modules.
    """
    off, on = (_self_import_ms(run_child("imports", ("-X", "importtime"), events=events,
                                         modules=modules, big_tables=1))
               for events in ("", "LINE"))
    grown = sorted(on, key=lambda name: on[name] - off.get(name, 0.0), reverse=True)
    return [(name, off.get(name, 0.0), on[name]) for name in grown[:count]]


def _self_import_ms(result: Result) -> dict[str, float]:
    """Each module's own import time in ms, from a child's ``-X importtime`` output."""
    times = {}
    for line in result.get("stderr", "").splitlines():
        # import time: self [us] | cumulative | imported package
        fields = line[len("import time:"):].split("|")
        if line.startswith("import time:") and len(fields) == 3 and fields[0].strip().isdigit():
            times[fields[2].strip()] = int(fields[0]) / 1e3
    return times


def engine_description() -> tuple[bool, str]:
    """(native?, what lowimpact.monitoring is in this interpreter)."""
    native = sys.version_info >= (3, 12)
    module, error = load_monitoring()
    if module is None:
        return native, "lowimpact.monitoring unavailable: %s" % error
    if native:
        return native, "lowimpact.monitoring = native sys.monitoring"
    engine = sys.modules.get("lowimpact._engine")
    return native, "lowimpact.monitoring = lowimpact engine, %s" % getattr(
        engine, "__file__", "?")


def measure(args: argparse.Namespace) -> Result:
    """Everything selected, for the interpreter running this script."""
    native, engine = engine_description()
    runs = args.runs or (3 if args.quick else 5)
    result: Result = {
        "version": "%d.%d" % sys.version_info[:2],
        "full_version": sys.version.split()[0],
        "executable": sys.executable,
        "native": native,
        "engine": engine,
        "runs": runs,
        "quick": args.quick,
    }
    if "workloads" in args.parts:
        result["rows"], result["breakpoints"] = [], {}
        for name in args.workloads:
            rows, found = measure_workload(name, args.scenarios, runs, args.quick)
            result["breakpoints"][name] = found
            result["rows"].extend(rows)
        # Group rows by scenario, keeping the scenario and workload orders.
        order = {name: i for i, name in enumerate(args.scenarios)}
        result["rows"].sort(key=lambda row: order[row["scenario"]])
    if "enable" in args.parts:
        result["enable"] = measure_enable(runs)
    if "imports" in args.parts:
        result["imports"] = measure_imports(runs)
    return result


def interpreters(args: argparse.Namespace) -> list[str]:
    """The interpreters --all runs: --python, $LOWIMPACT_BENCH_PYTHONS or the venvs."""
    if args.python:
        return args.python
    env = os.environ.get("LOWIMPACT_BENCH_PYTHONS")
    if env:
        return env.split()
    return default_pythons()


def run_all(args: argparse.Namespace, forwarded: list[str]) -> int:
    """Run this script under each interpreter, then print the combined tables."""
    results = []
    with tempfile.TemporaryDirectory(prefix="lowimpact-bench-") as tmp:
        for i, python in enumerate(interpreters(args)):
            out = os.path.join(tmp, "%d.json" % i)
            proc = subprocess.run([python, os.path.abspath(__file__), "--json", out] + forwarded)
            if proc.returncode or not os.path.exists(out):
                print("\n%s failed (exit %d)\n" % (python, proc.returncode), flush=True)
                continue
            with open(out) as f:
                results.append(json.load(f))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    if not results:
        return 1
    print(report.combined_report(results))
    return 0


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """Options, plus the ones --all passes on to each interpreter."""
    # No abbreviated options: the forwarding below matches options by name.
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--runs", type=int, default=0,
                        help="processes per cell, median taken (default 5, --quick 3)")
    parser.add_argument("--quick", action="store_true",
                        help="small sizes and 3 runs: the whole set in about 2 minutes")
    parser.add_argument("--scenarios", nargs="+", default=list(SCENARIOS),
                        choices=list(SCENARIOS), metavar="SCENARIO",
                        help="default: all of %s" % ", ".join(SCENARIOS))
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS),
                        choices=list(WORKLOADS), metavar="WORKLOAD",
                        help="default: all of %s" % ", ".join(WORKLOADS))
    parser.add_argument("--parts", nargs="+", default=["workloads", "enable", "imports"],
                        choices=["workloads", "enable", "imports"],
                        help="which benchmarks to run (default: all)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--all", action="store_true",
                        help="run under every interpreter and compare")
    parser.add_argument("--python", action="append", metavar="PY",
                        help="an interpreter to run (repeatable; implies --all)")
    args = parser.parse_args(argv)
    args.all = args.all or bool(args.python)
    forwarded = []
    skip_next = False
    for arg in argv:
        # --all/--python/--json belong to the driver; everything else is passed on.
        if skip_next:
            skip_next = False
        elif arg in ("--python", "--json"):
            skip_next = True
        elif arg != "--all" and not arg.startswith(("--python=", "--json=")):
            forwarded.append(arg)
    return args, forwarded


def main(argv: Optional[list[str]] = None) -> int:
    """Measure this interpreter, or with --all every interpreter; print the tables."""
    args, forwarded = parse_args(sys.argv[1:] if argv is None else argv)
    if args.all:
        return run_all(args, forwarded)
    result = measure(args)
    print(report.interpreter_report(result), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
