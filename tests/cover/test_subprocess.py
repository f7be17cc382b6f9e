"""Processes the measured program starts are measured, as under coverage.py's
``[run] patch = subprocess``: ``subprocess.run([sys.executable, ...])`` and
multiprocessing's spawn, fork and forkserver children each write a parallel
data file; ``cover combine`` merges them; ``coverage json`` of the result
equals that of coverage.py's C tracer given the same configuration.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from lowimpact.tools.cover import startup
from .helpers import copy_programs, describe, env_for, python, run_ctrace, run_lowimpact

METHODS = ["subprocess", "spawn"] + (["fork", "forkserver"] if sys.platform == "linux" else [])


@pytest.fixture
def hooked_env(tmp_path: Path) -> dict:
    """The environment of a Python where lowimpact's start-up hook runs.

    An installed lowimpact has the hook in site-packages.  An in-place build
    (src/ on PYTHONPATH) has not: then site runs it from a directory that a
    sitecustomize module adds with site.addsitedir(), which processes .pth
    files exactly as for site-packages.
    """
    env = env_for()
    if startup.hook_installed():
        return env
    source = Path(__file__).parents[2] / "src" / "cover" / startup.PTH_FILE
    assert source.is_file(), "lowimpact's start-up hook is neither installed nor in src/"
    site_dir = tmp_path / "site"
    site_dir.mkdir()
    (site_dir / startup.PTH_FILE).write_text(source.read_text())
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text("import site\nsite.addsitedir(%r)\n" % str(site_dir))
    env["PYTHONPATH"] = os.pathsep.join([env["PYTHONPATH"], str(shim)])
    return env


@pytest.mark.parametrize("branch", [False, True], ids=["lines", "branches"])
def test_children_same_report_as_ctrace(branch: bool, tmp_path: Path, hooked_env: dict) -> None:
    programs = copy_programs(tmp_path)
    (programs / ".coveragerc").write_text(
        "[run]\npatch = subprocess\nsource = .\nbranch = %s\n" % branch)
    args = ("spawner.py", *METHODS)
    (tmp_path / "ctrace").mkdir()
    (tmp_path / "lowimpact").mkdir()
    reference = run_ctrace(args, programs, tmp_path / "ctrace" / ".coverage", processes=4,
                           combine=True)
    tested = run_lowimpact(args, programs, tmp_path / "lowimpact" / ".coverage", hooked_env,
                           combine=True)
    child = reference["files"]["spawned_child.py"]
    assert child["executed_lines"], "ctrace did not measure the subprocess"
    # square() ran only in multiprocessing children.
    assert 7 in reference["files"]["spawner.py"]["executed_lines"]
    assert tested == reference, describe(reference, tested)


def test_not_measured_without_the_patch(tmp_path: Path, hooked_env: dict) -> None:
    programs = copy_programs(tmp_path)
    python(["-m", "lowimpact", "cover", "run", "--source=.", "spawner.py", "subprocess"],
           programs, hooked_env)
    assert not list(programs.glob(".coverage.*"))
    assert (programs / ".coverage").exists()


def test_warns_when_the_hook_is_not_installed(tmp_path: Path) -> None:
    if startup.hook_installed():
        pytest.skip("lowimpact is installed with its start-up hook")
    programs = copy_programs(tmp_path)
    (programs / ".coveragerc").write_text("[run]\npatch = subprocess\nsource = .\n")
    proc = python(["-m", "lowimpact", "cover", "run", "spawner.py", "subprocess"], programs)
    assert "subprocesses will not be measured" in proc.stderr
    assert startup.PTH_FILE in proc.stderr


def test_unknown_patch_is_an_error(tmp_path: Path) -> None:
    programs = copy_programs(tmp_path)
    (programs / ".coveragerc").write_text("[run]\npatch = frobnicate\n")
    proc = python(["-m", "lowimpact", "cover", "run", "spawned_child.py", "1"], programs,
                  check=False)
    assert proc.returncode == 1 and "frobnicate" in proc.stderr
    assert "small" not in proc.stdout
    assert not (programs / ".coverage").exists() and not list(programs.glob(".coverage.*"))
