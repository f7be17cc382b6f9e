"""coverage.py's ``sysmon`` core must record what its C tracer records.

coverage.py ships two measurement cores that matter here: ``ctrace`` (a C
``sys.settrace`` tracer, the reference on every version) and ``sysmon``
(``sys.monitoring``: PY_START globally, and from its callback LINE as a
local event for the code object that is starting, every callback returning
DISABLE).  That is the pattern most real monitoring tools follow, so a real
program measured by both cores is a strict judge of the engine: on 3.11 the
``sysmon`` core runs on ``lowimpact.install()``, on 3.12/3.13 on the
interpreter's own ``sys.monitoring``, and in both cases the executed lines it
records, file by file, must be exactly the lines ``ctrace`` records for the
same program.

Every program here was checked to give identical lines under both cores on
native 3.12 and 3.13, so any difference on 3.11 is the engine's.  On 3.9,
whose line table predates PEP 626, LINE may also report lines that 3.9's
settrace does not (see ``entered_past_start``): only those may differ.  Branch
(arc) data is not compared: coverage.py measures only lines with ``sysmon``
before 3.14.

Each measurement runs in a fresh interpreter (``sys.executable``) with its own
data file under ``tmp_path``.  coverage.py is told which core to use through
``COVERAGE_CORE`` (its user-facing switch), and its ``core`` debug output is
checked so that a silent fallback to another core cannot make a run pass.
"""

from __future__ import annotations

import dis
import os
import re
import shutil
import site
import subprocess
import sys
import sysconfig
import tokenize
import types
import venv
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import coverage
import pytest

import lowimpact
from lowimpact._lines import co_lines

PROGRAMS = Path(__file__).parent / "programs"
REFERENCE = "ctrace"
UNDER_TEST = "sysmon"

# A whole measurement is a few seconds; a hang (a lost event loop wake-up, a
# deadlock in a callback) must fail the test, not stall the suite.
TIMEOUT = 120

# The coverage.py command line, run as ``python -c LAUNCHER <arguments>``.
# coverage.py decides whether it may use sys.monitoring when its modules are
# imported: ``coverage.env.PYBEHAVIOR.pep669`` and the module global
# ``coverage.sysmon.sys_monitoring`` are both ``getattr(sys, "monitoring",
# None)`` evaluated at import time.  So installing lowimpact *before* the first
# ``import coverage`` is all it takes on 3.11 -- no patching of coverage.py.
# The reference runs go through the same launcher without installing, so the
# two runs differ only in the core.  On 3.12+ ``install()`` does nothing.
#
# On 3.9 the sysmon core of coverage.py 7.10 (the last for 3.9) maps offsets
# to lines with ``code.co_lines()``, which 3.9's code objects lack (PEP 626
# is 3.10's): its one function that does so is given
# ``lowimpact._lines.co_lines``, the same ranges read from ``co_lnotab``
# (in the sysmon runs, after ``install()``).
CO_LINES_39 = """\
    if sys.version_info < (3, 10):
        import coverage.sysmon
        from lowimpact._lines import co_lines
        coverage.sysmon.bytes_to_lines = lambda code: {
            offset: line for start, end, line in co_lines(code) if line is not None
            for offset in range(start, end, 2)}
"""
LAUNCHER = """\
import os, sys
if os.environ["COVERAGE_CORE"] == "sysmon":
    import lowimpact
    lowimpact.install()
""" + CO_LINES_39 + """\
from coverage.cmdline import main
sys.exit(main())
"""

# How coverage.py measures processes it does not start itself: a site hook
# calls coverage.process_startup(), which starts measuring when
# COVERAGE_PROCESS_START names a configuration file.  Recent coverage.py
# (7.18 here) installs such a hook itself, a1_coverage.pth in site-packages,
# and site runs .pth files before sitecustomize, in name order.  So on 3.11 a
# hook that installs lowimpact must be a .pth that sorts before
# a1_coverage.pth; a sitecustomize is too late (coverage.py would already
# have fallen back to ctrace).  This module is that hook; process_startup()
# starts at most once per process, so coverage.py's own .pth, where present,
# then does nothing.  As in LAUNCHER, the reference runs leave lowimpact out.
STARTUP_HOOK = """\
import os, sys
if os.environ.get("COVERAGE_CORE") == "sysmon":
    import lowimpact
    lowimpact.install()
""" + CO_LINES_39 + """\
import coverage
coverage.process_startup()
"""

# The stdlib suites: fast (about a second with ctrace), pure-Python code of
# the modules under test (each suite also reloads its module without the C
# accelerator, which re-runs the module code under measurement).
# test_json.test_recursion is left out only for time: on 3.13 the pure-Python
# encoder's deeply nested case takes ~40 s under coverage.py's C tracer.
# test_json.test_tool is left out because it starts unmeasured subprocesses.
STDLIB_SUITES = (
    "test.test_bisect",
    "test.test_json.test_decode",
    "test.test_json.test_default",
    "test.test_json.test_dump",
    "test.test_json.test_encode_basestring_ascii",
    "test.test_json.test_enum",
    "test.test_json.test_fail",
    "test.test_json.test_float",
    "test.test_json.test_indent",
    "test.test_json.test_pass1",
    "test.test_json.test_pass2",
    "test.test_json.test_pass3",
    "test.test_json.test_scanstring",
    "test.test_json.test_separators",
    "test.test_json.test_speedups",
    "test.test_json.test_unicode",
)
STDLIB_SOURCE = "bisect,json,test.test_bisect,test.test_json"

Lines = Mapping[str, frozenset[int]]


@dataclass(frozen=True)
class Case:
    """One program run with ``coverage run``, once per core."""

    name: str
    run_args: tuple[str, ...]
    # Files that must have recorded lines under the reference core, so that a
    # run which measured nothing cannot pass by comparing two empty sets.
    must_measure: tuple[str, ...]


CASES = (
    # Module-level code: classes, loops with else, try/except/else/finally,
    # with, comprehensions, ``if __name__ == "__main__"``.
    Case("module_level", ("--source=.", "module_level.py"), ("module_level.py",)),
    # Functions whose first call comes from module code, in the script and in
    # a module it imports.
    Case(
        "first_calls",
        ("--source=.", "first_calls.py"),
        ("first_calls.py", "first_calls_helper.py"),
    ),
    # Generators (send, throw, close, yield from), context managers, asyncio,
    # async generators, exceptions unwinding through finally, except*.
    Case("gen_async", ("--source=.", "gen_async.py"), ("gen_async.py",)),
    # Functions first run in other threads (Thread targets, a Thread
    # subclass, a thread pool): events come from every thread.
    Case("threaded", ("--source=.", "threaded.py"), ("threaded.py",)),
    # A package run with -m: __main__.py plus relative imports.
    Case(
        "dash_m",
        ("--source=.", "-m", "calc", "2 * 5 - 1", "7 + 1"),
        ("calc/__init__.py", "calc/__main__.py", "calc/ops.py"),
    ),
    # Real regression tests measuring the stdlib modules they test.
    Case(
        "stdlib_suites",
        ("--source=" + STDLIB_SOURCE, "-m", "unittest", "-q", *STDLIB_SUITES),
        tuple(
            os.path.join(sysconfig.get_path("stdlib"), name)
            for name in ("bisect.py", "json/decoder.py", "json/encoder.py", "json/scanner.py")
        ),
    ),
)


def lowimpact_root() -> str:
    """The sys.path entry the lowimpact under test was imported from."""
    return os.path.dirname(os.path.dirname(os.path.abspath(lowimpact.__file__)))


def program_dir(tmp_path: Path) -> Path:
    """A private copy of the programs, shared by both cores' runs.

    Both runs must see the same file names, and neither may write into the
    source tree.
    """
    target = tmp_path / "programs"
    shutil.copytree(PROGRAMS, target, ignore=shutil.ignore_patterns("__pycache__"))
    return target


def subprocess_env(core: str, debug_file: Path) -> dict[str, str]:
    """The environment of a measured run: the caller's, minus anything that
    would configure coverage.py behind the test's back."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COVERAGE_")}
    env["COVERAGE_CORE"] = core
    # The core coverage.py really used is written here, once per process
    # ("sys": coverage.py 7.10, the last for 3.9, has no "core" output).
    env["COVERAGE_DEBUG"] = "sys"
    env["COVERAGE_DEBUG_FILE"] = str(debug_file)
    # An in-place build (src/) needs its directory on the path; an installed
    # lowimpact is there already (and site-packages on PYTHONPATH would sit
    # in front of the stdlib).
    root = lowimpact_root()
    path = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if root not in site.getsitepackages() and root not in path:
        path.insert(0, root)
    env["PYTHONPATH"] = os.pathsep.join(path)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def run_python(
    args: Sequence[str], cwd: Path, env: Mapping[str, str], python: Path | None = None
) -> None:
    """Run *python* (``sys.executable`` by default) with *args*; fail the test
    with its output if it fails."""
    proc = subprocess.run(
        [str(python or sys.executable), *args],
        cwd=cwd,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    if proc.returncode != 0:
        pytest.fail(
            "%s exited with %d\n--- stdout\n%s\n--- stderr\n%s"
            % (" ".join(args[:4]), proc.returncode, proc.stdout, proc.stderr)
        )


def assert_core_used(debug_file: Path, core: str, processes: int) -> None:
    """Every measured process used *core*.  coverage.py falls back to ctrace
    with no more than a warning when it finds no sys.monitoring, which would
    make the comparison compare ctrace with itself."""
    text = debug_file.read_text() if debug_file.exists() else ""
    names = {"CTracer": "ctrace", "SysMonitor": "sysmon", "PyTracer": "pytrace"}
    used = [names.get(name, name) for name in re.findall(r"^ *core: (\w+)$", text, re.MULTILINE)]
    assert used == [core] * processes, "expected %d process(es) on core %r, coverage.py said %r" % (
        processes,
        core,
        used,
    )


def read_lines(data_file: Path) -> dict[str, frozenset[int]]:
    """File name -> executed lines, as coverage.py's data API reports them."""
    data = coverage.CoverageData(basename=str(data_file))
    try:
        data.read()
        return {name: frozenset(data.lines(name) or ()) for name in data.measured_files()}
    finally:
        data.close()


def ranges(lines: frozenset[int]) -> str:
    """1, 2, 3, 7 -> '1-3, 7'."""
    spans: list[list[int]] = []
    for n in sorted(lines):
        if spans and n == spans[-1][1] + 1:
            spans[-1][1] = n
        else:
            spans.append([n, n])
    return ", ".join(str(a) if a == b else "%d-%d" % (a, b) for a, b in spans) or "-"


def source_lines(filename: str, lines: frozenset[int], limit: int = 25) -> list[str]:
    """The text of some of *lines*, to make a difference readable at a glance."""
    try:
        text = Path(filename).read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    shown = [
        "      %5d  %s" % (n, text[n - 1].rstrip()) for n in sorted(lines)[:limit] if n <= len(text)
    ]
    if len(lines) > limit:
        shown.append("      ... %d more" % (len(lines) - limit))
    return shown


def describe_difference(reference: Lines, tested: Lines, base: Path) -> str:
    """A per-file report of lines only one core recorded; empty if none."""
    report: list[str] = []
    for name in sorted(set(reference) | set(tested)):
        ref = reference.get(name, frozenset())
        got = tested.get(name, frozenset())
        if ref == got:
            continue
        shown = os.path.relpath(name, base) if name.startswith(str(base)) else name
        if name not in tested:
            shown += " (not measured at all by %s)" % UNDER_TEST
        elif name not in reference:
            shown += " (not measured at all by %s)" % REFERENCE
        report.append("  %s" % shown)
        report.append("    only %s: %s" % (REFERENCE, ranges(ref - got)))
        report.extend(source_lines(name, ref - got))
        report.append("    only %s: %s" % (UNDER_TEST, ranges(got - ref)))
        report.extend(source_lines(name, got - ref))
    return "\n".join(report)


def entered_past_start(filename: str) -> frozenset[int]:
    """3.9: the lines that LINE may report where 3.9's settrace does not,
    from the code: those of instructions that a jump or an exception
    handler enters past the line's start in ``co_lnotab``.  LINE reports
    a change of line at a jump's target; 3.9's settrace reports a line at
    its start only (and where a jump goes back, and at a handler after a
    caught exception).  3.9's compiler (no PEP 626) gives code it adds, such
    as a module's implicit ``return None`` or an except clause's
    ``RERAISE``, the line of the statement before it, which is entered so."""
    try:
        with tokenize.open(filename) as stream:
            top = compile(stream.read(), filename, "exec", dont_inherit=True)
    except (OSError, SyntaxError):
        return frozenset()
    found = set()
    work = [top]
    while work:
        code = work.pop()
        work.extend(const for const in code.co_consts if isinstance(const, types.CodeType))
        starts = {offset for offset, _ in dis.findlinestarts(code)}
        line_of = {offset: line for start, end, line in co_lines(code)
                   for offset in range(start, end, 2)}
        for ins in dis.get_instructions(code):
            if ins.opcode in JUMPS and ins.argval not in starts:
                found.add(line_of[ins.argval])
    return frozenset(found)


JUMPS = frozenset(dis.hasjabs) | frozenset(dis.hasjrel)


def assert_same_lines(
    what: str, reference: Lines, tested: Lines, base: Path, must_measure: Sequence[str]
) -> None:
    """The two cores recorded the same lines in every file, and the
    reference recorded some in each of *must_measure* (relative to *base*)."""
    for name in must_measure:
        path = str(base / name) if not os.path.isabs(name) else name
        assert reference.get(path), "%s: %s recorded no lines for %s; the run proves nothing" % (
            what,
            REFERENCE,
            name,
        )
    if sys.version_info < (3, 10):
        tested = {name: lines - ((lines - reference.get(name, frozenset()))
                                 & entered_past_start(name))
                  for name, lines in tested.items()}
    difference = describe_difference(reference, tested, base)
    if difference:
        # pytest.fail rather than assert: the report is the message, once.
        pytest.fail(
            "%s: coverage.py's %s core and %s core recorded different lines\n%s"
            % (what, UNDER_TEST, REFERENCE, difference)
        )


def measure_run(case: Case, core: str, programs: Path, out: Path) -> dict[str, frozenset[int]]:
    """``coverage run`` of *case* on *core*; the lines it recorded."""
    out.mkdir()
    data_file = out / ".coverage"
    debug_file = out / "debug.txt"
    env = subprocess_env(core, debug_file)
    args = ["-c", LAUNCHER, "run", "--data-file=" + str(data_file), *case.run_args]
    run_python(args, programs, env)
    assert_core_used(debug_file, core, processes=1)
    return read_lines(data_file)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_coverage_run(case: Case, tmp_path: Path) -> None:
    programs = program_dir(tmp_path)
    reference = measure_run(case, REFERENCE, programs, tmp_path / REFERENCE)
    tested = measure_run(case, UNDER_TEST, programs, tmp_path / UNDER_TEST)
    assert_same_lines(case.name, reference, tested, programs, case.must_measure)


# The processes spawn_parent.py amounts to: itself, a script child, a
# ``python -c`` child and a ``python -m`` child.
SPAWNED_PROCESSES = 4


def interpreter_with_startup_hook(where: Path) -> Path:
    """A venv of the running interpreter with the startup hook as a .pth.

    The venv's site-packages is processed before the interpreter's own
    (which may hold coverage.py's a1_coverage.pth), so the hook runs first,
    as it would for a user who put it into site-packages, and the
    interpreter under test is left untouched.  The returned python is the
    same interpreter as ``sys.executable``; only its site directories differ.
    """
    venv.create(where, system_site_packages=True, with_pip=False, symlinks=True)
    bindir = "Scripts" if os.name == "nt" else "bin"
    python = where / bindir / "python"
    # Its own answer: sysconfig's "venv" scheme is 3.11+.
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True)
    site_packages = Path(purelib.stdout.strip())
    # When the test runs in a venv, the new venv is one of the base
    # interpreter and would not see coverage.py; list the test's site
    # directories (plain directory lines in a .pth are added to sys.path).
    sites = [p for p in [*site.getsitepackages(), site.getusersitepackages()] if p in sys.path]
    # Name order: the paths, then the hook, then coverage.py's a1_coverage.pth.
    (site_packages / "a0_paths.pth").write_text("".join(p + "\n" for p in sites))
    (site_packages / "start_coverage.py").write_text(STARTUP_HOOK)
    (site_packages / "a0_start_coverage.pth").write_text("import start_coverage\n")
    return python


def measure_process_startup(
    core: str, python: Path, programs: Path, out: Path
) -> dict[str, frozenset[int]]:
    """Run spawn_parent.py unmeasured; the startup hook starts coverage.py in
    it and in every child, each writing a parallel data file; then combine."""
    out.mkdir()
    rcfile = out / "coveragerc"
    rcfile.write_text(
        "[run]\nparallel = True\nsource = %s\ndata_file = %s\n" % (programs, out / ".coverage")
    )
    debug_file = out / "debug.txt"
    env = subprocess_env(core, debug_file)
    env["COVERAGE_PROCESS_START"] = str(rcfile)
    run_python(["spawn_parent.py"], programs, env, python=python)
    assert_core_used(debug_file, core, processes=SPAWNED_PROCESSES)

    # Combining must not itself be measured.
    combine_env = subprocess_env(core, out / "combine-debug.txt")
    del combine_env["COVERAGE_CORE"], combine_env["COVERAGE_DEBUG"]
    run_python(["-m", "coverage", "combine", "--rcfile=" + str(rcfile)], programs, combine_env)
    return read_lines(out / ".coverage")


def test_process_startup(tmp_path: Path) -> None:
    programs = program_dir(tmp_path)
    python = interpreter_with_startup_hook(tmp_path / "venv")
    reference = measure_process_startup(REFERENCE, python, programs, tmp_path / REFERENCE)
    tested = measure_process_startup(UNDER_TEST, python, programs, tmp_path / UNDER_TEST)
    assert_same_lines(
        "process_startup",
        reference,
        tested,
        programs,
        ("spawn_parent.py", "spawn_child.py", "calc/__main__.py", "calc/ops.py"),
    )
