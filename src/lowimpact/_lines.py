"""``code.co_lines()`` on every supported version.

3.10 added ``co_lines()``; 3.9 has only ``co_lnotab``, whose line for an
offset is the one ``PyCode_Addr2Line`` gives (every instruction has one).
"""

from __future__ import annotations

# (Not dis nor typing when imported: `cover run`'s program process imports
# this before the program starts, on 3.9.)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import CodeType
    from typing import Iterator, Optional, Tuple


def co_lines(code: CodeType) -> Iterator[Tuple[int, int, Optional[int]]]:
    """The ``(start, end, line)`` byte ranges of *code*, as ``code.co_lines()``."""
    lines = getattr(code, "co_lines", None)
    if lines is not None:
        yield from lines()
        return
    import dis

    starts = list(dis.findlinestarts(code))
    end = len(code.co_code)
    if not starts or starts[0][0] != 0:
        # Before its first entry, an offset is on co_firstlineno.
        starts.insert(0, (0, code.co_firstlineno))
    for (start, line), following in zip(starts, starts[1:] + [(end, None)]):
        if following[0] > start:
            yield start, following[0], line
