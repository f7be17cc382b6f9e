"""``python -m lowimpact cover``: coverage.py's command line on lowimpact's core.

``cover run`` measures a program with the C core and writes coverage.py's
data file; ``cover report|html|json|xml|lcov|annotate|combine|erase|debug``
are coverage.py's own commands, run unchanged on that file; ``cover subline``
reports the branches inside lines.
"""

from __future__ import annotations

import sys

# argparse (with gettext, locale and shutil, which it imports) would add
# several milliseconds to the start-up of every measured run: it is imported
# only when a command line needs it (help, errors, unusual spellings).
# typing is for the type checker only.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from typing import Dict, List, Optional, Sequence, Union

PROG = "python -m lowimpact cover"

#: coverage.py commands passed to coverage.py as they are.
DELEGATED = ("report", "html", "json", "xml", "lcov", "annotate", "combine", "erase", "debug")

_DESCRIPTION = """\
coverage.py's measurement, at the speed of sys.monitoring: lowimpact's C core
records executed lines (and, with --branch, branches) into coverage.py's own
data file, with coverage.py's configuration ([tool.coverage] in pyproject.toml,
.coveragerc, setup.cfg, tox.ini), so coverage.py's reports work unchanged.

commands:
  run       run a program and measure it (coverage run's options)
  subline   report branches inside lines (needs data measured with --branch)
  %s
            coverage.py's commands, with coverage.py's options
""" % " ".join(DELEGATED)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run ``python -m lowimpact cover`` with *argv*; return the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print("usage: %s <command> [options] ...\n\n%s" % (PROG, _DESCRIPTION))
        return 0 if args else 1
    command, rest = args[0], args[1:]
    if command == "run":
        return _run(rest)
    if command == "subline":
        return _subline(rest)
    if command in DELEGATED:
        return _delegate(command, rest)
    print("%s: error: unknown command %r (run '%s --help')" % (PROG, command, PROG), file=sys.stderr)
    return 2


def _comma_list(text: str) -> List[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _run_parser() -> argparse.ArgumentParser:
    import argparse

    parser = argparse.ArgumentParser(
        prog=PROG + " run",
        description="Run a Python program and measure it, as coverage run does; the data "
        "goes to coverage.py's data file.",
        usage="%s run [options] (script | -m module) [args ...]" % PROG,
    )
    add = parser.add_argument
    add("-a", "--append", action="store_true", help="append to the data file instead of replacing it")
    add("--branch", action="store_true", default=None, help="measure branches as well as lines")
    add("--data-file", metavar="OUTFILE", help="the data file (default: .coverage, or [run] data_file)")
    add("--include", metavar="PAT1,PAT2", type=_comma_list, help="measure only files matching these patterns")
    add("--omit", metavar="PAT1,PAT2", type=_comma_list, help="do not measure files matching these patterns")
    add("-L", "--pylib", action="store_true", default=None, help="measure the standard library too")
    add("-p", "--parallel-mode", action="store_true", default=None,
        help="write a data file with a machine, process and random suffix (combine them later)")
    add("--rcfile", default=True, metavar="RCFILE",
        help="the configuration file (default: .coveragerc, setup.cfg, tox.ini, pyproject.toml)")
    add("--source", metavar="SRC1,SRC2", type=_comma_list,
        help="measure these packages or directories (and report unexecuted files in them)")
    add("--timid", action="store_true", help="accepted for coverage run compatibility; no effect")
    add("-q", "--quiet", action="store_true", help="no messages from coverage.py")
    add("--context", metavar="LABEL", help="the static context label to record for this run "
        "(default: [run] context)")
    add("--concurrency", metavar="LIBS", type=_comma_list,
        help="thread (the default: every thread is measured) or multiprocessing "
        "(its processes are measured, as with [run] patch = subprocess)")
    add("-m", "--module", dest="module", action="store_true", help="run a module, like python -m")
    add("target", metavar="script | module")
    add("args", nargs=argparse.REMAINDER, help="the program's arguments")
    return parser


#: ``cover run``'s options as _run_parser() defines them: flags (their
#: dest, True when given) and options with a value (dest, conversion).
_RUN_FLAGS = {
    "-a": "append", "--append": "append", "--branch": "branch", "-L": "pylib", "--pylib": "pylib",
    "-p": "parallel_mode", "--parallel-mode": "parallel_mode", "--timid": "timid",
    "-q": "quiet", "--quiet": "quiet", "-m": "module", "--module": "module",
}
_RUN_VALUES = {
    "--data-file": ("data_file", None), "--include": ("include", _comma_list),
    "--omit": ("omit", _comma_list), "--rcfile": ("rcfile", None),
    "--source": ("source", _comma_list), "--context": ("context", None),
    "--concurrency": ("concurrency", _comma_list),
}
_RUN_DEFAULTS = {
    "append": False, "branch": None, "data_file": None, "include": None, "omit": None,
    "pylib": None, "parallel_mode": None, "rcfile": True, "source": None, "timid": False,
    "quiet": False, "context": None, "concurrency": None, "module": False,
}


def _parse_run_simply(argv: List[str]) -> Optional[object]:
    """What ``_run_parser().parse_args(argv)`` gives, for a command line
    that spells each option in full and as _run_parser() defines it (the
    usual case) -- or None for any other (abbreviations, grouped short
    flags, ``--`` anywhere (which argparse drops from the program's
    arguments too, or not, depending on the version), help, mistakes),
    which argparse then parses, or reports in its own words."""
    import types

    if "--" in argv:
        return None
    values: Dict[str, Union[bool, str, List[str], None]] = dict(_RUN_DEFAULTS)
    index = 0
    while index < len(argv):
        arg = argv[index]
        if not arg.startswith("-"):
            values["target"] = arg
            values["args"] = argv[index + 1:]
            return types.SimpleNamespace(**values)
        name, equals, value = arg.partition("=")
        if name in _RUN_FLAGS and not equals:
            values[_RUN_FLAGS[name]] = True
        elif name in _RUN_VALUES and name.startswith("--"):
            if not equals:
                index += 1
                if index == len(argv) or argv[index].startswith("-"):
                    return None
                value = argv[index]
            dest, convert = _RUN_VALUES[name]
            values[dest] = convert(value) if convert else value
        else:
            return None
        index += 1
    return None


def _run(argv: List[str]) -> int:
    from lowimpact._cli import _run_target
    from lowimpact.tools.cover import CoverError, beside
    from lowimpact.tools.target import Target

    options = _parse_run_simply(argv) or _run_parser().parse_args(argv)
    kwargs = dict(
        data_file=options.data_file,
        parallel=options.parallel_mode,
        pylib=options.pylib,
        branch=options.branch,
        rcfile=options.rcfile,
        source=options.source,
        include=options.include,
        omit=options.omit,
        concurrency=options.concurrency,
        append=options.append,
        messages=not options.quiet,
        context=options.context,
        reports=False,
    )
    target = Target(options.target, options.args, module=options.module)
    plan = beside.plan(options)
    try:
        if plan is not None:
            return _run_target(target, _MeasuringBeside(beside.Beside(kwargs, plan), target))
        from lowimpact.tools.cover.measure import Measurement

        measurement = Measurement(**kwargs)
        if options.append and measurement.coverage.get_option("run:parallel"):
            _run_parser().error("can't append to data files in parallel mode")
    except CoverError as exc:
        print("%s: error: %s" % (PROG, exc), file=sys.stderr)
        return 1
    try:
        return _run_target(target, _Measuring(measurement, target))
    except CoverError as exc:
        print("%s: error: %s" % (PROG, exc), file=sys.stderr)
        return 1


class _Measuring:
    """Measures what runs inside it; saves the data however the program ends."""

    def __init__(self, measurement, target) -> None:
        self.measurement = measurement
        self.target = target

    def __enter__(self) -> "_Measuring":
        # coverage.py's file selection depends on sys.path (a directory on it
        # inside a virtual environment is third-party), and is made again at
        # the first file it is asked about after sys.path changed: made with
        # the program's sys.path, as under coverage run, it is made once.
        self.target.set_sys_path()
        self.measurement.start()
        return self

    def __exit__(self, exc_type: object, exc: object, traceback: object) -> None:
        from lowimpact.tools.target import CannotRun

        self.measurement.stop()
        if isinstance(exc, CannotRun):
            # No such module or __main__: nothing of the program ran, and the
            # data file stays as it was (as coverage run leaves it).
            return
        try:
            self.measurement.save()
        except Exception as problem:
            _data_lost(problem, exc)


class _MeasuringBeside:
    """:class:`_Measuring` with coverage.py in a process beside the program
    (:mod:`~lowimpact.tools.cover.beside`)."""

    def __init__(self, measuring, target) -> None:
        self.measuring = measuring
        self.target = target

    def __enter__(self) -> "_MeasuringBeside":
        self.target.set_sys_path()
        self.measuring.start()
        return self

    def __exit__(self, exc_type: object, exc: object, traceback: object) -> None:
        from lowimpact.tools.cover import CoverError
        from lowimpact.tools.target import CannotRun

        try:
            problem = self.measuring.finish(save=not isinstance(exc, CannotRun))
        except CoverError as error:
            # Found by coverage.py only after the program ran: the run fails.
            _fail_run("%s: error: %s" % (PROG, error), exc)
            return
        if problem:
            _data_lost(problem, exc)


def _data_lost(problem: object, outcome: object) -> None:
    _fail_run("%s: error: could not save data: %s" % (PROG, problem), outcome)


def _fail_run(message: str, outcome: object) -> None:
    """Say *message*; a program that succeeded (*outcome*: the exception
    it ended with, or None) then fails with status 1, as under coverage
    run, whose run fails when its data cannot be written.  The outcome of
    one that failed (its exception, its exit status) is kept."""
    print(message, file=sys.stderr)
    if outcome is None or isinstance(outcome, SystemExit) and outcome.code in (None, 0):
        raise SystemExit(1) from None


def _delegate(command: str, argv: List[str]) -> int:
    try:
        from coverage.cmdline import main as coverage_main
    except ImportError:
        print("%s: error: needs coverage.py: pip install 'lowimpact[cover]'" % PROG, file=sys.stderr)
        return 1
    status = coverage_main([command, *argv])
    if command == "combine" and status == 0:
        from lowimpact.tools.cover.subline import combine_after_coverage

        combine_after_coverage(argv)
    return status


def _subline(argv: List[str]) -> int:
    from lowimpact.tools.cover.subline import main as subline_main

    return subline_main(argv)
