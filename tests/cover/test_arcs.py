"""arcs.CodeMap reads ``co_code`` itself: what it reads must be what
``dis.get_instructions`` gives (instructions, jump targets, successors,
the columns of branch points), on every code object of real modules, on
each interpreter.  The arcs built from it are compared with coverage.py's C
tracer in test_oracle.py (``branch_shapes``)."""

from __future__ import annotations

import dis
import sys
import sysconfig
import types
from pathlib import Path
from typing import Iterator, List

import pytest

from lowimpact.tools.cover.arcs import CodeMap

PROGRAMS = Path(__file__).parent / "programs"
STDLIB = Path(sysconfig.get_path("stdlib"))

# Modules with many shapes of code: big functions (EXTENDED_ARG), match,
# async, generators, exception handling, comprehensions.
SOURCES = [
    PROGRAMS / "branch_shapes.py",
    PROGRAMS / "branches.py",
    PROGRAMS / "match_shapes_py310.py",
    STDLIB / "ast.py",
    STDLIB / "typing.py",
    STDLIB / "argparse.py",
    STDLIB / "asyncio" / "tasks.py",
    STDLIB / "json" / "decoder.py",
    STDLIB / "email" / "_header_value_parser.py",
    STDLIB / "test" / "test_patma.py",
    STDLIB / "test" / "test_grammar.py",
]


def all_codes(code: types.CodeType) -> Iterator[types.CodeType]:
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from all_codes(const)


def from_dis(code: types.CodeType) -> List[tuple]:
    """What CodeMap.instructions() must give, from dis."""
    found = list(dis.get_instructions(code))
    jumps = set(dis.hasjrel) | set(dis.hasjabs)
    return [
        (ins.offset, ins.opcode,
         ins.argval if ins.arg is not None and ins.opcode in jumps else None,
         found[i + 1].offset if i + 1 < len(found) else None)
        for i, ins in enumerate(found)
    ]


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_instructions_as_dis_reads_them(path: Path) -> None:
    if not path.exists():
        pytest.skip("%s is not installed" % path)
    if path.name.endswith("_py310.py") and sys.version_info < (3, 10):
        pytest.skip("`match` is 3.10 syntax")
    top = compile(path.read_text(encoding="utf-8"), str(path), "exec")
    lines = path.read_bytes().splitlines()
    checked = 0
    for code in all_codes(top):
        code_map = CodeMap(code)
        assert code_map.instructions() == from_dis(code), (code.co_name, code.co_firstlineno)
        for point in code_map.branch_points():
            instructions = list(dis.get_instructions(code))
            index = [ins.offset for ins in instructions].index(point.offset)
            ins = instructions[index]
            located = ins if ins.opname == "FOR_ITER" or index == 0 else instructions[index - 1]
            # 3.10 has no columns: those recovered from the source
            # (columns310) are within the point's line.
            positions = getattr(located, "positions", None)
            assert point.jump_target == ins.argval
            if positions is None:
                if point.col is not None:
                    text = lines[point.line - 1]
                    assert 0 <= point.col < (point.end_col or len(text)) <= len(text)
            elif positions.lineno == point.line:
                assert point.col == positions.col_offset
                if positions.end_lineno == positions.lineno:
                    assert point.end_col == positions.end_col_offset
        checked += 1
    assert checked > 1


def test_a_function_with_extended_args() -> None:
    # More than 256 units of bytecode in one branch: its jumps take an
    # EXTENDED_ARG, which dis lists as an instruction of its own.
    body = ["        x%d = x%d + %d" % (i + 1, i, i) for i in range(300)]
    source = "\n".join(["def f(x0, flag):", "    if flag:", *body,
                        "    while flag:", *body, "        break", ""])
    namespace: dict = {}
    exec(compile(source, "<extended>", "exec"), namespace)
    code = namespace["f"].__code__
    assert any(ins.opname == "EXTENDED_ARG" for ins in dis.get_instructions(code))
    assert CodeMap(code).instructions() == from_dis(code)


def _told_ways(source: str, name: str) -> dict:
    """``{branch line: (line told by its jump, by going on)}`` of function
    *name* in *source* (0: not told), with the lines of the source."""
    module = compile(source, "<told>", "exec")
    code = next(c for c in all_codes(module) if c.co_name == name)
    code_map = CodeMap(code)
    told = {}
    for offset, (_, jump_line, next_line) in code_map.implied_directions().items():
        told.setdefault(code_map.statement_line(offset), set()).add((jump_line, next_line))
    return told


def test_ways_the_lines_tell() -> None:
    """A loop's body and the statement after a loop without break are
    reached from its branch alone, as is an if's body: their lines tell
    those ways.  The false of `while j < n and ok(j)`'s first test leads
    where the second test's does: not told, by either.  (3.9's tracing
    reports lines only at their starts: no way is told there.)"""
    told = _told_ways(
        "def f(n, ok):\n"           # 1
        "    for i in range(n):\n"  # 2
        "        n += i\n"          # 3
        "    if n > 5:\n"           # 4
        "        n = 0\n"           # 5
        "    j = 0\n"               # 6
        "    while j < n and ok(j):\n"  # 7
        "        j += 1\n"          # 8
        "    return j\n",           # 9
        "f")
    if sys.version_info < (3, 10):
        assert told == {}
        return
    assert {3, 4} <= {line for ways in told.get(2, ()) for line in ways}
    assert 5 in {line for ways in told.get(4, ()) for line in ways}
    assert 9 not in {line for ways in told.get(7, ()) for line in ways}
