"""Instructions (valgrind's callgrind) of a program run plain, under
cProfile and under lowimpact profile, in one process each: the machine's
load does not move these counts.

    python bench/callgrind_profile.py [--python PY ...] [--workloads calls objects parser]

Each run is the whole process, start-up included, as in bench/profile.py
(lowimpact's .pyc files are compiled first, as an installation has them);
the ratios are to the plain run of the larger size.  The cost per call is
marginal, free of start-up: each program runs at two sizes, and the growth
of (profiled - plain) instructions is divided by the growth of the calls
(Python and built-in) that lowimpact profile counts.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Optional

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
# name -> (program, smaller size, larger size)
WORKLOADS = {
    "calls": ([str(HERE / "profile_programs" / "calls.py")], "15", "19"),
    "objects": ([str(HERE / "cover_programs" / "objects.py")], "3000", "15000"),
    "parser": ([str(HERE / "cover_programs" / "parser.py")], "100", "500"),
}
TOOLS = ("plain", "cProfile", "lowimpact")


def real_python(python: str) -> str:
    """valgrind must run the interpreter, not a pyenv shim."""
    return subprocess.run([python, "-c", "import sys; print(sys.executable)"],
                          capture_output=True, text=True, check=True).stdout.strip()


def instructions(argv: list, tmp: str) -> Optional[int]:
    out = os.path.join(tmp, "callgrind.out")
    proc = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out] + argv,
                          capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(SRC)), cwd=tmp)
    found = re.search(r"Collected : (\d+)", proc.stderr)
    if proc.returncode != 0 or not found:
        sys.stderr.write(proc.stderr[-1500:])
        return None
    return int(found.group(1))


def calls(python: str, program: list, tmp: str) -> int:
    out = os.path.join(tmp, "count.prof")
    subprocess.run([python, "-m", "lowimpact", "profile", "-o", out] + program, cwd=tmp,
                   env=dict(os.environ, PYTHONPATH=str(SRC)), capture_output=True, check=True)
    import marshal

    with open(out, "rb") as f:
        return sum(v[1] for v in marshal.load(f).values())


def measure(python: str, workload: str, commands: dict, tmp: str) -> Optional[tuple]:
    """Instructions of `workload` at both sizes under each of `commands`
    (name -> argv before the program), by (name, size), and the calls
    lowimpact profile counts, by size; None if a run failed."""
    program, small, large = WORKLOADS[workload]
    ir = {}
    n = {}
    for size in (small, large):
        n[size] = calls(python, program + [size], tmp)
        for name, argv in commands.items():
            ir[name, size] = instructions(argv + program + [size], tmp)
    return None if None in ir.values() else (ir, n)


def per_call(workload: str, ir: dict, n: dict, name: str) -> float:
    """Marginal instructions of `name` over the plain run, per call counted."""
    _, small, large = WORKLOADS[workload]
    extra = [ir[name, size] - ir["plain", size] for size in (small, large)]
    return (extra[1] - extra[0]) / (n[large] - n[small])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", action="append")
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    options = parser.parse_args()
    print("| python | workload | calls | plain Ir | cProfile | lowimpact | cProfile Ir/call "
          "| lowimpact Ir/call |")
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="lowimpact-callgrind-profile") as tmp:
        for python in options.python or [sys.executable]:
            py = real_python(python)
            subprocess.run([py, "-m", "compileall", "-q", str(SRC / "lowimpact")],
                           env={k: v for k, v in os.environ.items()
                                if k != "PYTHONDONTWRITEBYTECODE"},
                           stdout=subprocess.DEVNULL, check=False)
            version = "%d.%d" % tuple(map(int, subprocess.run(
                [py, "-c", "import sys; print(*sys.version_info[:2])"], capture_output=True,
                text=True).stdout.split()))
            for workload in options.workloads:
                measured = measure(py, workload, {tool: command(tool, py, tmp) for tool in TOOLS},
                                   tmp)
                if measured is None:
                    print("| %s | %s | failed |" % (version, workload))
                    continue
                ir, n = measured
                large = WORKLOADS[workload][2]
                print("| %s | %s | %d | %d | %.2fx | %.2fx | %.0f | %.0f |"
                      % (version, workload, n[large], ir["plain", large],
                         ir["cProfile", large] / ir["plain", large],
                         ir["lowimpact", large] / ir["plain", large],
                         per_call(workload, ir, n, "cProfile"), per_call(workload, ir, n, "lowimpact")),
                      flush=True)


def command(tool: str, python: str, tmp: str) -> list:
    out = os.path.join(tmp, tool + ".prof")
    return {"plain": [python], "cProfile": [python, "-m", "cProfile", "-o", out],
            "lowimpact": [python, "-m", "lowimpact", "profile", "-o", out]}[tool]


if __name__ == "__main__":
    main()
