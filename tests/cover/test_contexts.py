"""Contexts ("who ran this line") against coverage.py's C tracer: a static
context (``--context``, ``[run] context``), ``dynamic_context =
test_function`` on a program and on a pytest suite run by ``cover run -m
pytest``, and the pytest plugin's ``--li-cov-context=test`` and
``no_cover`` against pytest-cov's ``--cov-context=test``.

What is compared is coverage.py's own reading of both data files: the
contexts measured, the contexts of every line (``contexts_by_lineno``), and
``coverage json`` restricted to each context (``--contexts``), whose
executed lines and branches are the arcs recorded in that context.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Dict, List

import coverage
import pytest

from .helpers import (PROGRAMS, assert_ran_on_ctrace, ctrace_settings, env_for, python, run_ctrace,
                      run_lowimpact)

PLUGIN = ["-p", "lowimpact.tools.cover.pytest_plugin"]


def read_contexts(data_file: Path) -> dict:
    """coverage.py's reading of *data_file*: the contexts, and per file the
    contexts of each line."""
    from coverage import CoverageData

    data = CoverageData(str(data_file))
    data.read()
    return {
        "contexts": sorted(data.measured_contexts()),
        "files": {Path(name).name: {line: sorted(ctxs)
                                    for line, ctxs in data.contexts_by_lineno(name).items()}
                  for name in data.measured_files()},
    }


def report_per_context(data_file: Path, cwd: Path, contexts: List[str]) -> Dict[str, dict]:
    """``coverage json --show-contexts`` of each context alone."""
    reports = {}
    for number, context in enumerate(contexts):
        out = data_file.parent / ("%s.%d.json" % (data_file.name, number))
        python(["-m", "coverage", "json", "--data-file=" + str(data_file), "-o", str(out), "-q",
                "--show-contexts", "--contexts=^%s$" % re.escape(context)], cwd, env_for())
        report = json.loads(out.read_text())
        report.pop("meta")
        reports[context] = report
    return reports


def assert_same_contexts(tested: Path, reference: Path, cwd: Path, branch: bool) -> dict:
    got, want = read_contexts(tested), read_contexts(reference)
    assert got == want
    got_reports = report_per_context(tested, cwd, want["contexts"])
    want_reports = report_per_context(reference, cwd, want["contexts"])
    for context in want["contexts"]:
        assert got_reports[context] == want_reports[context], context
        if branch:
            assert "num_branches" in want_reports[context]["totals"]
    return want


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    shutil.copy(PROGRAMS / "contexts.py", tmp_path)
    shutil.copytree(PROGRAMS / "pytest_project", tmp_path / "project",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "test_function.rc").write_text("[run]\ndynamic_context = test_function\n")
    return tmp_path


@pytest.mark.parametrize("static", [None, "st"], ids=["dynamic", "static+dynamic"])
@pytest.mark.parametrize("branch", [False, True], ids=["lines", "branches"])
def test_test_function_contexts_same_as_ctrace(workdir: Path, branch: bool, static) -> None:
    args = ["--rcfile=test_function.rc", *(["--branch"] if branch else []),
            *(["--context=" + static] if static else []), "contexts.py"]
    run_ctrace(args, workdir, workdir / "ctrace.data")
    run_lowimpact(args, workdir, workdir / "li.data")
    want = assert_same_contexts(workdir / "li.data", workdir / "ctrace.data", workdir, branch)
    prefix = static + "|" if static else ""
    # Tests that return, raise, yield (three times: resumed), unittest
    # methods and runTest; not the test-named function a test calls, nor
    # unittest's testPartExecutor (it records nothing of contexts.py).
    assert want["contexts"] == [static or ""] + [prefix + "__main__." + name for name in (
        "Case.runTest", "Case.test_method", "test_generator", "test_negative", "test_positive",
        "test_raises", "test_recursive")]
    # The first line of classify() ran in every test and between them.
    assert len(want["files"]["contexts.py"][10]) == 8


def test_static_context_from_configuration(workdir: Path) -> None:
    (workdir / "static.rc").write_text("[run]\ncontext = from-config\n")
    args = ["--rcfile=static.rc", "contexts.py"]
    run_ctrace(args, workdir, workdir / "ctrace.data")
    run_lowimpact(args, workdir, workdir / "li.data")
    want = assert_same_contexts(workdir / "li.data", workdir / "ctrace.data", workdir, False)
    assert want["contexts"] == ["from-config"]


@pytest.mark.parametrize("branch", [False, True], ids=["lines", "branches"])
def test_test_function_contexts_of_a_pytest_suite(workdir: Path, branch: bool) -> None:
    project = workdir / "project"
    shutil.copy(workdir / "test_function.rc", project)
    args = ["--rcfile=test_function.rc", "--source=pkg", *(["--branch"] if branch else []),
            "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:pytest_cov",
            "-k", "not fixture_no_cover", "tests/test_mod.py", "tests/test_contexts.py"]
    for runner, data in ((run_ctrace, "ctrace.data"), (run_lowimpact, "li.data")):
        try:
            runner(args, project, project / data)
        except AssertionError as exc:   # test_fails fails: pytest exits with 1
            assert "exited with 1" in str(exc) and "1 failed, 7 passed" in str(exc), exc
    want = assert_same_contexts(project / "li.data", project / "ctrace.data", project, branch)
    # (pytest imports the test modules by their base names.)
    assert {"test_mod.test_sign", "test_contexts.test_param", "test_contexts.test_fails"
            } <= set(want["contexts"])


def pytest_run(args: List[str], cwd: Path, extra_env=None):
    return python(["-m", "pytest", "-p", "no:cacheprovider", *args], cwd, env_for(extra_env),
                  check=False)


@pytest.mark.parametrize("branch", [False, True], ids=["lines", "branches"])
def test_pytest_plugin_contexts_same_as_pytest_cov(workdir: Path, branch: bool) -> None:
    pytest.importorskip("pytest_cov", reason="pytest-cov is the oracle (the test extra has it)")
    project = workdir / "project"
    debug = project / "debug.txt"
    reference = pytest_run(
        ["-p", "pytest_cov", "--cov=pkg", *(["--cov-branch"] if branch else []),
         "--cov-context=test", "--cov-report=", "tests/test_contexts.py"],
        project, ctrace_settings(debug))
    assert_ran_on_ctrace(debug)
    (project / ".coverage").rename(project / "ctrace.data")
    tested = pytest_run(
        [*PLUGIN, "-p", "no:pytest_cov", "--li-cov=pkg", *(["--li-cov-branch"] if branch else []),
         "--li-cov-context=test", "--li-cov-report=", "tests/test_contexts.py"], project)
    assert tested.returncode == reference.returncode == 1, tested.stdout + tested.stderr
    assert "1 failed, 6 passed" in tested.stdout
    want = assert_same_contexts(project / ".coverage", project / "ctrace.data", project, branch)
    node = "tests/test_contexts.py::"
    assert {node + "test_setup_and_teardown|" + when for when in ("setup", "run", "teardown")
            } <= set(want["contexts"])
    # no_cover: what those tests ran is not there (their fixture's setup and
    # teardown are), and label(1) ran only in the marked one.
    assert not [c for c in want["contexts"]
                if "test_marked_no_cover" in c or "test_fixture_no_cover|run" in c]
    assert node + "test_fixture_no_cover|setup" in want["contexts"]
    # coverage.py's HTML report shows them (--show-contexts).
    python(["-m", "lowimpact", "cover", "html", "--show-contexts", "-d", "html", "-q"], project)
    page = next((project / "html").glob("*mod_py.html")).read_text()
    assert "test_param[-1]|run" in page


def test_pytest_plugin_refuses_other_contexts(workdir: Path) -> None:
    proc = pytest_run([*PLUGIN, "--li-cov=pkg", "--li-cov-context=function", "tests"],
                      workdir / "project")
    assert proc.returncode == 4
    assert 'The only supported value is "test".' in proc.stderr


def test_unknown_dynamic_context_is_refused_as_coverage_does(workdir: Path) -> None:
    (workdir / "bad.rc").write_text("[run]\ndynamic_context = nope\n")
    ctrace = python(["-m", "coverage", "run", "--rcfile=bad.rc", "contexts.py"], workdir,
                    check=False)
    tested = python(["-m", "lowimpact", "cover", "run", "--rcfile=bad.rc", "contexts.py"],
                    workdir, check=False)
    assert ctrace.returncode == tested.returncode == 1
    assert "Don't understand dynamic_context setting: 'nope'" in ctrace.stdout + ctrace.stderr
    assert "Don't understand dynamic_context setting: 'nope'" in tested.stderr
    assert not list(workdir.glob(".coverage*"))


SWITCHES = '''\
import json, sys
kind, static = sys.argv[1], sys.argv[2] or None
if kind == "ctrace":
    import coverage
    cov = coverage.Coverage(data_file="switch.data", context=static)
else:
    from lowimpact.tools.cover.measure import Measurement
    cov = Measurement(data_file="switch.data", context=static)
cov.start()
returned = [cov.switch_context(label) for label in ("a", "b", None, "c", "c")]
cov.stop()
print(json.dumps(returned))
'''


@pytest.mark.parametrize("static", ["", "st"], ids=["dynamic", "static+dynamic"])
def test_switch_context_returns_the_previous_context_as_coverage_does(tmp_path: Path,
                                                                      static: str) -> None:
    (tmp_path / "switches.py").write_text(SWITCHES)
    results = {}
    for kind in ("ctrace", "lowimpact"):
        proc = python(["switches.py", kind, static], tmp_path,
                      env_for({"COVERAGE_CORE": "ctrace"}))
        results[kind] = json.loads(proc.stdout)
    prefix = static + "|" if static else ""
    expected = [static or None, prefix + "a", prefix + "b", static or None, prefix + "c"]
    assert results["lowimpact"] == expected
    # Before 7.16 (7.10 is the last for 3.9), coverage.py returns None.
    if coverage.version_info >= (7, 16):
        assert results["ctrace"] == expected
    else:
        assert results["ctrace"] == [None] * len(expected)


RESTARTED = '''\
import sys
kind, branch, saves = sys.argv[1], sys.argv[2] == "branch", sys.argv[3] == "saves"
if kind == "ctrace":
    import coverage
    cov = coverage.Coverage(data_file=kind + ".data", config_file="test_function.rc",
                            source=["pkg"], branch=branch)
else:
    from lowimpact.tools.cover.measure import Measurement
    cov = Measurement(data_file=kind + ".data", rcfile="test_function.rc", source=["pkg"],
                      branch=branch)
cov.start()
from pkg.mod import label, sign


def test_sign(n):
    assert sign(n) in (-1, 0, 1)


test_sign(1)
label(5)
cov.stop()
if saves:
    cov.save()
test_sign(-1)   # not measured
cov.start()
test_sign(0)
if saves:
    cov.save()   # while measuring
label(4)
cov.stop()
cov.start()
test_sign(-2)
cov.stop()
cov.save()
'''


@pytest.mark.parametrize("saves", [False, True], ids=["saved-at-end", "saved-between"])
@pytest.mark.parametrize("branch", [False, True], ids=["lines", "branches"])
def test_stopped_and_started_again_same_as_ctrace(workdir: Path, branch: bool,
                                                  saves: bool) -> None:
    # Coverage.stop() and start() again (what pytest-cov does around a
    # no_cover test): the data goes on, and test contexts start and end.
    # Saved in between too, the data file ends with all of it, as
    # coverage.py's does.
    project = workdir / "project"
    shutil.copy(workdir / "test_function.rc", project)
    (project / "restarted.py").write_text(RESTARTED)
    env = env_for({"COVERAGE_CORE": "ctrace"})
    for kind in ("ctrace", "li"):
        python(["restarted.py", kind, "branch" if branch else "lines",
                "saves" if saves else "once"], project, env)
    want = assert_same_contexts(project / "li.data", project / "ctrace.data", project, branch)
    assert want["contexts"] == ["", "__main__.test_sign"]
    # sign(1) before the first stop, sign(0) and sign(-2) after restarts,
    # sign(-1) not measured; label() ran in no context.
    lines = want["files"]["mod.py"]
    assert lines[3] == lines[5] == lines[6] == ["__main__.test_sign"]
    assert lines[10] == [""]


FIXTURES = '''\
import pytest


def step(n):
    return n + 1


@pytest.fixture
def per_test():
    value = step(1)
    yield value
    if value > 5:
        step(3)
    step(2)


@pytest.fixture(scope="module")
def per_module():
    for value in [1]:
        yield step(value)
    step(4)
'''

FIXTURE_TESTS = '''\
from pkg.fixtures import per_module, per_test  # noqa: F401


def test_first(per_test, per_module):
    assert per_test == 2


def test_second(per_test):
    assert per_test == 2


def test_last(per_module):
    assert per_module == 2
'''


def test_yield_fixture_resumed_in_the_next_phase_same_as_pytest_cov(workdir: Path) -> None:
    # A generator resumed in another context than the one it yielded in (a
    # measured yield fixture: set up in one test's |setup, resumed in its
    # |teardown, or the last test's for a module fixture): with --branch,
    # the C tracer records the step from the yield line to the next line in
    # the context it resumes in, so the yield line ran there too.
    pytest.importorskip("pytest_cov", reason="pytest-cov is the oracle (the test extra has it)")
    project = workdir / "project"
    (project / "pkg" / "fixtures.py").write_text(FIXTURES)
    (project / "tests" / "test_fixtures.py").write_text(FIXTURE_TESTS)
    reference = pytest_run(
        ["-p", "pytest_cov", "--cov=pkg", "--cov-branch", "--cov-context=test", "--cov-report=",
         "tests/test_fixtures.py"], project, {"COVERAGE_CORE": "ctrace"})
    assert reference.returncode == 0, reference.stdout + reference.stderr
    (project / ".coverage").rename(project / "ctrace.data")
    tested = pytest_run(
        [*PLUGIN, "-p", "no:pytest_cov", "--li-cov=pkg", "--li-cov-branch",
         "--li-cov-context=test", "--li-cov-report=", "tests/test_fixtures.py"], project)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    want = assert_same_contexts(project / ".coverage", project / "ctrace.data", project, True)
    node = "tests/test_fixtures.py::"
    # The yield lines: per_test's in each test's setup and teardown, and
    # per_module's in test_first's setup and test_last's teardown.
    lines = want["files"]["fixtures.py"]
    assert lines[11] == sorted(node + test + "|" + when for test in ("test_first", "test_second")
                               for when in ("setup", "teardown"))
    assert node + "test_last|teardown" in lines[20]


THREADED = '''\
import threading

from pkg.mod import label, sign


def test_outer():
    sign(1)
    worker = threading.Thread(target=test_inner)
    worker.start()
    worker.join()
    label(2)


def test_inner():
    sign(-1)


test_outer()
'''


def test_test_function_contexts_of_threads_same_as_ctrace(workdir: Path) -> None:
    # The C tracer starts test_inner's context in its thread while
    # test_outer's is active in the main thread, and ends it when
    # test_inner returns: label(2) is then in no context.
    project = workdir / "project"
    shutil.copy(workdir / "test_function.rc", project)
    (project / "threaded.py").write_text(THREADED)
    args = ["--rcfile=test_function.rc", "--source=pkg", "threaded.py"]
    run_ctrace(args, project, project / "ctrace.data")
    run_lowimpact(args, project, project / "li.data")
    want = assert_same_contexts(project / "li.data", project / "ctrace.data", project, False)
    assert want["contexts"] == ["", "__main__.test_inner", "__main__.test_outer"]


THROWN = '''\
from pkg.mod import label, sign


def test_generator():
    try:
        sign(1)
        yield
        sign(-1)
    finally:
        label(3)


generator = test_generator()
next(generator)
label(1)
generator.close()
label(2)
'''


@pytest.mark.parametrize("branch", [False, True], ids=["lines", "branches"])
def test_test_generator_thrown_into_same_as_ctrace(workdir: Path, branch: bool) -> None:
    # close() throws GeneratorExit into the suspended test generator: the
    # C tracer gets a call event and starts its context again, so its
    # finally block (label(3)) runs in the test's context, label(2) in none.
    project = workdir / "project"
    shutil.copy(workdir / "test_function.rc", project)
    (project / "thrown.py").write_text(THROWN)
    args = ["--rcfile=test_function.rc", "--source=pkg", *(["--branch"] if branch else []),
            "thrown.py"]
    run_ctrace(args, project, project / "ctrace.data")
    run_lowimpact(args, project, project / "li.data")
    want = assert_same_contexts(project / "li.data", project / "ctrace.data", project, branch)
    assert want["files"]["mod.py"][10] == ["", "__main__.test_generator"]
