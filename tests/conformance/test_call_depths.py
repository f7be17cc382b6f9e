"""CALL and C_RETURN of calls made with other values below them on the stack.

Where the callable and its first argument sit depends on what the code
around the call keeps on the value stack: a loop's iterator, a with
block's exit, a handled exception, the operands of an expression, a call
whose arguments are being evaluated.  Every call must report its own
callable and first argument, and ``*args`` that are not a tuple must be
taken as the call takes them (once, with its own errors).
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

from .helpers import Recorder, Tool


def CALLS(M: Any) -> int:
    E = M.events
    return E.CALL | E.C_RETURN | E.C_RAISE


def test_calls_inside_loops_with_blocks_and_handlers(M: Any, tool: Tool) -> None:
    def f() -> int:
        total = 0
        for i in (1,):
            with contextlib.nullcontext():
                try:
                    raise KeyError(i)
                except KeyError:
                    total += abs(-5) + 1 * len("abc")
        return total

    with Recorder(tool, CALLS(M), f) as rec:
        assert f() == 8
    assert [e for e in rec.compact() if e[2] in (abs, len)] == [
        ("CALL", "f", abs, -5),
        ("C_RETURN", "f", abs, -5),
        ("CALL", "f", len, "abc"),
        ("C_RETURN", "f", len, "abc"),
    ]


def test_nested_calls_in_arguments(M: Any, tool: Tool) -> None:
    def f() -> int:
        return max(1, min(4, abs(-3)), key=int)

    with Recorder(tool, CALLS(M), f) as rec:
        assert f() == 3
    assert rec.compact() == [
        ("CALL", "f", abs, -3),
        ("C_RETURN", "f", abs, -3),
        ("CALL", "f", min, 4),
        ("C_RETURN", "f", min, 4),
        # max calls int itself: calls from C code are not reported.
        ("CALL", "f", max, 1),
        ("C_RETURN", "f", max, 1),
    ]


def test_star_args_from_a_generator_are_taken_once(M: Any, tool: Tool) -> None:
    def numbers() -> Iterator[int]:
        yield 7
        yield 2

    def f() -> int:
        return max(*numbers())

    with Recorder(tool, CALLS(M), f) as rec:
        assert f() == 7
    assert rec.compact() == [
        ("CALL", "f", numbers, M.MISSING),
        ("CALL", "f", max, 7),
        ("C_RETURN", "f", max, 7),
    ]


def test_star_args_that_cannot_be_iterated_keep_their_error(M: Any, tool: Tool) -> None:
    def f() -> str:
        try:
            max(*5)
        except TypeError as exc:
            return str(exc)
        return "no error"

    expected = f()
    with Recorder(tool, CALLS(M), f):
        assert f() == expected
    assert "max()" in expected
