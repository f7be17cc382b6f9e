"""The shadows of real code agree with their originals.

Every code object of a selection of stdlib modules is instrumented for every
event at every site it could have, and checked by :mod:`shadowcheck` (3.11:
positions, exception handlers, jump targets, stack size) or
:mod:`shadowcheck310` (3.9 and 3.10: the layout of probes and copies, sites, jump
targets, lines, stack depths).  The whole stdlib runs in the long target
(``make long-test``).
"""

from __future__ import annotations

import importlib.util
import sys
from types import CodeType
from typing import List

import pytest

if sys.version_info[:2] < (3, 11):
    from . import shadowcheck310 as shadowcheck
else:
    from . import shadowcheck

# Chosen for variety: generators, coroutines, async generators, with and
# try/finally nests, match, except*, big functions (EXTENDED_ARG jumps),
# comprehensions, closures and class bodies.
MODULES = [
    "asyncio.base_events", "asyncio.tasks", "asyncio.taskgroups", "contextlib",
    "dataclasses", "difflib", "email._header_value_parser", "enum", "functools",
    "inspect", "json.decoder", "pathlib", "pydoc", "re._parser", "re._compiler",
    "shutil", "subprocess", "tarfile", "textwrap", "traceback", "typing",
    "unittest.case", "zipfile", "ast", "argparse", "dis", "tokenize", "pickle",
]
if sys.version_info[:2] < (3, 11):
    # 3.9 and 3.10 have no except* (nor asyncio.taskgroups, whose `async
    # with` has asyncio.locks for company) and call re's parser and compiler
    # sre_parse and sre_compile; 3.10's stdlib has match only in its tests
    # (3.9 has no match).
    MODULES = [{"asyncio.taskgroups": "asyncio.locks", "re._parser": "sre_parse",
                "re._compiler": "sre_compile"}.get(name, name) for name in MODULES]
    if sys.version_info[:2] == (3, 10):
        MODULES.append("test.test_patma")


def _codes(module: str) -> List[CodeType]:
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin is not None
    with open(spec.origin, encoding="utf-8") as source:
        top = compile(source.read(), spec.origin, "exec")
    return list(shadowcheck.walk_code(top))


@pytest.mark.parametrize("module", MODULES)
def test_every_shadow_of_module_is_consistent(module: str) -> None:
    problems = []
    for code in _codes(module):
        for found in shadowcheck.check(code):
            problems.append("%s:%d %s: %s" % (module, code.co_firstlineno, code.co_name, found))
    assert problems == []


def test_shadows_of_one_event_at_a_time() -> None:
    problems = []
    for code in _codes("difflib") + _codes("asyncio.tasks"):
        for name, bit in vars(shadowcheck.monitoring.events).items():
            if name.isupper() and bit & shadowcheck.ALL_PROBED:
                problems.extend("%s %s: %s" % (name, code.co_name, p)
                                for p in shadowcheck.check(code, bit))
    assert problems == []


@pytest.mark.parametrize("events", ["LINE", "PY_START", "LINE PY_START"])
@pytest.mark.parametrize("module", MODULES)
def test_line_shadows_of_module_are_consistent(module: str, events: str) -> None:
    # On 3.11 most of these are made in one walk (lineshadow.c) rather than
    # by the general builder; debug builds also compare the two.
    selected = 0
    for name in events.split():
        selected |= getattr(shadowcheck.monitoring.events, name)
    problems = []
    for code in _codes(module):
        for found in shadowcheck.check(code, selected):
            problems.append("%s:%d %s: %s" % (module, code.co_firstlineno, code.co_name, found))
    assert problems == []
