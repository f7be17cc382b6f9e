"""Running a program under ``python -m cProfile`` (the oracle) and under
``python -m lowimpact profile``, and reading what they write."""

from __future__ import annotations

import marshal
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, Iterable, Sequence, Tuple

import pytest

PROGRAMS = Path(__file__).parent / "programs"
TIMEOUT = 120

needs_engine = pytest.mark.skipif(
    sys.version_info < (3, 9),
    reason="lowimpact profile needs lowimpact.monitoring, which starts at 3.9")

Key = Tuple[str, int, str]


def env() -> dict:
    import lowimpact

    root = os.path.dirname(os.path.dirname(os.path.abspath(lowimpact.__file__)))
    return dict(os.environ, PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))


def python(args: Sequence[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, *args], cwd=cwd, env=env(), capture_output=True,
                          text=True, timeout=TIMEOUT)
    if check and proc.returncode != 0:
        raise AssertionError("%s exited with %d\n--- stdout\n%s\n--- stderr\n%s"
                             % (" ".join(args[:6]), proc.returncode, proc.stdout, proc.stderr))
    return proc


def load(path: Path) -> dict:
    with open(path, "rb") as f:
        return marshal.load(f)


def profile_both(program: str, tmp_path: Path) -> Tuple[dict, dict]:
    """The pstats dicts cProfile and lowimpact profile write for *program*."""
    script = str(PROGRAMS / program)
    python(["-m", "cProfile", "-o", str(tmp_path / "c.prof"), script], tmp_path)
    python(["-m", "lowimpact", "profile", "-o", str(tmp_path / "l.prof"), script], tmp_path)
    return load(tmp_path / "c.prof"), load(tmp_path / "l.prof")


def counts(stats: dict, scope: Iterable[str]) -> Dict[Key, tuple]:
    """{function: (primitive calls, calls, {caller: (calls, primitive calls)})} for the
    functions of files in *scope*, and the calls from those to anything (C
    functions included): what both profilers see the same way."""
    scope = tuple(scope)

    def inside(key: Key) -> bool:
        return key[0].startswith(scope)

    result = {}
    for key, (cc, nc, _tt, _ct, callers) in stats.items():
        kept = {caller: value[:2] for caller, value in callers.items() if inside(caller)}
        if inside(key):
            result[key] = (cc, nc, {c: v[:2] for c, v in callers.items()
                                    if inside(c) or c[0] == "~"})
        elif kept and not key[0].startswith("<frozen importlib"):
            # (The two command lines import different modules before the
            # program starts: its first import of one that only cProfile's
            # imported (dataclasses, with pstats) runs the import system under
            # lowimpact only.)
            result[key] = (sum(v[1] for v in kept.values()), sum(v[0] for v in kept.values()),
                           kept)
    return result
