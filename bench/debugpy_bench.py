"""What a debugpy session costs a call-heavy program, with and without lowimpact.

    python bench/debugpy_bench.py [--runs N] [--quick] [--size N] [--python PY ...]

debugpy (VS Code's debugger) traces with sys.settrace below 3.12 and with
sys.monitoring from 3.12; `python -m lowimpact debugpy` gives 3.11 the
sys.monitoring tracer on lowimpact's engine.  The program
(debugpy_programs/hot.py) times its own work -- calls, most of them to
fib() -- so that starting the debugger is left out.  It runs:

  plain              python hot.py                         (the baseline)
  debugpy            python -m debugpy ... hot.py
  lowimpact debugpy  python -m lowimpact debugpy ... hot.py (below 3.12)

each attached by a DAP client (tests/ide_debugpy/dap.py, as VS Code would
attach) with one breakpoint that is never hit:

  other function     in unused(), another function of the hot file
  hot function       in fib(), on a line that never runs

and prints, per interpreter, the median time of --runs sessions and its
ratio to plain on the same interpreter, for wall-clock time and for the
process's CPU time (steadier when other work competes for the cores).  Runs of one round alternate the
modes, so that drift on a busy machine hits all alike.  An interpreter
without debugpy installed runs the debugpy installed for this one (its
pure-Python parts; on 3.12+ pydevd then uses its pure-Python
sys.monitoring tracer, as lowimpact's 3.11 does).
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
PROGRAM = HERE / "debugpy_programs" / "hot.py"
sys.path.insert(0, str(HERE.parent / "tests" / "ide_debugpy"))

from dap import Session  # noqa: E402

BREAKPOINTS = {"other function": "other", "hot function": "never"}


def markers() -> Dict[str, int]:
    found = {}
    for number, line in enumerate(PROGRAM.read_text().splitlines(), 1):
        match = re.search(r"# at: (\w+)", line)
        if match:
            found[match.group(1)] = number
    return found


def default_pythons() -> List[str]:
    """This python and the newest pyenv 3.12, unless it is one."""
    pythons = [sys.executable]
    root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    if sys.version_info[:2] != (3, 12):
        for candidate in sorted(glob.glob(os.path.join(root, "versions", "3.12.*")),
                                reverse=True):
            if os.access(os.path.join(candidate, "bin", "python3.12"), os.X_OK):
                pythons.append(os.path.join(candidate, "bin", "python3.12"))
                break
    return pythons


class Interpreter:
    def __init__(self, python: str, borrowed: Path) -> None:
        self.python = python
        out = subprocess.run([python, "-c", "import sys, importlib.util; "
                              "print('%d.%d' % sys.version_info[:2]); "
                              "print(importlib.util.find_spec('debugpy') is not None)"],
                             capture_output=True, text=True, check=True).stdout.split()
        self.version = out[0]
        self.own_debugpy = out[1] == "True"
        entries = [str(SRC)] + ([] if self.own_debugpy else [str(borrowed)])
        self.env = dict(os.environ, PYTHONPATH=os.pathsep.join(entries))
        self.env.pop("LOWIMPACT_DEBUGPY", None)

    @property
    def label(self) -> str:
        return self.version + ("" if self.own_debugpy else " (this python's debugpy)")

    def modes(self) -> List[Tuple[str, Optional[List[str]], Optional[str]]]:
        """(name, launcher or None for plain, breakpoint marker)."""
        launchers = [("debugpy", [self.python, "-m", "debugpy"])]
        if tuple(map(int, self.version.split("."))) < (3, 12):
            launchers.append(("lowimpact debugpy", [self.python, "-m", "lowimpact", "debugpy"]))
        result: List[Tuple[str, Optional[List[str]], Optional[str]]] = [("plain", None, None)]
        for name, launcher in launchers:
            for where, marker in BREAKPOINTS.items():
                result.append(("%s, %s" % (name, where), launcher, marker))
        return result

    def run(self, launcher: Optional[Sequence[str]], marker: Optional[str],
            size: int) -> Tuple[float, float]:
        if launcher is None:
            out = subprocess.run([self.python, str(PROGRAM), str(size)], env=self.env,
                                 capture_output=True, text=True, check=True).stdout
            return parse(out)
        with Session(launcher, str(PROGRAM), [str(size)], env=self.env, timeout=600) as session:
            assert marker is not None
            session.start({str(PROGRAM): [{"line": markers()[marker]}]})
            status = session.wait_exit()
        if status != 0:
            raise RuntimeError("exit %d: %s" % (status, session.stderr[-2000:]))
        return parse(session.stdout)


def parse(output: str) -> Tuple[float, float]:
    """(wall, CPU) seconds of the program's work."""
    match = re.search(r"elapsed ([0-9.]+) cpu ([0-9.]+) result (\d+)", output)
    if match is None:
        raise RuntimeError("no timing in the program's output: %r" % output[-500:])
    return float(match.group(1)), float(match.group(2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, help="sessions per cell (default 5, 3 with --quick)")
    parser.add_argument("--quick", action="store_true", help="3 runs of a smaller program")
    parser.add_argument("--size", type=int, help="the program's argument (default 10000)")
    parser.add_argument("--python", action="append", help="an interpreter (repeatable; "
                        "default: this one and the newest pyenv 3.12)")
    options = parser.parse_args()
    runs = options.runs or (3 if options.quick else 5)
    size = options.size or (2000 if options.quick else 10000)
    spec = importlib.util.find_spec("debugpy")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("debugpy is not installed for %s" % sys.executable)
    with tempfile.TemporaryDirectory() as borrowed:
        os.symlink(list(spec.submodule_search_locations)[0], os.path.join(borrowed, "debugpy"))
        interpreters = [Interpreter(p, Path(borrowed)) for p in options.python or default_pythons()]
        times: Dict[Tuple[str, str], List[Tuple[float, float]]] = {}
        for round_ in range(runs):
            for interpreter in interpreters:
                for name, launcher, marker in interpreter.modes():
                    elapsed = interpreter.run(launcher, marker, size)
                    times.setdefault((interpreter.label, name), []).append(elapsed)
            print("round %d of %d done" % (round_ + 1, runs), file=sys.stderr)
    print("debugpy, one breakpoint never hit; %s (program size %d), median of %d runs"
          % (PROGRAM.name, size, runs))
    print("times on a shared 2-core machine: compare ratios, not seconds\n")
    print("%-30s %-34s %9s %7s %9s" % ("python", "mode", "median s", "ratio", "cpu ratio"))
    for interpreter in interpreters:
        base = [statistics.median(t[i] for t in times[(interpreter.label, "plain")])
                for i in (0, 1)]
        for name, _, _ in interpreter.modes():
            wall, cpu = [statistics.median(t[i] for t in times[(interpreter.label, name)])
                         for i in (0, 1)]
            print("%-30s %-34s %9.3f %6.2fx %8.2fx"
                  % (interpreter.label, name, wall, wall / base[0], cpu / base[1]))

if __name__ == "__main__":
    main()
