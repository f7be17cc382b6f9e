"""Running a program under stdlib pdb and under ``lowimpact debug`` with
the same commands on stdin, and comparing what they print."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence

PROGRAMS = Path(__file__).parent / "programs"
TIMEOUT = 60


def env_for(home: Path, extra: Optional[Mapping[str, str]] = None) -> dict:
    """The caller's environment with lowimpact importable, HOME (whose
    .pdbrc pdb reads) in *home*, and no breakpoint() hook of its own."""
    import lowimpact

    root = os.path.dirname(os.path.dirname(os.path.abspath(lowimpact.__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    env["HOME"] = str(home)
    env.pop("PYTHONBREAKPOINT", None)
    env["PYTHON_COLORS"] = "0"
    env.update(extra or {})
    return env


def session(launcher: Sequence[str], args: Sequence[str], commands: Sequence[str],
            cwd: Path, env: Optional[Mapping[str, str]] = None) -> str:
    """What ``python <launcher> <args>`` prints (stdout and stderr, in
    order) given *commands* on stdin, normalised by :func:`normalise`."""
    proc = subprocess.run(
        [sys.executable, *launcher, *args],
        input="".join(c + "\n" for c in commands),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        cwd=cwd, env=dict(env or env_for(cwd)), timeout=TIMEOUT,
    )
    return normalise(proc.stdout)


PDB = ["-m", "pdb"]
LOWIMPACT = ["-m", "lowimpact", "debug"]

# The frame that runs the program is bdb's run() under pdb and the
# debugger's own run() under lowimpact: both print it in 'where' and in
# tracebacks, with their own file and line.
_RUN_FRAME = re.compile(
    r"""(?P<file>\S*(?:/bdb\.py|/lowimpact/tools/debug\.py))(?:\((?P<l1>\d+)\)|", line (?P<l2>\d+),)""")


def normalise(text: str) -> str:
    text = _RUN_FRAME.sub(lambda m: "<debugger run>", text)
    return "\n".join(line.rstrip() for line in text.splitlines())


def compare(args: Sequence[str], commands: Sequence[str], cwd: Path,
            env: Optional[Mapping[str, str]] = None,
            fix_pdb: Optional[Callable[[str], str]] = None) -> str:
    """Run *args* under both debuggers; assert they print the same (after
    *fix_pdb* corrects a known fault of this version's pdb); return it."""
    expected = session(PDB, args, commands, cwd, env)
    if fix_pdb is not None:
        expected = fix_pdb(expected)
    actual = session(LOWIMPACT, args, commands, cwd, env)
    assert actual == expected, "lowimpact debug differs from pdb:\n" + _diff(expected, actual)
    return actual


def _diff(expected: str, actual: str) -> str:
    import difflib

    return "\n".join(difflib.unified_diff(expected.splitlines(), actual.splitlines(),
                                          "pdb", "lowimpact debug", lineterm=""))
