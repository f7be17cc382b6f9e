"""What contexts cost: a pytest suite of many small tests, measured with and
without per-test contexts.

    python bench/cover_contexts.py [--tests N] [--runs N] [--python PY ...]

It writes a package of 40 functions and N tests (default 2000, in 20 files),
each calling five of the functions, and times whole pytest processes:

  plain         pytest
  li            pytest --li-cov=pkg                     lowimpact, no contexts
  li-ctx        pytest --li-cov=pkg --li-cov-context=test
  li-run        lowimpact cover run --source=pkg -m pytest
  li-tf         the same with [run] dynamic_context = test_function
  ctrace        pytest --cov=pkg                        pytest-cov, coverage.py's C tracer
  ctrace-ctx    pytest --cov=pkg --cov-context=test
  ctrace-run    coverage run --source=pkg -m pytest     (ctrace)
  ctrace-tf     the same with dynamic_context = test_function

in lines and branches mode, and prints the median CPU time (user + system,
of the whole process: a shared machine's load changes it much less than
wall time) of --runs processes and its ratio to plain.  Runs of one round
alternate tools, so that drift on a busy machine hits all alike.  Each interpreter needs pytest, pytest-cov and
coverage; lowimpact is taken from src/ (built in place).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Tuple

SRC = Path(__file__).resolve().parent.parent / "src"
PYTEST_OPTIONS = ["-q", "-p", "no:cacheprovider", "-p", "no:randomly", "tests"]
TOOLS = ("plain", "li", "li-ctx", "li-run", "li-tf", "ctrace", "ctrace-ctx", "ctrace-run",
         "ctrace-tf")


def write_suite(root: Path, tests: int) -> None:
    """pkg/funcs.py (40 functions with a branch and a loop) and tests/."""
    (root / "pkg").mkdir()
    (root / "pkg" / "__init__.py").write_text("")
    body = []
    for i in range(40):
        body.append("def f%d(n):\n    total = 0\n    for k in range(n %% 7):\n"
                    "        if k %% 2:\n            total += k\n        else:\n"
                    "            total -= %d\n    return total\n\n" % (i, i))
    (root / "pkg" / "funcs.py").write_text("".join(body))
    (root / "tests").mkdir()
    per_file = max(1, tests // 20)
    for f in range(0, tests, per_file):
        lines = ["from pkg import funcs\n\n"]
        for t in range(f, min(tests, f + per_file)):
            calls = "".join("    funcs.f%d(%d)\n" % ((t * 5 + c) % 40, t + c) for c in range(5))
            lines.append("def test_%d():\n%s\n" % (t, calls))
        (root / "tests" / ("test_%d.py" % f)).write_text("".join(lines))
    (root / "tf.rc").write_text("[run]\ndynamic_context = test_function\n")
    (root / "none.rc").write_text("[run]\n")


def command(tool: str, branch: bool) -> Tuple[List[str], Dict[str, str]]:
    env = dict(os.environ, PYTHONPATH=str(SRC), COVERAGE_CORE="ctrace")
    pytest = ["-m", "pytest", *PYTEST_OPTIONS]
    if tool == "plain":
        return [*pytest, "-p", "no:pytest_cov"], env
    if tool in ("li", "li-ctx"):
        return [*pytest, "-p", "lowimpact.tools.cover.pytest_plugin", "-p", "no:pytest_cov",
                "--li-cov=pkg", "--li-cov-report=", *(["--li-cov-branch"] if branch else []),
                *(["--li-cov-context=test"] if tool == "li-ctx" else [])], env
    if tool in ("ctrace", "ctrace-ctx"):
        return [*pytest, "-p", "pytest_cov", "--cov=pkg", "--cov-report=",
                *(["--cov-branch"] if branch else []),
                *(["--cov-context=test"] if tool == "ctrace-ctx" else [])], env
    run = ["-m", "lowimpact", "cover"] if tool.startswith("li") else ["-m", "coverage"]
    rcfile = "--rcfile=tf.rc" if tool.endswith("-tf") else "--rcfile=none.rc"
    return [*run, "run", rcfile, "--source=pkg", *(["--branch"] if branch else []),
            *pytest, "-p", "no:pytest_cov"], env


def cpu_time(argv: List[str], cwd: Path, env: Dict[str, str]) -> Tuple[float, int, str]:
    """Run *argv*: its CPU time (user + system), exit status and output."""
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        return usage.ru_utime + usage.ru_stime, proc.returncode, out.read()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tests", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--python", action="append", default=[])
    options = parser.parse_args()
    for python in options.python or [sys.executable]:
        version = subprocess.run([python, "-c", "import sys; print(sys.version.split()[0])"],
                                 capture_output=True, text=True).stdout.strip()
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            write_suite(root, options.tests)
            times: Dict[Tuple[str, bool], List[float]] = {}
            for _ in range(options.runs):
                for branch in (False, True):
                    for tool in TOOLS:
                        if tool == "plain" and branch:
                            continue
                        args, env = command(tool, branch)
                        for data in root.glob(".coverage*"):
                            data.unlink()
                        elapsed, status, output = cpu_time([python, *args], root, env)
                        if status != 0 or "%d passed" % options.tests not in output:
                            raise SystemExit("%s failed:\n%s" % (tool, output[-3000:]))
                        times.setdefault((tool, branch), []).append(elapsed)
        plain = statistics.median(times["plain", False])
        print("\nCPython %s (%s), %d tests, median of %d runs: CPU seconds (ratio to plain)"
              % (version, python, options.tests, options.runs))
        print("| mode | " + " | ".join(TOOLS) + " |")
        print("|---" * (len(TOOLS) + 1) + "|")
        for branch in (False, True):
            cells = []
            for tool in TOOLS:
                key = ("plain", False) if tool == "plain" else (tool, branch)
                median = statistics.median(times[key])
                cells.append("%.2f (%.2fx)" % (median, median / plain))
            print("| %s | %s |" % ("branches" if branch else "lines", " | ".join(cells)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
