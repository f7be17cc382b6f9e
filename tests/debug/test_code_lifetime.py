"""The debugger keeps no code object alive that the program dropped: a
program that compiles functions at run time runs in the memory it runs in
under pdb, whatever breakpoints are set."""

from __future__ import annotations

import sys

import pytest

from .helpers import PROGRAMS, compare

pytestmark = pytest.mark.skipif(sys.version_info < (3, 9),
                                reason="lowimpact.monitoring needs CPython 3.9+")


def test_dropped_code_dies_as_under_pdb(tmp_path):
    # A breakpoint in the file makes the debugger discover every code object
    # that starts (PY_START), the generated ones included.
    out = compare([str(PROGRAMS / "generated_code.py")], ["b 19", "c", "q"], tmp_path)
    assert "alive 0" in out
