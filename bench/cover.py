"""Whole-process overhead of `lowimpact cover` beside the coverage tools people use.

    python bench/cover.py [--runs N] [--quick] [--python PY ...] [--tools TOOL ...]

For each interpreter, program and mode (lines, branches) it times the whole
process -- start-up, measuring, writing the data -- of:

  plain      python program                      (the baseline)
  ctrace     coverage run (COVERAGE_CORE=ctrace) coverage.py's C tracer
  sysmon     coverage run (COVERAGE_CORE=sysmon) 3.12+; lines only before 3.14
  slipcover  python -m slipcover [--branch]      writes its JSON report too
  lowimpact  python -m lowimpact cover run       C core on sys.monitoring / the engine

and prints the median of --runs processes as a ratio to plain.  Runs of one
round alternate tools so that drift on a busy machine hits all alike.  Each
interpreter needs coverage and slipcover installed, and lowimpact installed
or importable from src/ (built in place; its modules there are byte-compiled
first, as an installed package's are, so that no run compiles them, even
with PYTHONDONTWRITEBYTECODE set).  A tool that is missing or fails shows
as "-".
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
PROGRAMS = HERE / "cover_programs"

# name -> (arguments after the tool, source to measure, full-size args, quick args)
WORKLOADS = {
    "objects": (["objects.py"], ".", ["600000"], ["150000"]),
    "parser": (["parser.py"], ".", ["15000"], ["4000"]),
    "stdlib_json": (
        ["-m", "unittest", "-q", "test.test_json"],
        "json,test.test_json",
        [],
        [],
    ),
}


def command(tool: str, branch: bool, workload: str, quick: bool, python: str,
            data: Path) -> Optional[Tuple[List[str], Dict[str, str]]]:
    target, source, full, small = WORKLOADS[workload]
    target = target + (small if quick else full)
    env = dict(os.environ)
    env.pop("COVERAGE_CORE", None)
    env["PYTHONPATH"] = str(SRC)
    bopt = ["--branch"] if branch else []
    if tool == "plain":
        return [python, *target], env
    if tool in ("ctrace", "sysmon"):
        if tool == "sysmon" and (branch or not has_native_monitoring(python)):
            return None
        env["COVERAGE_CORE"] = tool
        return [python, "-m", "coverage", "run", "--data-file", str(data), *bopt,
                "--source", source, *target], env
    if tool == "slipcover":
        return [python, "-m", "slipcover", *bopt, "--source", source_dirs(source, python),
                "--json", "--out", str(data), *target], env
    if tool == "lowimpact":
        return [python, "-m", "lowimpact", "cover", "run", "--data-file", str(data), *bopt,
                "--source", source, *target], env
    raise ValueError(tool)


def has_native_monitoring(python: str) -> bool:
    out = subprocess.run([python, "-c", "import sys; print(hasattr(sys, 'monitoring'))"],
                         capture_output=True, text=True)
    return out.stdout.strip() == "True"


def source_dirs(source: str, python: str) -> str:
    """SlipCover's --source takes directories, not module names."""
    out = []
    for name in source.split(","):
        if name == ".":
            out.append(".")
            continue
        found = subprocess.run(
            [python, "-c", "import importlib.util, os, sys; s = importlib.util.find_spec(sys.argv[1]);"
             "print(os.path.dirname(s.origin))", name],
            capture_output=True, text=True)
        out.append(found.stdout.strip())
    return ",".join(out)


TOOLS = ("plain", "ctrace", "sysmon", "slipcover", "lowimpact")


def time_once(argv: List[str], env: Dict[str, str], cwd: Path) -> Optional[float]:
    start = time.perf_counter()
    proc = subprocess.run(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.stderr.write("failed (%d): %s\n%s\n" % (proc.returncode, " ".join(argv),
                                                    proc.stderr[-2000:]))
        return None
    return elapsed


def bench(python: str, runs: int, quick: bool, workloads: Sequence[str],
          tools: Sequence[str] = TOOLS) -> None:
    version = subprocess.run([python, "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"],
                             capture_output=True, text=True).stdout.strip()
    subprocess.run([python, "-m", "compileall", "-q", str(SRC / "lowimpact")], check=True,
                   stdout=subprocess.DEVNULL)
    print("\n## CPython %s (%s), median of %d runs, ratio to plain\n" % (version, python, runs))
    print("| workload | mode | plain s | ctrace | sysmon | slipcover | lowimpact |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="lowimpact-cover-bench") as tmp:
        work = Path(tmp) / "programs"
        shutil.copytree(PROGRAMS, work)
        for workload in workloads:
            for branch in (False, True):
                times: Dict[str, List[float]] = {t: [] for t in TOOLS}
                failed = set()
                for run in range(runs):
                    for tool in TOOLS:
                        if tool not in tools:
                            continue
                        data = Path(tmp) / ("data-%s" % tool)
                        spec = command(tool, branch, workload, quick, python, data)
                        if spec is None or tool in failed:
                            continue
                        took = time_once(*spec, cwd=work)
                        if took is None:
                            failed.add(tool)
                        else:
                            times[tool].append(took)
                base = statistics.median(times["plain"])
                cells = []
                for tool in TOOLS[1:]:
                    if tool in failed or not times[tool]:
                        cells.append("-")
                    else:
                        cells.append("%.2fx" % (statistics.median(times[tool]) / base))
                print("| %s | %s | %.2f | %s |" % (workload, "branches" if branch else "lines",
                                                   base, " | ".join(cells)), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", action="append", help="interpreter (repeatable)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="smaller inputs, 3 runs")
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    parser.add_argument("--tools", nargs="+", default=list(TOOLS[1:]), choices=list(TOOLS[1:]),
                        help="the tools to time beside plain (default: all)")
    options = parser.parse_args()
    runs = 3 if options.quick and options.runs == 5 else options.runs
    for python in options.python or [sys.executable]:
        bench(python, runs, options.quick, options.workloads, ("plain", *options.tools))


if __name__ == "__main__":
    main()
