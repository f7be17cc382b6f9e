"""The fixed cost of `lowimpact cover run`, in instructions (valgrind's callgrind).

    python bench/cover_fixed_cost.py [--python PY ...] [--runs NAME ...] [--phases]

For each interpreter, the instructions (millions) of whole processes, run
in bench/cover_programs with PYTHONHASHSEED=0 and lowimpact's modules
byte-compiled (as an installed package's are):

  plain_objects, plain_parser   python objects.py 150000, python parser.py 4000
  objects, objects_branch       cover run --data-file D [--branch] --source . objects.py 150000
  parser, parser_branch         the same with parser.py 4000
  empty                         cover run of an empty script in another
                                directory, --source naming cover_programs

with each measured run's ratio to its plain run: the program's process's
(`cover run` forks a coverage.py process beside the program, whose
instructions are shown apart; docs/COVER.md).  --phases: measuring in one
process (as `cover run` does for the settings that need it), the empty
script's run cut into the steps `cover run` takes (callgrind's
--dump-before=getppid, an os.getppid() between steps): the interpreter's
start-up, lowimpact's modules, the standard-library modules coverage.py's
modules import, coverage.py's modules, its configuration, start() (file
selection, the check of modules already imported, the collector), the
program, stop() and save(), the interpreter's exit.  The phases run inside
this script (run as `python -m` runs lowimpact), whose own loading its
first phase counts too (~20 M more than python's start-up).
PY must be the interpreter's real executable (callgrind does not follow exec).
"""

from __future__ import annotations

# Only what the phases' child needs is imported here: the rest would be
# counted in its first phase.
import importlib
import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Dict, List, Tuple

BENCH = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(os.path.dirname(BENCH), "src")
PROGRAMS = os.path.join(BENCH, "cover_programs")

RUNS = {
    "plain_objects": ["objects.py", "150000"],
    "plain_parser": ["parser.py", "4000"],
    "objects": ["--source", ".", "objects.py", "150000"],
    "objects_branch": ["--branch", "--source", ".", "objects.py", "150000"],
    "parser": ["--source", ".", "parser.py", "4000"],
    "parser_branch": ["--branch", "--source", ".", "parser.py", "4000"],
    "empty": ["--source", PROGRAMS, "empty.py"],
}

#: The modules each phase imports, in the order `cover run` first imports
#: them (a later group's modules are imported by an earlier one's already).
LOWIMPACT_MODULES = ("lowimpact", "lowimpact._cli", "lowimpact.tools.cover.cli",
                     "lowimpact.tools.cover.measure", "lowimpact.tools.target",
                     "lowimpact._cover", "lowimpact.tools.cover.runcoverage")
STDLIB_MODULES = ("platform", "sysconfig", "hashlib", "ntpath", "datetime", "ast", "dis",
                  "tokenize", "inspect", "urllib.parse", "pathlib", "base64", "configparser",
                  "copy", "json", "tomllib", "pprint", "traceback", "dataclasses", "glob",
                  "random", "socket", "sqlite3", "uuid", "zlib")


def callgrind(python: str, args: List[str], out: Path, cwd: Path, *options: str) -> None:
    import subprocess

    env = dict(os.environ, PYTHONPATH=os.pathsep.join([SRC, BENCH]), PYTHONHASHSEED="0")
    env.pop("COVERAGE_CORE", None)
    subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=%s.%%p" % out, *options,
                    python, *args], cwd=cwd, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    from cover_callgrind import name_by_pid

    name_by_pid(out)


def table(python: str, names: List[str], work: Path) -> None:
    from cover_callgrind import total

    from cover_callgrind import helper_total

    counts: Dict[str, Tuple[float, float]] = {}
    for name in names:
        args = RUNS[name]
        if not name.startswith("plain"):
            args = ["-m", "lowimpact", "cover", "run", "--data-file", str(work / name), *args]
        out = work / ("%s.out" % name)
        callgrind(python, args, out, work if name == "empty" else PROGRAMS)
        counts[name] = (total(out) / 1e6, helper_total(out) / 1e6)
    started = counts.get("empty", (0.0, 0.0))[1]
    print("%s (millions of instructions: the program's process; the coverage.py "
          "process beside it; the two after one another as the run waits for them, with "
          "--runs empty: the program's process, then the helper's count less its count "
          "for the empty script, which is its start-up while the program runs)\n" % python)
    print("| run | M | ratio to plain | beside it | waited for | ratio to plain |\n"
          "|---|---|---|---|---|---|")
    for name, (count, helper) in counts.items():
        plain = counts.get("plain_" + name.split("_")[0], (0.0, 0.0))[0]
        measured = plain and not name.startswith("plain")
        waited = count + max(helper - started, 0.0)
        print("| %s | %.1f | %s | %s | %s | %s |" % (
            name, count, "%.3fx" % (count / plain) if measured else "",
            "%.1f" % helper if helper else "",
            "%.1f" % waited if measured and started else "",
            "%.3fx" % (waited / plain) if measured and started else ""))
    print()


def phases(python: str, work: Path) -> None:
    from cover_callgrind import total

    out = work / "phases.out"
    labels = work / "labels"
    callgrind(python, ["-m", "cover_fixed_cost", "--child", str(labels), "--", "--data-file",
                       str(work / "phases"), *RUNS["empty"]],
              out, work, "--dump-before=getppid")
    dumps = sorted(work.glob("phases.out.*"), key=lambda p: int(p.suffix[1:])) + [out]
    sums: Dict[str, float] = {}
    for label, dump in zip(labels.read_text().splitlines(), dumps):
        sums[label] = sums.get(label, 0.0) + total(dump) / 1e6
    print("%s, cover run of an empty script, by phase (millions of instructions)\n" % python)
    print("| phase | M |\n|---|---|")
    for label, count in sums.items():
        print("| %s | %.1f |" % (label, count))
    print("| total | %.1f |\n" % sum(sums.values()))


def child(labels_file: str, argv: List[str]) -> int:
    """`cover run` with an os.getppid() after each phase (under callgrind)."""
    labels: List[str] = []

    def step(label: str) -> None:
        labels.append(label)
        os.getppid()

    step("interpreter start-up (with runpy)")
    for name in LOWIMPACT_MODULES:
        importlib.import_module(name)
    step("lowimpact's modules (with what they import)")
    for name in STDLIB_MODULES:
        importlib.import_module(name)
    step("standard-library modules coverage.py's modules import")
    from lowimpact.tools.cover import beside, cli, measure, runcoverage

    # The phases of measuring in one process (coverage.py beside the program
    # is measured whole by the runs above).
    beside.plan = lambda options: None

    real_run_coverage_init = runcoverage.RunCoverage.__init__

    def run_coverage_init(self, *args, **kwargs):
        step("coverage.py's modules")
        real_run_coverage_init(self, *args, **kwargs)

    runcoverage.RunCoverage.__init__ = run_coverage_init
    measurement = measure.Measurement
    real_init, real_start = measurement.__init__, measurement.start
    real_prepare, real_stop, real_save = measurement._prepare, measurement.stop, measurement.save

    def init(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        step("reading the configuration")

    def prepare(cov):
        real_prepare(cov)
        step("start(): file selection (InOrOut), data file")
        from coverage.inorout import InOrOut

        real_warn = InOrOut.warn_already_imported_files

        def warn(inorout):
            real_warn(inorout)
            step("start(): coverage.py's check of the modules already imported")

        InOrOut.warn_already_imported_files = warn

    def start(self):
        real_start(self)
        step("start(): the collector")

    def stop(self):
        step("the program")
        real_stop(self)

    def save(self):
        real_save(self)
        step("stop() and save()")

    measurement.__init__, measurement.start = init, start
    measurement._prepare = staticmethod(prepare)
    measurement.stop, measurement.save = stop, save
    try:
        return cli.main(["run", *argv])
    finally:
        with open(labels_file, "w") as file:
            file.write("\n".join(labels + ["interpreter exit"]))


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        sys.exit(child(sys.argv[2], sys.argv[4:]))
    import argparse
    import subprocess
    import tempfile
    from pathlib import Path

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", nargs="+", default=[os.path.realpath(sys.executable)])
    parser.add_argument("--runs", nargs="+", choices=list(RUNS), default=list(RUNS))
    parser.add_argument("--phases", action="store_true", help="also the empty run by phase")
    options = parser.parse_args()
    for python in options.python:
        subprocess.run([python, "-m", "compileall", "-q", os.path.join(SRC, "lowimpact")],
                       check=True, stdout=subprocess.DEVNULL)
        with tempfile.TemporaryDirectory(prefix="lowimpact-cover-fixed") as tmp:
            work = Path(tmp)
            (work / "empty.py").write_text("")
            table(python, options.runs, work)
            if options.phases:
                phases(python, work)


if __name__ == "__main__":
    main()
