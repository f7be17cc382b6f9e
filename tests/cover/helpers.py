"""Running ``lowimpact cover`` and coverage.py's C tracer on the same program."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Mapping, Optional, Sequence

from clients.test_coverage_sysmon import subprocess_env

PROGRAMS = Path(__file__).parent / "programs"
CLIENT_PROGRAMS = Path(__file__).parent.parent / "clients" / "programs"
TIMEOUT = 180


def env_for(extra: Optional[Mapping[str, str]] = None) -> dict:
    """The caller's environment without coverage.py settings, with lowimpact
    importable (tests/clients' environment, less its core selection)."""
    env = subprocess_env("none", Path(os.devnull))
    for key in ("COVERAGE_CORE", "COVERAGE_DEBUG", "COVERAGE_DEBUG_FILE"):
        env.pop(key)
    env.update(extra or {})
    return env


def python(args: Sequence[str], cwd: Path, env: Optional[Mapping[str, str]] = None,
           check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, *args], cwd=cwd, env=dict(env or env_for()),
                          capture_output=True, text=True, timeout=TIMEOUT)
    if check and proc.returncode != 0:
        raise AssertionError("%s exited with %d\n--- stdout\n%s\n--- stderr\n%s"
                             % (" ".join(args[:6]), proc.returncode, proc.stdout, proc.stderr))
    return proc


# Programs in 3.11 syntax (`except*`) are named *_py311.py, in 3.10 syntax
# (`match`) *_py310.py; before those versions they are left out, or
# coverage.py's reports of a --source directory holding them fail to parse
# them.
_LEFT_OUT = ("__pycache__",) + tuple(
    "*_py%d%d.py" % version for version in ((3, 10), (3, 11)) if sys.version_info < version)


def copy_programs(tmp_path: Path) -> Path:
    target = tmp_path / "programs"
    shutil.copytree(PROGRAMS, target, ignore=shutil.ignore_patterns(*_LEFT_OUT))
    shutil.copytree(CLIENT_PROGRAMS, target, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns(*_LEFT_OUT))
    return target


def ctrace_settings(debug: Path) -> dict:
    """Environment settings that put coverage.py on its C tracer and have each
    process it measures name its tracer in *debug* ("sys": coverage.py 7.10,
    the last for 3.9, has no "core" debug output)."""
    return {"COVERAGE_CORE": "ctrace", "COVERAGE_DEBUG": "sys",
            "COVERAGE_DEBUG_FILE": str(debug)}


def assert_ran_on_ctrace(debug: Path, processes: int = 1) -> None:
    used = re.findall(r"^ *core: (\w+)$", debug.read_text(), re.MULTILINE)
    assert set(used) == {"CTracer"} and len(used) >= processes, (
        "the oracle did not run on ctrace: %r" % used)


def run_ctrace(run_args: Sequence[str], cwd: Path, data_file: Path, processes: int = 1,
               combine: bool = False) -> dict:
    """``coverage run`` on coverage.py's C tracer (checked through its debug
    output: *processes* or more processes, all on ctrace), then ``coverage
    json`` (after ``coverage combine``): the oracle."""
    debug = data_file.parent / "debug.txt"
    python(["-m", "coverage", "run", "--data-file=" + str(data_file), *run_args], cwd,
           env_for(ctrace_settings(debug)))
    assert_ran_on_ctrace(debug, processes)
    if combine:
        python(["-m", "coverage", "combine", "-q", "--data-file=" + str(data_file)], cwd, env_for())
    return coverage_json(data_file, cwd)


def run_lowimpact(run_args: Sequence[str], cwd: Path, data_file: Path,
                  env: Optional[Mapping[str, str]] = None, combine: bool = False) -> dict:
    python(["-m", "lowimpact", "cover", "run", "--data-file=" + str(data_file), *run_args], cwd,
           env)
    if combine:
        python(["-m", "lowimpact", "cover", "combine", "-q", "--data-file=" + str(data_file)], cwd,
               env)
    return coverage_json(data_file, cwd)


def coverage_json(data_file: Path, cwd: Path) -> dict:
    """coverage.py's own JSON report of *data_file* (coverage.py, not lowimpact, reads it)."""
    out = data_file.parent / (data_file.name + ".json")
    python(["-m", "coverage", "json", "--data-file=" + str(data_file), "-o", str(out), "-q"],
           cwd, env_for())
    report = json.loads(out.read_text())
    report.pop("meta")
    return report


def describe(reference: dict, tested: dict) -> str:
    """What differs between two ``coverage json`` reports, per file and key."""
    lines = []
    for name in sorted(set(reference["files"]) | set(tested["files"])):
        ref, got = reference["files"].get(name), tested["files"].get(name)
        if ref is None or got is None:
            lines.append("%s: only in %s" % (name, "lowimpact" if ref is None else "ctrace"))
            continue
        for key in ("executed_lines", "missing_lines", "executed_branches", "missing_branches"):
            if ref.get(key) != got.get(key):
                lines.append("%s %s\n  ctrace    %s\n  lowimpact %s"
                             % (name, key, ref.get(key), got.get(key)))
    if not lines and reference != tested:
        lines.append("same lines and branches, other differences (totals, regions)")
    return "\n".join(lines)
