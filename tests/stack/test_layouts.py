"""The layout tables against the headers, and the line table decoders
against the interpreter's own line numbers."""

from __future__ import annotations

import os
import subprocess
import sys
import types
from typing import Iterator

import pytest

from .conftest import HERE, MINORS, find_python

_stack = pytest.importorskip("lowimpact._stack")  # built on Linux only

ROOT = os.path.dirname(os.path.dirname(HERE))
GENERATOR = os.path.join(ROOT, "scripts", "gen_stack_layouts.py")


@pytest.mark.parametrize("minor", MINORS, ids=["3.%d" % m for m in MINORS])
def test_table_matches_headers(minor):
    python = find_python(minor)
    if python is None:
        pytest.skip("CPython 3.%d is not installed" % minor)
    if not os.path.isfile(GENERATOR):
        pytest.skip("not a source checkout")
    result = subprocess.run([sys.executable, GENERATOR, "--check", python],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert result.returncode == 0, result.stdout
    assert "matches" in result.stdout


def test_debug_offsets_of_313_agree_with_its_headers():
    """What 3.13 publishes in _Py_DebugOffsets is what its headers say."""
    python = find_python(13)
    if python is None:
        pytest.skip("CPython 3.13 is not installed")
    child = subprocess.Popen([python, "-c", "import sys; print(1, flush=True); sys.stdin.read()"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        child.stdout.readline()
        used = _stack.Reader(child.pid).layout
    finally:
        child.stdin.close()
        child.wait()
    table = {}
    with open(os.path.join(ROOT, "src", "stack", "layouts", "py313.h")) as f:
        for line in f:
            line = line.strip()
            if line.startswith(".") and "=" in line:
                name, value = line[1:].rstrip(",").split(" = ")
                table[name] = value
    for name, value in used.items():
        assert str(value) == table[name], name


def _format() -> int:
    return {(3, 9): 1, (3, 10): 2}.get(sys.version_info[:2], 3)


def _codes() -> Iterator[types.CodeType]:
    import argparse
    import asyncio.base_events
    import difflib
    import json.decoder
    import textwrap

    stack = [m.__spec__.loader.get_code(m.__name__)
             for m in (argparse, asyncio.base_events, difflib, json.decoder, textwrap)]
    while stack:
        code = stack.pop()
        yield code
        stack.extend(c for c in code.co_consts if isinstance(c, types.CodeType))


def _expected_lines(code: types.CodeType):
    """(offset, line) for every code unit, as the interpreter computes them."""
    if hasattr(code, "co_lines"):
        for start, end, line in code.co_lines():
            for offset in range(start, end, 2):
                yield offset, (-1 if line is None else line)
        return
    import dis

    starts = list(dis.findlinestarts(code))
    line = code.co_firstlineno
    for offset in range(0, len(code.co_code), 2):
        for start, start_line in starts:
            if start <= offset:
                line = start_line
        yield offset, line


def test_line_tables_as_the_interpreter():
    fmt = _format()
    checked = 0
    for code in _codes():
        table = code.co_lnotab if fmt == 1 else code.co_linetable
        for offset, line in _expected_lines(code):
            got = _stack.line_of(fmt, table, code.co_firstlineno, offset)
            assert got == line, (code, offset)
            checked += 1
    assert checked > 10000


def test_line_before_the_first_instruction():
    code = test_line_tables_as_the_interpreter.__code__
    table = code.co_lnotab if _format() == 1 else code.co_linetable
    assert _stack.line_of(_format(), table, code.co_firstlineno, -2) == code.co_firstlineno
