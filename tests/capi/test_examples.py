"""The example extensions of docs/CAPI.md build and do what the docs say."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any, List

import pytest

from .test_capi import compile_extension

EXAMPLES = Path(__file__).parents[2] / "examples" / "capi"


def load(name: str, tmp_path_factory: Any) -> ModuleType:
    target = compile_extension(EXAMPLES / (name + ".c"), tmp_path_factory.mktemp(name))
    spec = importlib.util.spec_from_file_location(name, target)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def stackvm(tmp_path_factory: Any) -> ModuleType:
    return load("stackvm", tmp_path_factory)


@pytest.fixture(scope="session")
def callcount(tmp_path_factory: Any) -> ModuleType:
    return load("callcount", tmp_path_factory)


PROGRAM = [
    (1, "push", 0),
    (2, "jump_if_zero", 3),
    (3, "push", 99),            # skipped
    (4, "push", -5),
    (4, "call", abs),
    (5, "push", 2),
    (5, "add", None),
]


def test_stackvm_reports_its_program(M: Any, stackvm: ModuleType) -> None:
    events: List[tuple] = []
    E = M.events

    def make(name: str) -> Any:
        def callback(code: Any, *args: Any) -> None:
            if code is PROGRAM:
                events.append((name,) + args)
        return callback

    M.use_tool_id(3, "example")
    names = ("PY_START", "PY_RETURN", "LINE", "CALL", "JUMP")
    for name in names:
        M.register_callback(3, getattr(E, name), make(name))
    try:
        assert stackvm.run(PROGRAM) == [7]      # nothing reported: events off
        M.set_events(3, sum(getattr(E, n) for n in names))
        assert stackvm.run(PROGRAM) == [7]
    finally:
        M.set_events(3, 0)
        M.clear_tool_id(3)
        M.free_tool_id(3)
    assert events == [
        ("PY_START", 0), ("LINE", 1), ("LINE", 2), ("JUMP", 1, 3), ("LINE", 4),
        ("CALL", 4, abs, -5), ("LINE", 5), ("PY_RETURN", 7, [7]),
    ]


def fib(n: int) -> int:
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def test_callcount_counts_calls(callcount: ModuleType) -> None:
    callcount.start()
    fib(10)
    counts = callcount.stop()
    assert counts[fib.__code__] == 177


def test_callcount_once_disables_each_function(callcount: ModuleType) -> None:
    callcount.start(once=True)
    fib(10)
    counts = callcount.stop()
    assert counts[fib.__code__] == 1
