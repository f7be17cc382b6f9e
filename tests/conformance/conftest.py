"""Fixtures of the conformance suite: tools that clean up after themselves."""

from __future__ import annotations

from typing import Any, Callable, Iterator

import pytest

from .helpers import TOOL, Tool


@pytest.fixture
def E(M: Any) -> Any:
    """The ``events`` namespace of the module under test."""
    return M.events


@pytest.fixture
def make_tool(M: Any) -> Iterator[Callable[..., Tool]]:
    """Factory for extra tools; every tool it made is fully reset and freed afterwards."""
    made: list[Tool] = []

    def make(tool_id: int, name: str = "conformance") -> Tool:
        tool = Tool(M, tool_id, name)
        made.append(tool)
        return tool

    yield make
    for tool in reversed(made):
        tool.close()


@pytest.fixture
def tool(make_tool: Callable[..., Tool]) -> Tool:
    """Tool id 3, in use for the test."""
    return make_tool(TOOL)
