"""``cover run`` with coverage.py in a process beside the program
(lowimpact.tools.cover.beside): what the program's process leaves out from
the start is never a file coverage.py measures; the helper neither outlives
a killed program nor dies of the program's Ctrl-C."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest

from lowimpact.tools.cover import beside
from lowimpact.tools.cover.measure import Measurement

from .helpers import copy_programs, env_for, python
from .test_cli import lines_in

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork (POSIX)")


def options(**given) -> types.SimpleNamespace:
    values = dict(append=False, concurrency=None, rcfile=True, branch=None, include=None,
                  source=None, pylib=None)
    values.update(given)
    return types.SimpleNamespace(**values)


def module_files() -> dict:
    """The files of this process's modules (the standard library's, the
    installed packages', lowimpact's, the tests'), by module name."""
    return {name: module.__file__ for name, module in list(sys.modules.items())
            if isinstance(getattr(module, "__file__", None), str)}


@pytest.mark.parametrize("given", [{}, {"pylib": True}, {"source": ["project"]},
                                   {"source": ["project", "elsewhere"]},
                                   {"source": ["json", "_pytest.mark", "elsewhere"]}],
                         ids=["default", "pylib", "source", "two_sources", "packages"])
def test_left_out_only_what_coverage_leaves_out(given: dict, tmp_path: Path,
                                                monkeypatch) -> None:
    project = tmp_path / "project"
    (project / "package").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    mine = project / "package" / "mine.py"
    mine.write_text("x = 1\n")
    (project / "linked.py").symlink_to(mine)
    monkeypatch.chdir(tmp_path)
    import _pytest.mark.structures  # noqa: F401  (measured with --source=_pytest.mark)
    import json.decoder  # noqa: F401

    files = module_files()
    files.update({"mine": str(mine), "linked": str(project / "linked.py"),
                  "__main__": str(tmp_path / "elsewhere" / "main.py")})
    plan = beside.plan(options(**given))
    assert plan is not None and plan.excluded is not None
    measurement = Measurement(messages=False, reports=False, child=True, rcfile=False, **given)
    measurement.prepare()
    decided = measurement.select_recorded(
        {filename: (filename, name, None) for name, filename in files.items()})
    left_out = {filename for name, filename in files.items()
                if plan.excluded(filename, filename, beside.module_name(name, None))}
    measured = {filename for filename, name in decided.items() if name is not None}
    assert not left_out & measured
    # What is left out is most of what coverage.py leaves out (the test
    # process has imported hundreds of modules of the standard library and
    # of installed packages).
    assert len(left_out) > 0.8 * (len(files) - len(measured))
    if given.get("source", [""])[0] == "project":
        assert str(mine) in measured and str(project / "linked.py") in measured
    elif "source" in given:
        import _pytest.mark.structures
        import json.decoder

        assert {json.decoder.__file__, _pytest.mark.structures.__file__} <= measured
        assert str(mine) in left_out
    else:
        assert pytest.__file__ in left_out
        assert (os.__file__ in left_out) != bool(given.get("pylib"))
        assert (os.__file__ in measured) == bool(given.get("pylib"))


@pytest.mark.parametrize("setting", [
    "[run]\nplugins = some.plugin\n", "[run]\ndynamic_context = test_function\n",
    "[run]\nsigterm = true\n", "[run]\npatch = subprocess\n",
    "[run]\nconcurrency = multiprocessing\n", "[run]\ndebug = trace\n",
])
def test_settings_that_need_one_process(setting: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert beside.plan(options()) is not None
    for name in (".coveragerc", "setup.cfg", "tox.ini", "pyproject.toml"):
        path = tmp_path / name
        path.write_text(setting.replace("[run]", "[coverage:run]")
                        if name in ("setup.cfg", "tox.ini") else setting)
        assert beside.plan(options()) is None, name
        path.unlink()
    assert beside.plan(options(append=True)) is None
    monkeypatch.setenv("COVERAGE_DEBUG", "trace")
    assert beside.plan(options()) is None


def test_branch_recorded_when_the_files_may_ask(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert not beside.plan(options()).branch
    assert beside.plan(options(branch=True)).branch
    (tmp_path / "pyproject.toml").write_text("[tool.coverage.run]\nbranch = true\n")
    assert beside.plan(options()).branch


def in_session(session: int) -> list:
    """The live processes of *session* (Linux's /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        # (fields: state, ppid, pgrp, session, ...)
        if int(fields[3]) == session and fields[0] != "Z":
            found.append(int(entry.name))
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_killed_program_leaves_no_helper(tmp_path: Path) -> None:
    programs = copy_programs(tmp_path)
    (programs / "killed.py").write_text(
        "import os, signal, time\n"
        "time.sleep(0.2)\n"
        "print(os.getsid(0), flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n")
    proc = run_alone(["-m", "lowimpact", "cover", "run", "killed.py"], programs)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    session = int(proc.stdout)
    deadline = time.monotonic() + 30
    while in_session(session) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not in_session(session), "the coverage.py process outlived the program"
    assert not list(programs.glob(".coverage*"))


def test_a_program_that_waits_for_all_its_children(tmp_path: Path) -> None:
    """The coverage.py process is not the program's child."""
    programs = copy_programs(tmp_path)
    (programs / "reaper.py").write_text(
        "import os\n"
        "if os.fork() == 0:\n"
        "    os._exit(0)\n"
        "while True:\n"
        "    try:\n"
        "        os.wait()\n"
        "    except ChildProcessError:\n"
        "        break\n"
        "print('reaped')\n")
    proc = python(["-m", "lowimpact", "cover", "run", "reaper.py"], programs)
    assert proc.stdout == "reaped\n"
    assert {1, 2, 6, 7, 8, 9} <= lines_in(programs / ".coverage")["reaper.py"]


def test_the_helper_holds_no_descriptor_the_program_was_given(tmp_path: Path) -> None:
    """A pipe the program was given tells its reader the program closed it
    while the program still runs: the coverage.py process does not keep it
    open."""
    import select

    programs = copy_programs(tmp_path)
    (programs / "given.py").write_text(
        "import os, sys, time\n"
        "os.close(int(sys.argv[1]))\n"
        "print('closed', flush=True)\n"
        "time.sleep(4)\n")
    read_end, write_end = os.pipe()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lowimpact", "cover", "run", "given.py", str(write_end)],
            cwd=programs, env=env_for(), stdout=subprocess.PIPE, text=True,
            pass_fds=(write_end,))
        os.close(write_end)
        try:
            assert proc.stdout.readline() == "closed\n"
            readable, _, _ = select.select([read_end], [], [], 3)
            assert readable and os.read(read_end, 1) == b"", "the pipe is still open elsewhere"
        finally:
            proc.communicate(timeout=60)
    finally:
        os.close(read_end)
    assert proc.returncode == 0


def test_perf_map_of_the_helper_writes_into_no_file(tmp_path: Path) -> None:
    """Under ``-X perf`` (3.12+) CPython keeps its perf map open in the
    forked helper: the descriptors the helper lets go of keep their numbers,
    so the map never writes into the data file."""
    programs = copy_programs(tmp_path)
    (programs / "many.py").write_text(
        "for i in range(3):\n"
        "    exec('def f%d():\\n    return %d' % (i, i))\n"
        "x = 1\n")
    proc = subprocess.run(
        [sys.executable, "-X", "perf", "-m", "lowimpact", "cover", "run", "--branch", "many.py"],
        cwd=programs, env=env_for(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert lines_in(programs / ".coverage")["many.py"] == {1, 2, 3}
    assert b"py::" not in (programs / ".coverage").read_bytes()


def run_alone(args: list, cwd: Path) -> subprocess.CompletedProcess:
    """python with *args* in a session of its own (its own process group)."""
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env_for(),
                          capture_output=True, text=True, timeout=60, start_new_session=True)


def test_ctrl_c_is_the_programs(tmp_path: Path) -> None:
    """Ctrl-C reaches the program's whole process group: the program gets
    its KeyboardInterrupt as without lowimpact, and the helper, which
    ignores it, writes what ran."""
    programs = copy_programs(tmp_path)
    (programs / "interrupted.py").write_text(
        "import os, signal, time\n"
        "x = 1\n"
        "time.sleep(0.2)\n"
        "os.killpg(os.getpgrp(), signal.SIGINT)\n"
        "time.sleep(5)\n"
        "x = 2\n")
    plain = run_alone(["interrupted.py"], programs)
    proc = run_alone(["-m", "lowimpact", "cover", "run", "interrupted.py"], programs)
    assert proc.returncode == plain.returncode != 0
    assert "KeyboardInterrupt" in proc.stderr and "KeyboardInterrupt" in plain.stderr
    assert sorted(lines_in(programs / ".coverage")["interrupted.py"]) == [1, 2, 3, 4]


def test_a_program_that_closes_the_pipes(tmp_path: Path) -> None:
    """A program that closes the descriptors it did not open, and opens
    files that get their numbers: those files are left as the program wrote
    them, and cover run says that the data could not be written."""
    programs = copy_programs(tmp_path)
    (programs / "closer.py").write_text(
        "import os\n"
        "os.closerange(3, 64)\n"
        "files = [open('log%d.txt' % i, 'w') for i in range(8)]\n"
        "for f in files:\n"
        "    f.write('mine')\n"
        "    f.flush()\n"
        "print('done')\n")
    proc = python(["-m", "lowimpact", "cover", "run", "closer.py"], programs, check=False)
    # (As coverage run's: a run whose data is lost fails.)
    assert proc.returncode == 1 and proc.stdout == "done\n"
    assert "could not save data: the program closed the pipes" in proc.stderr
    for index in range(8):
        assert (programs / ("log%d.txt" % index)).read_text() == "mine"
    assert not list(programs.glob(".coverage*"))


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="needs valgrind")
@pytest.mark.skipif("asan" in os.environ.get("LD_PRELOAD", ""),
                    reason="valgrind cannot run a process built with AddressSanitizer")
def test_under_valgrind(tmp_path: Path) -> None:
    """Under valgrind, whose own descriptors the process lists but may not
    replace (before, the helper died putting /dev/null on them, and every
    file was measured and nothing saved)."""
    programs = copy_programs(tmp_path)
    proc = subprocess.run(["valgrind", "--tool=none", "-q", sys.executable, "-m", "lowimpact",
                           "cover", "run", "--include=*/branches.py", "branches.py"],
                          cwd=programs, env=env_for(), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "error" not in proc.stderr
    assert list(lines_in(programs / ".coverage")) == ["branches.py"]


@pytest.mark.parametrize("branch", [[], ["--branch"]], ids=["lines", "branches"])
@pytest.mark.parametrize("config, args", [
    ("", []),
    ("", ["--source", "."]),
    ("", ["--source", "branches,json"]),
    ("", ["--include", "*branch*"]),
    ("[run]\nsource = .\n", []),
    ("[run]\ninclude = */branches.py\nomit = */json/*\n", ["-L"]),
], ids=["default", "source_dir", "source_packages", "include", "config_source", "config_include"])
def test_same_data_as_in_one_process(config: str, args: list, branch: list,
                                     tmp_path: Path) -> None:
    """The data file's lines and arcs, measured with coverage.py beside the
    program (which leaves files out before coverage.py has read anything,
    or asks it file by file) and in one process (here: for [run] patch)."""
    programs = copy_programs(tmp_path)
    (programs / "uses.py").write_text(
        "import json, branches\nprint(json.dumps(branches.__name__))\n")
    import coverage

    measured = {}
    for way, extra in (("beside", ""), ("one", "patch = _exit\n")):
        rc = config + ("" if "[run]" in config else "[run]\n") + extra
        (programs / ".coveragerc").write_text(rc)
        data_file = programs / (".coverage." + way + ".data")
        python(["-m", "lowimpact", "cover", "run", "--data-file", str(data_file), *branch, *args,
                "uses.py"], programs)
        data = coverage.CoverageData(basename=str(data_file))
        data.read()
        measured[way] = {f: (sorted(data.lines(f) or ()), sorted(data.arcs(f) or ()))
                         for f in data.measured_files()}
    if args and "json" in args[-1]:
        # Measuring in one process imports coverage.py's configuration
        # reader, and json with it, before the program: the program's import
        # of json runs none of its module code.  Beside it, it does.
        json_files = [f for f in measured["one"] if os.sep + "json" + os.sep in f]
        assert json_files
        for f in json_files:
            one, mine = measured["one"].pop(f), measured["beside"].pop(f)
            assert set(one[0]) <= set(mine[0]) and set(one[1]) <= set(mine[1])
            if f.endswith("__init__.py"):
                assert len(mine[0]) > len(one[0]) + 10
    assert measured["beside"] == measured["one"]
    assert any(f.endswith("branches.py") for f in measured["one"])


def test_no_warning_of_the_helpers_own_imports(tmp_path: Path) -> None:
    """coverage.py warns of a --source module imported before measuring;
    the modules the coverage.py process imports itself (json, ...) were not
    imported by the program; one it never imports is 'never imported'."""
    programs = copy_programs(tmp_path)
    (programs / "uses.py").write_text("import json\nprint(json.dumps(1))\n")
    proc = python(["-m", "lowimpact", "cover", "run", "--source", "json,tomllib,uses", "uses.py"],
                  programs)
    assert "already imported" not in proc.stderr.lower(), proc.stderr
    assert "Module tomllib was never imported" in proc.stderr, proc.stderr


def test_branch_imports_nothing_more_before_the_program(tmp_path: Path) -> None:
    """With --branch the program's process imports no more than with lines
    alone before the program's first line, but lowimpact's bytecode readers
    (it once imported dis and typing with them to read one constant: ~8 ms
    of every run), and nothing of coverage.py either way."""
    programs = copy_programs(tmp_path)
    (programs / "modules.py").write_text(
        "import sys\nprint(' '.join(sorted(sys.modules)))\n")
    imported = {}
    for mode in ([], ["--branch"]):
        proc = python(["-m", "lowimpact", "cover", "run", *mode, "--source", ".", "modules.py"],
                      programs)
        assert proc.returncode == 0, proc.stderr
        imported[bool(mode)] = set(proc.stdout.split())
    assert {name for name in imported[True] - imported[False]
            if not name.startswith("lowimpact.")} == set()
    assert not {name for name in imported[False] if name.split(".")[0] == "coverage"}
    assert "lowimpact.tools.cover.beside" in imported[False]


def test_a_program_that_puts_other_things_on_sys_path(tmp_path: Path) -> None:
    programs = copy_programs(tmp_path)
    (programs / "paths.py").write_text(
        "import pathlib, sys\n"
        "sys.path.append(pathlib.Path('elsewhere'))\n"
        "sys.path.append(b'bytes')\n"
        "sys.path.append(None)\n"
        "print('done')\n")
    proc = python(["-m", "lowimpact", "cover", "run", "paths.py"], programs)
    assert proc.stdout == "done\n" and "error" not in proc.stderr
    assert lines_in(programs / ".coverage")["paths.py"] == {1, 2, 3, 4, 5}


@pytest.mark.parametrize("closed", ["<&-", ">&-", "2>&-"])
def test_run_with_a_standard_stream_closed(closed: str, tmp_path: Path) -> None:
    """The pipes to the coverage.py process never take a closed standard
    stream's number (where the program would write, or the helper put
    /dev/null)."""
    programs = copy_programs(tmp_path)
    (programs / "quiet.py").write_text("import os\nx = os.getpid()\n")
    command = "exec %s -m lowimpact cover run quiet.py %s" % (sys.executable, closed)
    proc = subprocess.run(["sh", "-c", command], cwd=programs, env=env_for(), timeout=60,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert lines_in(programs / ".coverage")["quiet.py"] == {1, 2}
