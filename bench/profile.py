"""Whole-process overhead of `lowimpact profile` beside the profilers people use.

    python bench/profile.py [--runs N] [--quick] [--python PY ...] [--workloads ...]

For each interpreter and workload it times the whole process -- start-up,
profiling, writing the profile -- of:

  plain         python program                                 (the baseline)
  cProfile      python -m cProfile -o FILE program             deterministic
  yappi         python -m yappi -c wall -f pstat -o FILE        deterministic, wall clock
  pyinstrument  python -m pyinstrument -r text -o FILE         sampling (1 ms)
  lowimpact     python -m lowimpact profile -o FILE program    deterministic, C callbacks

and prints the median of --runs processes as a ratio to plain.  The tools
of one round run one after another so that drift on a busy machine hits
all alike.  Each interpreter needs yappi and pyinstrument installed (pip),
and lowimpact installed or importable from src/ (built in place; its .pyc
files are compiled first, as an installation has them, even under
PYTHONDONTWRITEBYTECODE).  A tool that is missing or fails shows as "-".

Workloads: calls (bench/profile_programs/calls.py: recursive fib, the
call-heavy worst case), objects and parser (bench/cover_programs: an
object-heavy simulation and a tokenizer/recursive-descent parser), and
stdlib_json (bench/profile_programs/stdlib_json.py: the json package's
own test suite, run by unittest).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"

# name -> (program and arguments, quick arguments)
WORKLOADS = {
    "calls": ([str(HERE / "profile_programs" / "calls.py")], ["25"], ["22"]),
    "objects": ([str(HERE / "cover_programs" / "objects.py")], ["300000"], ["80000"]),
    "parser": ([str(HERE / "cover_programs" / "parser.py")], ["8000"], ["2000"]),
    "stdlib_json": ([str(HERE / "profile_programs" / "stdlib_json.py")], [], []),
}

TOOLS = ("plain", "cProfile", "yappi", "pyinstrument", "lowimpact")


def command(tool: str, workload: str, quick: bool, python: str, out: Path) -> List[str]:
    program, full, small = WORKLOADS[workload]
    program = program + (small if quick else full)
    return {
        "plain": [python] + program,
        "cProfile": [python, "-m", "cProfile", "-o", str(out)] + program,
        "yappi": [python, "-m", "yappi", "-c", "wall", "-f", "pstat", "-o", str(out)] + program,
        "pyinstrument": [python, "-m", "pyinstrument", "-r", "text", "-o", str(out)] + program,
        "lowimpact": [python, "-m", "lowimpact", "profile", "-o", str(out)] + program,
    }[tool]


# A profiler that keeps every sample of a long run (pyinstrument on 3.13 on
# the test suite grew past 20 GB here) fails its cell instead of stalling the
# machine.
MEMORY_LIMIT = 4 << 30


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def time_once(argv: List[str], env: Dict[str, str], cwd: str) -> Optional[float]:
    start = time.perf_counter()
    proc = subprocess.run(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, preexec_fn=_limit_memory)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.stderr.write("failed (%d): %s\n%s\n" % (proc.returncode, " ".join(argv),
                                                    proc.stderr[-1000:]))
        return None
    return elapsed


def compile_package(python: str) -> None:
    """Byte-compile src/lowimpact for *python*, as installing it would: without
    its .pyc files every run would compile lowimpact's modules again."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run([python, "-m", "compileall", "-q", str(SRC / "lowimpact")], env=env,
                   stdout=subprocess.DEVNULL, check=False)


def bench(python: str, runs: int, quick: bool, workloads: Sequence[str]) -> None:
    compile_package(python)
    version = subprocess.run([python, "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"],
                             capture_output=True, text=True).stdout.strip()
    print("\n## CPython %s (%s), median of %d runs, ratio to plain\n" % (version, python, runs))
    print("| workload | plain s | %s |" % " | ".join(TOOLS[1:]))
    print("|---|---|%s" % ("---|" * (len(TOOLS) - 1)))
    env = dict(os.environ, PYTHONPATH=str(SRC))
    with tempfile.TemporaryDirectory(prefix="lowimpact-profile-bench") as tmp:
        for workload in workloads:
            times: Dict[str, List[float]] = {t: [] for t in TOOLS}
            failed = set()
            for _ in range(runs):
                for tool in TOOLS:
                    if tool in failed:
                        continue
                    argv = command(tool, workload, quick, python, Path(tmp) / ("out-" + tool))
                    took = time_once(argv, env, tmp)
                    if took is None:
                        failed.add(tool)
                    else:
                        times[tool].append(took)
            base = statistics.median(times["plain"])
            cells = ["-" if tool in failed or not times[tool]
                     else "%.2fx" % (statistics.median(times[tool]) / base) for tool in TOOLS[1:]]
            print("| %s | %.2f | %s |" % (workload, base, " | ".join(cells)), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", action="append", help="interpreter (repeatable)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="smaller inputs, 3 runs")
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    options = parser.parse_args()
    runs = 3 if options.quick and options.runs == 5 else options.runs
    for python in options.python or [sys.executable]:
        bench(python, runs, options.quick, options.workloads)


if __name__ == "__main__":
    main()
