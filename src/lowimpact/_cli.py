"""The command line, ``python -m lowimpact <command>``; the tools live in
:mod:`lowimpact.tools`."""

from __future__ import annotations

import sys

# typing is for the type checker only, and argparse is imported where a
# parser is built: importing them would add to the start-up of every program
# run (annotations are strings here), and cover has a parser of its own.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    import types
    from typing import Callable, ContextManager, Dict, Optional, Sequence, TextIO, TypeVar

    from lowimpact.profile import Profile
    from lowimpact.tools.target import Target

    T = TypeVar("T")

PROG = "python -m lowimpact"

_DESCRIPTION = """\
Low-impact monitoring (PEP 669 sys.monitoring) for every CPython: on 3.12 and
newer the interpreter's own, on 3.11 lowimpact's engine."""

_RUN_DESCRIPTION = """\
Run a Python script or module as python would (sys.argv, sys.path[0],
__main__, exit status and traceback), with lowimpact.monitoring installed as
sys.monitoring, so that code written for sys.monitoring also runs on 3.11."""

_TRACE_DESCRIPTION = """\
Run a Python script or module and print the sys.monitoring events of its code,
one a line:

  EVENT     file:line      function         @offset value      | source line

  PY_START  fib.py:11      fib              @0                 | def fib(n):
  LINE      fib.py:12      fib                                 |     if n < 2:
  LINE      fib.py:13      fib                                 |         return n
  PY_RETURN fib.py:13      fib              @14 -> 1           |         return n

@offset is the bytecode offset of the instruction, as dis numbers it (LINE
events have none).  The value after it is
  -> value              for PY_RETURN and PY_YIELD,
  callable arg0=value   for CALL, C_RETURN and C_RAISE (the first argument),
  Type: message         for the exception of RAISE, RERAISE, PY_UNWIND,
                        PY_THROW, EXCEPTION_HANDLED and STOP_ITERATION,
  -> @destination       for JUMP and BRANCH,
  the instruction       for INSTRUCTION.

The program's exit status, output and traceback are as without tracing."""

_TRACE_EPILOG = """\
events:
  PY_START PY_RESUME PY_RETURN PY_YIELD CALL LINE INSTRUCTION JUMP BRANCH
  STOP_ITERATION RAISE RERAISE EXCEPTION_HANDLED PY_UNWIND PY_THROW C_RETURN
  C_RAISE (see the sys.monitoring documentation); ALL is all but INSTRUCTION.

examples:
  python -m lowimpact trace examples/fib.py
  python -m lowimpact trace --events all -o fib.trace examples/fib.py
  python -m lowimpact trace --events call,c_return -m json.tool data.json"""


_STACK_DESCRIPTION = """\
Print the Python stack of every thread of a running CPython 3.9-3.13 process,
innermost frame last, as a traceback shows it, and which thread holds the GIL
where the version makes it readable.  The process is read from outside and
not stopped.  Reading another process needs the same user (or root) and
/proc/sys/kernel/yama/ptrace_scope 0, or CAP_SYS_PTRACE."""

_SAMPLE_DESCRIPTION = """\
Sample the Python stacks of a running process (PID) or of a script started
with this python (-- script.py args), without pausing it, and write the
counts of the stacks seen as collapsed stacks (flamegraph.pl's input, as
py-spy writes it), a speedscope profile or an SVG flame graph.  Samples that
raced with the process are dropped and counted; a summary of samples taken,
dropped and the rate achieved is printed to stderr.

examples:
  python -m lowimpact sample --duration 10 4242
  python -m lowimpact sample --rate 1000 --format svg -o app.svg -- app.py --port 80"""


_PROFILE_DESCRIPTION = """\
Run a Python script or module under a deterministic profiler, as
python -m cProfile does: call counts, own and cumulative time of every
function (built-ins and methods of C types included) and who called it.  The
same numbers as cProfile, at less cost: the per-event work is C callbacks of
sys.monitoring (lowimpact's engine on 3.11) and the clock is the CPU's
time-stamp counter.  Without -o, the
stats are printed sorted by -s; with -o, a pstats file is written (python -m
pstats, snakeviz and gprof2dot read it), or with --format a speedscope
profile, collapsed stacks or an SVG flame graph.

examples:
  python -m lowimpact profile -s tottime --limit 20 app.py --port 80
  python -m lowimpact profile -o app.prof -m mypackage.cli
  python -m lowimpact profile --format svg -o app.svg app.py"""


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run ``python -m lowimpact`` with *argv* (default: ``sys.argv[1:]``).

    Returns the exit status for ``sys.exit()``.  Meant to be the last thing
    a process does: an exception that ends the program run (``SystemExit``
    included) propagates, so that python reports it and ends the process as
    it would have without lowimpact; ``sys.excepthook`` is wrapped to leave
    lowimpact's and runpy's frames out of the traceback.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["cover"]:
        # cover has coverage.py's command line, commands and all: its own parser.
        from lowimpact.tools.cover.cli import main as cover_main

        return cover_main(args[1:])
    if args[:1] == ["debug"]:
        # debug has pdb's command line: its own parser too.
        return _debug(args[1:])
    if args[:1] == ["debugpy"]:
        # debugpy's own command line, passed through; what debugpy raises
        # is reported without lowimpact's frames.
        from lowimpact.tools.debugpy import main as debugpy_main

        return _program_step(lambda: debugpy_main(args[1:]))
    parser = _parser(args[0] if args[:1] and args[0] in _COMMANDS else None)
    options = parser.parse_args(args)
    return options.handler(options, options.parser)


# The commands _parser() builds: with one given, it builds only that one's
# parser (the start-up of every run pays for building them).
_COMMANDS = ("run", "trace", "stack", "sample", "profile")


def _parser(command: Optional[str] = None) -> argparse.ArgumentParser:
    """The command line's parser; with *command*, one that knows only that
    command (enough to parse a command line that starts with it)."""
    import argparse

    from lowimpact import __version__

    parser = argparse.ArgumentParser(
        prog=PROG,
        description=_DESCRIPTION,
        epilog='Run "%s <command> -h" for the options of a command.' % PROG,
    )
    parser.add_argument("--version", action="version", version="lowimpact " + __version__)
    commands = parser.add_subparsers(title="commands", metavar="<command>", dest="command")
    commands.required = True

    if command in (None, "run"):
        run = commands.add_parser(
            "run",
            help="run a script or module with lowimpact.monitoring as sys.monitoring",
            description=_RUN_DESCRIPTION,
            usage="%s run [-h] (script | -m module) [args ...]" % PROG,
        )
        _add_target_arguments(run)
        run.set_defaults(handler=_run, parser=run)

    if command in (None, "trace"):
        trace = commands.add_parser(
            "trace",
            help="run a script or module and print its events",
            description=_TRACE_DESCRIPTION,
            epilog=_TRACE_EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
            usage="%s trace [-h] [--events NAMES] [--output FILE] [--all-code]\n"
            "       %s(script | -m module) [args ...]" % (PROG, " " * len(PROG + " trace ")),
        )
        trace.add_argument(
            "-e",
            "--events",
            metavar="NAMES",
            help="comma-separated event names, in any case; ALL for all but INSTRUCTION; "
            "C_RETURN and C_RAISE bring CALL with them "
            "(default: PY_START,PY_RESUME,PY_RETURN,PY_YIELD,LINE)",
        )
        trace.add_argument(
            "-o", "--output", metavar="FILE", help="write the events to FILE (default: stderr)"
        )
        trace.add_argument(
            "--all-code",
            action="store_true",
            help="trace all code, not only the files in the script's (or top-level "
            "package's) directory tree outside the standard library and installed packages",
        )
        _add_target_arguments(trace)
        trace.set_defaults(handler=_trace, parser=trace)

    if command in (None, "stack"):
        stack = commands.add_parser(
            "stack",
            help="print every thread's Python stack in a running process",
            description=_STACK_DESCRIPTION,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        stack.add_argument("pid", type=int, help="the process id of a CPython 3.9-3.13 process")
        stack.add_argument("--no-source", action="store_true",
                           help="leave out the source line below each frame")
        stack.set_defaults(handler=_stack, parser=stack)

    if command in (None, "sample"):
        sample = commands.add_parser(
            "sample",
            help="sample a process's Python stacks without pausing it",
            description=_SAMPLE_DESCRIPTION,
            formatter_class=argparse.RawDescriptionHelpFormatter,
            usage="%s sample [-h] [--rate HZ] [--duration S] [--format FORMAT] [-o FILE]\n"
            "       %s(PID | -- script.py [args ...])" % (PROG, " " * len(PROG + " sample ")),
        )
        sample.add_argument("--rate", type=float, default=100.0, metavar="HZ",
                            help="samples per second (default 100)")
        sample.add_argument("--duration", type=float, metavar="S",
                            help="seconds to sample (default: until the process exits or Ctrl-C)")
        sample.add_argument("--format", default="collapsed",
                            choices=("collapsed", "speedscope", "svg"),
                            help="collapsed stacks (default), speedscope JSON or an SVG "
                            "flame graph")
        sample.add_argument("-o", "--output", metavar="FILE",
                            help="where to write the profile (default: profile.txt, "
                            "profile.speedscope.json or profile.svg)")
        sample.add_argument("target", nargs=argparse.REMAINDER, metavar="PID | -- script.py",
                            help="a process id, or -- and the script and arguments to start "
                            "with this python")
        sample.set_defaults(handler=_sample, parser=sample)

    if command in (None, "profile"):
        profile = commands.add_parser(
            "profile",
            help="profile a script or module deterministically, as cProfile does, at lower cost",
            description=_PROFILE_DESCRIPTION,
            formatter_class=argparse.RawDescriptionHelpFormatter,
            usage="%s profile [-h] [-o FILE] [--format FORMAT] [-s SORT] [--limit N]\n"
            "       %s[--clock {wall,cpu}] (script | -m module) [args ...]"
            % (PROG, " " * len(PROG + " profile ")),
        )
        profile.add_argument("-o", "--outfile", metavar="FILE",
                             help="write the profile to FILE (a pstats file unless --format says "
                             "otherwise) instead of printing the stats")
        profile.add_argument("--format", choices=("pstats", "speedscope", "collapsed", "svg"),
                             help="pstats (python -m pstats, snakeviz, gprof2dot), speedscope "
                             "(evented JSON), collapsed stacks (flamegraph.pl) or an SVG flame "
                             "graph; without -o, written to profile.<format's extension>")
        profile.add_argument("-s", "--sort", default="cumulative", choices=_sort_keys(),
                             metavar="SORT", help="the order of the printed stats, as pstats names "
                             "it (default: cumulative, as python -m cProfile)")
        profile.add_argument("--limit", type=int, metavar="N",
                             help="print only the first N functions")
        profile.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                             help="wall time (default) or each thread's CPU time")
        _add_target_arguments(profile)
        profile.set_defaults(handler=_profile, parser=profile)

    if command is not None:
        return parser
    # Listed for the help text only: main() hands "cover ...", "debug ..." and
    # "debugpy ..." to their own parsers.
    commands.add_parser(
        "debug",
        help="pdb whose breakpoints cost nothing until they are hit "
        "(debug [-c command] (script.py | -m module) [args])",
        add_help=False,
    )
    commands.add_parser(
        "cover",
        help="coverage.py's run/report/html/json/xml/lcov/combine on a C core, "
        "and branches inside lines (subline)",
        add_help=False,
    )
    commands.add_parser(
        "debugpy",
        help="python -m debugpy with its sys.monitoring tracer, on lowimpact's engine on 3.10 and 3.11",
        add_help=False,
    )
    return parser


def _debug(args: Sequence[str]) -> int:
    try:
        from lowimpact.debug import main as debug_main
    except ImportError as exc:
        print("%s debug: %s" % (PROG, exc), file=sys.stderr)
        return 1
    return debug_main(args, prog="%s debug" % PROG)


def _add_target_arguments(parser: argparse.ArgumentParser) -> None:
    import argparse

    parser.add_argument(
        "-m", dest="module", action="store_true", help="run a module or package, like python -m"
    )
    parser.add_argument(
        "target",
        metavar="script | module",
        help="the script (a file, or a directory or zip file with __main__.py); "
        "with -m, the module",
    )
    # REMAINDER: everything after the target is the program's, even "-x" options.
    parser.add_argument("args", nargs=argparse.REMAINDER, help="the program's arguments")


def _run(options: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from lowimpact.tools.target import Target

    _install()
    return _run_target(Target(options.target, options.args, module=options.module))


def _trace(options: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from lowimpact.tools.target import Scope, Target

    _install()
    from lowimpact.tools.trace import DEFAULT_EVENTS, Tracer, parse_events

    try:
        events = list(DEFAULT_EVENTS) if options.events is None else parse_events(options.events)
    except ValueError as exc:
        parser.error(str(exc))
    target = Target(options.target, options.args, module=options.module)
    scope = Scope(target.root(), all_code=options.all_code)
    if options.output is None:
        return _run_target(target, Tracer(sys.stderr, events=events, scope=scope))
    with _open_output(options.output, parser) as stream:
        return _run_target(target, Tracer(stream, events=events, scope=scope))


def _stack(options: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from lowimpact.tools.stack import attach, read_stacks, write_stacks

    try:
        reader = attach(options.pid)
        stacks = read_stacks(reader)
    except (OSError, RuntimeError) as exc:
        print("%s stack: %s" % (PROG, exc), file=sys.stderr)
        return 1
    write_stacks(reader, stacks, sys.stdout, source=not options.no_source)
    return 0


def _sample(options: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    import subprocess

    from lowimpact.tools import sample as sampler

    target = list(options.target)
    if target[:1] == ["--"]:
        target = target[1:]
    if not target:
        parser.error("a process id, or -- and a script, is required")
    if options.rate <= 0:
        parser.error("--rate must be positive")
    child = None
    if len(target) == 1 and target[0].isdigit() and options.target[:1] != ["--"]:
        pid = int(target[0])
    else:
        child = subprocess.Popen(sampler.script_command(sys.executable, target))
        pid = child.pid
    try:
        if child is not None:
            sampler.wait_for_python(pid)
        profile = sampler.sample(pid, rate=options.rate, duration=options.duration,
                                 stop=None if child is None else lambda: child.poll() is not None)
    except (OSError, RuntimeError) as exc:
        print("%s sample: %s" % (PROG, exc), file=sys.stderr)
        if child is not None:
            child.wait()
        return 1
    status = 0 if child is None else child.wait()
    output = options.output or sampler.default_output(options.format)
    try:
        with open(output, "w", encoding="utf-8") as stream:
            sampler.write_profile(profile, options.format, stream)
    except OSError as exc:
        print("%s sample: cannot write %s: %s" % (PROG, output, exc.strerror), file=sys.stderr)
        return 1
    print("%s sample: %s; wrote %s" % (PROG, sampler.summary(profile), output), file=sys.stderr)
    return status


_PROFILE_OUTPUT = {"pstats": "profile.prof", "speedscope": "profile.speedscope.json",
                   "collapsed": "profile.txt", "svg": "profile.svg"}


# pstats' sort keys (pstats.Stats.sort_arg_dict_default, the same on 3.9-3.13;
# tests/profile check it): importing pstats, which only printing needs, costs
# more start-up than a profile of a short program.
_SORT_KEYS = ("calls", "cumtime", "cumulative", "filename", "line", "module", "name", "ncalls",
              "nfl", "pcalls", "stdname", "time", "tottime")


def _sort_keys() -> Sequence[str]:
    return _SORT_KEYS


def _profile(options: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    import os
    import runpy

    from lowimpact.profile import UNSUPPORTED, Profile
    from lowimpact.tools.target import Target, is_launcher_file

    if UNSUPPORTED is not None:
        print("%s profile: %s" % (PROG, UNSUPPORTED), file=sys.stderr)
        return 1
    if options.limit is not None and options.limit <= 0:
        parser.error("--limit must be positive")
    fmt = options.format or ("pstats" if options.outfile else None)
    # The program may chdir: the output goes where the command line meant.
    output = os.path.abspath(options.outfile or _PROFILE_OUTPUT[fmt]) if fmt else None
    profiler = Profile(clock=options.clock, tree=fmt not in (None, "pstats"))
    # lowimpact's own frames (running the target, leaving the profiler);
    # runpy's stay, as under python -m cProfile.
    runpy_file = runpy.run_path.__code__.co_filename
    hidden: Dict[str, bool] = {}

    def hide(key: tuple) -> bool:
        filename = key[0]
        if filename not in hidden:
            hidden[filename] = filename not in ("~", runpy_file) and is_launcher_file(filename)
        return hidden[filename]

    profiler.hide = hide
    target = Target(options.target, options.args, module=options.module)
    try:
        status = _run_target(target, profiler)
    except BaseException:
        _profile_output(profiler, fmt, output, options)
        raise
    if status == 0:
        _profile_output(profiler, fmt, output, options)
    return status


def _profile_output(profiler: "Profile", fmt: Optional[str], output: Optional[str],
                    options: argparse.Namespace) -> None:
    profiler.disable()
    if fmt is None:
        try:
            profiler.print_stats(options.sort, limit=options.limit)
        except BrokenPipeError:
            sys.stdout = None  # type: ignore[assignment]
        return
    try:
        with open(output, "wb" if fmt == "pstats" else "w",
                  **({} if fmt == "pstats" else {"encoding": "utf-8"})) as stream:
            profiler.write(fmt, stream)
    except OSError as exc:
        print("%s profile: cannot write %s: %s" % (PROG, output, exc.strerror), file=sys.stderr)
        sys.exit(1)
    print("%s profile: wrote %s" % (PROG, output), file=sys.stderr)


def _open_output(path: str, parser: argparse.ArgumentParser) -> TextIO:
    try:
        # Line buffered: what was traced before a crash, os._exit() or fork()
        # is in the file, once.
        return open(path, "w", encoding="utf-8", errors="backslashreplace", buffering=1)
    except OSError as exc:
        parser.error("cannot write %s: %s" % (path, exc.strerror))


def _install() -> None:
    import lowimpact

    try:
        lowimpact.install()
    except ImportError as exc:
        sys.exit("%s: sys.monitoring is not available: %s" % (PROG, exc))


class _Unmonitored:
    """No monitor (contextlib's nullcontext, whose module `cover run` would
    import for it alone)."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc_info: object) -> None:
        return None


def _run_target(target: "Target", monitor: Optional[ContextManager] = None) -> int:
    """Run *target* inside *monitor*, which sees the program and nothing of its loading."""
    from lowimpact.tools.target import CannotRun

    try:
        run = _program_step(target.prepare)
        with monitor if monitor is not None else _Unmonitored():
            _program_step(run)
    except CannotRun as exc:
        # python's own words for a missing script or module.
        print("%s: %s" % (sys.executable, exc), file=sys.stderr)
        return exc.status
    return 0


def _program_step(step: Callable[[], T]) -> T:
    """``step()``, where an exception comes from the program (or is python's
    ``SyntaxError`` about it) and is to be reported as python would."""
    from lowimpact.tools.target import CannotRun

    try:
        return step()
    except (SystemExit, CannotRun):
        raise
    except BaseException as exc:
        _report_without_launcher(exc)
        raise


def _report_without_launcher(exc: BaseException) -> None:
    """Have *exc*, on its way out of the process, shown without the frames of
    lowimpact and runpy that ran the program."""
    from lowimpact.tools.target import is_launcher_file

    program_hook: Callable = sys.excepthook

    def excepthook(
        exc_type: type, value: BaseException, traceback: Optional[types.TracebackType]
    ) -> None:
        if value is exc:
            while traceback and is_launcher_file(traceback.tb_frame.f_code.co_filename):
                traceback = traceback.tb_next
            # The default hook prints value.__traceback__, not its argument.
            value.__traceback__ = traceback
        program_hook(exc_type, value, traceback)

    sys.excepthook = excepthook
