"""The layout tables against the headers, and the line table decoders
against the interpreter's own line numbers."""

from __future__ import annotations

import os
import subprocess
import sys
import types
from typing import Iterator

import pytest

from lowimpact._lines import co_lines

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


def _table(minor):
    fields = {}
    with open(os.path.join(ROOT, "src", "stack", "layouts", "py3%02d.h" % minor)) as f:
        for line in f:
            line = line.strip()
            if line.startswith(".") and " = " in line:
                name, value = line[1:].rstrip(",").split(" = ")
                fields[name] = value
    return fields


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
    table = _table(13)
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
        for start, end, line in co_lines(code):
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


_PRIVATE_DICT_PROBE = r"""
import ctypes, sys
f = {k: int(v) for k, v in (a.split("=") for a in sys.argv[1:])}
def word(address):
    return ctypes.c_ssize_t.from_address(address).value
d = {}
keys = ["k%d" % i for i in range(20)]
values = [object() for _ in keys]
for k, v in zip(keys, values):
    d[k] = v
table = word(id(d) + f["dict_keys"])
size = word(table + f["keys_size"])
entries = table + f["keys_indices"] + size * (1 if size <= 0xff else 2)
assert word(table + f["keys_nentries"]) == len(d), "dk_nentries"
for i, (k, v) in enumerate(zip(keys, values)):
    e = entries + i * f["entry_size"]
    assert word(e + f["entry_hash"]) == hash(k), ("me_hash", i)
    assert word(e + f["entry_key"]) == id(k), ("me_key", i)
    assert word(e + f["entry_value"]) == id(v), ("me_value", i)
print("ok")
"""


@pytest.mark.parametrize("minor", [9, 10], ids=["3.9", "3.10"])
def test_private_dict_keys_declaration(minor):
    """3.9 and 3.10 do not install the header of a dict's keys object: the
    generator declares it, and a live dict of that version is read through
    the table made from that declaration."""
    python = find_python(minor)
    if python is None:
        pytest.skip("CPython 3.%d is not installed" % minor)
    table = _table(minor)
    assert table["keys_format"] == "LI_DICT_KEYS_SIZE"
    names = ["dict_keys", "keys_size", "keys_indices", "keys_nentries", "entry_size",
             "entry_hash", "entry_key", "entry_value"]
    out = subprocess.run([python, "-c", _PRIVATE_DICT_PROBE]
                         + ["%s=%s" % (n, table[n]) for n in names],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert out.stdout == "ok\n", out.stdout


_LONG_PROBE = r"""
import ctypes, sys
f = dict(arg.split("=") for arg in sys.argv[1:])
tagged = f["long_format"] == "LI_LONG_TAG"
size_at, digits_at, bits = int(f["long_size"]), int(f["long_digits"]), int(f["long_digit_bits"])
shift, sign_mask, negative = (int(f["long_tag_shift"]), int(f["long_sign_mask"]),
                              int(f["long_sign_negative"]))

def decode(n):
    raw = ctypes.string_at(id(n), digits_at)
    size = int.from_bytes(raw[size_at:size_at + 8], "little", signed=not tagged)
    if tagged:
        if size & sign_mask == negative:
            return "negative"
        ndigits = size >> shift
    else:
        if size < 0:
            return "negative"
        ndigits = size
    # (Only the digits it has: the allocation ends there.)
    raw += ctypes.string_at(id(n) + digits_at, 4 * ndigits)
    value = 0
    for i in reversed(range(ndigits)):
        value = value << bits | int.from_bytes(raw[digits_at + 4 * i:digits_at + 4 * i + 4],
                                               "little")
    return value

values = [0, 1, 5, 2**30 - 1, 2**30, 2**31 + 5, 2**59 + 3, 4194304, 123456]
for n in values:
    n = int(str(n))     # (not a cached constant: made as an int is at run time)
    assert decode(n) == n, (n, decode(n))
assert decode(int("-5")) == "negative"
print("ok")
"""


@pytest.mark.parametrize("minor", MINORS, ids=["3.%d" % m for m in MINORS])
def test_long_fields_decode_live_ints(minor):
    """The table's int fields (a Thread's _native_id is read through them)
    decode ints of that version as they are in memory."""
    python = find_python(minor)
    if python is None:
        pytest.skip("CPython 3.%d is not installed" % minor)
    table = _table(minor)
    names = ["long_format", "long_size", "long_digits", "long_digit_bits", "long_tag_shift",
             "long_sign_mask", "long_sign_negative"]
    out = subprocess.run([python, "-c", _LONG_PROBE] + ["%s=%s" % (n, table[n]) for n in names],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert out.stdout == "ok\n", out.stdout
