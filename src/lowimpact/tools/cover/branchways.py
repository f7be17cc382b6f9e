"""What the lines that run tell of a branch's ways, for ``cover``'s collector
and its saving: the :class:`~lowimpact.tools.cover.arcs.CodeMap` of each code
object and coverage.py's first-line map of each file.

Its own module so that a process that measures with coverage.py beside it
(:mod:`~lowimpact.tools.cover.beside`) imports only this much of ``cover``
for branches.
"""

from __future__ import annotations

import types
from typing import Any, Dict, Optional

TYPE_CHECKING = False
if TYPE_CHECKING:
    from lowimpact.tools.cover.arcs import CodeMap

__all__ = ["BranchWays", "branch_imports"]


class BranchWays:
    """The collector's ``implied_of`` (what the lines that run tell of each
    branch's ways), with the :class:`CodeMap` of each code object it was
    asked about (by code id) and coverage.py's first-line map of each file,
    which saving uses too."""

    def __init__(self) -> None:
        self.code_maps: Dict[int, CodeMap] = {}
        self._first_line: Dict[str, Any] = {}

    def first_line_of(self, filename: str):
        """coverage.py's own mapping from a line to its statement's first line."""
        mapping = self._first_line.get(filename)
        if mapping is None:
            mapping = lambda line: line  # noqa: E731  (not Python source: lines as they are)
            try:
                mapping = _multiline_mapping(filename)
            except Exception:
                pass
            self._first_line[filename] = mapping
        return mapping

    def implied_of(self, code: types.CodeType, filename: str,
                   key: Optional[int] = None) -> Dict[int, int]:
        """For the collector: the branches of *code* (*key*: its id in the
        data, default its own) of which some way is told by the lines that
        run (:meth:`CodeMap.implied_directions`), as ``{source: next offset
        << 2 | ways}`` (ways: 1 the jump, 2 going on)."""
        from lowimpact.tools.cover.arcs import CodeMap

        if key is None:
            key = id(code)
        code_map = self.code_maps.get(key)
        if code_map is None:
            code_map = self.code_maps[key] = CodeMap(code, self.first_line_of(filename))
        return {source: following << 2 | bool(jump_line) | bool(next_line) << 1
                for source, (following, jump_line, next_line)
                in code_map.implied_directions().items()}


def branch_imports() -> None:
    """Imports what :class:`BranchWays` needs: the bytecode readers and
    coverage.py's source reader."""
    from lowimpact.tools.cover import arcs, bytecode  # noqa: F401

    try:
        from coverage.python import get_python_source  # noqa: F401
    except ImportError:
        from coverage.parser import PythonParser  # noqa: F401
        return
    from lowimpact.tools.cover import statements  # noqa: F401


def _multiline_mapping(filename: str):
    """The first line of the statement of each line of *filename*, as
    coverage.py's ``PythonParser.first_line`` gives it: from its multiline
    map alone, which :func:`~lowimpact.tools.cover.statements.multiline_map`
    computes as coverage.py's ``multiline_map_from_text`` does, without
    tokenizing every line (on 3.11 that cost more than the rest of saving),
    where coverage.py reads source as 7.x does; else from a full parse."""
    try:
        from coverage.python import get_python_source
    except ImportError:
        from coverage.parser import PythonParser

        parser = PythonParser(filename=filename)
        parser.parse_source()
        return parser.first_line
    from lowimpact.tools.cover.statements import multiline_map

    multiline = multiline_map(get_python_source(filename))
    return lambda line: multiline.get(line, line)
