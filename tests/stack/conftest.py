"""Fixtures of the stack reader's tests: CPython 3.9-3.13 children parked
in a known stack (parked.py)."""

from __future__ import annotations

import glob
import json
import os
import re
import subprocess
import sys
from typing import Dict, Iterator, List, NamedTuple, Optional, Tuple

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
PARKED = os.path.join(HERE, "parked.py")
MINORS = (9, 10, 11, 12, 13)


def find_python(minor: int) -> Optional[str]:
    """The newest pyenv CPython 3.minor (or this interpreter if it is one)."""
    if sys.version_info[:2] == (3, minor):
        return sys.executable
    root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    for candidate in sorted(glob.glob(os.path.join(root, "versions", "3.%d.*" % minor)),
                            reverse=True):
        python = os.path.join(candidate, "bin", "python3.%d" % minor)
        if os.access(python, os.X_OK):
            return python
    return None


def markers(path: str = PARKED) -> Dict[str, int]:
    """{marker name: line} of the ``# at: NAME`` comments of a test program."""
    found = {}
    with open(path) as f:
        for number, line in enumerate(f, 1):
            m = re.search(r"# at: (\w+)", line)
            if m:
                found[m.group(1)] = number
    return found


class Parked(NamedTuple):
    process: subprocess.Popen
    python: str
    version: Tuple[int, int]
    code_ids: Dict[str, int]


def start_parked(python: str, *args: str) -> Parked:
    process = subprocess.Popen([python, PARKED, *args], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith("ready "):
        process.kill()
        process.wait()
        raise AssertionError("parked child did not start: %r" % line)
    out = subprocess.check_output([python, "-c", "import sys; print(*sys.version_info[:2])"],
                                  text=True)
    major, minor = (int(x) for x in out.split())
    return Parked(process, python, (major, minor), json.loads(line[len("ready "):]))


def stop_parked(parked: Parked) -> None:
    assert parked.process.stdin is not None
    parked.process.stdin.close()
    assert parked.process.wait(timeout=30) == 0


@pytest.fixture(params=MINORS, ids=["3.%d" % m for m in MINORS])
def parked(request) -> Iterator[Parked]:
    python = find_python(request.param)
    if python is None:
        pytest.skip("CPython 3.%d is not installed" % request.param)
    child = start_parked(python)
    try:
        yield child
    finally:
        stop_parked(child)


def expected_main_stack(version: Tuple[int, int]) -> List[Tuple[str, int]]:
    """(name, line) of parked.py's main thread, outermost first."""
    at = markers()
    qual = version >= (3, 11)
    return [
        ("<module>", at["module"]),
        ("main", at["main"]),
        ("nested", at["nested"]),
        ("nested.<locals>.inner" if qual else "inner", at["inner"]),
        ("Klass.method" if qual else "method", at["method"]),
        ("Klass.method.<locals>.<lambda>" if qual else "<lambda>", at["method"]),
        ("generator", at["generator"]),
        ("coroutine", at["coroutine"]),
        ("innermost", at["innermost"]),
    ]


def expected_worker_stack() -> List[Tuple[str, int]]:
    at = markers()
    return [("worker", at["worker"]), ("worker_inner", at["worker_inner"])]
