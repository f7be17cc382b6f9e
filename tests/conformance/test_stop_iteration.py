"""The end of iteration: which of RAISE and STOP_ITERATION, and nothing more.

STOP_ITERATION is only for a generator that finishes inside a consumer
without any exception object (a ``for`` loop over the generator itself,
``yield from``, ``await``).  When the iterator is anything else, the
StopIteration is a real exception: raised by a ``__next__`` written in
Python, or set by a C iterator (``zip``, ``map``) that passes on the return
value of a generator it consumes.  The ``for`` loop that ends on it reports
a RAISE of that very exception at its FOR_ITER, never handled, and no
STOP_ITERATION; with BRANCH on or off, specialised or not (3.12 and 3.13
agree).  A C iterator whose generator returns None sets no exception: the
loop reports nothing (from 3.10 on: 3.9's generators set StopIteration
when their C next returns None too, a real exception there).

After STOP_ITERATION at a ``yield from`` or ``await`` the delegating frame
goes on with its next line; the line of the ``yield from``/``await`` is not
reported again.
"""

from __future__ import annotations

import sys
import types
from typing import Any, Iterator

import pytest

from .helpers import Recorder, Tool, drive, offset_of


def EXC(M: Any) -> int:
    E = M.events
    return E.RAISE | E.RERAISE | E.EXCEPTION_HANDLED | E.PY_UNWIND | E.STOP_ITERATION


class Counter:
    """An iterator in Python that yields 1 and then raises StopIteration('v')."""

    def __init__(self) -> None:
        self.i = 0

    def __iter__(self) -> "Counter":
        return self

    def __next__(self) -> int:
        self.i += 1
        if self.i > 1:
            raise StopIteration("v")
        return self.i


def returns_r() -> Iterator[int]:
    yield 1
    return "r"


def returns_none() -> Iterator[int]:
    yield 1


def for_over_counter() -> int:
    n = 0
    for x in Counter():
        n += x
    return n


def for_over_zip() -> int:
    n = 0
    for x, y in zip(returns_r(), [5, 6]):
        n += x + y
    return n


def for_over_map() -> int:
    n = 0
    for x in map(abs, returns_r()):
        n += x
    return n


def for_over_map_of_none() -> int:
    n = 0
    for x in map(abs, returns_none()):
        n += x
    return n


WITH_BRANCH = pytest.mark.parametrize("branch", [False, True], ids=["no BRANCH", "BRANCH"])


@WITH_BRANCH
def test_python_iterator_ends_a_for_loop(M: Any, tool: Tool, branch: bool) -> None:
    events = EXC(M) | (M.events.BRANCH if branch else 0)
    with Recorder(tool, events, for_over_counter, Counter.__next__) as rec:
        for _ in range(3):
            assert for_over_counter() == 1
    seen = [e for e in rec.events if e.name != "BRANCH"]
    assert [e.compact() for e in seen] == [
        ("RAISE", "__next__", "StopIteration"),
        ("PY_UNWIND", "__next__", "StopIteration"),
        ("RAISE", "for_over_counter", "StopIteration"),
    ] * 3
    for raised, unwound, ended in zip(seen[::3], seen[1::3], seen[2::3]):
        assert raised.value is unwound.value is ended.value
        assert ended.value.args == ("v",)
        assert ended.offset == offset_of(for_over_counter, "FOR_ITER")


@WITH_BRANCH
@pytest.mark.parametrize("consumer", [for_over_zip, for_over_map], ids=lambda f: f.__name__)
def test_c_iterator_over_a_generator_returning_a_value(M: Any, tool: Tool, branch: bool, consumer: Any) -> None:
    E = M.events
    events = EXC(M) | E.PY_RETURN | (E.BRANCH if branch else 0)
    with Recorder(tool, events, consumer, returns_r) as rec:
        results = [consumer() for _ in range(3)]
    assert results == [results[0]] * 3
    seen = [e for e in rec.events if e.name != "BRANCH"]
    assert [e.compact() for e in seen] == [
        ("PY_RETURN", "returns_r", "r"),
        ("RAISE", consumer.__name__, "StopIteration"),
        ("PY_RETURN", consumer.__name__, results[0]),
    ] * 3
    for e in seen[1::3]:
        assert e.value.value == "r"
        assert e.offset == offset_of(consumer, "FOR_ITER")


@WITH_BRANCH
def test_c_iterator_over_a_generator_returning_none(M: Any, tool: Tool, branch: bool) -> None:
    E = M.events
    events = EXC(M) | E.PY_RETURN | (E.BRANCH if branch else 0)
    with Recorder(tool, events, for_over_map_of_none, returns_none) as rec:
        assert for_over_map_of_none() == 1
    # (3.9's loop ends on a StopIteration, which its own trace functions see
    # as an 'exception' event at FOR_ITER.)
    stop_set = [("RAISE", "for_over_map_of_none", "StopIteration")] if sys.version_info < (3, 10) else []
    assert [e.compact() for e in rec.events if e.name != "BRANCH"] == [
        ("PY_RETURN", "returns_none", None),
    ] + stop_set + [
        ("PY_RETURN", "for_over_map_of_none", 1),
    ]


# --------------------------------------------------------------------------
# yield from / await: no LINE after STOP_ITERATION but the next line's


def inner() -> Iterator[int]:
    yield 1
    return 2


def outer() -> Iterator[int]:
    x = yield from inner()
    y = x
    return y


@types.coroutine
def suspend() -> Iterator[str]:
    yield "s"


async def awaited() -> int:
    await suspend()
    return 5


async def awaiting() -> int:
    x = await awaited()
    y = x
    return y


@pytest.mark.parametrize("with_yield", [False, True], ids=["LINE", "LINE+PY_YIELD"])
def test_no_line_after_stop_iteration_at_yield_from(M: Any, tool: Tool, with_yield: bool) -> None:
    E = M.events
    events = E.LINE | E.STOP_ITERATION | E.RAISE | (E.PY_YIELD if with_yield else 0)
    with Recorder(tool, events, outer, inner) as rec:
        assert list(outer()) == [1]
    yielded = [("PY_YIELD", "inner", 1), ("PY_YIELD", "outer", 1)] if with_yield else []
    assert rec.compact() == [
        ("LINE", "outer", 1),
        ("LINE", "inner", 1),
    ] + yielded + [
        ("LINE", "inner", 2),
        ("STOP_ITERATION", "outer", "StopIteration"),
        ("LINE", "outer", 2),
        ("LINE", "outer", 3),
    ]
    [stop] = rec.only("STOP_ITERATION")
    assert stop.value.value == 2


@pytest.mark.parametrize("with_yield", [False, True], ids=["LINE", "LINE+PY_YIELD"])
def test_no_line_after_stop_iteration_at_await(M: Any, tool: Tool, with_yield: bool) -> None:
    E = M.events
    events = E.LINE | E.STOP_ITERATION | E.RAISE | (E.PY_YIELD if with_yield else 0)
    with Recorder(tool, events, awaiting, awaited) as rec:
        coro = awaiting()
        assert coro.send(None) == "s"
        assert drive(coro) == 5
    yielded = [("PY_YIELD", "awaited", "s"), ("PY_YIELD", "awaiting", "s")] if with_yield else []
    assert rec.compact() == [
        ("LINE", "awaiting", 1),
        ("LINE", "awaited", 1),
    ] + yielded + [
        ("STOP_ITERATION", "awaited", "StopIteration"),
        ("LINE", "awaited", 2),
        ("STOP_ITERATION", "awaiting", "StopIteration"),
        ("LINE", "awaiting", 2),
        ("LINE", "awaiting", 3),
    ]
    assert [e.value.value for e in rec.only("STOP_ITERATION")] == [None, 5]
