"""``python -m lowimpact cover``: the program runs as without it, bad input
gets a clear error and leaves no data file, coverage.py's commands work on
the data."""

from __future__ import annotations

import json
import os
import re
import signal
import sys
from pathlib import Path

import coverage
import pytest

from .helpers import copy_programs, coverage_json, env_for, python


def cover(args, cwd: Path, check: bool = False):
    return python(["-m", "lowimpact", "cover", *args], cwd, check=check)


def lines_in(data_file: Path) -> dict:
    data = coverage.CoverageData(basename=str(data_file))
    data.read()
    try:
        return {os.path.basename(f): set(data.lines(f) or ()) for f in data.measured_files()}
    finally:
        data.close()


@pytest.fixture
def programs(tmp_path: Path) -> Path:
    return copy_programs(tmp_path)


@pytest.mark.parametrize("how", ["return", "exit3", "raise", "argv"])
def test_program_runs_as_without_it(how: str, programs: Path) -> None:
    plain = python(["status.py", how, "x"], programs, check=False)
    measured = cover(["run", "status.py", how, "x"], programs)
    assert measured.returncode == plain.returncode
    assert measured.stdout == plain.stdout
    # The traceback is python's, with none of lowimpact's frames.
    assert measured.stderr == plain.stderr
    assert 5 in lines_in(programs / ".coverage")["status.py"]


def test_os_exit_keeps_the_data(programs: Path) -> None:
    proc = cover(["run", "status.py", "os_exit"], programs)
    assert proc.returncode == 7
    assert proc.stdout == "out\n"
    lines = lines_in(programs / ".coverage")["status.py"]
    assert {5, 7, 8, 16} <= lines and 18 not in lines


def test_missing_script_is_pythons_error_and_writes_nothing(programs: Path) -> None:
    proc = cover(["run", "no_such_script.py"], programs)
    plain = python(["no_such_script.py"], programs, check=False)
    assert proc.returncode == plain.returncode == 2
    assert "can't open file" in proc.stderr and "no_such_script.py" in proc.stderr
    assert not list(programs.glob(".coverage*"))


def test_missing_module(programs: Path) -> None:
    proc = cover(["run", "-m", "no_such_module"], programs)
    assert proc.returncode == 1
    assert "No module named no_such_module" in proc.stderr
    assert not list(programs.glob(".coverage*"))


@pytest.mark.parametrize("args", [["run", "--no-such-option", "status.py"], ["run"],
                                  ["frobnicate"]])
def test_bad_command_line(args, programs: Path) -> None:
    proc = cover(args, programs)
    assert proc.returncode == 2
    assert "error" in proc.stderr
    assert not list(programs.glob(".coverage*"))


def test_missing_config(programs: Path) -> None:
    proc = cover(["run", "--rcfile=missing.cfg", "status.py"], programs)
    assert proc.returncode == 1, proc.stderr
    assert "lowimpact cover: error:" in proc.stderr and "missing.cfg" in proc.stderr
    assert "out" not in proc.stdout   # the program did not run
    assert not list(programs.glob(".coverage*"))


@pytest.mark.parametrize("one_process", [False, True])
@pytest.mark.parametrize("how", ["return", "exit3"])
def test_unreadable_config(one_process: bool, how: str, programs: Path) -> None:
    """Measured with coverage.py beside the program (docs/COVER.md), a
    configuration coverage.py cannot read is found when the program has
    run: the run fails all the same, and writes nothing; in one process
    (here: for --append) the program does not run."""
    (programs / "bad.toml").write_text("[tool.coverage.run\nbranch = ")
    proc = cover(["run", "--rcfile=bad.toml", *["--append"] * one_process, "status.py", how],
                 programs)
    assert proc.returncode == (3 if how == "exit3" and not one_process else 1), proc.stderr
    assert "lowimpact cover: error:" in proc.stderr and "bad.toml" in proc.stderr
    assert ("out" in proc.stdout) != one_process
    assert not list(programs.glob(".coverage*"))


def test_config_from_pyproject(programs: Path) -> None:
    (programs / "pyproject.toml").write_text(
        '[tool.coverage.run]\nbranch = true\ndata_file = "measured.data"\n'
        'omit = ["*helper*"]\n'
    )
    cover(["run", "first_calls.py"], programs, check=True)
    data = coverage.CoverageData(basename=str(programs / "measured.data"))
    data.read()
    names = {os.path.basename(f) for f in data.measured_files()}
    assert data.has_arcs()
    assert "first_calls.py" in names and "first_calls_helper.py" not in names


def test_parallel_and_combine(programs: Path) -> None:
    for how in ("return", "exit3"):
        cover(["run", "-p", "--branch", "status.py", how], programs)
    parts = list(programs.glob(".coverage.*"))
    assert len(parts) == 2
    assert len(list(programs.glob(".coverage-subline.*.json"))) == 2
    cover(["combine", "-q"], programs, check=True)
    assert not list(programs.glob(".coverage.*"))
    assert (programs / ".coverage-subline.json").exists()
    lines = lines_in(programs / ".coverage")["status.py"]
    assert {11, 12, 13} <= lines   # the second run's "exit3" arm


def test_append(programs: Path) -> None:
    cover(["run", "status.py", "return"], programs)
    cover(["run", "-a", "status.py", "exit3"], programs)
    lines = lines_in(programs / ".coverage")["status.py"]
    assert 12 in lines and 19 in lines


def test_run_replaces_previous_data(programs: Path) -> None:
    cover(["run", "status.py", "exit3"], programs)
    cover(["run", "status.py", "return"], programs)
    assert 12 not in lines_in(programs / ".coverage")["status.py"]


def test_threads_and_fork(programs: Path) -> None:
    proc = cover(["run", "--parallel-mode", "threads_and_fork.py"], programs, check=True)
    assert proc.stdout == "[0, 0, 4]\n"
    # The parent's file and the forked child's.
    assert len(list(programs.glob(".coverage.*"))) == 2
    cover(["combine", "-q"], programs, check=True)
    lines = lines_in(programs / ".coverage")["threads_and_fork.py"]
    assert {6, 8} <= lines            # both arms, each in some thread
    assert {12, 13, 14} <= lines      # only the child ran in_child()


@pytest.mark.parametrize("command", ["report", "html", "xml", "json", "lcov"])
def test_coverage_reports_read_the_data(command: str, programs: Path) -> None:
    cover(["run", "--branch", "branches.py"], programs, check=True)
    proc = cover([command, "-q"] if command != "report" else [command], programs, check=True)
    if command == "report":
        assert "branches.py" in proc.stdout
    else:
        produced = {"html": "htmlcov/index.html", "xml": "coverage.xml",
                    "json": "coverage.json", "lcov": "coverage.lcov"}[command]
        assert (programs / produced).exists()


def test_sigterm_is_the_programs(programs: Path) -> None:
    (programs / "term.py").write_text("import os, signal\nos.kill(os.getpid(), signal.SIGTERM)\n")
    plain = python(["term.py"], programs, check=False)
    proc = cover(["run", "term.py"], programs)
    assert proc.returncode == plain.returncode == -signal.SIGTERM


def test_sigterm_keeps_data_when_configured(programs: Path) -> None:
    (programs / "term.py").write_text(
        "import os, signal\nx = 1\nos.kill(os.getpid(), signal.SIGTERM)\nx = 2\n")
    (programs / ".coveragerc").write_text("[run]\nsigterm = true\n")
    proc = cover(["run", "term.py"], programs)
    assert proc.returncode == -signal.SIGTERM
    assert lines_in(programs / ".coverage")["term.py"] == {1, 2, 3}


def test_help(programs: Path) -> None:
    proc = cover(["--help"], programs, check=True)
    assert "subline" in proc.stdout and "combine" in proc.stdout
    proc = cover(["run", "--help"], programs, check=True)
    for option in ("--branch", "--source", "--include", "--omit", "--pylib",
                   "--parallel-mode", "--data-file", "--rcfile", "--append"):
        assert option in proc.stdout


def test_data_file_of_another_coverage_version(programs: Path) -> None:
    import sqlite3

    cover(["run", "status.py", "return"], programs, check=True)
    data_file = programs / ".coverage"
    with sqlite3.connect(str(data_file)) as db:   # as a coverage.py of schema 6 wrote it
        db.execute("update coverage_schema set version = 6")
    before = data_file.read_bytes()
    proc = cover(["run", "-a", "status.py", "exit3"], programs)
    assert proc.returncode == 1
    assert "lowimpact cover: error:" in proc.stderr
    assert re.search(r"wrong schema: 6 instead of \d+", proc.stderr), proc.stderr
    assert proc.stdout == ""   # the program did not run
    assert data_file.read_bytes() == before
    report = cover(["report"], programs)
    assert report.returncode == 1 and "wrong schema" in report.stdout + report.stderr


@pytest.mark.parametrize("argv, simple", [
    (["x.py"], True),
    (["x.py", "--branch", "-m", "a"], True),
    (["--branch", "--source", "a,b", "--omit=*/t*", "-L", "-p", "-q", "x.py", "1"], True),
    (["-a", "--append", "--data-file", "d", "--include", "", "--rcfile=r", "-m", "pkg.mod"], True),
    (["--timid", "--context", "ctx", "--concurrency=thread,multiprocessing", "--pylib",
      "--parallel-mode", "--quiet", "--module", "m", "-x"], True),
    (["--data-file=", "x.py"], True),
    # Left to argparse: abbreviations, grouped flags, "--", a value that
    # looks like an option, a flag given a value, no target.
    (["--bra", "x.py"], False),
    (["-pq", "x.py"], False),
    (["--", "x.py"], False),
    (["m", "--", "-x"], False),
    (["--context", "-x", "x.py"], False),
    (["--source", "-", "x.py"], False),
    (["-L=1", "x.py"], False),
    (["--branch"], False),
])
def test_run_options_are_argparses(argv, simple) -> None:
    """Usual command lines are parsed without argparse (its import costs a
    measured run start-up time), into what argparse gives; any other is
    left to argparse."""
    from lowimpact.tools.cover import cli

    parsed = cli._parse_run_simply(argv)
    assert (parsed is not None) == simple
    if simple:
        assert vars(parsed) == vars(cli._run_parser().parse_args(argv))


@pytest.mark.parametrize("branch", [False, True])
def test_run_without_argparse(branch: bool, programs: Path) -> None:
    """A measured run with usual options never imports argparse (saving the
    data included: atexit runs after it), nor the branch machinery, which
    the coverage.py process beside it runs (docs/COVER.md)."""
    (programs / "modules.py").write_text(
        "import atexit, sys\n"
        "print('arcs' if 'lowimpact.tools.cover.arcs' in sys.modules else '')\n"
        "atexit.register(lambda: print('argparse' if 'argparse' in sys.modules else ''))\n")
    proc = cover(["run", *(["--branch"] if branch else []), "--source", ".", "modules.py"],
                 programs, check=True)
    assert proc.stdout == "\n\n"


def test_reports_from_a_measurement(programs: Path) -> None:
    """A Measurement's Coverage reports in process (as the pytest plugin
    does), the same as coverage.py's command line on the same data."""
    script = (
        "import json, sys\n"
        "from lowimpact.tools.cover.measure import Measurement\n"
        "m = Measurement(data_file='.coverage', branch=True, source=['.'])\n"
        "m.start()\n"
        "import branches\n"
        "m.stop(); m.save()\n"
        "cov = m.coverage\n"
        "cov.load()\n"
        "with open('report.txt', 'w') as out:\n"
        "    totals = [cov.report(file=out), cov.json_report(outfile='inproc.json'),\n"
        "              cov.xml_report(outfile='cov.xml'), cov.lcov_report(outfile='cov.lcov'),\n"
        "              cov.html_report(directory='htmlcov')]\n"
        "with open('totals.json', 'w') as out:\n"
        "    json.dump(totals, out)\n"
        "cov.annotate(directory='annotated')\n"
    )
    (programs / "measure_and_report.py").write_text(script)
    python(["measure_and_report.py"], programs, env_for(), check=True)
    totals = json.loads((programs / "totals.json").read_text())
    expected = coverage_json(programs / ".coverage", programs)
    in_process = json.loads((programs / "inproc.json").read_text())
    in_process.pop("meta")
    assert in_process == expected
    percent = expected["totals"]["percent_covered"]
    assert totals == pytest.approx([percent] * 5)
    assert (programs / "htmlcov" / "index.html").exists()
    assert "<coverage" in (programs / "cov.xml").read_text()
    assert "end_of_record" in (programs / "cov.lcov").read_text()
    assert any(name.endswith(",cover") for name in os.listdir(programs / "annotated"))


def test_program_collects_its_garbage(programs: Path) -> None:
    """The program sees the garbage collector as in a plain run: on, with
    the same thresholds, nothing more (or less) frozen (gc.freeze() after
    the start-up would hide the dict of the program's globals, made before
    its first line, from gc.get_referrers()), and its own reference cycles
    collected (their weakref callbacks run), by gc.collect() and by the
    automatic collections."""
    (programs / "cycles.py").write_text(
        "import gc, weakref\n"
        "print(gc.isenabled(), gc.get_threshold())\n"
        "freed = []\n"
        "print(gc.get_freeze_count(), len(gc.get_referrers(freed)))\n"
        "class Node:\n"
        "    pass\n"
        "def cycle(name):\n"
        "    a, b = Node(), Node()\n"
        "    a.other, b.other = b, a\n"
        "    return weakref.ref(a, lambda ref: freed.append(name))\n"
        "kept = cycle('collected')\n"
        "gc.collect()\n"
        "kept = cycle('automatic')\n"
        "alive = []\n"
        "while len(freed) < 2 and len(alive) < 1000000:\n"
        "    alive.append([])\n"
        "print(freed)\n")
    plain = python(["cycles.py"], programs)
    measured = cover(["run", "--branch", "cycles.py"], programs, check=True)
    assert measured.stdout == plain.stdout
    assert plain.stdout.startswith("True (") and plain.stdout.endswith(
        " 1\n['collected', 'automatic']\n")


_USES_COVERAGE = {
    # How a measured program may first touch the coverage package, which
    # `cover run` imported without its __init__ (coverage.control and the
    # reporters are left unimported): it gets the real package, with one
    # copy of each module.
    "attribute": "import coverage\nCoverage = coverage.Coverage\n",
    "from": "from coverage import Coverage\n",
    "control first": "import coverage.control\nfrom coverage.control import Coverage\n",
    "data first": "from coverage.data import CoverageData\nfrom coverage import Coverage\n",
}


@pytest.mark.parametrize("first", list(_USES_COVERAGE))
def test_program_importing_coverage_gets_the_real_package(first: str, programs: Path) -> None:
    (programs / "uses_coverage.py").write_text(
        _USES_COVERAGE[first]
        + "import sys, coverage, coverage.control, coverage.data, coverage.sqldata\n"
        "print(Coverage is coverage.Coverage is coverage.control.Coverage)\n"
        "print(coverage.CoverageData is coverage.data.CoverageData is coverage.sqldata.CoverageData)\n"
        "print(coverage.__version__, coverage.version_info, type(coverage).__name__)\n"
        "print(sys.modules['coverage'] is coverage, coverage.coverage is Coverage)\n"
        "print(sorted(set(dir(coverage)) & {'Coverage', 'CoverageData', 'process_startup'}))\n"
        "cov = coverage.Coverage(data_file=None, config_file=False)\n"
        "print(cov.get_option('run:branch'), cov.config.data_file)\n")
    plain = python(["uses_coverage.py"], programs)
    measured = cover(["run", "uses_coverage.py"], programs, check=True)
    assert measured.stdout == plain.stdout
    assert plain.stdout.startswith("True\nTrue\n%s " % coverage.__version__)
    assert 1 in lines_in(programs / ".coverage")["uses_coverage.py"]


@pytest.mark.parametrize("branch", [[], ["--branch"]])
def test_run_leaves_coverage_unimported(branch: list, programs: Path) -> None:
    """What the program's process imports of coverage.py: nothing when
    coverage.py runs beside it; in one process (here: for [run] patch),
    not coverage.control (nor, with it, the reporters), which a measured
    run does not use."""
    (programs / "modules.py").write_text(
        "import sys\n"
        "print(sorted(m for m in sys.modules if m.startswith('coverage')))\n")
    measured = cover(["run", *branch, "modules.py"], programs, check=True)
    assert eval(measured.stdout) == []
    assert 1 in lines_in(programs / ".coverage")["modules.py"]
    (programs / ".coveragerc").write_text("[run]\npatch = _exit\n")
    measured = cover(["run", *branch, "modules.py"], programs, check=True)
    imported = eval(measured.stdout)
    assert "coverage.config" in imported and "coverage.sqldata" in imported
    assert "coverage.control" not in imported and "coverage.html" not in imported


def test_debug_output_is_coverages(programs: Path) -> None:
    """A configuration with [run] debug takes coverage.py's own Coverage,
    which writes the debug output."""
    (programs / "debug.rc").write_text("[run]\ndebug = config\ndebug_file = debug.txt\n")
    cover(["run", "--rcfile=debug.rc", "status.py", "return"], programs, check=True)
    assert "-- config --" in (programs / "debug.txt").read_text()
    assert 5 in lines_in(programs / ".coverage")["status.py"]
