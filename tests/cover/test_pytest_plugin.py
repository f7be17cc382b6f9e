"""lowimpact cover's pytest plugin (``--li-cov...``) against pytest-cov on
coverage.py's C tracer (``--cov...``), the same tests of the same project:
the same ``coverage json``, the same exit status for ``fail-under``, both
plugins loaded together, and nothing of lowimpact's measuring imported when
``--li-cov`` is not given.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from .helpers import PROGRAMS, assert_ran_on_ctrace, ctrace_settings, describe, env_for, python

pytest.importorskip("pytest_cov", reason="pytest-cov is the oracle (the test extra has it)")

PLUGIN = ["-p", "lowimpact.tools.cover.pytest_plugin"]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    target = tmp_path / "project"
    shutil.copytree(PROGRAMS / "pytest_project", target,
                    ignore=shutil.ignore_patterns("__pycache__"))
    return target


def pytest_run(args, cwd: Path, extra_env=None):
    env = env_for(extra_env)
    env.setdefault("IMPORTS_FILE", str(cwd / "imports.txt"))
    return python(["-m", "pytest", "-p", "no:cacheprovider", *args], cwd, env, check=False)


def report(path: Path) -> dict:
    content = json.loads(path.read_text())
    content.pop("meta")
    return content


@pytest.mark.parametrize("branch", [False, True], ids=["lines", "branches"])
def test_same_report_and_status_as_pytest_cov(branch: bool, project: Path) -> None:
    debug = project / "debug.txt"
    ctrace = pytest_run(
        ["-p", "pytest_cov", "--cov=pkg", *(["--cov-branch"] if branch else []),
         "--cov-report=json:ctrace.json", "--cov-fail-under=95", "tests/test_mod.py"],
        project, ctrace_settings(debug))
    assert_ran_on_ctrace(debug)
    (project / ".coverage").unlink()
    tested = pytest_run(
        [*PLUGIN, "--li-cov=pkg", *(["--li-cov-branch"] if branch else []),
         "--li-cov-report=json:li.json", "--li-cov-fail-under=95", "tests/test_mod.py"],
        project)
    reference = report(project / "ctrace.json")
    assert reference["totals"]["percent_covered"] < 95 and (
        reference["totals"].get("num_branches", 0) > 0) == branch
    assert report(project / "li.json") == reference, describe(reference,
                                                              report(project / "li.json"))
    # Tests passed, coverage too low: both fail the session the same way.
    assert tested.returncode == ctrace.returncode == 1, tested.stdout + tested.stderr
    assert "2 passed" in tested.stdout
    assert "FAIL Required test coverage of 95% not reached" in tested.stdout


@pytest.mark.parametrize("branch", [False, True], ids=["lines", "branches"])
def test_xdist_workers_same_report_as_pytest_cov(branch: bool, project: Path) -> None:
    # The tests run in two workers only: the controller imports neither
    # them nor pkg, so what is covered comes from the workers' data.
    pytest.importorskip("xdist", reason="pytest-xdist runs the workers (the test extra has it)")
    ctrace = pytest_run(
        ["-p", "pytest_cov", "-p", "xdist", "-n", "2", "--cov=pkg",
         *(["--cov-branch"] if branch else []), "--cov-report=json:ctrace.json",
         "tests/test_mod.py"],
        project, {"COVERAGE_CORE": "ctrace"})
    assert ctrace.returncode == 0, ctrace.stdout + ctrace.stderr
    (project / ".coverage").unlink()
    tested = pytest_run(
        [*PLUGIN, "-p", "xdist", "-n", "2", "--li-cov=pkg", *(["--li-cov-branch"] if branch else []),
         "--li-cov-report=json:li.json", "--li-cov-report=subline", "tests/test_mod.py"],
        project)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "2 passed" in tested.stdout
    reference = report(project / "ctrace.json")
    assert reference["totals"]["covered_lines"] > 0
    assert report(project / "li.json") == reference, describe(reference,
                                                              report(project / "li.json"))
    # One report, by the controller; the workers' parallel files are combined away.
    assert tested.stdout.count("tests coverage (lowimpact)") == 1
    assert "CoverageWarning" not in tested.stdout + tested.stderr
    assert sorted(p.name for p in project.glob(".coverage*")) == (
        [".coverage", ".coverage-subline.json"] if branch else [".coverage"])
    if branch:
        assert "false: MISSED   true: ran" in tested.stdout


def test_terminal_report_and_threshold_reached(project: Path) -> None:
    proc = pytest_run([*PLUGIN, "--li-cov=pkg", "--li-cov-branch", "--li-cov-report=term-missing",
                       "--li-cov-report=subline", "--li-cov-fail-under=50", "tests/test_mod.py"],
                      project)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"pkg/mod\.py\s+10\s+2\s+4\s+1\s+79%\s+5, 14", proc.stdout), proc.stdout
    assert "Required test coverage of 50% reached" in proc.stdout
    # label(): the conditional expression's false direction never ran.
    assert "false: MISSED   true: ran" in proc.stdout


def test_both_plugins_load_side_by_side(project: Path) -> None:
    proc = pytest_run(["-p", "pytest_cov", *PLUGIN, "--help"], project)
    assert proc.returncode == 0, proc.stderr
    assert "--li-cov-fail-under" in proc.stdout and "--cov-fail-under" in proc.stdout


def test_costs_nothing_when_not_enabled(project: Path) -> None:
    proc = pytest_run([*PLUGIN, "-p", "no:pytest_cov", "tests/test_imports.py"], project)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    imported = set((project / "imports.txt").read_text().split())
    assert "lowimpact.tools.cover.pytest_plugin" in imported   # it was loaded...
    for name in ("coverage", "lowimpact.monitoring", "lowimpact._engine", "lowimpact._cover",
                 "lowimpact.tools.cover.measure"):
        assert name not in imported                              # ...and did nothing
    assert not (project / ".coverage").exists()


@pytest.mark.parametrize("option", ["--li-cov-report=bogus", "--li-cov-fail-under=101"])
def test_bad_options(option: str, project: Path) -> None:
    proc = pytest_run([*PLUGIN, "--li-cov=pkg", option, "tests/test_mod.py"], project)
    assert proc.returncode == 4   # pytest's usage error
    assert option.split("=")[0] in proc.stderr
    assert not (project / ".coverage").exists()
