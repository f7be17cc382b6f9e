"""arcs.CodeMap reads ``co_code`` itself: what it reads must be what
``dis.get_instructions`` gives (instructions, jump targets, successors,
the columns of branch points), on every code object of real modules, on
each interpreter; and its walk in C must give what the Python one gives.
The arcs built from it are compared with coverage.py's C tracer in
test_oracle.py (``branch_shapes``)."""

from __future__ import annotations

import dis
import sys
import sysconfig
import types
from pathlib import Path
from typing import Iterator, List

import pytest

from lowimpact import _cover
from lowimpact.tools.cover import arcs, bytecode
from lowimpact.tools.cover.arcs import CodeMap
from lowimpact.tools.cover.statements import multiline_map

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


def source_of(path: Path) -> str:
    """The text of *path*, where this interpreter has it and compiles it."""
    if not path.exists():
        pytest.skip("%s is not installed" % path)
    if path.name.endswith("_py310.py") and sys.version_info < (3, 10):
        pytest.skip("`match` is 3.10 syntax")
    return path.read_text(encoding="utf-8")


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
    top = compile(source_of(path), str(path), "exec")
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


# The C walk (_cover.walk_code) against the Python one, on modules with many
# shapes of code, each line mapped to its statement's first line as saving
# maps it (multi-line statements are where the two differ).
WALKED = SOURCES + [STDLIB / name for name in (
    "inspect.py", "difflib.py", "tarfile.py", "pydoc.py", "unittest/mock.py",
    "asyncio/base_events.py", "test/test_exceptions.py", "test/test_coroutines.py",
    "test/test_contextlib_async.py", "test/test_fstring.py")]


def comparable(walked: tuple) -> tuple:
    """*walked* with the arcs lists that trails append to named by where
    they are (-1: the sequential arcs, i: the i-th pending run's), and the
    dicts as their items in order."""
    unit_line, unit_statement, starts, ops, targets, branches, candidates, pending, trails = walked
    where = {id(candidates): -1}
    where.update((id(arcs), i) for i, (_, arcs) in enumerate(pending))
    return (unit_line, unit_statement, starts, list(ops.items()), list(targets.items()),
            branches, candidates, pending,
            [(where.get(id(into)), line, destination, handler)
             for into, line, destination, handler in trails])


@pytest.mark.parametrize("path", WALKED, ids=lambda p: p.name)
def test_the_c_walk_is_the_python_walk(path: Path) -> None:
    text = source_of(path)
    multiline = multiline_map(text)

    def first_line(line: int) -> int:
        return multiline.get(line, line)

    line_starts = not bytecode.MID_LINE_ENTRY
    checked = 0
    for code in all_codes(compile(text, str(path), "exec")):
        in_c = _cover.walk_code(code.co_code, bytecode.line_ranges(code), first_line,
                                line_starts, arcs._FORMAT.tables)
        in_python = arcs.walk_in_python(code.co_code, bytecode.line_ranges(code), first_line,
                                        line_starts)
        assert in_c is not None, (code.co_name, code.co_firstlineno)
        assert comparable(in_c) == comparable(in_python), (code.co_name, code.co_firstlineno)
        checked += 1
    assert checked > 1


def test_the_c_walk_leaves_what_no_compiler_makes_to_python() -> None:
    """A run of EXTENDED_ARG longer than any argument needs (Python's int
    grows past a C long long), and a line table with odd offsets."""
    extended_arg, nop = dis.opmap["EXTENDED_ARG"], dis.opmap["NOP"]
    # (0x40 first: the argument passes 2**40 at the sixth; 0xff would wrap
    # round to -1.)
    raw = bytes([extended_arg, 0x40] + [extended_arg, 0] * 6 + [nop, 0])
    lines = [(0, len(raw), 1)]
    walked = arcs.walk_in_python(raw, iter(lines), lambda line: line, False)
    assert len(walked[3]) == 8
    assert _cover.walk_code(raw, iter(lines), lambda line: line, False,
                            arcs._FORMAT.tables) is None
    assert _cover.walk_code(raw, iter([(0, 3, 1)]), lambda line: line, False,
                            arcs._FORMAT.tables) is None
    assert _cover.walk_code(raw[:4] + raw[-2:], iter([(0, 6, 1)]), lambda line: line, False,
                            arcs._FORMAT.tables) is not None


def test_the_c_walk_passes_on_errors() -> None:
    raw = bytes([dis.opmap["NOP"], 0] * 2)

    def first_line(line: int) -> int:
        raise LookupError(line)

    with pytest.raises(LookupError):
        _cover.walk_code(raw, iter([(0, 4, 7)]), first_line, False, arcs._FORMAT.tables)
    with pytest.raises(TypeError):
        _cover.walk_code(raw, iter([(0, 4)]), lambda line: line, False, arcs._FORMAT.tables)
    with pytest.raises(TypeError):
        _cover.walk_code(raw, iter([]), lambda line: line, False, arcs._FORMAT.tables[1:])


@pytest.mark.parametrize("path", WALKED, ids=lambda p: p.name)
def test_positions_are_co_positions(path: Path) -> None:
    """bytecode.positions reads the 3.11+ location table itself
    (_cover.code_locations): what co_positions() gives, at any units asked
    for; None where the format has no columns (3.9, 3.10: no co_positions)."""
    checked = 0
    for code in all_codes(compile(source_of(path), str(path), "exec")):
        units = range(len(code.co_code) // 2)
        every = list(code.co_positions()) if hasattr(code, "co_positions") else None
        assert bytecode.positions(code, units) == every, (code.co_name, code.co_firstlineno)
        some = units[::7][::-1]
        assert bytecode.positions(code, some) == (every and [every[unit] for unit in some])
        checked += 1
    assert checked > 1


def test_code_locations_on_tables_cut_short() -> None:
    # One entry of kind 14 (a long form) for 1 unit, line +1, then one cut
    # in its varints; units past the table.
    table = bytes([0x80 | 14 << 3, 2, 0, 5, 9])
    assert _cover.code_locations(table, 10, [0]) == [(11, 11, 4, 8)]
    with pytest.raises(IndexError):
        _cover.code_locations(table, 10, [1])
    with pytest.raises(ValueError):
        _cover.code_locations(table + bytes([0x80 | 14 << 3, 0x41]), 10, [1])
    with pytest.raises(IndexError):
        _cover.code_locations(table, 10, [-1])
